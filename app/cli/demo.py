"""``streamvec demo``: a broker, two workers and the sample data set, then how to query it.

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

import click
from tqdm import tqdm

from app.http.auth import API_KEY_HEADER
from app.brokers.process import BrokerHandle, stop_process_group
from app.cli.producer import produce, read_events
from app.settings import Settings

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample.jsonl"
WORKERS = 2


def run_demo(settings: Settings, kind: str, data: Path) -> None:
    _interrupt_on_signals()
    broker = _start_broker(kind, settings.datadir / "demo-broker")
    workers: list[subprocess.Popen[bytes]] = []
    try:
        env = {**os.environ, "STREAMVEC_BROKER": broker.url, "STREAMVEC_APP_ID": settings.app_id,
               "STREAMVEC_SESSION_TIMEOUT": "6", "STREAMVEC_REBALANCE_TIMEOUT": "6",
               # Tansu answers InitProducerId with an error: no idempotent producer there.
               "STREAMVEC_IDEMPOTENT_PRODUCER": "false" if kind == "tansu" else "true"}
        ports = [settings.web_port + i for i in range(WORKERS)]
        for i, port in enumerate(ports, 1):
            workers.append(_start_worker(env, port, settings.datadir / f"demo-worker-{i}"))
        lines = read_events(data)
        click.echo(f"{kind} broker on {broker.url}; workers on ports {ports}; logs in {settings.datadir}")
        asyncio.run(produce(broker.url, settings.events_topic, settings.partitions, lines))
        _wait_indexed(f"http://127.0.0.1:{ports[0]}", len(lines), workers, settings.api_key)
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
    request = urllib.request.Request(f"{url}/stats", headers={API_KEY_HEADER: api_key} if api_key else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(json.loads(response.read())["documents"])
    except OSError:
        return 0  # the worker is still starting


def _print_usage(ports: list[int]) -> None:
    query = "big wild cat with a mane"
    click.echo(f"\nReady. Open the search page: http://127.0.0.1:{ports[0]}/ (any worker serves it). Or try:\n")
    click.echo(f"  curl -s 'http://127.0.0.1:{ports[0]}/search?q=instrument+that+tells+how+hot+something+is&k=5'")
    click.echo(f"  curl -s -X POST http://127.0.0.1:{ports[1]}/search -H 'Content-Type: application/json' \\\n"
               f"       -d '{{\"text\": \"{query}\", \"k\": 5, \"filter\": {{\"category\": \"animal\"}}}}'")
    click.echo(f"  .venv/bin/streamvec search '{query}' -k 5 --url http://127.0.0.1:{ports[0]}")
    click.echo(f"  curl -s http://127.0.0.1:{ports[0]}/stats\n")
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


