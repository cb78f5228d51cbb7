"""Debian's Prometheus scraping the two live workers of the user group with deploy/'s config
(only the targets and file paths changed), while the test searches and writes: every
expression of the Grafana dashboard must return data. The compose health check, run against a
live worker, must pass with the key and fail without it."""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.brokers.process import free_port, stop_process_group
from streamvec import Client, Query
from tests.support.users import Users
from tests.support.workers import wait_for

pytestmark = pytest.mark.integration

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
# Grafana's variables, as Grafana would fill them for a short time range with 1 s scrapes.
GRAFANA_VARIABLES = {"$__rate_interval": "20s", "$__range": "5m"}


@pytest.fixture(scope="module")
def prometheus(user_group: Users, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus not installed: `make install` installs Debian's prometheus package")
    root = tmp_path_factory.mktemp("prometheus")
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    (job,) = config["scrape_configs"]
    job["static_configs"] = [{"targets": [url.removeprefix("http://") for url in user_group.urls]}]
    (root / "api-key").write_text(user_group.api_key)
    job["authorization"]["credentials_file"] = str(root / "api-key")
    config["rule_files"] = [str(DEPLOY / "prometheus" / name) for name in config["rule_files"]]
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    url = f"http://127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [binary, f"--config.file={root / 'prometheus.yml'}", f"--storage.tsdb.path={root / 'data'}",
         f"--web.listen-address={url.removeprefix('http://')}"],
        stdout=(root / "log").open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for("both workers scraped", lambda: _up(url) == 2, timeout=60)
        yield url
    finally:
        stop_process_group(process, grace=10)


def _up(url: str) -> int:
    return sum(int(float(series["value"][1])) for series in query(url, 'up{job="streamvec"}'))


def query(url: str, expression: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": expression}),
                                timeout=10) as response:
        answer = json.loads(response.read())
    assert answer["status"] == "success", answer
    return answer["data"]["result"]  # type: ignore[no-any-return]


def dashboard_expressions() -> list[tuple[str, str]]:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "streamvec.json").read_text())
    return [(f"{panel['title']} / {target.get('legendFormat') or target['refId']}", target["expr"])
            for panel in dashboard["panels"] for target in panel["targets"]]


def traffic(group: Users, seconds: float) -> None:
    """Searches (single and batch) and writes of texts and vectors, for ``seconds``."""
    rng = random.Random(13)
    ids: list[str] = []
    with Client(group.urls, api_key=group.api_key, broker=group.broker, app_id=group.app_id) as client:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            client.search(rng.choice(group.documents)["text"][:60], k=5)
            client.search_batch([Query(text="a small bird", k=3), Query(text="fresh bread", k=3)])
            doc_id = f"metrics-{len(ids)}"
            vector = [rng.gauss(0, 1) for _ in range(384)]
            client.upsert([{"id": doc_id, "text": f"a note about metrics number {len(ids)}"},
                           {"id": doc_id + "-v", "vector": vector}])
            ids += [doc_id, doc_id + "-v"]
            time.sleep(0.2)
        client.delete(ids, wait=True)


def test_every_dashboard_expression_returns_data_from_live_workers(user_group: Users, prometheus: str) -> None:
    traffic(user_group, seconds=12)
    time.sleep(2)  # a last scrape after the traffic
    report = []
    empty = []
    for title, expression in dashboard_expressions():
        for variable, value in GRAFANA_VARIABLES.items():
            expression = expression.replace(variable, value)
        series = query(prometheus, expression)
        values = [float(s["value"][1]) for s in series]
        finite = [v for v in values if math.isfinite(v)]
        report.append(f"{title:<45} {len(series):>3} series, largest {max(finite) if finite else float('nan'):.4g}")
        if not finite:
            empty.append(f"{title}: {expression} -> {series}")
    print("\nPrometheus, dashboard expressions over two live workers:\n" + "\n".join(report))
    assert not empty, "expressions without data:\n" + "\n".join(empty)
    assert float(query(prometheus, "sum(streamvec_documents{role=\"active\"})")[0]["value"][1]) == len(user_group.documents)


def test_the_compose_health_check_needs_ready_and_the_key(user_group: Users) -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    check = compose["x-worker"]["healthcheck"]["test"]
    assert check[0] == "CMD"
    port = user_group.urls[0].rsplit(":", 1)[1]
    command = [arg.replace("127.0.0.1:6066", f"127.0.0.1:{port}") for arg in check[1:]]
    command[0] = shutil.which("python") or command[0]
    ok = subprocess.run(command, env={**os.environ, "STREAMVEC_API_KEY": user_group.api_key}, timeout=30,
                        capture_output=True)
    refused = subprocess.run(command, env={**os.environ, "STREAMVEC_API_KEY": "wrong"}, timeout=30,
                             capture_output=True)
    assert ok.returncode == 0, ok.stderr
    assert refused.returncode != 0 and b"401" in refused.stderr
