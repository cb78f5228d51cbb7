"""Offsets that never come as records are not holes (issue 18 item 2; review findings SP-1, SP-19).

A transactional producer's commit and abort markers take offsets, a ``read_committed`` consumer
never gets an aborted record, and compaction and ``delete_records`` remove offsets. Ingest passes
them (index/records/progress.py ``Progress.settle``) instead of seeking back to them for ever;
each case reconciles exactly, with no seek back, and prints the progress records' sizes, which
must stay small (no offsets held in ``ahead``).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from app.topics import ensure_topic
from index.records import progress
from tables.changelog_reader import ChangelogReader
from tests.support.fixtures import GroupFactory
from tests.support.gaps import delete_records, held_records, report_progress, send_transactions
from tests.support.group import Group
from tests.support.kafka import commit_offsets
from tests.support.ledger import Ledger, assert_sound, end_offsets, send_now, verify
from tests.support.workers import Worker, http, wait_for

pytestmark = pytest.mark.integration

PARTITIONS = 2
SMALL_BATCHES = {"STREAMVEC_INGEST_BATCH_SIZE": "50"}  # many batches, so gaps fall between them too
READ_AGAIN = "reading from there again"  # agents/ingest.py's warning for a record the consumer skipped
LARGEST_RECORD = 200  # bytes: counts and a few offsets, nothing held in ``ahead``


def test_a_transactional_producer_with_an_aborted_transaction_reconciles(group_factory: GroupFactory) -> None:
    group = group_factory("txn", partitions=PARTITIONS, **SMALL_BATCHES)
    worker = started(group)
    ledger = Ledger(seed=18)
    ids = [f"doc-{n}" for n in range(500)]
    committed = ledger.upserts(ids) + ledger.vector_events(ids, 500)
    aborted_ids = [f"aborted-{n}" for n in range(30)]
    transactions = [(committed[n:n + 10], True) for n in range(0, len(committed), 10)]
    transactions.insert(len(transactions) // 2, (Ledger(seed=19).upserts(aborted_ids), False))
    last = send_transactions(group.broker, group.topic, transactions)

    group.wait_consumed(len(committed), timeout=120)
    assert_sound(verify(worker, ledger, len(committed), last=last), "transactions of 10, one aborted")
    assert absent(worker, aborted_ids) == aborted_ids, "an aborted event was indexed"
    assert_passed(group, worker, "transactions of 10 and one aborted")

    # What a gap read costs ingest: the same reader, over each partition's whole range.
    reader = ChangelogReader(group.broker, read_committed=True)
    began = time.monotonic()
    read = [asyncio.run(reader.read(group.topic, p, 0, offset + 1)) for p, offset in last.items()]
    took = (time.monotonic() - began) / len(read)
    print(f"a gap read: {took * 1000:.0f} ms per partition of ~{len(committed) // PARTITIONS} committed records")
    assert sum(map(len, read)) == len(committed), "the reader returned records of the aborted transaction"


def test_a_compacted_events_topic_after_a_real_clean_reconciles(group_factory: GroupFactory) -> None:
    group = group_factory("compacted", partitions=PARTITIONS, events_topic=False, **SMALL_BATCHES)
    asyncio.run(ensure_topic(group.broker, group.topic, PARTITIONS, {
        "cleanup.policy": "compact", "segment.ms": "100", "min.cleanable.dirty.ratio": "0.01",
        "min.compaction.lag.ms": "0"}))
    ledger = Ledger(seed=21)
    ids = [f"doc-{n}" for n in range(200)]
    send_now(group.broker, group.topic, ledger.upserts(ids) + ledger.vector_events(ids, 1000))
    time.sleep(0.5)
    send_now(group.broker, group.topic, ledger.upserts(ids))  # rolls each partition's segment: the old ones are cleanable
    produced = sum(end_offsets(group.broker, group.topic, PARTITIONS).values())
    counts: list[int] = []
    held = wait_for("the log cleaner to compact the events topic and stop",
                    lambda: cleaned(group, counts), timeout=60, interval=1.5)
    print(f"\ncompaction: {held} of {produced} offsets still hold a record")

    worker = started(group)
    group.wait_consumed(held, timeout=120)
    assert_sound(verify(worker, ledger, held), "a compacted events topic")
    assert_passed(group, worker, "a compacted events topic")


def test_records_deleted_while_the_workers_are_down_reconcile(group_factory: GroupFactory) -> None:
    group = group_factory("deleted", partitions=PARTITIONS, **SMALL_BATCHES)
    worker = started(group)
    ledger = Ledger(seed=22)
    ids = [f"doc-{n}" for n in range(400)]
    send_now(group.broker, group.topic, ledger.upserts(ids))
    group.wait_consumed(len(ids), timeout=120)
    worker.stop()

    # While the worker is down: events it never reads, then events it must read; the first are
    # deleted with everything below them, past the offsets its progress records have done.
    lost_ids = [f"lost-{n}" for n in range(100)]
    send_now(group.broker, group.topic, Ledger(seed=23).upserts(lost_ids))
    deleted_to = end_offsets(group.broker, group.topic, PARTITIONS)
    later = ledger.vector_events(ids, 300)
    send_now(group.broker, group.topic, later)
    delete_records(group.broker, group.topic, deleted_to)

    worker.start()
    worker.wait_ready(timeout=300)
    produced = len(ids) + len(later)
    group.wait_consumed(produced, timeout=120)
    assert_sound(verify(worker, ledger, produced), f"records below {deleted_to} deleted while down")
    assert absent(worker, lost_ids) == lost_ids, "a deleted event was indexed"
    assert_passed(group, worker, "delete_records while the workers were down")


def test_a_group_commit_past_events_nobody_indexed_is_not_where_ingest_resumes(group_factory: GroupFactory) -> None:
    """A partition without a progress record is read from offset 0, whatever the group committed.

    A worker that acknowledges a batch it abandoned to a rebalance leaves the group's commit past
    events nobody indexed. aiokafka starts a newly assigned partition at the group's commit, and the
    seek to the committed offset that Faust makes after recovery does nothing for offset 0 (aiokafka
    seeks only to a committed offset above 0): the events were passed until a later one arrived
    (test_pipeline in CI: two partitions got no batch for 5 minutes)."""
    group = group_factory("commitpast", partitions=PARTITIONS)
    ledger = Ledger(seed=24)
    events = ledger.upserts([f"doc-{n}" for n in range(200)])
    send_now(group.broker, group.topic, events)
    commit_offsets(group.broker, group.app_id, group.topic, end_offsets(group.broker, group.topic, PARTITIONS))

    worker = started(group)
    group.wait_consumed(len(events), timeout=60)
    assert_sound(verify(worker, ledger, len(events)), "the group committed every offset before any was indexed")
    assert_passed(group, worker, "a group commit past events nobody indexed")


def cleaned(group: Group, counts: list[int]) -> int | None:
    """How many offsets still hold a record, once compaction removed some of every partition and the
    count held still over the last three calls (``counts``): the cleaner is done, so what the
    worker reads is what the test counts."""
    held = held_records(group.broker, group.topic)
    ends = end_offsets(group.broker, group.topic, PARTITIONS)
    counts.append(sum(map(len, held.values())))
    removed = all(len(held.get(p, ())) < ends[p] for p in range(PARTITIONS))
    return counts[-1] if removed and len(counts) >= 3 and len(set(counts[-3:])) == 1 else None


def absent(worker: Worker, ids: list[str]) -> list[str]:
    status, answer = http("POST", worker.url + "/documents/batch", {"ids": ids})
    assert status == 200 and not answer["partial"], f"/documents/batch answered {status}: {answer}"
    return [doc_id for doc_id, document in zip(ids, answer["documents"], strict=True) if document is None]


def started(group: Group) -> Worker:
    worker = group.start("a")
    worker.wait_ready(timeout=300)
    return worker


def assert_passed(group: Group, worker: Worker, case: str) -> None:
    """The worker is up and never sought back, and each partition's progress record (its size
    printed) is small and holds no offset in ``ahead``."""
    log = worker.log_path.read_text(errors="replace")
    assert worker.alive() and not group.crashes(), worker.log_tail()
    assert READ_AGAIN not in log, [line for line in log.splitlines() if READ_AGAIN in line][:5]
    records = report_progress(group.broker, group.app_id, case)
    assert set(records) == set(range(PARTITIONS)), f"progress records of partitions {sorted(records)}"
    for partition, value in records.items():
        record = progress.decode(value)
        assert not record.ahead and len(value) < LARGEST_RECORD, \
            f"partition {partition}: a {len(value)}-byte progress record, offsets held in ahead: {record.ahead}"
