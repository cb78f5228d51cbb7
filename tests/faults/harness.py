"""The fault suite's own parts: the shared ending of every case, and the table it prints.

Every case (tests/faults/test_*.py) produces events to a real Kafka, hurts the group while it
ingests, and ends with the same checks (tests/support/ledger.py), on the running group and then
on a fresh worker with an empty data dir that rebuilt everything from the changelog alone; and
no worker log may say Faust restarted the ingest agent (``Crashed``). The ledger, the feed and
the group come from tests/support; they are named here too, so a case reads ``harness.Ledger``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

from tests.support.fixtures import GroupFactory
from tests.support.group import DIM, Group, Recovery
from tests.support.kafka import committed_offsets
from tests.support.ledger import (PARTITIONS, Feed, Ledger, Record, Verdict, assert_sound, send_now, topic_size,
                                  verify)
from tests.support.workers import wait_for

__all__ = ["DIM", "FAULTY_WORKER", "PARTITIONS", "Feed", "Group", "GroupFactory", "Ledger", "Record", "Verdict",
           "assert_sound", "committed_offsets", "rebuild_alone", "report", "send_now", "settle_and_report", "table",
           "topic_size", "verify"]

FAULTY_WORKER = (sys.executable, "-m", "tests.faults.faulty_worker")


def rebuild_alone(group: Group, ledger: Ledger, produced: int, name: str = "fresh") -> tuple[Verdict, float]:
    """Stop the group, start a worker with an empty data dir, and check what it rebuilt from the
    changelog alone; returns the verdict and the seconds until it was ready."""
    group.stop_all()
    started = time.monotonic()
    fresh = group.start(name, datadir=group.root / f"{name}-{int(time.time())}")
    fresh.wait_ready(timeout=300)
    wait_for("the fresh worker to answer for every partition",
             lambda: not fresh.search(vector=[1.0] * DIM, k=1)["partial"], timeout=120)
    ready = time.monotonic() - started
    try:
        return verify(fresh, ledger, produced), ready
    finally:
        fresh.stop()


# ---- the report --------------------------------------------------------------------------

@dataclass
class Row:
    fault: str
    runs: int
    produced: int
    lost: int
    stale: int
    resurrected: int
    duplicates: int
    to_complete: float
    to_ready: float
    fresh_ready: float


ROWS: list[Row] = []


def settle_and_report(group: Group, ledger: Ledger, broker: str, fault: str, runs: int) -> None:
    """The end of a fault case: every record in the topic consumed, the running group sound and
    never crashed, then a fresh worker rebuilt from the changelog alone sound too; one table row."""
    produced = topic_size(broker, group.topic)
    group.wait_consumed(produced, timeout=300)
    running = verify(group.any(), ledger, produced)
    assert_sound(running, "running group")
    assert group.crashes() == []
    fresh, ready = rebuild_alone(group, ledger, produced)
    assert_sound(fresh, "fresh worker")
    report(fault, runs, group, running, fresh, ready)


def report(fault: str, runs: int, group: Group, running: Verdict, fresh: Verdict, fresh_ready: float) -> None:
    """Keep one row for the table ``make test-faults`` prints at the end."""
    recoveries = group.recoveries or [Recovery(0.0, 0.0)]
    ROWS.append(Row(fault, runs, running.produced, len(running.lost) + len(fresh.lost), running.outcomes["stale"],
                    len(running.resurrected) + len(fresh.resurrected), running.duplicates + fresh.duplicates,
                    max(r.to_complete for r in recoveries), max(r.to_ready for r in recoveries), fresh_ready))


def table() -> Iterator[str]:
    yield (f"{'fault':<34} {'runs':>4} {'produced':>8} {'lost':>4} {'stale':>5} {'resurr.':>7} {'dup ids':>7} "
           f"{'→ complete s':>12} {'→ ready s':>9} {'fresh ready s':>13}")
    for row in ROWS:
        yield (f"{row.fault:<34} {row.runs:>4} {row.produced:>8,} {row.lost:>4} {row.stale:>5} {row.resurrected:>7} "
               f"{row.duplicates:>7} {row.to_complete:>12.1f} {row.to_ready:>9.1f} {row.fresh_ready:>13.1f}")

