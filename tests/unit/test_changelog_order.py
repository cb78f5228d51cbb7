"""Changelog records reach a partition's copy in offset order, none skipped: a gap holds what comes
after it until the missing range is read; what the broker no longer has of it (compaction) is no
loss; a reset or a move drops what waited."""

from __future__ import annotations

import random

from tables.changelog_order import ChangelogOrder, Gap

Record = tuple[int, int]  # (partition, offset)


def order() -> ChangelogOrder[Record]:
    return ChangelogOrder(lambda record: record)


def offsets(records: list[Record]) -> list[int]:
    return [offset for _, offset in records]


def test_records_in_order_go_through_and_older_ones_are_dropped() -> None:
    sequence = order()
    sequence.reset(0, 9)
    ready, gaps = sequence.admit([(0, 10), (0, 11), (0, 9), (0, 11), (0, 12)])
    assert offsets(ready) == [10, 11, 12] and gaps == []


def test_a_gap_holds_what_comes_after_it_until_the_range_is_read() -> None:
    sequence = order()
    sequence.reset(6, 3458)
    ready, gaps = sequence.admit([(6, 3461), (6, 3462)])
    assert ready == [] and gaps == [Gap(6, 3459, 3461)]
    assert sequence.admit([(6, 3463)]) == ([], [])  # still held behind the gap

    ready, gaps = sequence.filled(Gap(6, 3459, 3461), [(6, 3460), (6, 3459)])
    assert offsets(ready) == [3459, 3460, 3461, 3462, 3463] and gaps == []
    assert offsets(sequence.admit([(6, 3463), (6, 3464)])[0]) == [3464]


def test_a_range_compaction_emptied_is_not_waited_for_again() -> None:
    sequence = order()
    sequence.reset(1, -1)
    _, gaps = sequence.admit([(1, 40)])
    ready, more = sequence.filled(gaps[0], [(1, 7)])  # the broker kept one record of 0-39
    assert offsets(ready) == [7, 40] and more == []
    assert offsets(sequence.admit([(1, 41)])[0]) == [41]


def test_a_second_gap_among_the_held_records_is_read_next() -> None:
    sequence = order()
    sequence.reset(2, 0)
    _, first = sequence.admit([(2, 3), (2, 4), (2, 8)])
    ready, second = sequence.filled(first[0], [(2, 1), (2, 2)])
    assert offsets(ready) == [1, 2, 3, 4] and second == [Gap(2, 5, 8)]
    ready, _ = sequence.filled(second[0], [(2, 5), (2, 6), (2, 7)])
    assert offsets(ready) == [5, 6, 7, 8]


def test_partitions_wait_apart() -> None:
    sequence = order()
    sequence.reset(0, 0)
    sequence.reset(1, 0)
    ready, gaps = sequence.admit([(0, 2), (1, 1), (0, 3), (1, 2)])
    assert ready == [(1, 1), (1, 2)] and gaps == [Gap(0, 1, 2)]


def test_a_reset_or_a_move_while_a_range_is_read_drops_what_waited() -> None:
    sequence = order()
    sequence.reset(3, 10)
    _, gaps = sequence.admit([(3, 15)])
    sequence.reset(3, 12)  # a rebalance: Faust reads again after the persisted offset
    assert not sequence.waiting(gaps[0])
    assert sequence.filled(gaps[0], [(3, 11)]) == ([], [])
    assert offsets(sequence.admit([(3, 13)])[0]) == [13]

    _, gaps = sequence.admit([(3, 20)])
    sequence.forget(3)
    assert sequence.filled(gaps[0], [(3, 14)]) == ([], [])


def test_whatever_is_skipped_every_offset_is_applied_once_in_order() -> None:
    rng = random.Random(11)
    sequence = order()
    sequence.reset(0, -1)
    applied: list[int] = []
    pending: list[Gap] = []
    offset = 0
    while offset < 2_000:
        delivered = []
        for _ in range(rng.randint(1, 20)):
            if rng.random() < 0.1:
                offset += rng.randint(1, 5)  # the consumer skips some
            delivered.append((0, offset))
            offset += 1
        ready, gaps = sequence.admit(delivered)
        applied += offsets(ready)
        pending += gaps
        while pending and rng.random() < 0.5:
            gap = pending.pop(0)
            ready, gaps = sequence.filled(gap, [(0, n) for n in range(gap.start, gap.end)])
            applied += offsets(ready)
            pending += gaps
    while pending:
        gap = pending.pop(0)
        ready, gaps = sequence.filled(gap, [(0, n) for n in range(gap.start, gap.end)])
        applied += offsets(ready)
        pending += gaps
    assert applied == list(range(offset))
