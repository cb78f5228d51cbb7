"""``streamvec demo``: a broker, two workers and the sample data set, then how to query it.

Beside search it shows the real-time uses: a small watchlist is loaded before the data (so
matching documents raise alerts as they are indexed), and a user's activity (views of a few
animal glosses) makes a profile to recommend from.

Everything it starts runs in its own process group and is stopped on Ctrl-C (or when a
part dies), so a demo never leaves a broker or worker behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from app.http.auth import API_KEY_HEADER
from app.brokers.process import BrokerHandle, stop_process_group
from app.cli.producer import Line, produce, read_events
from app.settings import WATCHLIST_PARTITIONS, Settings
from app.topics import partitions_of, read_to_end

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample.jsonl"
WORKERS = 2
WATCHLIST = [
    {"id": "big-cats", "text": "a large wild cat such as a lion, a tiger or a leopard",
     "metadata": {"threshold": 0.6, "labels": ["wildlife"]}},
    {"id": "storms", "text": "a violent storm with strong winds", "metadata": {"threshold": 0.6, "labels": ["weather"]}},
]
USER = "alice"
USER_CATEGORY = "animal"
USER_VIEWS = 5
REPLICATION_FACTOR = 1
"""The demo runs one local broker: one copy of each topic, asked for, so nothing warns that it is fewer."""


def run_demo(settings: Settings, kind: str, data: Path) -> None:
    _interrupt_on_signals()
    broker = _start_broker(kind, settings.datadir / "demo-broker")
    workers: list[subprocess.Popen[bytes]] = []
    try:
        env = {**os.environ, "STREAMVEC_BROKER": broker.url, "STREAMVEC_APP_ID": settings.app_id,
               "STREAMVEC_SESSION_TIMEOUT": "6", "STREAMVEC_REBALANCE_TIMEOUT": "6",
               "STREAMVEC_REPLICATION_FACTOR": str(REPLICATION_FACTOR),
               # Tansu answers InitProducerId with an error: no idempotent producer there.
               "STREAMVEC_IDEMPOTENT_PRODUCER": "false" if kind == "tansu" else "true"}
        ports = [settings.web_port + i for i in range(WORKERS)]
        for i, port in enumerate(ports, 1):
            workers.append(_start_worker(env, port, settings.datadir / f"demo-worker-{i}"))
        lines = read_events(data)
        click.echo(f"{kind} broker on {broker.url}; workers on ports {ports}; logs in {settings.datadir}")
        asyncio.run(produce(broker.url, settings.watchlist_topic, WATCHLIST_PARTITIONS, _keyed(WATCHLIST, "id"),
                            progress=False, replication_factor=REPLICATION_FACTOR))
        asyncio.run(produce(broker.url, settings.events_topic, settings.partitions, lines,
                            replication_factor=REPLICATION_FACTOR))
        url = f"http://127.0.0.1:{ports[0]}"
        _wait_indexed(url, len(lines), workers, settings.api_key)
        asyncio.run(produce(broker.url, settings.activity_topic, settings.partitions, _activity(lines), progress=False,
                            replication_factor=REPLICATION_FACTOR))
        _print_alert(broker.url, settings.alerts_topic)
        _print_recommendation(url, settings.api_key, workers)
        _print_usage(ports)
        _wait_for_interrupt(workers)
    finally:
        for process in workers:
            stop_process_group(process, grace=20)
        broker.stop()
        click.echo("demo stopped: broker and workers are down")


def _interrupt_on_signals() -> None:
    """Ctrl-C and SIGTERM both end the demo cleanly, even when started from a script
    (a background job inherits SIGINT ignored)."""
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


def _start_broker(kind: str, data_dir: Path) -> BrokerHandle:
    data_dir.mkdir(parents=True, exist_ok=True)
    if kind == "kafka":
        from app.brokers.kafka import start_kafka

        return start_kafka(data_dir=None)
    from app.brokers.tansu import start_tansu

    return start_tansu(data_dir=data_dir)


def _start_worker(env: dict[str, str], port: int, datadir: Path) -> subprocess.Popen[bytes]:
    datadir.mkdir(parents=True, exist_ok=True)
    log = (datadir.parent / f"{datadir.name}.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "worker", "--web-port", str(port), "--datadir", str(datadir)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_indexed(url: str, expected: int, workers: list[subprocess.Popen[bytes]], api_key: str) -> None:
    with tqdm(total=expected, unit="doc", desc="indexing (embedding on this machine's CPU)") as bar:
        while True:
            _check_alive(workers)
            documents = _documents(url, api_key)
            bar.update(documents - bar.n)
            if documents >= expected:
                return
            time.sleep(1.0)


def _documents(url: str, api_key: str) -> int:
    try:
        return int(_get(f"{url}/stats", api_key)["documents"])
    except OSError:
        return 0  # the worker is still starting


def _get(url: str, api_key: str) -> dict[str, Any]:
    request = urllib.request.Request(url, headers={API_KEY_HEADER: api_key} if api_key else {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def _keyed(records: list[dict[str, Any]], key_field: str) -> list[Line]:
    return [Line(record[key_field].encode(), json.dumps(record).encode()) for record in records]


def _activity(lines: list[Line]) -> list[Line]:
    """The demo user viewed a few documents of one category (the first ones, if none has it)."""
    documents = [json.loads(line.value or b"{}") for line in lines]
    chosen = [d for d in documents if d.get("metadata", {}).get("category") == USER_CATEGORY][:USER_VIEWS] \
        or documents[:USER_VIEWS]
    now = time.time()
    return _keyed([{"user": USER, "item": d["id"], "action": "view", "ts": now} for d in chosen], "user")


def _print_alert(broker: str, topic: str) -> None:
    """One watchlist alert from the alerts topic, as a consumer of it would see it."""
    alerts = [json.loads(r.value) for r in asyncio.run(read_to_end(broker, asyncio.run(partitions_of(broker, topic))))]
    watchlist = [a for a in alerts if a["kind"] == "watchlist"]
    click.echo(f"\nAlerts so far on {topic}: {len(watchlist)} watchlist matches, e.g.")
    for alert in sorted(watchlist, key=lambda a: -a["score"])[:2]:
        click.echo(f"  {json.dumps(alert)}")


def _print_recommendation(url: str, api_key: str, workers: list[subprocess.Popen[bytes]]) -> None:
    """The demo user's recommendations, once the activity has reached their profile."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        _check_alive(workers)
        try:
            answer = _get(f"{url}/recommendations/{USER}?k=3", api_key)
        except OSError:  # 404 until the profile exists
            time.sleep(0.5)
            continue
        click.echo(f"\nRecommendations for {USER} (viewed {answer['profile_events']} {USER_CATEGORY} glosses):")
        for hit in answer["results"]:
            click.echo(f"  {hit['score']:.3f}  {hit['id']}  {json.dumps(hit['metadata'], ensure_ascii=False)}")
        click.echo(f"  curl -s '{url}/recommendations/{USER}?k=5'\n")
        return
    click.echo(f"\n(no profile for {USER} after 30 s; see the worker logs)")


