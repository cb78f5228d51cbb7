"""A RocksDB table store that keeps one HNSW index per owned partition, in step with the changelog.

Data reaches a partition through three doors (notes/faust-internals.md §2.5), and each reaches its
index too:

* :meth:`IndexedStore.commit`: the ingest agent's batches, written here only after the changelog
  acknowledged them. Records, the partition's progress record and the changelog offset go into
  RocksDB in one write batch, so the local store is never ahead of the changelog, and a restart
  replays exactly what it lacks (Faust recovers from the persisted offset);
* ``apply_changelog_batch``: changelog replay during recovery, and standby updates;
* ``on_recovery_completed``: the end of every rebalance, when the partitions this worker owns are
  known. A newly owned partition's index is built from its local RocksDB there, because recovery
  replays only what came after the persisted offset.

Index work never runs on the event loop. Each partition has a slot with a :class:`Lane`: its jobs
run one at a time in order, partitions in parallel on one shared pool. A build reads RocksDB in
chunks, each a lane job that takes the database handle when it runs and drops it when it ends, so
a queued build holds no handle, and a build of a partition that moves stops at its next chunk
(Faust can then reopen the partition's database without hitting its lock). Writes that arrive
during a build wait in the slot and are applied when it ends, in order. A slot's state changes
under the slot's lock; the loop only reads the published index.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

import numpy as np
from faust.stores.rocksdb import Store
from faust.types import TP, EventT
from rocksdict import WriteBatch

from index import codec, progress
from index.partition import PartitionIndex
from tables.lanes import Lane

logger = logging.getLogger(__name__)

IndexFactory = Callable[[], PartitionIndex]
Op = tuple[bytes, bytes | None]
BUILD_CHUNK = 1024
"""Records a build reads and inserts per lane job: the longest a build keeps a pool thread, and so
the longest it can delay another partition's writes."""
_MOVE_WAIT_SECONDS = 30.0


class _Slot:
    """One partition's index on this worker: being built, or published and fed in order."""

    def __init__(self, partition: int, lane: Lane, building: PartitionIndex) -> None:
        self.partition = partition
        self.lane = lane
        self.lock = threading.Lock()
        self.index: PartitionIndex | None = None  # published: answers queries
        self.building: PartitionIndex | None = building  # filled by the build's chunks
        self.pending: list[Op] = []  # writes that arrived during the build
        self.cancelled = False


