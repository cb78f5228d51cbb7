"""This worker's copy of each partition in the index: one state per copy, and the rules between them.

The store that feeds the index (:mod:`tables.indexed_store`) once kept this in six places: a
slot's three booleans (built, building, cancelled) and maps of moved, rewound, restored and saved
partitions. One combination was reachable and wrong: a copy restored from a snapshot whose index
update failed was being rebuilt (its documents dropped) and was still marked built when its
recovery completed, so it answered queries without its documents until the build ended. Here a
copy has one :class:`CopyState`, and a transition the table below does not allow raises.

* ``BUILDING``: read from the local store into the index; writes that arrive meanwhile wait.
* ``RESTORING``: already in the index up to a changelog offset (a snapshot's partition, or one
  taken back); recovery replays the changelog after it, and the copy serves once its recovery
  completed and it has taken the records its local store had when it began restoring.
* ``SERVING``: built and fed in offset order; it answers queries.
* ``SUSPENDED``: its partition moved away; hidden from queries, writes dropped, its graph nodes
  kept for ``keep_moved`` seconds in case it comes back (then only the changelog written
  meanwhile is replayed).
* ``CLOSED``: gone for good; never written again.

Pure: no Faust, no index; :class:`PartitionCopy` is changed from the event loop and from the
partition's lane thread, so its state changes under its own lock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Generic, TypeVar

from index.exceptions import StreamvecError
from index.records.progress import Progress

W = TypeVar("W")  # a write waiting for a build (the feed's ops)


class CopyState(Enum):
    BUILDING = "building"
    RESTORING = "restoring"
    SERVING = "serving"
    SUSPENDED = "suspended"
    CLOSED = "closed"


TRANSITIONS: dict[CopyState, frozenset[CopyState]] = {
    CopyState.BUILDING: frozenset({CopyState.SERVING, CopyState.BUILDING, CopyState.CLOSED}),
    CopyState.RESTORING: frozenset({CopyState.SERVING, CopyState.BUILDING, CopyState.CLOSED}),
    CopyState.SERVING: frozenset({CopyState.BUILDING, CopyState.SUSPENDED, CopyState.CLOSED}),
    CopyState.SUSPENDED: frozenset({CopyState.RESTORING, CopyState.CLOSED}),
    CopyState.CLOSED: frozenset(),
}
"""Allowed moves. A copy is born BUILDING (nothing of it in the index) or RESTORING (a snapshot's)."""


class IllegalTransition(StreamvecError, RuntimeError):
    """A copy was asked to move to a state its current one does not lead to (a bug)."""


def usable(stored: int | None, covered: int) -> bool:
    """Whether an index copy at changelog offset ``covered`` (a snapshot's, or a suspended one) can be
    resumed over a local store at ``stored``: recovery replays after the store's offset, so a store
    behind the copy would leave the copy with records the store lacks."""
    return stored is not None and stored >= covered


class PartitionCopy(Generic[W]):
    """One partition's documents in the index, the changelog offset and progress record they reflect."""

    def __init__(self, partition: int, state: CopyState, offset: int = -1, applied: Progress | None = None,
                 until: int = -1) -> None:
        self.partition = partition
        self._state = state
        self._lock = threading.Lock()
        self.offset = offset  # the last changelog offset whose record the index has taken
        self.applied = applied if applied is not None else Progress()  # what ingest had done, as the index has it
        self.pending: list[tuple[W, int]] = []  # writes (and their changelog offset) that came during a build
        self.since: float | None = None  # when it was suspended
        self.until = until  # restoring: the local store's offset when it began; it serves only once it took that far
        self._recovered = False  # restoring: its recovery completed

    @property
    def state(self) -> CopyState:
        return self._state

    @property
    def serving(self) -> bool:
        return self._state is CopyState.SERVING

    @property
    def stopped(self) -> bool:
        """Suspended or closed: its jobs end, and nothing is written to it."""
        return self._state in (CopyState.SUSPENDED, CopyState.CLOSED)

    def _move(self, to: CopyState) -> None:
        if to not in TRANSITIONS[self._state]:
            raise IllegalTransition(f"partition {self.partition}: a {self._state.value} copy cannot become {to.value}")
        self._state = to

    def admit(self, write: W, offset: int) -> bool:
        """Whether ``write`` (up to changelog ``offset``) goes into the index now; during a build it
        waits in :attr:`pending`, and a stopped copy drops it."""
        with self._lock:
            if self._state is CopyState.BUILDING:
                self.pending.append((write, offset))
            return self._state in (CopyState.SERVING, CopyState.RESTORING)

    def took(self, offset: int, applied: Progress | None) -> None:
        """The index has the writes up to ``offset``, and the progress record ``applied`` if any; a
        restoring copy whose recovery completed serves once that reaches :attr:`until`."""
        with self._lock:
            if applied is not None:
                self.applied = applied
            self.offset = max(self.offset, offset)
            if self._state is CopyState.RESTORING and self._recovered:
                self._serve_if_caught_up()

    def rebuild(self) -> bool:
        """Start over from the local store (an index update or a build failed); False if stopped."""
        with self._lock:
            if self.stopped:
                return False
            self._move(CopyState.BUILDING)
            self.pending = []
            return True

    def built(self, stored: int | None, applied: Progress) -> None:
        """The build has read the local store, which is at changelog offset ``stored``."""
        with self._lock:
            self.offset = max(self.offset, -1 if stored is None else stored)
            self.applied = applied

    def drain(self) -> list[tuple[W, int]] | None:
        """The writes that waited for the build (apply them, then drain again), or, once none wait,
        an empty list: the copy then serves. None if it stopped meanwhile."""
        with self._lock:
            if self.stopped:
                return None
            pending, self.pending = self.pending, []
            if not pending:
                self._move(CopyState.SERVING)
            return pending

    def restored(self) -> bool:
        """Its recovery completed and what recovery delivered is in the index: a restoring copy serves
        if it has taken the records its store had when it began (:attr:`until`), else when it has
        (:meth:`took`). Faust completes a rebalance's recovery without reading a standby's changelog:
        a standby copy taken back 1,500 records behind its store once served without them, and the
        next rebalance replayed after the store's offset, so they never came (the rebalance storm
        with standbys, 2026-12-07). A copy that fell back to a build meanwhile serves when that ends
        (it may have), and a stopped one never. True if it serves now."""
        with self._lock:
            if self._state is not CopyState.RESTORING:
                return False
            self._recovered = True
            return self._serve_if_caught_up()

    def _serve_if_caught_up(self) -> bool:
        if self.offset < self.until:
            return False
        self._move(CopyState.SERVING)
        return True

    def close(self, keep: bool = False) -> None:
        """Stop writing it: suspended if ``keep`` and it serves (its nodes may be kept), else closed."""
        with self._lock:
            self._move(CopyState.SUSPENDED if keep and self._state is CopyState.SERVING else CopyState.CLOSED)
            self.pending = []

    def resume(self, until: int) -> None:
        """A suspended copy taken back over a local store at ``until``: recovery replays the changelog
        after the copy's offset into it."""
        with self._lock:
            self._move(CopyState.RESTORING)
            self.since, self.until, self._recovered = None, until, False


class Copies(Generic[W]):
    """The copies a store keeps in the index, by partition: held ones and suspended ones (closed
    copies are forgotten); with the rebalance generation they were last arranged for, and what the
    last snapshot covered."""

    def __init__(self) -> None:
        self._copies: dict[int, PartitionCopy[W]] = {}
        self._generation = 0
        self._saved: dict[int, int] = {}

    # ---- rebalances -----------------------------------------------------------------------

    def rebalancing(self, generation: int) -> None:
        """A rebalance of ``generation`` began (Faust's group generation)."""
        self._generation = generation

    def current(self, generation: int) -> int | None:
        """None if a recovery that completes in ``generation`` is for the latest rebalance; else the
        generation it was for. A stale one must change nothing: the next completion arranges all."""
        return None if generation == self._generation else self._generation

    # ---- held copies ----------------------------------------------------------------------

    def get(self, partition: int) -> PartitionCopy[W] | None:
        """The held (not suspended) copy of ``partition``."""
        copy = self._copies.get(partition)
        return None if copy is None or copy.state is CopyState.SUSPENDED else copy

    def held(self) -> dict[int, PartitionCopy[W]]:
        return {p: c for p, c in list(self._copies.items()) if c.state is not CopyState.SUSPENDED}

    @property
    def ready(self) -> bool:
        """Every held copy serves."""
        return all(copy.serving for copy in self.held().values())

    def build(self, partition: int) -> PartitionCopy[W]:
        """A new copy of ``partition``, to be built from the local store."""
        return self._add(PartitionCopy(partition, CopyState.BUILDING))

    def restore(self, partition: int, offset: int, applied: Progress, until: int) -> PartitionCopy[W]:
        """A new copy of ``partition`` whose documents are in the index up to ``offset`` (a snapshot's),
        over a local store at ``until``."""
        return self._add(PartitionCopy(partition, CopyState.RESTORING, offset, applied, until))

    def _add(self, copy: PartitionCopy[W]) -> PartitionCopy[W]:
        if copy.partition in self._copies:
            raise IllegalTransition(f"partition {copy.partition} already has a {self._copies[copy.partition].state.value} "
                                    "copy")
        self._copies[copy.partition] = copy
        return copy

    def restoring(self, partitions: Iterable[int]) -> list[PartitionCopy[W]]:
        """The restoring copies among ``partitions``, in partition order."""
        return [c for p in sorted(partitions) if (c := self.get(p)) is not None and c.state is CopyState.RESTORING]

    def replay_from(self, partition: int) -> int | None:
        """Where recovery must replay ``partition`` from for a restoring copy: the copy's own offset,
        each time Faust asks (once per rebalance) until the copy serves; None for any other copy.

        Its local store is ahead of it (a snapshot is older than the store; a standby copy's lane was
        behind its store when the partition moved away). This answer was once given only to the first
        rebalance, and a second one that began before the first's replay was in the index replayed from
        the store's offset: the index never got the records in between and served their older versions
        and deleted ids as complete (review finding SP-4; the rebalance storm with standbys lost 15 ids
        of one partition that way on a clean-clone CI run, 2026-12-07). Replaying from the copy's offset
        rewrites records the store already has with the same values, in offset order.
        """
        copy = self.get(partition)
        return copy.offset if copy is not None and copy.state is CopyState.RESTORING else None

    def close(self, partitions: Iterable[int], keep: bool = False) -> list[PartitionCopy[W]]:
        """Forget the held copies of ``partitions`` and stop them (see :meth:`PartitionCopy.close`)."""
        closed = []
        for partition in partitions:
            copy = self.get(partition)
            if copy is not None:
                del self._copies[partition]
                copy.close(keep)
                closed.append(copy)
        return closed

    # ---- suspended copies -----------------------------------------------------------------

    def suspended(self, copy: PartitionCopy[W], now: float) -> None:
        """``copy``'s nodes are suspended in the index as of ``now``: kept until taken back or expired."""
        if copy.state is not CopyState.SUSPENDED:
            raise IllegalTransition(f"partition {copy.partition}: a {copy.state.value} copy cannot be kept suspended")
        copy.since = now
        self._add(copy)

    def take_back(self, partitions: Iterable[int]) -> list[PartitionCopy[W]]:
        """The suspended copies of ``partitions`` (held again), forgotten until :meth:`resume` or
        closed by the caller, so an expiry meanwhile does not drop them."""
        found = [c for p in sorted(partitions) if (c := self._copies.get(p)) is not None
                 and c.state is CopyState.SUSPENDED]
        for copy in found:
            del self._copies[copy.partition]
        return found

    def resume(self, copy: PartitionCopy[W], until: int) -> None:
        """A taken-back copy goes on over a store at ``until``: recovery replays after its offset (see
        :meth:`replay_from`)."""
        copy.resume(until)
        self._add(copy)

    def expire(self, now: float, keep: float) -> list[int]:
        """Close the copies suspended ``keep`` seconds or more before ``now``; their partitions."""
        expired = sorted(p for p, c in self._copies.items()
                         if c.state is CopyState.SUSPENDED and c.since is not None and now - c.since >= keep)
        for partition in expired:
            self._copies.pop(partition).close()
        return expired

    # ---- snapshots --------------------------------------------------------------------------

    def covering(self) -> dict[int, tuple[int, Progress]]:
        """What a snapshot taken now covers: each serving copy's offset and progress record; nothing
        if that is what the last snapshot covered."""
        covered = {p: (c.offset, c.applied) for p, c in self.held().items() if c.serving}
        return {} if {p: offset for p, (offset, _) in covered.items()} == self._saved else covered

    def saved(self, offsets: Mapping[int, int]) -> None:
        """A snapshot covering ``offsets`` was written."""
        self._saved = dict(offsets)
