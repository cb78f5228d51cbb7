"""A rebalance storm: with 20,000 documents held, a third worker joins and leaves again and again
(STORM_CYCLES, below) during ingest, with standby replicas on and off.

The issue asks for 100,000 held. On this 2-core machine that run did not fit beside the rest of
.ci/run: its load alone took 176 s, and (before moved partitions were kept and taken back) after
the first leave the group took over 180 s to answer for every partition again, each move
dropping a partition from a worker's index and building it into another's. Cycles now take 10
to 30 s at 20,000; the suite holds 20,000 so that both cases fit, and the fault table in docs/operations.md
says so.

With standbys on, this case found that Faust's recovery consumer can skip changelog records
around a rebalance: a standby seeked to its persisted offset 3458 was handed 3461 next, applied
it, and served older versions (and deleted ids) while it reported no lag, for good: 6 stale and 3
resurrected ids of 20,000 in one run. It is not a late ingest batch, as first thought: the
partitions were standbys on that worker for the whole storm. Stores now take changelog records in
offset order and read a range that was not delivered from the broker straight
(tables/ordered_store.py); the workers log each such range (4 in the passing run of 2026-11-30,
each filled within 50 ms)."""

from __future__ import annotations

import os
import time

import pytest

from tests.faults import harness
from tests.support.workers import wait_for

pytestmark = pytest.mark.faults

# Sizes (not STREAMVEC_ names: workers refuse unknown settings). CI holds 20,000 and runs 4 cycles
# per case: the first join builds the third worker's copies from the changelog, later joins catch
# up from its own RocksDB, and each leave hands its partitions back to the two, which take back
# what they kept; 4 cycles run the first join once and the others three times, with standbys off
# and on, while the feed writes throughout. `make soak` runs 10 cycles (the size until 2026-12-07);
# the 100,000 held: STORM_HELD=100000.
HELD = int(os.environ.get("STORM_HELD", "20000"))
CYCLES = int(os.environ.get("STORM_CYCLES", "4"))


@pytest.mark.timeout(1500)
@pytest.mark.parametrize("standbys", ["0", "1"])
def test_a_third_worker_joining_and_leaving_again_and_again_loses_nothing(
        group_factory: harness.GroupFactory, standbys: str) -> None:
    group = group_factory("storm", STREAMVEC_STANDBY_REPLICAS=standbys)
    ledger = harness.Ledger(seed=500)
    ids = [f"doc-{n}" for n in range(HELD)]
    group.start("a"), group.start("b")
    group.wait_ready()
    loaded = time.monotonic()
    harness.send_now(group.broker, group.topic, ledger.upserts(ids))
    group.wait_consumed(HELD, timeout=600)
    print(f"{HELD:,} vectors held {time.monotonic() - loaded:.1f} s after the first produce")

    # Upserts and deletes of 20,000 of the held ids, for as long as the storm lasts.
    feed = harness.Feed(group.broker, group.topic, lambda n: ledger.vector_events(ids[:20_000], n), rate=40).start()
    for cycle in range(CYCLES):
        started = time.monotonic()
        third = group.start("c")  # the same data dir each time: it catches up from its own RocksDB
        wait_for("the third worker to serve partitions",
                 lambda: third.stats()["workers"].get(third.url, {}).get("partitions"), timeout=180, interval=0.5)
        third.stop()
        group.recovered(since=time.monotonic())
        print(f"cycle {cycle + 1}: joined, served and left in {time.monotonic() - started:.1f} s, "
              f"{feed.sent:,} events fed so far")
    assert not feed.done, f"the feed stopped during the storm: {feed.error!r}"
    feed.stop()
    feed.wait(timeout=60)

    harness.settle_and_report(group, ledger, group.broker,
                              f"3rd worker joins+leaves, {HELD // 1000}k, standbys {standbys}", CYCLES)