class IndexedStore(Store):
    """Faust's RocksDB store plus partition indexes; see the module docstring for the flow."""

    def __init__(self, *args: Any, index_factory: IndexFactory, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._index_factory = index_factory
        self._slots: dict[int, _Slot] = {}
        self._pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="index")

    # ---- what the web layer and the ingest agent read ------------------------------------

    def serving(self) -> dict[int, PartitionIndex]:
        """Indexes that answer queries: built, owned, and still in the group's latest assignment.

        The assignment check matters between a new assignment and the end of its recovery:
        a partition that just moved away must not be answered from a copy that no longer
        receives writes.
        """
        assigned = {tp.partition for tp in self.app.assignor.assigned_actives()
                    if tp.topic in self.table.changelog_topic.topics}
        return {p: slot.index for p, slot in list(self._slots.items())
                if slot.index is not None and p in assigned}

    @property
    def ready(self) -> bool:
        """Every owned partition's index is built."""
        return all(slot.index is not None for slot in list(self._slots.values()))

    def read(self, partition: int, key: bytes) -> bytes | None:
        """``key`` as stored in ``partition``'s RocksDB (an active partition of this worker)."""
        return self._db_for_partition(partition).get(key)

    def progress(self, partition: int) -> progress.Progress:
        """What ingest has done in ``partition`` so far (see :mod:`index.progress`)."""
        return progress.decode(self.read(partition, progress.KEY))

    def get_owned(self, key: bytes) -> bytes | None:
        """Read ``key`` from the partitions this worker serves (standby copies are not answers)."""
        for partition in sorted(self.serving()):
            db = self._dbs.get(partition)
            value = None if db is None else db.get(key)
            if value is not None:
                return value
        return None

    # ---- the ingest agent's door ---------------------------------------------------------

    def commit(self, partition: int, writes: Sequence[tuple[bytes, bytes]], changelog_offset: int) -> Future[None] | None:
        """Store records the changelog has acknowledged up to ``changelog_offset``, then index them.

        One RocksDB write batch holds the records and the new persisted offset, so after any
        crash the store is at a changelog offset and recovery replays what comes after it.
        Returns the index job's future, or None while the partition's index is being built (the
        writes are applied when the build ends).
        """
        batch = WriteBatch(raw_mode=True)
        for key, value in writes:
            batch.put(key, value)
        batch.put(self.offset_key, str(changelog_offset).encode())
        self._db_for_partition(partition).write(batch)
        return self._enqueue(partition, writes)

    def _set(self, key: bytes, value: bytes | None) -> None:
        raise TypeError("the vectors table is written only through IndexedStore.commit, after the changelog "
                        "acknowledged the records; table[key] = value would write RocksDB first")

    def _del(self, key: bytes) -> None:
        raise TypeError("the vectors table is written only through IndexedStore.commit; deletes are tombstone records")

    # ---- Faust hooks ------------------------------------------------------------------

    def apply_changelog_batch(
        self, batch: Iterable[EventT], to_key: Callable[[Any], Any], to_value: Callable[[Any], Any]
    ) -> None:
        events = list(batch)
        super().apply_changelog_batch(events, to_key, to_value)
        by_partition: dict[int, list[Op]] = {}
        for event in events:
            by_partition.setdefault(event.message.partition, []).append((event.message.key, event.message.value))
        for partition, ops in by_partition.items():
            self._enqueue(partition, ops)

    async def on_rebalance(
        self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP], generation_id: int = 0
    ) -> None:
        # Stop what runs for the revoked partitions first: Faust drops their databases next, and
        # a build still reading one would keep its lock.
        lost = {tp.partition for tp in revoked if tp.topic in self.table.changelog_topic.topics}
        await self._close_slots(lost)
        if lost:
            logger.info("partitions %s revoked: their indexes are dropped", sorted(lost))
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        await super().on_recovery_completed(active_tps, standby_tps)
        topics = self.table.changelog_topic.topics
        owned = {tp.partition for tp in active_tps if tp.topic in topics}
        await self._read_from_progress(owned)
        await self._close_slots(set(self._slots) - owned)
        to_build = sorted(owned - set(self._slots))
        for partition in to_build:
            slot = self._slots[partition] = _Slot(partition, Lane(self._pool), self._index_factory())
            slot.lane.submit(self._build_chunk, slot, None)
        logger.info("recovery completed: serving partitions %s, building %s", sorted(owned), to_build)

    async def _read_from_progress(self, partitions: set[int]) -> None:
        """Commit, for each input partition, the first offset its progress record says is not done.

        Faust seeks every input partition to its committed offset right after this. Its own
        commits can be past events it never delivered (after a seek it counts a jump in offsets
        as done), so ingest starts from what the changelog says it did instead.
        """
        offsets = {TP(topic, partition): offset for partition in partitions
                   for topic, offset in self.progress(partition).next.items()}
        if not offsets:
            return
        try:
            await self.app.consumer._commit(offsets)  # noqa: SLF001 — Faust has no public commit of given offsets
        except Exception:
            logger.exception("partitions %s: committing the offsets of their progress records failed; ingest "
                             "reads on from the group's own commits", sorted(partitions))

    async def stop(self) -> None:
        await self._close_slots(set(self._slots))
        self._pool.shutdown(wait=True, cancel_futures=False)
        await super().stop()

    # ---- slots ------------------------------------------------------------------------

    def _enqueue(self, partition: int, ops: list[Op] | Sequence[tuple[bytes, bytes]]) -> Future[None] | None:
        slot = self._slots.get(partition)
        if slot is None:
            return None  # a standby partition, or one whose build reads RocksDB anyway
        with slot.lock:
            if slot.building is not None:
                slot.pending.extend(ops)
                return None
        return slot.lane.submit(self._apply, slot, list(ops))

    async def _close_slots(self, partitions: set[int]) -> None:
        """Stop serving ``partitions`` now, and wait until no job of theirs runs any more."""
        idle: list[Future[None]] = []
        for partition in partitions:
            slot = self._slots.pop(partition, None)
            if slot is not None:
                with slot.lock:
                    slot.cancelled = True
                    slot.index = slot.building = None
                    slot.pending = []
                idle.append(slot.lane.idle())
        if idle:
            done, running = await asyncio.get_running_loop().run_in_executor(
                None, lambda: wait(idle, timeout=_MOVE_WAIT_SECONDS))
            if running:
                logger.warning("index jobs of partitions %s still ran %.0f s after the partitions moved",
                               sorted(partitions), _MOVE_WAIT_SECONDS)

    def _apply(self, slot: _Slot, ops: list[Op]) -> None:
        with slot.lock:
            if slot.cancelled:
                return
            if slot.building is not None:  # a rebuild started after this job was queued
                slot.pending.extend(ops)
                return
            index = slot.index
        assert index is not None
        try:
            apply_ops(index, ops)
        except Exception:
            logger.exception("partition %d: index update failed; rebuilding the index from the local store",
                             slot.partition)
            self._rebuild(slot)

    def _rebuild(self, slot: _Slot) -> None:
        with slot.lock:
            if slot.cancelled:
                return
            slot.index, slot.building, slot.pending = None, self._index_factory(), []
        slot.lane.submit(self._build_chunk, slot, None)

    def _build_chunk(self, slot: _Slot, after: bytes | None) -> None:
        """Insert the next :data:`BUILD_CHUNK` records after key ``after``; queue the next chunk or finish."""
        with slot.lock:
            index = slot.building
        if slot.cancelled or index is None:
            return
        ops, last = self._read_chunk(slot.partition, after)
        if ops is None:
            logger.info("partition %d: its database is closed; build abandoned", slot.partition)
            return
        try:
            apply_ops(index, ops)
            if last is None:
                self._publish(slot, index)
        except Exception:
            logger.exception("partition %d: index build failed; retrying it from the start", slot.partition)
            self._rebuild(slot)
            return
        if last is not None:
            slot.lane.submit(self._build_chunk, slot, last)

    def _read_chunk(self, partition: int, after: bytes | None) -> tuple[list[Op] | None, bytes | None]:
        """Up to :data:`BUILD_CHUNK` document records after ``after``, and the key to go on from
        (None at the end). The database handle is held only for this read."""
        db = self._dbs.get(partition)
        if db is None:
            return None, None
        ops: list[Op] = []
        last: bytes | None = None
        items = db.items(from_key=after) if after is not None else db.items()
        try:
            for key, value in items:
                if key == after or key == self.offset_key or key == progress.KEY:
                    continue
                ops.append((key, value))
                if len(ops) == BUILD_CHUNK:
                    last = key
                    break
        finally:
            del items, db
        return ops, last

    def _publish(self, slot: _Slot, index: PartitionIndex) -> None:
        """Apply the writes that came during the build, then let the index answer queries."""
        while True:
            with slot.lock:
                if slot.cancelled:
                    return
                pending, slot.pending = slot.pending, []
                if not pending:
                    slot.index, slot.building = index, None
                    break
            apply_ops(index, pending)
        logger.info("partition %d: index built from the local store, %d documents", slot.partition, len(index))


def apply_ops(index: PartitionIndex, ops: Iterable[Op]) -> None:
    """Apply table writes to an index: upserts in bulk, deletes and tombstones in order.

    Consecutive upserts go to ``upsert_many`` (hnswlib adds a batch on several threads);
    a delete flushes the upserts before it so the order of writes to one id is kept.
    The progress record is not a document and is skipped.
    """
    ids: list[str] = []
    vectors: list[Any] = []
    metadatas: list[Any] = []

    def flush() -> None:
        if ids:
            index.upsert_many(ids, np.stack(vectors), metadatas)
            ids.clear(), vectors.clear(), metadatas.clear()

    for key, value in ops:
        if key == progress.KEY:
            continue
        doc_id = key.decode()
        try:
            record = None if value is None else codec.decode(value)
        except codec.CodecError as exc:
            logger.error("document %r: unreadable record skipped: %s", doc_id, exc)
            continue
        if record is None or record.deleted:
            flush()
            index.delete(doc_id)
        else:
            ids.append(doc_id)
            vectors.append(record.vector)
            metadatas.append(record.metadata)
    flush()
