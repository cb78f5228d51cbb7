"""Changelogs the broker's log cleaner compacted for real (issue 18 item 4; review SP-6, SP-8).

Once the cleaner ran, a changelog keeps each key's last record only. A partition's progress record
is rewritten with every batch, so in cleaned segments nearly every pair of consecutive records
has a gap, which the stores read again through the side reader (tables/changelog_order.py),
here slowed to 5 s a read, so that Faust's recovery ends while records are held behind a gap.
A worker that reads such a changelog (a fresh one, then a returning one whose local store is
behind a later clean) must end with the same documents and the same outcome counts as the
workers that wrote it: a progress record missed at recovery would restart the counts and read
the inputs again from an older offset.
"""

from __future__ import annotations

import time

import pytest

from tests.faults import harness
from tests.support.fixtures import GroupFactory
from tests.support.gaps import held_records
from tests.support.group import Group
from tests.support.kafka import alter_topic
from tests.support.ledger import Ledger, Verdict, assert_sound, end_offsets, send_now, verify
from tests.support.workers import Worker, wait_for

pytestmark = pytest.mark.faults

PARTITIONS = 2
SMALL_BATCHES = {"STREAMVEC_INGEST_BATCH_SIZE": "50"}  # many batches: many progress records to compact away
CLEAN_AT_ONCE = {"segment.ms": "100", "min.cleanable.dirty.ratio": "0.01", "min.compaction.lag.ms": "0"}
SLOW_READS = {"FAULT_SLOW_CHANGELOG_READS": "5"}


def test_workers_reading_a_compacted_vectors_changelog_hold_what_the_writer_held(group_factory: GroupFactory) -> None:
    group = group_factory("cleaned", partitions=PARTITIONS, **SMALL_BATCHES, **SLOW_READS)
    a = group.start("a", command=harness.FAULTY_WORKER)
    a.wait_ready(timeout=300)
    changelog = f"{group.app_id}-vectors-changelog"
    alter_topic(group.broker, changelog, CLEAN_AT_ONCE)  # each append after 100 ms rolls a segment
    ledger = Ledger(seed=25)
    ids = [f"doc-{n}" for n in range(300)]
    produced = ingest(group, [ledger.upserts(ids), *(ledger.vector_events(ids, 300) for _ in range(4))], 0)
    written = a.stats()["outcomes"]
    wait_clean(group, changelog)

    since = time.monotonic()
    fresh = group.start("fresh", command=harness.FAULTY_WORKER)
    fresh.wait_ready(timeout=300)
    fresh_ready = time.monotonic() - since
    stopped = time.monotonic()
    a.stop()
    alone = holds(group, fresh, ledger, produced, written, stopped, "a fresh worker, then alone, after a real clean")

    produced = ingest(group, [ledger.vector_events(ids, 300) for _ in range(2)], produced)  # while a is away
    written = fresh.stats()["outcomes"]
    wait_clean(group, changelog)
    a.start()  # its local store is behind the records of the second clean
    a.wait_ready(timeout=300)
    stopped = time.monotonic()
    fresh.stop()
    returned = holds(group, a, ledger, produced, written, stopped, "a returning worker, then alone, after a second clean")
    assert not group.crashes()
    harness.report("vectors changelog cleaned, slow reads", 1, group, returned, alone, fresh_ready)


