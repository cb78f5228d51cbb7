"""A RocksDB table store whose partitions feed one HNSW index, in step with the changelog.

The worker's :class:`~index.ann.hnsw.VectorIndex` holds every partition the worker has, active or
standby: a standby's copy is kept warm by the changelog, so a query can be answered where it
arrives and a standby is promoted without a rebuild. Data reaches a partition through three doors
(docs/faust.md §2.5), and each reaches the index too:

* :meth:`IndexedStore.commit`: the ingest agent's batches, written here only after the changelog
  acknowledged them. Records, the partition's progress record and the changelog offset go into
  RocksDB in one write batch, so the local store is never ahead of the changelog, and a restart
  replays exactly what it lacks (Faust recovers from the persisted offset);
* ``apply_changelog_batch``: changelog replay during recovery, and standby updates, in offset
  order with none skipped (:mod:`tables.ordered_store`);
* ``on_recovery_completed``: the end of every rebalance, when the partitions this worker holds are
  known. A newly held partition is built into the index from its local RocksDB there, because
  recovery replays only what came after the persisted offset.

A partition that moves to another worker is not dropped from the index at once: it is suspended
(hidden from searches, its graph nodes kept) for ``keep_moved`` seconds. If it comes back in that
time (a worker that joined for a while leaves, a rolling restart), it is taken back like a
snapshot's partition below, so only the changelog written meanwhile is replayed; else it is dropped.

Snapshots (:mod:`tables.index_snapshots`) spare a restart that build. The index is saved on a schedule
and at a clean stop with, per partition, the changelog offset its documents reflect. At the
first rebalance after a start, a snapshot that checks out is loaded before recovery begins, and
each of its partitions that this worker holds and whose local store has reached the snapshot's
offset reports that offset as its persisted one: recovery then replays the changelog after it
into RocksDB and the index alike, and the partition is not built. A partition the snapshot
lacks, or whose store is behind it, is built as before.

Index work never runs on the event loop (:mod:`tables.index_feed`), and each partition's copy has
one state with its rules (:mod:`tables.copies`); this class only hooks them into Faust. At the end
of every rebalance, before Faust seeks the input partitions, the ingest agent is told which active
partitions were recovered, and commits where their ingest resumes (see
:meth:`agents.ingest.IngestProcessor.resume_from_progress`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from faust.types import TP, EventT
from rocksdict import Rdict, WriteBatch

from index.ann.hnsw import VectorIndex
from index.records import progress
from index.records.progress import Progress
from tables.changelog_reader import ChangelogReader
from tables.copies import Copies
from tables.index_feed import IndexFeed, Op
from tables.index_snapshots import Snapshots
from tables.ordered_store import OrderedStore

logger = logging.getLogger(__name__)

UNKNOWN_LAG = 1 << 62
OnRecovered = Callable[[set[int]], Awaitable[None]]
"""Told the active partitions a rebalance recovered, before Faust seeks the input partitions."""


@dataclass(frozen=True)
class Copy:
    """This worker's copy of one partition, as the query path sees it."""

    partition: int
    active: bool
    built: bool
    lag: int  # changelog records not yet in the index (0 for an active copy)
    applied: Progress  # the progress record the index has taken: what ingest had done


