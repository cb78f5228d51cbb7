"""deploy/: the compose file agrees with Settings and with itself (no container runtime runs
here, so this is what checks it), Prometheus' config and alert rules pass promtool, and the
Grafana dashboard is well formed and provisioned. That every dashboard expression returns
data from live workers is tests/integration/test_prometheus.py."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from app.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
WORKERS = ("worker1", "worker2")
_VARIABLE = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def interpolated(value: Any) -> Any:
    """Compose's ``${NAME:-default}`` with nothing set in the environment: the default."""
    if isinstance(value, str):
        return _VARIABLE.sub(lambda match: match.group(2) or "", value)
    if isinstance(value, dict):
        return {key: interpolated(item) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolated(item) for item in value]
    return value


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return interpolated(yaml.safe_load((DEPLOY / "compose.yaml").read_text()))  # type: ignore[no-any-return]


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """container path → host path (relative to deploy/) of a service's bind mounts."""
    return {volume.split(":")[1]: volume.split(":")[0] for volume in service.get("volumes", [])
            if volume.startswith(".")}


def published(service: dict[str, Any]) -> dict[int, int]:
    """container port → host port."""
    return {int(port.split(":")[1]): int(port.split(":")[0]) for port in service.get("ports", [])}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool not installed: `make install` installs Debian's prometheus package")
    return found


def test_the_compose_file_has_kafka_in_kraft_mode_two_workers_prometheus_and_grafana(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"kafka", *WORKERS, "prometheus", "grafana"}
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert set(kafka["environment"]["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "zookeeper" not in json.dumps(compose).lower()
    for name in WORKERS:
        build = services[name]["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == REPO / "Dockerfile"


@pytest.mark.parametrize("name", WORKERS)
def test_every_worker_variable_is_a_setting_and_the_ports_agree(compose: dict[str, Any], name: str) -> None:
    worker = compose["services"][name]
    environment = {key: str(value) for key, value in worker["environment"].items()}
    settings = Settings.from_env(environment)  # an unknown STREAMVEC_* variable raises
    assert settings.web_host == name, "other workers reach this one by its service name"
    assert published(worker).keys() == {settings.web_port}
    health = " ".join(worker["healthcheck"]["test"])
    assert f"http://127.0.0.1:{settings.web_port}/ready" in health and "STREAMVEC_API_KEY" in health
    kafka = compose["services"]["kafka"]["environment"]
    broker = urlparse(settings.broker_url).netloc
    assert f"PLAINTEXT://{broker}" in kafka["KAFKA_ADVERTISED_LISTENERS"].split(","), "workers use the inner listener"
    assert worker["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert any(volume.endswith(":/var/lib/streamvec") for volume in worker["volumes"]), "the Dockerfile's datadir"


def test_the_workers_form_one_group_on_distinct_host_ports(compose: dict[str, Any]) -> None:
    services = compose["services"]
    settings = [Settings.from_env({k: str(v) for k, v in services[n]["environment"].items()}) for n in WORKERS]
    assert len({(s.app_id, s.partitions, s.api_key, s.cluster_secret, s.broker) for s in settings}) == 1
    host_ports = [port for name in WORKERS for port in published(services[name]).values()]
    assert len(set(host_ports)) == len(WORKERS)
    volumes = [services[name]["volumes"][0].split(":")[0] for name in WORKERS]
    assert len(set(volumes)) == len(WORKERS), "one data dir per worker"


def test_prometheus_scrapes_each_worker_where_it_listens(compose: dict[str, Any]) -> None:
    services = compose["services"]
    prometheus = services["prometheus"]
    config_path = DEPLOY / mounts(prometheus)["/etc/prometheus/prometheus.yml"]
    config = yaml.safe_load(config_path.read_text())
    (job,) = config["scrape_configs"]
    targets = {target for group in job["static_configs"] for target in group["targets"]}
    expected = {f"{name}:{Settings.from_env({k: str(v) for k, v in services[name]['environment'].items()}).web_port}"
                for name in WORKERS}
    assert targets == expected and job["metrics_path"] == "/metrics"
    assert {config["target"] for config in prometheus["configs"]} == {job["authorization"]["credentials_file"]}
    for rules in config["rule_files"]:
        assert f"/etc/prometheus/{rules}" in mounts(prometheus), f"{rules} is not mounted"


def test_grafana_is_provisioned_with_the_prometheus_source_and_the_dashboard(compose: dict[str, Any]) -> None:
    grafana = mounts(compose["services"]["grafana"])
    provisioning = DEPLOY / grafana["/etc/grafana/provisioning"]
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())["datasources"]
    prometheus_port = next(iter(published(compose["services"]["prometheus"])))
    assert source["url"] == f"http://prometheus:{prometheus_port}"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "streamvec.yaml").read_text())["providers"]
    assert provider["options"]["path"] in grafana
    dashboard = json.loads((DEPLOY / grafana[provider["options"]["path"]] / "streamvec.json").read_text())
    panels = dashboard["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    for panel in panels:
        assert panel["datasource"]["uid"] == source["uid"] and panel["targets"], panel["title"]
        assert len({target["refId"] for target in panel["targets"]}) == len(panel["targets"])
        assert all(target["expr"].strip() and target["datasource"]["uid"] == source["uid"] for target in panel["targets"])


def test_the_dockerfile_copies_every_package_the_distribution_ships() -> None:
    include = re.search(r'include = \[([^\]]*)\]', (REPO / "pyproject.toml").read_text().split("packages.find")[1])
    assert include is not None
    packages = {name.strip(' "*') for name in include.group(1).split(",")}
    dockerfile = (REPO / "Dockerfile").read_text()
    assert {p for p in packages if f"COPY {p} ./{p}" not in dockerfile} == set()


def test_the_prometheus_config_and_alert_rules_pass_promtool(tmp_path: Path) -> None:
    tool = promtool()
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (tmp_path / "streamvec-api-key").write_text("key")
    config["scrape_configs"][0]["authorization"]["credentials_file"] = str(tmp_path / "streamvec-api-key")
    config["rule_files"] = [str(DEPLOY / "prometheus" / name) for name in config["rule_files"]]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    for command in ([tool, "check", "config", str(tmp_path / "prometheus.yml")],
                    [tool, "check", "rules", str(DEPLOY / "prometheus" / "alerts.yml")],
                    [tool, "test", "rules", "alerts.test.yml"]):
        run = subprocess.run(command, capture_output=True, text=True, cwd=DEPLOY / "prometheus", timeout=60)
        assert run.returncode == 0 and "SUCCESS" in run.stdout + run.stderr, run.stdout + run.stderr
