"""The live group for the tests of what users meet (the page, the client, Prometheus), started
once per session and shared by those modules (tests/support/users.py says what it holds)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.group import Group, new_app_id
from tests.support.kafka import send_events, send_records
from tests.support.users import API_KEY, CLUSTER_SECRET, PARTITIONS, PATTERN, WATCHED, Users, user_documents
from tests.support.workers import Worker, wait_for


@pytest.fixture(scope="session")
def user_group(kafka_broker: str, model_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Users]:
    group = Group(kafka_broker, new_app_id("users"), tmp_path_factory.mktemp("users"), model_cache, PARTITIONS,
                  {"STREAMVEC_API_KEY": API_KEY, "STREAMVEC_CLUSTER_SECRET": CLUSTER_SECRET,
                   "STREAMVEC_SESSION_TIMEOUT": "6"}, quick_rebalance=False)
    documents = user_documents()
    users = Users(group, API_KEY, documents, {"bad_json": 1, "unknown_field": 1}, {WATCHED: PATTERN["id"]})
    pattern = {**PATTERN, "text": next(doc["text"] for doc in documents if doc["id"] == WATCHED)}
    first, second = group.worker("u1"), group.worker("u2")
    try:
        first.start()
        # /ready needs the key here.
        wait_for("the first user worker to answer", lambda: _stats(first, users.auth), timeout=120)
        second.start()
        # A watchlist change applies to events from then on: both workers hold the pattern first.
        send_records(kafka_broker, group.topic_of("watchlist"), [(pattern["id"].encode(), json.dumps(pattern).encode())])
        wait_for("both user workers to hold the watchlist pattern", lambda: _watching(users), timeout=120)
        send_events(kafka_broker, group.app_id, documents, PARTITIONS)
        send_records(kafka_broker, group.topic, [
            (b"broken", b"{not json"), (b"typo", json.dumps({"id": "typo", "txt": "a typo in a field"}).encode())])
        wait_for("the user group to index every document on both workers", lambda: _settled(users), timeout=180)
        yield users
    finally:
        group.stop_all()


def _watching(users: Users) -> bool:
    stats = _stats(users.workers[1], users.auth)
    return stats is not None and len(stats["workers"]) == 2 and stats["watchlist"] == {"patterns": 1, "loaded": True}


def _settled(users: Users) -> bool:
    stats = [_stats(worker, users.auth) for worker in users.workers]
    return all(s is not None and s["documents"] == len(users.documents) and not s["partial"]
               and s["outcomes"].get("dead_lettered") == sum(users.refused.values())
               and s["alerts"]["by_kind"].get("watchlist") == len(users.alerts)
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