class IndexedStore(OrderedStore):
    """Faust's RocksDB store plus the worker's index; see the module docstring for the flow."""

    def __init__(self, *args: Any, index: VectorIndex, reader: ChangelogReader, snapshots: Snapshots | None = None,
                 keep_moved: float = 0.0, on_recovered: OnRecovered | None = None, **kwargs: Any) -> None:
        super().__init__(*args, reader=reader, **kwargs)
        self.index = index
        self._copies: Copies[list[Op]] = Copies()
        self._feed = IndexFeed(index, self, self._copies, keep_moved)
        self._snapshots = snapshots
        self._restore_tried = False
        self._on_recovered = on_recovered
        # Faust can start the next rebalance while this worker's end of the last one still runs (it waits
        # for index jobs off the loop); both change the copies, so they take turns.
        self._turn = asyncio.Lock()

    # ---- what the query path and the ingest agent read ------------------------------------

    def copies(self) -> dict[int, Copy]:
        """Every partition this worker holds in the latest assignment, with its state. A copy whose
        store holds changelog records behind a gap does not serve until the gap is read: a standby
        promoted to active while its records were held answered for an empty partition with no lag
        (tests/faults/test_compacted_changelogs.py)."""
        held = self.held()
        return {p: Copy(p, held[p], copy.serving and not self.behind_gap(p),
                        0 if held[p] else self._lag(p, copy.offset), copy.applied)
                for p, copy in self._copies.held().items() if p in held}

    @property
    def ready(self) -> bool:
        """Every partition this worker holds is built into the index."""
        return self._copies.ready

    def read(self, partition: int, key: bytes) -> bytes | None:
        """``key`` as stored in ``partition``'s RocksDB (a partition this worker holds)."""
        return self._db_for_partition(partition).get(key)

    def progress(self, partition: int) -> Progress:
        """What ingest has done in ``partition`` so far (see :mod:`index.records.progress`)."""
        return progress.decode(self.read(partition, progress.KEY))

    def opened(self, partition: int) -> Rdict | None:
        """``partition``'s database if Faust has it open (index builds never open one)."""
        return self._dbs.get(partition)

    # ---- the ingest agent's door ---------------------------------------------------------

    def commit(self, partition: int, writes: Sequence[tuple[bytes, bytes]], changelog_offset: int) -> Future[None] | None:
        """Store records the changelog has acknowledged up to ``changelog_offset``, then index them.

        One RocksDB write batch holds the records and the new persisted offset, so after any
        crash the store is at a changelog offset and recovery replays what comes after it. The
        write and the enqueue are one step for a build that publishes (:meth:`IndexFeed.storing`).
        Returns the index job's future, or None while the partition is being built (the
        writes are applied when the build ends).
        """
        batch = WriteBatch(raw_mode=True)
        for key, value in writes:
            batch.put(key, value)
        batch.put(self.offset_key, str(changelog_offset).encode())
        with self._feed.storing():  # a build publishes before or after both, never between (SP-17)
            self._db_for_partition(partition).write(batch)
            self._wrote(partition, changelog_offset)
            return self._feed.enqueue(partition, list(writes), changelog_offset)

    def _set(self, key: bytes, value: bytes | None) -> None:
        raise TypeError("the vectors table is written only through IndexedStore.commit, after the changelog "
                        "acknowledged the records; table[key] = value would write RocksDB first")

    def _del(self, key: bytes) -> None:
        raise TypeError("the vectors table is written only through IndexedStore.commit; deletes are tombstone records")

    # ---- Faust hooks ------------------------------------------------------------------

    def _write_changelog(self, events: list[EventT]) -> None:
        """Changelog records, in offset order per partition, to RocksDB and then the index."""
        by_partition: dict[int, list[Op]] = {}
        last: dict[int, int] = {}
        for event in events:
            message = event.message
            by_partition.setdefault(message.partition, []).append((message.key, message.value))
            last[message.partition] = max(message.offset, last.get(message.partition, -1))
        with self._feed.storing():  # as in commit (SP-17)
            super()._write_changelog(events)
            for partition, ops in by_partition.items():
                self._feed.enqueue(partition, ops, last[partition])

    async def on_rebalance(
        self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP], generation_id: int = 0
    ) -> None:
        async with self._turn:
            self._copies.rebalancing(generation_id)
            # Stop what runs for the partitions no longer held first: Faust drops their databases
            # next, and a build still reading one would keep its lock.
            lost = self._changelog_partitions(revoked) - self._changelog_partitions(assigned)
            await self._feed.close(lost, keep=self._feed.keep_moved > 0)
            await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
            held = set(self.held())
            loop = asyncio.get_running_loop()
            if self._snapshots is not None and not self._restore_tried:
                self._restore_tried = True  # once per start: later rebalances build what they gain
                await loop.run_in_executor(self._feed.pool, self._snapshots.restore, self._feed, held,
                                           self.stored_offset)
            returned = self._copies.take_back(held)
            if returned:
                await loop.run_in_executor(self._feed.pool, self._feed.take_back, returned)

    def _replay_from(self, tp: TP) -> int | None:
        """Faust's persisted offset, or for a partition restored from the snapshot or taken back its
        index copy's offset, so that recovery replays the changelog after it into the index too."""
        if tp.topic in self.table.changelog_topic.topics:
            offset = self._copies.replay_from(tp.partition)
            if offset is not None:
                return offset
        return super()._replay_from(tp)

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        await super().on_recovery_completed(active_tps, standby_tps)
        async with self._turn:
            stale = self._copies.current(self.app.consumer_generation_id)
            if stale is not None:
                logger.info("recovery of generation %d completed after generation %d began; the end of that "
                            "rebalance builds what this worker holds", stale, self.app.consumer_generation_id)
                return
            await self._complete(self._changelog_partitions(active_tps), self._changelog_partitions(standby_tps))

    async def _complete(self, actives: set[int], standbys: set[int]) -> None:
        held = actives | standbys
        await self._feed.restored(held)  # replayed up to the changelog's end once their queued records are in
        if self._on_recovered is not None:
            await self._on_recovered(actives)
        await self._feed.close(set(self._copies.held()) - held, keep=self._feed.keep_moved > 0)
        to_build = sorted(held - set(self._copies.held()))
        for partition in to_build:
            self._db_for_partition(partition)  # a standby's database may not be open yet
            self._feed.build(partition)
        logger.info("recovery completed: active partitions %s, standby %s, building %s",
                    sorted(actives), sorted(held - actives), to_build)

    async def forget_moved(self) -> None:
        """Drop from the index the partitions that moved away more than ``keep_moved`` seconds ago."""
        await self._feed.expire()

    async def snapshot(self) -> None:
        """Save the index if a built partition moved on since the last snapshot (see module docstring)."""
        if self._snapshots is None:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(self._feed.pool, self._snapshots.save, self._feed)
        except Exception:
            logger.exception("saving the index snapshot failed; the next restart builds what it lacks")

    async def stop(self) -> None:
        await self.snapshot()
        await self._feed.stop()
        await super().stop()

    def _lag(self, partition: int, offset: int) -> int:
        """Changelog records of a standby partition not yet in the index (its copy is at ``offset``),
        against the end offset the consumer last saw; before it has seen one, the lag is unknown and
        counts as very large."""
        try:
            highwater = self.app.consumer.highwater(TP(self.table.changelog_topic_name, partition))
        except (AssertionError, KeyError, RuntimeError):
            highwater = None
        return UNKNOWN_LAG if highwater is None else max(0, highwater - 1 - offset)
