"""The HTTP API against live workers on a real Kafka: schema fuzzing and protection.

Worker ``guarded`` runs with an API key and an explicit cluster secret; worker ``open``
has neither (its group draws the secret through Kafka). Both must keep ``/internal/*``
closed to anyone without the secret, and neither may write a secret to its log.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from app.http.auth import API_KEY_HEADER
from app.search.secret import SECRET_HEADER
from app.topics import bootstrap
from tests.support.group import Group
from tests.support.kafka import sample_texts, send_events
from tests.support.workers import REPO, Worker, wait_for, wait_for_documents

pytestmark = pytest.mark.integration

API_KEY = "test-api-key-5b1e0c"
SECRET = "test-cluster-secret-9d7a44"
DOCS = 50
EXAMPLES = os.environ.get("SCHEMATHESIS_EXAMPLES", "100")
"""Examples per operation (schemathesis' --max-examples); ``make soak`` runs 100."""
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_schema_conformance,negative_data_rejection")


def call(worker: Worker, method: str, path: str, headers: dict[str, str] | None = None,
         body: bytes | None = None) -> int:
    request = urllib.request.Request(worker.url + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture(scope="module")
def workers(kafka_broker: str, model_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Worker]]:
    root = tmp_path_factory.mktemp("http")
    stamp = int(time.time())
    groups = [Group(kafka_broker, f"guarded{stamp}", root, model_cache,
                    env={"STREAMVEC_API_KEY": API_KEY, "STREAMVEC_CLUSTER_SECRET": SECRET}, quick_rebalance=False),
              Group(kafka_broker, f"open{stamp}", root, model_cache, quick_rebalance=False)]
    started = {"guarded": groups[0].worker("guarded"), "open": groups[1].worker("open")}
    try:
        for worker in started.values():
            worker.start()
        for worker in started.values():
            send_events(kafka_broker, worker.env["STREAMVEC_APP_ID"], sample_texts(DOCS))
        started["open"].wait_ready()
        wait_for_documents(started["open"], DOCS, timeout=120)
        # The guarded worker answers /ready and /stats only with the key.
        wait_for("the guarded worker to serve every document",
                 lambda: _stats(started["guarded"]).get("documents") == DOCS and not _stats(started["guarded"])["partial"],
                 timeout=120)
        yield started
    finally:
        for group in groups:
            group.stop_all()


def test_schemathesis_finds_no_server_error_and_no_response_that_breaks_the_schema(workers: dict[str, Worker]) -> None:
    guarded = workers["guarded"]
    # One schemathesis worker: with two threads, CPython 3.11.7's AST module sometimes fails
    # inside hypothesis while it draws free-form filter objects ("recursion depth mismatch").
    run = subprocess.run(
        [str(Path(sys.executable).with_name("st")), "--config-file", str(REPO / "tests" / "schemathesis.toml"),
         "run", f"{guarded.url}/openapi.json", "-H", f"{API_KEY_HEADER}: {API_KEY}", "--checks", CHECKS,
         "--max-examples", EXAMPLES, "--workers", "1"],
        capture_output=True, text=True, timeout=400)
    lines = run.stdout.splitlines()
    summary = [line.strip() for line in lines if re.search(r"^\s*\d+ generated|=+ .* in [\d.]+s =+", line)]
    print("\nschemathesis:", " | ".join(summary))
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert not re.search(r"failure|error", summary[-1]) and re.search(r"(\d+) generated, \1 passed", summary[0]), summary


def test_every_endpoint_but_health_needs_the_api_key(workers: dict[str, Worker]) -> None:
    guarded = workers["guarded"]
    paths = [("GET", "/ready"), ("GET", "/stats"), ("GET", "/metrics"), ("GET", "/openapi.json"),
             ("GET", "/search?q=cat"), ("GET", "/documents/x"), ("POST", "/search"), ("POST", "/search/batch"),
             ("POST", "/watchlist/check"), ("GET", "/recommendations/x")]
    for method, path in paths:
        assert call(guarded, method, path) == 401, path
        assert call(guarded, method, path, {API_KEY_HEADER: "wrong"}) == 401, path
        assert call(guarded, method, path, {"Authorization": f"Bearer {API_KEY}x"}) == 401, path
    assert call(guarded, "GET", "/health") == 200
    assert call(guarded, "GET", "/stats", {API_KEY_HEADER: API_KEY}) == 200
    assert call(guarded, "GET", "/stats", {"Authorization": f"Bearer {API_KEY}"}) == 200
    # The open worker has no key: its public endpoints need none.
    assert call(workers["open"], "GET", "/stats") == 200


@pytest.mark.parametrize("name", ["guarded", "open"])
def test_worker_endpoints_need_the_cluster_secret_even_without_an_api_key(workers: dict[str, Worker], name: str) -> None:
    worker = workers[name]
    key = {API_KEY_HEADER: API_KEY} if name == "guarded" else {}
    for path in ("/internal/search", "/internal/document", "/internal/stats", "/internal/profile"):
        assert call(worker, "POST", path, key, b"{}") == 403, path
        assert call(worker, "POST", path, {**key, SECRET_HEADER: "guess"}, b"{}") == 403, path
    secret = SECRET if name == "guarded" else asyncio.run(_shared_secret(worker))
    assert call(worker, "POST", "/internal/stats", {SECRET_HEADER: secret}, b"{}") == 200


def test_no_secret_reaches_the_logs(workers: dict[str, Worker]) -> None:
    shared = asyncio.run(_shared_secret(workers["open"]))
    for worker in workers.values():
        log = worker.log_path.read_text(errors="replace")
        for secret in (API_KEY, SECRET, shared):
            assert secret not in log, f"{worker.name} logged a secret"


def _stats(worker: Worker) -> dict[str, Any]:
    request = urllib.request.Request(worker.url + "/stats", headers={API_KEY_HEADER: API_KEY})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]
    except urllib.error.HTTPError:
        return {}


async def _shared_secret(worker: Worker) -> str:
    """The secret the open worker's group drew: the first record of its secret topic."""
    topic = TopicPartition(f"{worker.env['STREAMVEC_APP_ID']}-cluster-secret", 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap(worker.env["STREAMVEC_BROKER"]))
    await consumer.start()
    try:
        consumer.assign([topic])
        await consumer.seek_to_beginning(topic)
        return (await consumer.getone(topic)).value.decode()
    finally:
        await consumer.stop()
