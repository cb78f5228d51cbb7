"""A RocksDB table store whose partitions feed one HNSW index, in step with the changelog.

The worker's :class:`~index.ann.hnsw.VectorIndex` holds every partition the worker has, active or
standby: a standby's copy is kept warm by the changelog, so a query can be answered where it
arrives and a standby is promoted without a rebuild. Data reaches a partition through three doors
(notes/faust-internals.md §2.5), and each reaches the index too:

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

Snapshots (:mod:`index.ann.snapshot`) spare a restart that build. The index is saved on a schedule
and at a clean stop with, per partition, the changelog offset its documents reflect. At the
first rebalance after a start, a snapshot that checks out is loaded before recovery begins, and
each of its partitions that this worker holds and whose local store has reached the snapshot's
offset reports that offset as its persisted one: recovery then replays the changelog after it
into RocksDB and the index alike, and the partition is not built. A partition the snapshot
lacks, or whose store is behind it, is built as before.

Index work never runs on the event loop. Each partition has a slot with a :class:`Lane`: its jobs
run one at a time in order, partitions in parallel on one shared pool. A build reads RocksDB in
chunks, each a lane job that takes the database handle when it runs and drops it when it ends, so
a queued build holds no handle, and a build of a partition that moves stops at its next chunk
(Faust can then reopen the partition's database without hitting its lock). Writes that arrive
during a build wait in the slot and are applied when it ends, in order. A slot's state changes
under the slot's lock; the loop only reads it.

At the end of every rebalance, before Faust seeks the input partitions, the ingest agent is told
which active partitions were recovered, and commits where their ingest resumes (see
:meth:`agents.ingest.IngestProcessor.resume_from_progress`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from faust.types import TP, EventT
from rocksdict import WriteBatch

from index.records import codec, progress
from index.ann import snapshot
from index.ann.hnsw import VectorIndex
from index.records.progress import Progress
from index.ann.snapshot import Covered, SnapshotError
from tables.changelog_reader import ChangelogReader
from tables.lanes import Lane
from tables.ordered_store import OrderedStore

logger = logging.getLogger(__name__)

Op = tuple[bytes, bytes | None]
BUILD_CHUNK = 1024
"""Records a build reads and inserts per lane job: the longest a build keeps a pool thread, and so
the longest it can delay another partition's writes."""
_MOVE_WAIT_SECONDS = 30.0
UNKNOWN_LAG = 1 << 62
OnRecovered = Callable[[set[int]], Awaitable[None]]
"""Told the active partitions a rebalance recovered, before Faust seeks the input partitions."""


@dataclass(frozen=True)
class Snapshots:
    """Where the worker's index snapshot lives, and what it must have been made by."""

    directory: Path
    model_id: str


@dataclass(frozen=True)
class Copy:
    """This worker's copy of one partition, as the query path sees it."""

    partition: int
    active: bool
    built: bool
    lag: int  # changelog records not yet in the index (0 for an active copy)
    applied: Progress  # the progress record the index has taken: what ingest had done


@dataclass(frozen=True)
class _Moved:
    """A partition that moved away, suspended in the index: how far its copy was, and since when."""

    offset: int
    applied: Progress
    since: float


class _Slot:
    """One partition's documents in the index: being built, or built and fed in order."""

    def __init__(self, partition: int, lane: Lane) -> None:
        self.partition = partition
        self.lane = lane
        self.lock = threading.Lock()
        self.built = False
        self.building = True
        self.pending: list[tuple[list[Op], int]] = []  # writes (and their changelog offset) during the build
        self.cancelled = False
        self.offset = -1  # the last changelog offset whose record the index has taken
        self.applied = Progress()


