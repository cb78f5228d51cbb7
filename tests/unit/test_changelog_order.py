"""Changelog records reach a partition's copy in offset order, none skipped: a gap holds what comes
after it until the broker is read from there; what the broker no longer has (compaction) is no
loss; one read covers every gap held meanwhile; a reset or a move drops what waited."""

from __future__ import annotations

import random

import pytest

from tables.changelog_order import HOLD, ChangelogOrder, Gap

Record = tuple[int, int]  # (partition, offset)


def order(hold: int = HOLD) -> ChangelogOrder[Record]:
    return ChangelogOrder(lambda record: record, hold)


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

    gap = Gap(6, 3459, 3461)
    assert sequence.missing(6) == gap and sequence.missing(7) is None  # recovery waits for it (SP-6)
    assert sequence.extent(gap) == 3464
    ready, gaps = sequence.filled(gap, [(6, 3460), (6, 3459), (6, 3461), (6, 3462), (6, 3463)], 3464)
    assert offsets(ready) == [3459, 3460, 3461, 3462, 3463] and gaps == []
    assert sequence.missing(6) is None
    assert offsets(sequence.admit([(6, 3463), (6, 3464)])[0]) == [3464]


def test_a_range_compaction_emptied_is_not_waited_for_again() -> None:
    sequence = order()
    sequence.reset(1, -1)
    _, gaps = sequence.admit([(1, 40)])
    ready, more = sequence.filled(gaps[0], [(1, 7), (1, 40)], 41)  # the broker kept one record of 0-39
    assert offsets(ready) == [7, 40] and more == []
    assert offsets(sequence.admit([(1, 41)])[0]) == [41]


def test_one_read_covers_every_gap_held_meanwhile_as_in_a_compacted_stretch() -> None:
    sequence = order()
    sequence.reset(2, 0)
    _, first = sequence.admit([(2, 3), (2, 4), (2, 8)])
    assert sequence.admit([(2, 11), (2, 15)]) == ([], [])  # more gaps arrive while the read runs
    upto = sequence.extent(first[0])
    assert upto == 16
    broker = [(2, n) for n in (1, 3, 4, 8, 9, 11, 15)]  # compaction removed the rest
    ready, more = sequence.filled(first[0], broker, upto)
    assert offsets(ready) == [1, 3, 4, 8, 9, 11, 15] and more == []


def test_records_held_past_the_read_go_on_and_may_open_the_next_gap() -> None:
    sequence = order()
    sequence.reset(2, 0)
    _, first = sequence.admit([(2, 3)])
    upto = sequence.extent(first[0])  # the read covers 1-3
    sequence.admit([(2, 4), (2, 8)])  # held after the read began
    ready, second = sequence.filled(first[0], [(2, 1), (2, 2), (2, 3)], upto)
    assert offsets(ready) == [1, 2, 3, 4] and second == [Gap(2, 5, 8)]
    ready, _ = sequence.filled(second[0], [(2, 5), (2, 6), (2, 7), (2, 8)], sequence.extent(second[0]))
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
    assert sequence.filled(gaps[0], [(3, 11)], 16) == ([], [])
    assert offsets(sequence.admit([(3, 13)])[0]) == [13]

    _, gaps = sequence.admit([(3, 20)])
    sequence.forget(3)
    assert sequence.missing(3) is None  # a recovery waiting for it goes on: the partition moved away
    assert sequence.filled(gaps[0], [(3, 14)], 21) == ([], [])


def test_records_past_the_hold_are_dropped_and_the_read_reaches_past_them() -> None:
    sequence = order(hold=2)
    sequence.reset(0, 9)
    _, gaps = sequence.admit([(0, 12), (0, 13), (0, 14), (0, 15)])  # 14 and 15 are not held
    assert sequence.extent(gaps[0]) == 16
    ready, more = sequence.filled(gaps[0], [(0, n) for n in range(10, 16)], 16)
    assert offsets(ready) == [10, 11, 12, 13, 14, 15] and more == []


def test_a_record_dropped_while_the_read_is_under_way_opens_the_next_gap() -> None:
    sequence = order(hold=2)
    sequence.reset(0, 9)
    _, gaps = sequence.admit([(0, 12)])
    upto = sequence.extent(gaps[0])  # the read starts: up to 12
    sequence.admit([(0, 13), (0, 14)])  # delivered meanwhile: 13 is held, 14 dropped
    ready, more = sequence.filled(gaps[0], [(0, 10), (0, 11), (0, 12)], upto)
    assert offsets(ready) == [10, 11, 12, 13] and more == [Gap(0, 14, 15)]


Read = tuple[Gap, int]  # a read under way: its gap and where it ends (exclusive)


def start_read(sequence: ChangelogOrder[Record], pending: list[Gap], reading: list[Read]) -> None:
    """The store starts reading the first pending gap: up to its extent as of now."""
    gap = pending.pop(0)
    reading.append((gap, sequence.extent(gap)))


def end_read(sequence: ChangelogOrder[Record], pending: list[Gap], reading: list[Read]) -> list[int]:
    """The broker's answer for the oldest read under way: every offset up to where it ends."""
    gap, upto = reading.pop(0)
    ready, gaps = sequence.filled(gap, [(0, n) for n in range(gap.start, upto)], upto)
    pending += gaps
    return offsets(ready)


@pytest.mark.parametrize("hold", [HOLD, 3, 1])
@pytest.mark.parametrize("seed", range(5))
def test_whatever_is_skipped_every_offset_is_applied_once_in_order(hold: int, seed: int) -> None:
    """Deliveries go on while a read is under way; with a small hold, most records behind a gap
    are dropped and read from the broker instead."""
    rng = random.Random(seed)
    sequence = order(hold)
    sequence.reset(0, -1)
    applied: list[int] = []
    pending: list[Gap] = []
    reading: list[Read] = []
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
        if pending and rng.random() < 0.5:
            start_read(sequence, pending, reading)
        if reading and rng.random() < 0.5:
            applied += end_read(sequence, pending, reading)
    while pending or reading:
        if pending:
            start_read(sequence, pending, reading)
        applied += end_read(sequence, pending, reading)
    assert applied == list(range(offset))
