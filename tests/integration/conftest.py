"""A live group for the tests of what users meet (the page, the client, Prometheus): two
workers with an API key, a watchlist of one pattern, a few hundred real texts (one of which
the pattern alerts on) and two refused events, started once per session and shared by those
modules (they only read it, or write documents of their own)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from app.http.auth import API_KEY_HEADER
from tests.cluster import REPO, Worker, stop_all, wait_for
from tests.conftest import send_events, send_records

PARTITIONS = 4
WATCHED = "wn30-n-02129165"  # the lion: its own text is the watchlist's one pattern
PATTERN = {"id": "big-cats", "metadata": {"threshold": 0.95, "labels": ["cats"]}}


@dataclass
class Group:
    broker: str
    app_id: str
    api_key: str
    workers: list[Worker]
    documents: list[dict[str, Any]]
    refused: dict[str, int]  # reason → dead letters sent on purpose
    alerts: dict[str, str]  # document id → the pattern it must raise a watchlist alert for

    @property
    def urls(self) -> list[str]:
        return [worker.url for worker in self.workers]

    @property
    def auth(self) -> dict[str, str]:
        return {API_KEY_HEADER: self.api_key}


def user_documents() -> list[dict[str, Any]]:
    """Every animal and food gloss of the demo data and every 40th of the rest (~660 texts)."""
    with (REPO / "data" / "sample.jsonl").open() as handle:
        rows = [json.loads(line) for line in handle]
    return [row for number, row in enumerate(rows)
            if row["metadata"].get("category") in ("animal", "food") or number % 40 == 0]


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One converted model for every worker these tests start."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def user_group(kafka_broker: str, model_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Group]:
    root = tmp_path_factory.mktemp("users")
    app_id = f"users{int(time.time())}"
    env = {"STREAMVEC_BROKER": kafka_broker, "STREAMVEC_APP_ID": app_id, "STREAMVEC_PARTITIONS": str(PARTITIONS),
           "STREAMVEC_MODEL_CACHE": str(model_cache), "STREAMVEC_API_KEY": "page-and-client-key-81f2",
           "STREAMVEC_CLUSTER_SECRET": "users-cluster-secret-5d0e", "STREAMVEC_SESSION_TIMEOUT": "6"}
    workers = [Worker(name, env, root / name) for name in ("u1", "u2")]
    documents = user_documents()
    group = Group(kafka_broker, app_id, env["STREAMVEC_API_KEY"], workers, documents,
                  {"bad_json": 1, "unknown_field": 1}, {WATCHED: PATTERN["id"]})
    pattern = {**PATTERN, "text": next(doc["text"] for doc in documents if doc["id"] == WATCHED)}
    try:
        workers[0].start()
        # The first converts the model into the shared cache; /ready needs the key here.
        wait_for("the first user worker to answer", lambda: _stats(workers[0], group.auth), timeout=120)
        workers[1].start()
        # A watchlist change applies to events from then on: both workers hold the pattern first.
        send_records(kafka_broker, f"{app_id}-watchlist", [(pattern["id"].encode(), json.dumps(pattern).encode())])
        wait_for("both user workers to hold the watchlist pattern", lambda: _watching(group), timeout=120)
        send_events(kafka_broker, app_id, documents, PARTITIONS)
        send_records(kafka_broker, f"{app_id}-events", [
            (b"broken", b"{not json"), (b"typo", json.dumps({"id": "typo", "txt": "a typo in a field"}).encode())])
        wait_for("the user group to index every document on both workers", lambda: _settled(group), timeout=180)
        yield group
    finally:
        stop_all(workers)


def _watching(group: Group) -> bool:
    stats = _stats(group.workers[1], group.auth)
    return stats is not None and len(stats["workers"]) == 2 and stats["watchlist"] == {"patterns": 1, "loaded": True}


def _settled(group: Group) -> bool:
    stats = [_stats(worker, group.auth) for worker in group.workers]
    return all(s is not None and s["documents"] == len(group.documents) and not s["partial"]
               and s["outcomes"].get("dead_lettered") == sum(group.refused.values())
               and s["alerts"]["by_kind"].get("watchlist") == len(group.alerts)
               and all("error" not in w for w in s["workers"].values()) and len(s["workers"]) == 2
               for s in stats)


def _stats(worker: Worker, headers: dict[str, str]) -> dict[str, Any] | None:
    if not worker.alive():
        raise AssertionError(f"worker {worker.name} exited:\n{worker.log_tail()}")
    request = urllib.request.Request(worker.url + "/stats", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]
    except urllib.error.HTTPError:
        return None