class IndexedStore(OrderedStore):
    """Faust's RocksDB store plus the worker's index; see the module docstring for the flow."""

    def __init__(self, *args: Any, index: VectorIndex, reader: ChangelogReader, snapshots: Snapshots | None = None,
                 keep_moved: float = 0.0, on_recovered: OnRecovered | None = None, **kwargs: Any) -> None:
        super().__init__(*args, reader=reader, **kwargs)
        self.index = index
        self._on_recovered = on_recovered
        self._keep_moved = keep_moved
        self._moved: dict[int, _Moved] = {}
        self._slots: dict[int, _Slot] = {}
        self._pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="index")
        self._snapshots = snapshots
        self._restore_tried = False
        self._rewound: dict[int, int] = {}  # partition -> its index copy's offset, until Faust asks where to replay from
        self._restored: set[int] = set()  # partitions taken back, built once their replay is in the index
        # Faust can start the next rebalance while this worker's end of the last one still runs (it waits
        # for index jobs off the loop); both change the slots, so they take turns.
        self._turn = asyncio.Lock()
        self._generation = 0
        self._saved: dict[int, int] = {}  # what the last snapshot covered

    # ---- what the query path and the ingest agent read ------------------------------------

    def copies(self) -> dict[int, Copy]:
        """Every partition this worker holds in the latest assignment, with its state."""
        held = self.held()
        return {p: Copy(p, held[p], slot.built, 0 if held[p] else self._lag(p, slot), slot.applied)
                for p, slot in list(self._slots.items()) if p in held}

    @property
    def ready(self) -> bool:
        """Every partition this worker holds is built into the index."""
        return all(slot.built for slot in list(self._slots.values()))

    def read(self, partition: int, key: bytes) -> bytes | None:
        """``key`` as stored in ``partition``'s RocksDB (a partition this worker holds)."""
        return self._db_for_partition(partition).get(key)

    def progress(self, partition: int) -> Progress:
        """What ingest has done in ``partition`` so far (see :mod:`index.records.progress`)."""
        return progress.decode(self.read(partition, progress.KEY))

    # ---- the ingest agent's door ---------------------------------------------------------

    def commit(self, partition: int, writes: Sequence[tuple[bytes, bytes]], changelog_offset: int) -> Future[None] | None:
        """Store records the changelog has acknowledged up to ``changelog_offset``, then index them.

        One RocksDB write batch holds the records and the new persisted offset, so after any
        crash the store is at a changelog offset and recovery replays what comes after it.
        Returns the index job's future, or None while the partition is being built (the
        writes are applied when the build ends).
        """
        batch = WriteBatch(raw_mode=True)
        for key, value in writes:
            batch.put(key, value)
        batch.put(self.offset_key, str(changelog_offset).encode())
        self._db_for_partition(partition).write(batch)
        self._wrote(partition, changelog_offset)
        return self._enqueue(partition, list(writes), changelog_offset)

    def _set(self, key: bytes, value: bytes | None) -> None:
        raise TypeError("the vectors table is written only through IndexedStore.commit, after the changelog "
                        "acknowledged the records; table[key] = value would write RocksDB first")

    def _del(self, key: bytes) -> None:
        raise TypeError("the vectors table is written only through IndexedStore.commit; deletes are tombstone records")

    # ---- Faust hooks ------------------------------------------------------------------

    def _write_changelog(self, events: list[EventT]) -> None:
        """Changelog records, in offset order per partition, to RocksDB and then the index."""
        super()._write_changelog(events)
        by_partition: dict[int, list[Op]] = {}
        last: dict[int, int] = {}
        for event in events:
            message = event.message
            by_partition.setdefault(message.partition, []).append((message.key, message.value))
            last[message.partition] = max(message.offset, last.get(message.partition, -1))
        for partition, ops in by_partition.items():
            self._enqueue(partition, ops, last[partition])

    async def on_rebalance(
        self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP], generation_id: int = 0
    ) -> None:
        async with self._turn:
            self._generation = generation_id
            await self._rebalance(assigned, revoked, newly_assigned, generation_id)

    async def _rebalance(self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP], generation_id: int) -> None:
        # Stop what runs for the partitions no longer held first: Faust drops their databases
        # next, and a build still reading one would keep its lock.
        lost = self._changelog_partitions(revoked) - self._changelog_partitions(assigned)
        await self._close_slots(lost, keep=self._keep_moved > 0)
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
        held = set(self.held())
        loop = asyncio.get_running_loop()
        if self._snapshots is not None and not self._restore_tried:
            self._restore_tried = True  # once per start: later rebalances build what they gain
            await loop.run_in_executor(self._pool, self._restore, self._snapshots, held)
        returned = {p: self._moved.pop(p) for p in sorted(held & set(self._moved))}
        if returned:
            await loop.run_in_executor(self._pool, self._take_back, returned)

    def _replay_from(self, tp: TP) -> int | None:
        """Faust's persisted offset, or for a partition restored from the snapshot or taken back its
        index copy's offset, so that recovery replays the changelog after it into the index too.
        Asked once per rebalance: a later one replays from what RocksDB and the index both have by then."""
        if tp.topic in self.table.changelog_topic.topics and tp.partition in self._rewound:
            return self._rewound.pop(tp.partition)
        return super()._replay_from(tp)

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        await super().on_recovery_completed(active_tps, standby_tps)
        async with self._turn:
            if self.app.consumer_generation_id != self._generation:
                logger.info("recovery of generation %d completed after generation %d began; the end of that "
                            "rebalance builds what this worker holds", self._generation, self.app.consumer_generation_id)
                return
            await self._complete(self._changelog_partitions(active_tps), self._changelog_partitions(standby_tps))

    async def _complete(self, actives: set[int], standbys: set[int]) -> None:
        held = actives | standbys
        restored = [self._slots[partition] for partition in sorted(self._restored & held & set(self._slots))]
        self._restored -= held
        if restored:  # replayed up to the changelog's end once their queued records are in the index
            await asyncio.get_running_loop().run_in_executor(None, lambda: wait([s.lane.idle() for s in restored]))
            for slot in restored:
                with slot.lock:
                    slot.built = not slot.cancelled
        if self._on_recovered is not None:
            await self._on_recovered(actives)
        await self._close_slots(set(self._slots) - held, keep=self._keep_moved > 0)
        to_build = sorted(held - set(self._slots))
        for partition in to_build:
            slot = self._slots[partition] = _Slot(partition, Lane(self._pool))
            self._db_for_partition(partition)  # a standby's database may not be open yet
            slot.lane.submit(self._build_chunk, slot, None)
        logger.info("recovery completed: active partitions %s, standby %s, building %s",
                    sorted(actives), sorted(held - actives), to_build)

    async def forget_moved(self) -> None:
        """Drop from the index the partitions that moved away more than ``keep_moved`` seconds ago."""
        now = time.monotonic()
        expired = sorted(p for p, moved in self._moved.items() if now - moved.since >= self._keep_moved)
        if not expired:
            return
        for partition in expired:
            del self._moved[partition]
        dropped = await asyncio.get_running_loop().run_in_executor(
            self._pool, lambda: sum(self.index.drop_suspended(p) for p in expired))
        logger.info("partitions %s did not come back within %.0f s: %d documents dropped from the index",
                    expired, self._keep_moved, dropped)

    async def snapshot(self) -> None:
        """Save the index if a built partition moved on since the last snapshot (see module docstring)."""
        if self._snapshots is None:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(self._pool, self._save, self._snapshots)
        except Exception:
            logger.exception("saving the index snapshot failed; the next restart builds what it lacks")

    async def stop(self) -> None:
        await self.snapshot()
        await self._close_slots(set(self._slots))
        self._pool.shutdown(wait=True, cancel_futures=False)
        await super().stop()

    # ---- snapshots (on a pool thread) -------------------------------------------------

    def _restore(self, snapshots: Snapshots, held: set[int]) -> None:
        started = time.perf_counter()
        try:
            found = snapshot.load(snapshots.directory, model_id=snapshots.model_id, dim=self.index.dim,
                                  ef_search=self.index.ef_search)
        except SnapshotError as exc:
            logger.info("index snapshot not used (%s): held partitions are built from the local store", exc)
            return
        usable: dict[int, Covered] = {}
        for partition, covered in sorted(found.partitions.items()):
            stored = self.stored_offset(partition) if partition in held \
                else None
            if stored is not None and stored >= covered.offset:
                usable[partition] = covered
            elif partition in held:
                logger.warning("partition %d: the snapshot (changelog offset %d) is ahead of the local store (%s); "
                               "building it from the store instead", partition, covered.offset, stored)
        self.index.adopt(found.index, set(usable))
        for partition, covered in usable.items():
            self._resume(partition, covered.offset, progress.decode(covered.progress))
        logger.info("index restored from the snapshot of %s in %.2f s: partitions %s, %d documents; the "
                    "changelog after their offsets %s is replayed", time.strftime("%H:%M:%S",
                    time.localtime(found.taken)), time.perf_counter() - started, sorted(usable), len(self.index),
                    {p: c.offset for p, c in usable.items()})

    def _take_back(self, returned: dict[int, _Moved]) -> None:
        """Resume the suspended copies of partitions that came back, when the local store has
        kept up with them (see the module docstring)."""
        for partition, moved in returned.items():
            stored = self.stored_offset(partition)
            if stored is None or stored < moved.offset:
                logger.warning("partition %d came back, but its local store (changelog offset %s) is behind its "
                               "index copy (%d); building it from the store instead", partition, stored, moved.offset)
                self.index.drop_suspended(partition)
                continue
            documents = self.index.resume_partition(partition)
            self._resume(partition, moved.offset, moved.applied)
            logger.info("partition %d came back after %.1f s: %d documents taken back into the index; the changelog "
                        "after offset %d is replayed", partition, time.monotonic() - moved.since, documents,
                        moved.offset)

    def _resume(self, partition: int, offset: int, applied: Progress) -> None:
        """A slot for documents already in the index up to changelog ``offset``: recovery replays
        what came after it (see :meth:`_replay_from`) and completes the copy."""
        slot = self._slots[partition] = _Slot(partition, Lane(self._pool))
        slot.building, slot.offset, slot.applied = False, offset, applied
        self._rewound[partition] = offset
        self._restored.add(partition)

    def _save(self, snapshots: Snapshots) -> None:
        covered: dict[int, Covered] = {}

        def covering() -> dict[int, Covered]:
            for partition, slot in list(self._slots.items()):
                if slot.built and not slot.building and not slot.cancelled:
                    covered[partition] = Covered(slot.offset, progress.encode(slot.applied))
            if {p: c.offset for p, c in covered.items()} == self._saved:
                covered.clear()  # nothing moved since the last snapshot
            return covered

        started = time.perf_counter()
        size = snapshot.save(snapshots.directory, self.index, covering, snapshots.model_id)
        if size:
            self._saved = {p: c.offset for p, c in covered.items()}
            logger.info("index snapshot saved in %.2f s: partitions %s at changelog offsets %s, %.1f MB",
                        time.perf_counter() - started, sorted(covered), self._saved, size / 1e6)

    # ---- slots ------------------------------------------------------------------------

    def _lag(self, partition: int, slot: _Slot) -> int:
        """Changelog records of a standby partition not yet in the index, against the end offset the
        consumer last saw; before it has seen one, the lag is unknown and counts as very large."""
        try:
            highwater = self.app.consumer.highwater(TP(self.table.changelog_topic_name, partition))
        except (AssertionError, KeyError, RuntimeError):
            highwater = None
        return UNKNOWN_LAG if highwater is None else max(0, highwater - 1 - slot.offset)

    def _enqueue(self, partition: int, ops: list[Op], offset: int) -> Future[None] | None:
        slot = self._slots.get(partition)
        if slot is None:
            return None  # not held yet: the build reads RocksDB anyway
        with slot.lock:
            if slot.building:
                slot.pending.append((ops, offset))
                return None
        return slot.lane.submit(self._apply, slot, ops, offset)

    async def _close_slots(self, partitions: set[int], keep: bool = False) -> None:
        """Stop answering for ``partitions`` now and let running jobs end; then drop their
        documents, or with ``keep`` suspend those of built copies (see the module docstring)."""
        closed: dict[Future[None], tuple[_Slot, bool]] = {}
        for partition in partitions:
            slot = self._slots.pop(partition, None)
            self._restored.discard(partition)
            if slot is not None:
                with slot.lock:
                    built = slot.built
                    slot.cancelled = True
                    slot.built = False
                    slot.pending = []
                closed[slot.lane.idle()] = (slot, built)
        if not closed:
            return
        loop = asyncio.get_running_loop()
        done, running = await loop.run_in_executor(None, lambda: wait(closed, timeout=_MOVE_WAIT_SECONDS))
        if running:
            logger.warning("index jobs of partitions %s still ran %.0f s after the partitions moved",
                           sorted(closed[f][0].partition for f in running), _MOVE_WAIT_SECONDS)
        kept = [slot for future, (slot, built) in closed.items() if keep and built and future in done]
        dropped = [slot.partition for slot, _ in closed.values() if slot not in kept]

        def close() -> tuple[int, int]:
            return (sum(self.index.suspend_partition(slot.partition) for slot in kept),
                    sum(self.index.drop_partition(partition) for partition in dropped))
        suspended, removed = await loop.run_in_executor(self._pool, close)
        now = time.monotonic()
        self._moved.update({slot.partition: _Moved(slot.offset, slot.applied, now) for slot in kept})
        logger.info("partitions %s no longer held here: %d documents dropped from the index, %d of partitions %s "
                    "kept hidden for %.0f s in case they come back", sorted(dropped), removed, suspended,
                    sorted(slot.partition for slot in kept), self._keep_moved)

    def _apply(self, slot: _Slot, ops: list[Op], offset: int) -> None:
        with slot.lock:
            if slot.cancelled:
                return
            if slot.building:  # a rebuild started after this job was queued
                slot.pending.append((ops, offset))
                return
        try:
            self._take(slot, ops, offset)
        except Exception:
            logger.exception("partition %d: index update failed; rebuilding it from the local store",
                             slot.partition)
            self._rebuild(slot)

    def _take(self, slot: _Slot, ops: list[Op], offset: int) -> None:
        """Apply ``ops`` to the index and remember how far the partition's copy now is."""
        applied = apply_ops(self.index, slot.partition, ops)
        if applied is not None:
            slot.applied = applied
        slot.offset = max(slot.offset, offset)

    def _rebuild(self, slot: _Slot) -> None:
        with slot.lock:
            if slot.cancelled:
                return
            slot.built, slot.building, slot.pending = False, True, []
        slot.lane.submit(self._build_chunk, slot, None)

    def _build_chunk(self, slot: _Slot, after: bytes | None) -> None:
        """Insert the next :data:`BUILD_CHUNK` records after key ``after``; queue the next chunk or finish."""
        if slot.cancelled:
            return
        try:
            if after is None:
                self.index.drop_partition(slot.partition)
                self.index.reserve(self._estimated_documents(slot.partition))
            ops, last = self._read_chunk(slot.partition, after)
            if ops is None:
                logger.info("partition %d: its database is closed; build abandoned", slot.partition)
                return
            apply_ops(self.index, slot.partition, ops)
            if last is None:
                self._publish(slot)
        except Exception:
            logger.exception("partition %d: index build failed; retrying it from the start", slot.partition)
            self._rebuild(slot)
            return
        if last is not None:
            slot.lane.submit(self._build_chunk, slot, last)

    def _estimated_documents(self, partition: int) -> int:
        db = self._dbs.get(partition)
        estimate = db.property_int_value("rocksdb.estimate-num-keys") if db is not None else None
        return int(estimate or 0)

    def _read_chunk(self, partition: int, after: bytes | None) -> tuple[list[Op] | None, bytes | None]:
        """Up to :data:`BUILD_CHUNK` document records after ``after``, and the key to go on from
        (None at the end). The database handle is held only for this read; the progress record
        read with the first chunk tells how far the copy is."""
        db = self._dbs.get(partition)
        if db is None:
            return None, None
        ops: list[Op] = []
        last: bytes | None = None
        items = db.items(from_key=after) if after is not None else db.items()
        try:
            for key, value in items:
                if key == after or key == self.offset_key:
                    continue
                ops.append((key, value))
                if len(ops) == BUILD_CHUNK:
                    last = key
                    break
        finally:
            del items, db
        return ops, last

    def _publish(self, slot: _Slot) -> None:
        """Apply the writes that came during the build, then let the copy answer queries."""
        persisted = self.stored_offset(slot.partition)
        slot.offset = max(slot.offset, -1 if persisted is None else persisted)
        slot.applied = self.progress(slot.partition)
        while True:
            with slot.lock:
                if slot.cancelled:
                    return
                pending, slot.pending = slot.pending, []
                if not pending:
                    slot.built, slot.building = True, False
                    break
            for ops, offset in pending:
                self._take(slot, ops, offset)
        logger.info("partition %d: built into the index from the local store, %d documents",
                    slot.partition, self.index.count(slot.partition))


def apply_ops(index: VectorIndex, partition: int, ops: Iterable[Op]) -> Progress | None:
    """Apply table writes of ``partition`` to the index: upserts in bulk, deletes and tombstones in
    order. Returns the last progress record among them (it is not a document).

    Consecutive upserts go to ``upsert_many`` (hnswlib adds a batch on several threads);
    a delete flushes the upserts before it so the order of writes to one id is kept.
    """
    ids: list[str] = []
    vectors: list[Any] = []
    metadatas: list[Any] = []
    applied: Progress | None = None

    def flush() -> None:
        if ids:
            index.upsert_many(ids, np.stack(vectors), metadatas, partition)
            ids.clear(), vectors.clear(), metadatas.clear()

    for key, value in ops:
        if key == progress.KEY:
            applied = progress.decode(value)
            continue
        doc_id = key.decode()
        try:
            record = None if value is None else codec.decode(value)
        except codec.CodecError as exc:
            logger.error("partition %d, document %r: unreadable record skipped: %s", partition, doc_id, exc)
            continue
        if record is None or record.deleted:
            flush()
            index.delete(doc_id, partition)
        else:
            ids.append(doc_id)
            vectors.append(record.vector)
            metadatas.append(record.metadata)
    flush()
    return applied
