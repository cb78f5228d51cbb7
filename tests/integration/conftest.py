"""A live group for the tests of what users meet (the page, the client, Prometheus): two
workers with an API key, a few hundred real texts and two refused events, started once per
session and shared by those modules (they only read it, or write documents of their own)."""

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


@dataclass
class Group:
    broker: str
    app_id: str
    api_key: str
    workers: list[Worker]
    documents: list[dict[str, Any]]
    refused: dict[str, int]  # reason → dead letters sent on purpose

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
                  {"bad_json": 1, "unknown_field": 1})
    try:
        workers[0].start()
        # The first converts the model into the shared cache; /ready needs the key here.
        wait_for("the first user worker to answer", lambda: _stats(workers[0], group.auth), timeout=120)
        workers[1].start()
        send_events(kafka_broker, app_id, documents, PARTITIONS)
        send_records(kafka_broker, f"{app_id}-events", [
            (b"broken", b"{not json"), (b"typo", json.dumps({"id": "typo", "txt": "a typo in a field"}).encode())])
        wait_for("the user group to index every document on both workers", lambda: _settled(group), timeout=180)
        yield group
    finally:
        stop_all(workers)


def _settled(group: Group) -> bool:
    stats = [_stats(worker, group.auth) for worker in group.workers]
    return all(s is not None and s["documents"] == len(group.documents) and not s["partial"]
               and s["outcomes"].get("dead_lettered") == sum(group.refused.values())
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
