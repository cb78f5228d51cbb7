"""Changelog records applied in offset order, none skipped: what a partition's copy may take now.

Faust's recovery consumer can skip changelog records around a rebalance. In the rebalance storm
with standby replicas (2026-11-30), a standby that Faust had seeked to its persisted offset 3458
was handed 3461 next, while the broker's end was 3460: 3459 and 3460 never came. A store that
applied that batch would say its copy was at 3463, Faust would read on from there for good, and
the copy would serve the older versions of those documents while reporting no lag (the storm
found 6 stale and 3 deleted ids back that way).

So every record is checked against the offset its partition's copy is at. The next one is taken;
an older one is dropped (the copy has it, and writing it again would undo newer ones); one past a
gap is held, with every record after it, while the broker is read straight from the gap's start
to the last record held by then. What it returns is the truth for that range: it may lack offsets,
since compaction removes records, and that is not a loss. One read covers every gap among the
records held meanwhile, so a compacted stretch of changelog, where nearly every batch has gaps,
costs a read per round trip, not one per gap.

What waits behind a gap is bounded (``hold`` records a partition): past it, records are dropped
and only the highest offset dropped is kept. The broker has them, so the read reaches to that
offset and brings them; one dropped while a read is under way opens the next gap. (Before, a
read slower than Faust's delivery held everything Faust delivered meanwhile, with no bound:
review finding SP-8.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

HOLD = 10_000
"""Records a partition holds behind a gap at most (a vectors record is a few KB)."""


@dataclass(frozen=True)
class Gap:
    """Offsets ``start`` (inclusive) to ``end`` (exclusive) of ``partition`` that were not delivered."""

    partition: int
    start: int
    end: int


@dataclass
class _Partition(Generic[T]):
    at: int  # the last changelog offset the copy has
    missing: Gap | None = None
    held: list[T] = field(default_factory=list)
    dropped: int = -1  # the highest offset delivered behind a gap and not held (the hold was full)


class ChangelogOrder(Generic[T]):
    """Per partition, the offset the copy is at and what waits behind a gap; one instance per store,
    used on the event loop only."""

    def __init__(self, where: Callable[[T], tuple[int, int]], hold: int = HOLD) -> None:
        self._where = where  # a record's (partition, offset)
        self._hold = hold
        self._partitions: dict[int, _Partition[T]] = {}

    def reset(self, partition: int, at: int) -> None:
        """The copy is at ``at`` (-1: empty), and reading goes on after it: from the offset Faust
        recovers from, or the one ingest just wrote. What was held is dropped; it comes again."""
        self._partitions[partition] = _Partition(at)

    def forget(self, partition: int) -> None:
        """The partition is no longer held here: a range still being read is not applied."""
        self._partitions.pop(partition, None)

    def missing(self, partition: int) -> Gap | None:
        """The range the partition waits for, if it holds records behind one."""
        state = self._partitions.get(partition)
        return state.missing if state is not None else None

    def waiting(self, gap: Gap) -> bool:
        """Whether ``gap`` is still what its partition waits for (not reset or forgotten since)."""
        state = self._partitions.get(gap.partition)
        return state is not None and state.missing == gap

    def admit(self, records: Iterable[T]) -> tuple[list[T], list[Gap]]:
        """The records that may be applied now, in order, and the ranges newly found missing."""
        ready: list[T] = []
        gaps: list[Gap] = []
        for record in records:
            partition, offset = self._where(record)
            state = self._partitions.get(partition)
            if state is None:  # never reset: take the first record as where the copy starts
                state = self._partitions[partition] = _Partition(offset - 1)
            if state.missing is not None:
                if len(state.held) < self._hold:
                    state.held.append(record)
                else:
                    state.dropped = max(state.dropped, offset)
            elif offset <= state.at:
                continue
            elif offset > state.at + 1:
                state.missing = Gap(partition, state.at + 1, offset)
                state.held.append(record)
                gaps.append(state.missing)
            else:
                ready.append(record)
                state.at = offset
        return ready, gaps

    def extent(self, gap: Gap) -> int:
        """Where a read for ``gap`` should end (exclusive): past the last record held or dropped behind it."""
        state = self._partitions.get(gap.partition)
        if state is None or state.missing != gap:
            return gap.end
        return max([gap.end - 1, state.dropped, *(self._where(r)[1] for r in state.held)]) + 1

    def filled(self, gap: Gap, records: Iterable[T], upto: int) -> tuple[list[T], list[Gap]]:
        """The broker's records from ``gap``'s start to ``upto`` (exclusive), which replace what
        was held in that range, then the records held past it: what may be applied now, and any
        further gap among the latter. Nothing if the partition was reset or forgotten meanwhile."""
        if not self.waiting(gap):
            return [], []
        state = self._partitions[gap.partition]
        ready = sorted((r for r in records if state.at < self._where(r)[1] < upto), key=lambda r: self._where(r)[1])
        state.at = max(state.at, upto - 1)
        state.missing = None
        held, state.held = [r for r in state.held if self._where(r)[1] >= upto], []
        more, gaps = self.admit(held)
        if state.missing is None and state.dropped > state.at:  # dropped while the read was under way
            state.missing = Gap(gap.partition, state.at + 1, state.dropped + 1)
            gaps.append(state.missing)
        return ready + more, gaps
