"""A partition's ingest progress: exact offsets, counts, gaps settled against the log, and its record form."""

from __future__ import annotations

import random

import pytest

from index.records import progress
from index.records.progress import Progress, ProgressError


def test_offsets_are_done_exactly_and_a_gap_is_named_until_it_is_settled() -> None:
    done = Progress()
    done.begin("t", 10)
    for offset in (10, 11, 13, 14):
        done.record("t", offset, "indexed")
    assert [done.done("t", o) for o in range(9, 16)] == [True, True, True, False, True, True, False]
    assert done.gaps() == {"t": range(12, 14)}
    done.record("t", 12, "dead_lettered", "bad_json")
    assert done.gaps() == {} and done.next == {"t": 15} and done.ahead == {}
    assert done.counts() == {"indexed": 4, "deleted": 0, "stale": 0, "unchanged": 0, "dead_lettered": 1,
                             "dead_letter_reasons": {"bad_json": 1}}


def test_offsets_that_hold_no_record_are_passed_and_a_skipped_record_is_named() -> None:
    done = Progress()
    done.begin("t", 0)
    for offset in (*range(10), *range(11, 21), 23, 24, 30):  # 10 a marker; 21, 22 skipped; 25-29 compacted
        done.record("t", offset, "indexed")
    assert done.gaps() == {"t": range(10, 30)}
    assert done.settle("t", {*range(11, 25), 30}) == 21  # the log holds 21 and 22: read them again
    assert done.next == {"t": 21} and done.gaps() == {"t": range(21, 30)}
    assert done.settle("t", {21, 22, 23, 24, 30}) == 21  # not read again yet: still named
    done.record("t", 21, "indexed")
    done.record("t", 22, "indexed")
    assert done.settle("t", {23, 24, 30}) is None
    assert (done.next, done.ahead, done.outcomes["indexed"]) == ({"t": 31}, {}, 25)
    assert done.settle("t", ()) is None and done.settle("other", ()) is None  # no gap: nothing to do


def test_a_deleted_prefix_is_passed_at_once() -> None:
    done = Progress()
    done.begin("t", 0)
    done.record("t", 0, "indexed")
    done.record("t", 1_000_000, "indexed")  # delete_records removed 1 to 999,999
    assert done.settle("t", ()) is None
    assert done.next == {"t": 1_000_001} and done.ahead == {}
    assert len(progress.encode(done)) < 100


def test_an_offset_is_never_counted_twice() -> None:
    done = Progress()
    done.begin("t", 0)
    done.record("t", 0, "indexed")
    with pytest.raises(ValueError, match="already counted"):
        done.record("t", 0, "stale")
    with pytest.raises(ValueError, match="not tracked"):
        done.record("other", 0, "stale")


def test_the_record_round_trips_and_a_foreign_one_is_refused() -> None:
    done = Progress()
    done.begin("t", 0)
    done.record("t", 0, "indexed")
    done.record("t", 2, "dead_lettered", "bad_text")
    again = progress.decode(progress.encode(done))
    assert (again.next, again.ahead, again.outcomes, again.reasons) == (done.next, done.ahead, done.outcomes,
                                                                        done.reasons)
    assert progress.decode(None) == Progress()
    with pytest.raises(ProgressError, match="another streamvec version"):
        progress.decode(b'{"o": {"t": 3}}')


def test_ingest_resumes_each_input_partition_at_its_first_offset_not_done() -> None:
    seen = Progress()
    seen.begin("events", 0)
    for offset in (0, 1, 2, 4):  # 3 is a hole: it is read again
        seen.record("events", offset, "indexed")
    other = Progress()
    other.begin("cdc", 7)
    assert progress.resume_offsets({0: seen, 5: other, 6: Progress()}, ["events", "cdc"]) == {
        ("events", 0): 3, ("cdc", 0): 0,     # an input the record has not seen starts at its beginning
        ("events", 5): 0, ("cdc", 5): 7,
        ("events", 6): 0, ("cdc", 6): 0,
    }
    assert progress.resume_offsets({}, ["events"]) == {}
    assert progress.resume_offsets({1: seen}, []) == {("events", 1): 3}  # a topic the record tracks counts


def the_log(rng: random.Random, size: int) -> tuple[set[int], int]:
    """Which offsets of a partition of ``size`` offsets hold a record the consumer delivers, and where
    the log starts: a commit marker every 11th offset, aborted transactions, compacted runs and a
    deleted prefix hold none."""
    start = rng.choice((0, 0, rng.randint(1, size // 4)))  # delete_records or retention
    held = set(range(start, size))
    held -= set(range(10, size, 11))  # a transactional producer committing every 10 events
    for _ in range(size // 200):
        first = rng.randrange(size)
        held -= set(range(first, first + rng.randint(1, 30)))  # an aborted transaction, or a compacted run
    return held, start


def test_whatever_the_log_holds_every_record_is_counted_once_and_the_record_stays_small() -> None:
    for seed in range(40):
        rng = random.Random(seed)
        size = rng.randint(200, 3_000)
        held, start = the_log(rng, size)
        done = Progress()
        done.begin("t", 0)  # the record began before the prefix was deleted
        position, largest, drops, rewinds = 0, 0, 0, 0
        while position < size:
            fetched = rng.randint(1, 60)
            batch = sorted(o for o in held if position <= o < position + fetched)
            if batch and rng.random() < 0.1:
                del batch[rng.randrange(len(batch))]  # Faust drops a record after a seek
                drops += 1
            for offset in batch:
                if not done.done("t", offset):
                    done.record("t", offset, "indexed")
            position += fetched
            gap = done.gaps().get("t")
            skipped = done.settle("t", held & set(gap)) if gap else None
            if skipped is not None:
                assert skipped in held and not done.done("t", skipped), "a rewind for an offset the log passes"
                rewinds += 1
                position = skipped
            else:
                assert done.ahead == {}, f"seed {seed}: a settled gap left {done.ahead}"
            largest = max(largest, len(progress.encode(done)))
        assert done.outcomes["indexed"] == len(held), f"seed {seed}: {done.outcomes} for {len(held)} records"
        assert done.next["t"] == max(held) + 1 and done.ahead == {}
        assert rewinds <= drops, f"seed {seed}: {rewinds} rewinds for {drops} records the consumer skipped"
        assert largest < 600, f"seed {seed}: the record reached {largest} bytes"
        assert start == 0 or done.done("t", start - 1)
