"""Partitions that move to a worker that joins, and come back when it leaves: the first worker
keeps their documents hidden in its index meanwhile and takes them back, replaying only the
changelog written while they were away (``STREAMVEC_KEEP_MOVED``); with 0 it builds them again.
Standbys are off, so the joining worker really takes partitions away. Every id's last version is
checked on the first worker afterwards (tests/support/ledger.py's ledger and checks)."""

from __future__ import annotations

import re
import time
import urllib.request

import pytest

from tests.support.fixtures import GroupFactory
from tests.support.group import Group
from tests.support.ledger import Ledger, assert_sound, send_now, verify
from tests.support.workers import Worker, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def group(group_factory: GroupFactory) -> Group:
    return group_factory("moves", STREAMVEC_STANDBY_REPLICAS="0")


@pytest.mark.parametrize("keep, expected", [("600", "came back after"), ("0", "built into the index from the local store")])
def test_partitions_that_move_away_and_come_back_are_taken_back_or_built(
        group: Group, keep: str, expected: str) -> None:
    ledger = Ledger(seed=11)
    ids = [f"doc-{n}" for n in range(2000)]
    first = group.start("a", STREAMVEC_KEEP_MOVED=keep)
    first.wait_ready(timeout=300)
    send_now(group.broker, group.topic, ledger.upserts(ids))
    group.wait_consumed(len(ids), timeout=180)

    second = group.start("b")
    wait_for("the second worker to take partitions", lambda: second.stats()["workers"].get(second.url, {})
             .get("partitions"), timeout=180, interval=0.3)
    # While they are away: updates, deletes and new documents the first worker's copies lack.
    away = ledger.vector_events(ids, 400, delete_share=0.3) + ledger.upserts([f"new-{n}" for n in range(100)])
    send_now(group.broker, group.topic, away)
    produced = len(ids) + len(away)
    group.wait_consumed(produced, timeout=180)
    suspended = index_nodes(first)["suspended"]
    assert (suspended > 0) == (keep != "0"), f"{suspended} suspended nodes with STREAMVEC_KEEP_MOVED={keep}"

    size = first.log_path.stat().st_size
    second.stop()
    group.recovered(since=time.monotonic())
    log = first.log_path.read_text(errors="replace")[size:]
    assert expected in log, log
    assert_sound(verify(first, ledger, produced, sample=300), f"keep_moved={keep}, after the move back")


def index_nodes(worker: Worker) -> dict[str, float]:
    """``streamvec_index_nodes`` by state, from the worker's /metrics."""
    with urllib.request.urlopen(worker.url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return {state: float(value) for state, value in re.findall(r'^streamvec_index_nodes\{state="(\w+)"\} (\S+)$', text, re.M)}