def _print_usage(ports: list[int]) -> None:
    query = "big wild cat with a mane"
    click.echo(f"\nReady. Open the search page: http://127.0.0.1:{ports[0]}/ (any worker serves it). Or try:\n")
    click.echo(f"  curl -s 'http://127.0.0.1:{ports[0]}/search?q=instrument+that+tells+how+hot+something+is&k=5'")
    click.echo(f"  curl -s -X POST http://127.0.0.1:{ports[1]}/search -H 'Content-Type: application/json' \\\n"
               f"       -d '{{\"text\": \"{query}\", \"k\": 5, \"filter\": {{\"category\": \"animal\"}}}}'")
    click.echo(f"  .venv/bin/streamvec search '{query}' -k 5 --url http://127.0.0.1:{ports[0]}")
    click.echo(f"  curl -s http://127.0.0.1:{ports[0]}/stats")
    click.echo(f"  curl -s -X POST http://127.0.0.1:{ports[0]}/watchlist/check -H 'Content-Type: application/json' "
               "-d '{\"text\": \"a tiger\"}'")
    click.echo("Ctrl-C stops the demo.")


def _wait_for_interrupt(workers: list[subprocess.Popen[bytes]]) -> None:
    try:
        while True:
            _check_alive(workers)
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass


def _check_alive(workers: list[subprocess.Popen[bytes]]) -> None:
    for process in workers:
        if process.poll() is not None:
            raise click.ClickException(f"a worker exited (code {process.returncode}); see its log in the data dir")


