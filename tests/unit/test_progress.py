"""A partition's ingest progress: exact offsets, counts, holes, and its record form."""

from __future__ import annotations

import pytest

from index.records import progress
from index.records.progress import Progress, ProgressError


def test_offsets_are_done_exactly_and_a_hole_is_named_until_it_is_filled() -> None:
    done = Progress()
    done.begin("t", 10)
    for offset in (10, 11, 13, 14):
        done.record("t", offset, "indexed")
    assert [done.done("t", o) for o in range(9, 16)] == [True, True, True, False, True, True, False]
    assert done.holes() == {"t": 12}
    done.record("t", 12, "dead_lettered", "bad_json")
    assert done.holes() == {} and done.next == {"t": 15} and done.ahead == {}
    assert done.counts() == {"indexed": 4, "deleted": 0, "stale": 0, "unchanged": 0, "dead_lettered": 1,
                             "dead_letter_reasons": {"bad_json": 1}}


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
