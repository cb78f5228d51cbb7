"""kill -9 of a worker at random moments during ingest, several times, each restart on the same data dir.

Vector events with rising versions and deletes: whatever was delivered twice, the last event of
each id decides its state. Standby replicas are off here (the rebalance storm runs with them on and off),
so every restart recovers its partitions from its own RocksDB and the changelog tail.
"""

from __future__ import annotations

import os
import random
import time

import pytest

from tests.faults import harness

pytestmark = pytest.mark.faults

KILLS = int(os.environ.get("KILL9_ROUNDS", "5"))
"""Kills per run: 5 in CI (each a kill at a random moment, a restart on the same data dir and a full
recovery while events keep coming, which is the property; more rounds draw more moments), 10 in
``make soak`` (the size until 2026-12-07)."""


def test_kill_9_at_random_moments_loses_nothing(group_factory: harness.GroupFactory) -> None:
    group = group_factory("kill", STREAMVEC_STANDBY_REPLICAS="0")
    ledger = harness.Ledger(seed=99)
    ids = [f"doc-{n}" for n in range(3000)]
    names = ["a", "b"]
    for name in names:
        group.start(name)
    group.wait_ready()

    # Events for as long as the kills last (a fixed list had to be sized to outlast them): every
    # kill lands during ingest, however long the restarts take on a busy machine.
    feed = harness.Feed(group.broker, group.topic, lambda n: ledger.vector_events(ids, n, delete_share=0.15),
                        rate=120).start()
    rng = random.Random(7)
    for _ in range(KILLS):
        time.sleep(rng.uniform(0.5, 4.0))
        victim = rng.choice(names)
        group.workers[victim].kill()
        killed = time.monotonic()
        time.sleep(rng.uniform(0.0, 2.0))
        group.start(victim)  # the same data dir: its RocksDB may hold what the changelog lacks
        group.recovered(since=killed)
    assert not feed.done, f"the feed stopped during the kills: {feed.error!r}"
    feed.stop()
    feed.wait(timeout=60)

    harness.settle_and_report(group, ledger, group.broker, "kill -9 during ingest, same data dir", KILLS)