def test_a_worker_reading_a_compacted_profiles_changelog_counts_every_activity_once(
        group_factory: GroupFactory) -> None:
    """The profiles table (SP-7): a late read of a gap once wrote older profiles over newer ones.
    Each user's activity comes in rounds, so the profiles changelog is rewritten per user per
    round and compacts to a few records; a fresh worker reads it through the slowed reader, the
    writer stops, and every profile must count each activity once, before and after more."""
    group = group_factory("cleanedprofiles", partitions=PARTITIONS, **SLOW_READS)
    a = group.start("a", command=harness.FAULTY_WORKER)
    a.wait_ready(timeout=300)
    changelog = f"{group.app_id}-profiles-changelog"
    alter_topic(group.broker, changelog, CLEAN_AT_ONCE)
    items = [f"item-{n}" for n in range(40)]
    send_now(group.broker, group.topic, Ledger(seed=26).upserts(items))
    group.wait_consumed(len(items), timeout=120)
    users = [f"user-{n}" for n in range(4)]
    sent = act(group, a, users, items, rounds=12, sent=dict.fromkeys(users, 0))
    wait_clean(group, changelog)

    fresh = group.start("fresh", command=harness.FAULTY_WORKER)
    fresh.wait_ready(timeout=300)
    since = time.monotonic()
    a.stop()
    group.recovered(since)
    assert profile_events(fresh, users) == sent, "profiles after a fresh worker read the compacted changelog"
    act(group, fresh, users, items, rounds=2, sent=sent)  # folded on top of what the read brought
    assert not group.crashes()


def act(group: Group, worker: Worker, users: list[str], items: list[str], rounds: int,
        sent: dict[str, int]) -> dict[str, int]:
    """``rounds`` rounds of 5 views per user, each round folded (as ``worker`` shows) before the
    next is sent; the activities sent to each user so far."""
    for round_ in range(rounds):
        records = [(user, {"user": user, "item": items[(round_ * 5 + n + u) % len(items)], "action": "view",
                           "ts": 1_000_000 + round_ * 10 + n}) for u, user in enumerate(users) for n in range(5)]
        group.send_json("activity", records)
        sent = {user: count + 5 for user, count in sent.items()}
        wait_for(f"round {round_ + 1} in the profiles", lambda: profile_events(worker, users) == sent,
                 timeout=60, interval=0.3)
        time.sleep(0.2)  # the next round's records open a new segment
    return sent


def profile_events(worker: Worker, users: list[str]) -> dict[str, int]:
    events = {}
    for user in users:
        status, answer = worker.get(f"/recommendations/{user}?k=1")
        events[user] = answer["profile_events"] if status == 200 else -status
    return events


def ingest(group: Group, chunks: list[list[tuple[bytes | None, bytes | None]]], produced: int) -> int:
    """Send each chunk once the one before is consumed, a little apart, so the changelog rolls a
    segment between batches and the earlier ones can be cleaned; the count produced after."""
    for chunk in chunks:
        send_now(group.broker, group.topic, chunk)
        produced += len(chunk)
        group.wait_consumed(produced, timeout=120)
        time.sleep(0.2)
    return produced


def wait_clean(group: Group, changelog: str) -> None:
    counts: list[int] = []
    held = wait_for(f"the log cleaner to compact {changelog} and stop",
                    lambda: compacted(group, changelog, counts), timeout=90, interval=1.5)
    ends = end_offsets(group.broker, changelog, PARTITIONS)
    print(f"\n{changelog} after the clean: {held} of {sum(ends.values())} offsets hold a record")


def compacted(group: Group, topic: str, counts: list[int]) -> int | None:
    """How many offsets of ``topic`` still hold a record, once the cleaner removed some in every
    partition and the count held still over the last three calls (``counts``)."""
    held = held_records(group.broker, topic)
    ends = end_offsets(group.broker, topic, PARTITIONS)
    counts.append(sum(map(len, held.values())))
    removed = all(len(held.get(p, ())) < ends[p] / 2 for p in range(PARTITIONS))
    return counts[-1] if removed and len(counts) >= 3 and len(set(counts[-3:])) == 1 else None


def holds(group: Group, worker: Worker, ledger: Ledger, produced: int, written: dict[str, int], since: float,
          case: str) -> Verdict:
    """``worker``, alone in ``group`` since the other worker stopped at ``since``, answers every
    partition with every document at its last version and the writers' own outcome counts (none
    counted again, none lost); the verdict."""
    group.recovered(since)
    assert worker.stats()["outcomes"] == written, f"{case}: outcomes {worker.stats()['outcomes']}, written {written}"
    verdict = verify(worker, ledger, produced)
    assert_sound(verdict, case)
    log = worker.log_path.read_text(errors="replace")
    assert "reading from there again" not in log, f"{case}: ingest read an input again\n{worker.log_tail()}"
    return verdict
