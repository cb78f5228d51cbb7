"""Changelogs the broker's log cleaner compacted for real (issue 18 item 4; review SP-6, SP-8).

Once the cleaner ran, a changelog keeps each key's last record only. A partition's progress record
is rewritten with every batch, so in cleaned segments nearly every pair of consecutive records
has a gap, which the stores read again through the side reader (tables/changelog_order.py). A
worker that reads such a changelog (a fresh one, then a returning one with an older local store)
must end with the same documents and the same outcome counts as the worker that wrote it: a
lost progress record would restart the counts and read the inputs again from their start.
"""

from __future__ import annotations

import time

import pytest

from tests.support.fixtures import GroupFactory
from tests.support.gaps import held_records
from tests.support.group import Group
from tests.support.kafka import alter_topic
from tests.support.ledger import Ledger, assert_sound, end_offsets, send_now, verify
from tests.support.workers import Worker, wait_for

pytestmark = pytest.mark.integration

PARTITIONS = 2
SMALL_BATCHES = {"STREAMVEC_INGEST_BATCH_SIZE": "50"}  # many batches: many progress records to compact away
CLEAN_AT_ONCE = {"segment.ms": "100", "min.cleanable.dirty.ratio": "0.01", "min.compaction.lag.ms": "0"}


def test_workers_reading_a_compacted_vectors_changelog_hold_what_the_writer_held(group_factory: GroupFactory) -> None:
    group = group_factory("cleaned", partitions=PARTITIONS, **SMALL_BATCHES)
    a = group.start("a")
    a.wait_ready(timeout=300)
    changelog = f"{group.app_id}-vectors-changelog"
    alter_topic(group.broker, changelog, CLEAN_AT_ONCE)  # each append after 100 ms rolls a segment

    ledger = Ledger(seed=25)
    ids = [f"doc-{n}" for n in range(300)]
    produced = 0
    for chunk in (ledger.upserts(ids), *(ledger.vector_events(ids, 300) for _ in range(4))):
        send_now(group.broker, group.topic, chunk)
        produced += len(chunk)
        group.wait_consumed(produced, timeout=120)
        time.sleep(0.2)  # the next batch's records open a new segment: the earlier ones can be cleaned
    written = a.stats()["outcomes"]
    counts: list[int] = []
    held = wait_for("the log cleaner to compact the vectors changelog and stop",
                    lambda: compacted(group, changelog, counts), timeout=90, interval=1.5)
    ends = end_offsets(group.broker, changelog, PARTITIONS)
    print(f"\nvectors changelog after the clean: {held} of {sum(ends.values())} offsets hold a record")

    fresh = group.start("fresh")
    fresh.wait_ready(timeout=300)
    a.stop()
    assert_holds(fresh, ledger, produced, written, "a fresh worker, then alone, after a real clean")

    a.start()  # its local store is from before the clean
    a.wait_ready(timeout=300)
    fresh.stop()
    assert_holds(a, ledger, produced, written, "a returning worker, then alone, after a real clean")
    assert not group.crashes()


def compacted(group: Group, topic: str, counts: list[int]) -> int | None:
    """How many offsets of ``topic`` still hold a record, once the cleaner removed some in every
    partition and the count held still over the last three calls (``counts``)."""
    held = held_records(group.broker, topic)
    ends = end_offsets(group.broker, topic, PARTITIONS)
    counts.append(sum(map(len, held.values())))
    removed = all(len(held.get(p, ())) < ends[p] / 2 for p in range(PARTITIONS))
    return counts[-1] if removed and len(counts) >= 3 and len(set(counts[-3:])) == 1 else None


def assert_holds(worker: Worker, ledger: Ledger, produced: int, written: dict[str, int], case: str) -> None:
    """``worker`` answers every partition alone with every document at its last version and the
    writer's own outcome counts (none counted again, none lost)."""
    wait_for(f"{worker.name} to answer for every partition alone", lambda: not worker.stats()["partial"],
             timeout=180, interval=0.5)
    assert worker.stats()["outcomes"] == written, f"{case}: outcomes {worker.stats()['outcomes']}, written {written}"
    assert_sound(verify(worker, ledger, produced), case)
    log = worker.log_path.read_text(errors="replace")
    assert "reading from there again" not in log, f"{case}: ingest read an input again\n{worker.log_tail()}"
