"""Feeding the worker's index from a store's partitions, off the event loop and in order.

Each partition's copy (:mod:`tables.copies`) gets a :class:`~tables.lanes.Lane`: its jobs run one
at a time in order, partitions in parallel on one shared pool. A build reads RocksDB in chunks,
each a lane job that takes the database handle when it runs and drops it when it ends, so a
queued build holds no handle, and a build of a partition that moves stops at its next chunk
(Faust can then reopen the partition's database without hitting its lock: a handle held by
queued work once made a revoke-and-return hit Faust's 30 × 1 s "is locked" retry and then stop,
docs/faust.md §8). Writes that arrive during a build wait in the copy and are applied
when it ends, in order. An index update that fails rebuilds the copy from the local store.

A store writes RocksDB and enqueues the same writes here inside :meth:`IndexFeed.storing`, and a
build reads the store's offset and progress record to publish under the same lock, so it never
sees a write that is in RocksDB but not yet waiting in the copy (review finding SP-17).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from index.ann.hnsw import VectorIndex
from index.model.embedder import usable_cores
from index.records import codec, progress
from index.records.progress import Progress
from tables.copies import Copies, CopyState, PartitionCopy, usable
from tables.lanes import Lane

logger = logging.getLogger(__name__)

Op = tuple[bytes, bytes | None]
BUILD_CHUNK = 1024
"""Records a build reads and inserts per lane job: the longest a build keeps a pool thread, and so
the longest it can delay another partition's writes."""
_MOVE_WAIT_SECONDS = 30.0


class Database(Protocol):
    """A partition's open RocksDB (rocksdict's ``Rdict``), as much as a build reads of it."""

    def items(self, from_key: Any = ...) -> Any: ...

    def property_int_value(self, name: str) -> int | None: ...


class Source(Protocol):
    """The store whose partitions the index reflects."""

    offset_key: bytes  # where RocksDB keeps the changelog offset (not a document)

    def stored_offset(self, partition: int) -> int | None: ...

    def progress(self, partition: int) -> Progress: ...

    def opened(self, partition: int) -> Database | None:
        """The partition's database if it is open (a build never opens one: Faust closes it on a move)."""


@dataclass(frozen=True)
class _Slot:
    """A copy and the lane its jobs run on (a new lane for each copy: a closed copy's jobs end on its own)."""

    copy: PartitionCopy[list[Op]]
    lane: Lane


class IndexFeed:
    """Builds, feeds, suspends and drops the copies of ``copies`` in ``index``, reading ``source``;
    a partition that moves away is kept suspended for ``keep_moved`` seconds (0: dropped at once)."""

    def __init__(self, index: VectorIndex, source: Source, copies: Copies[list[Op]], keep_moved: float = 0.0) -> None:
        self.index = index
        self.copies = copies
        self.keep_moved = keep_moved
        self._source = source
        self._slots: dict[int, _Slot] = {}
        self._storing = threading.Lock()  # a store's write to RocksDB and its enqueue, against a publish
        self.pool = ThreadPoolExecutor(max_workers=usable_cores(), thread_name_prefix="index")

    # ---- copies coming and going (on the loop, but take_back) -------------------------------

    def build(self, partition: int) -> None:
        """Build a new copy of ``partition`` from the local store (whose database must be open)."""
        slot = self._open(self.copies.build(partition))
        slot.lane.submit(self._build_chunk, slot, None)

    def restore(self, partition: int, offset: int, applied: Progress, until: int) -> None:
        """A copy whose documents are in the index up to ``offset``, over a local store at ``until``
        (see :meth:`Copies.restore`)."""
        self._open(self.copies.restore(partition, offset, applied, until))

    def take_back(self, returned: list[PartitionCopy[list[Op]]]) -> None:
        """Resume the suspended copies of partitions that came back, when the local store has kept
        up with them; else drop their nodes (the partition is then built). On a pool thread."""
        for copy in returned:
            stored = self._source.stored_offset(copy.partition)
            if stored is None or not usable(stored, copy.offset):
                logger.warning("partition %d came back, but its local store (changelog offset %s) is behind its "
                               "index copy (%d); building it from the store instead", copy.partition, stored,
                               copy.offset)
                copy.close()
                self.index.drop_suspended(copy.partition)
                continue
            documents = self.index.resume_partition(copy.partition)
            away = time.monotonic() - (copy.since or 0.0)
            self.copies.resume(copy, until=stored)
            self._open(copy)
            logger.info("partition %d came back after %.1f s: %d documents taken back into the index; the changelog "
                        "after offset %d is replayed, and it answers once it reached %d (its local store's)",
                        copy.partition, away, documents, copy.offset, stored)

    def _open(self, copy: PartitionCopy[list[Op]]) -> _Slot:
        slot = self._slots[copy.partition] = _Slot(copy, Lane(self.pool))
        return slot

    async def restored(self, partitions: set[int]) -> None:
        """Their recovery completed: once the replay queued for the restoring copies of ``partitions``
        is in the index, each serves if it has caught up with its store (see :meth:`PartitionCopy.restored`)."""
        restoring = [self._slots[copy.partition] for copy in self.copies.restoring(partitions)]
        if restoring:
            await asyncio.get_running_loop().run_in_executor(None, lambda: wait([s.lane.idle() for s in restoring]))
            for slot in restoring:
                slot.copy.restored()

    async def close(self, partitions: Iterable[int], keep: bool = False) -> None:
        """Stop answering for ``partitions`` now and let running jobs end; then drop their
        documents, or with ``keep`` suspend those of serving copies (see :mod:`tables.copies`)."""
        closed, done = await self._end_jobs(self.copies.close(partitions, keep=keep))
        if not closed:
            return
        loop = asyncio.get_running_loop()
        kept, dropped = [], []
        for future, copy in closed.items():
            if copy.state is CopyState.SUSPENDED and future in done:
                kept.append(copy)
            else:
                if copy.state is CopyState.SUSPENDED:
                    copy.close()  # its jobs still run: its nodes cannot be kept as they are
                dropped.append(copy.partition)

        def close() -> tuple[int, int]:
            return (sum(self.index.suspend_partition(copy.partition) for copy in kept),
                    sum(self.index.drop_partition(partition) for partition in dropped))
        suspended, removed = await loop.run_in_executor(self.pool, close)
        now = time.monotonic()
        for copy in kept:
            self.copies.suspended(copy, now)
        logger.info("partitions %s no longer held here: %d documents dropped from the index, %d of partitions %s "
                    "kept hidden for %.0f s in case they come back", sorted(dropped), removed, suspended,
                    sorted(copy.partition for copy in kept), self.keep_moved)

    async def expire(self) -> None:
        """Drop from the index the copies suspended more than ``keep_moved`` seconds ago."""
        expired = self.copies.expire(time.monotonic(), self.keep_moved)
        if not expired:
            return
        dropped = await asyncio.get_running_loop().run_in_executor(
            self.pool, lambda: sum(self.index.drop_suspended(p) for p in expired))
        logger.info("partitions %s did not come back within %.0f s: %d documents dropped from the index",
                    expired, self.keep_moved, dropped)

    async def stop(self) -> None:
        """Close every held copy, let its running job end, and end the pool (a clean stop).

        Their documents stay in the index, which goes with the process. Dropping them one partition
        at a time rebuilt the graph whenever deleted nodes outnumbered live ones: at 100,000
        documents in 8 partitions, about 50,000 re-inserts between SIGTERM and exit (review
        finding SP-14)."""
        await self._end_jobs(self.copies.close(set(self.copies.held())))
        self.pool.shutdown(wait=True, cancel_futures=False)

    async def _end_jobs(self, copies: list[PartitionCopy[list[Op]]]) -> tuple[dict[Future[None], PartitionCopy[list[Op]]],
                                                                                  set[Future[None]]]:
        """Forget the lanes of the closed ``copies`` and wait (at most ``_MOVE_WAIT_SECONDS``) for
        their queued jobs to end: each copy by its lane's last job, and the jobs that ended."""
        closed = {self._slots.pop(copy.partition).lane.idle(): copy for copy in copies}
        if not closed:
            return closed, set()
        done, running = await asyncio.get_running_loop().run_in_executor(
            None, lambda: wait(closed, timeout=_MOVE_WAIT_SECONDS))
        if running:
            logger.warning("index jobs of partitions %s still ran %.0f s after the partitions were closed",
                           sorted(closed[f].partition for f in running), _MOVE_WAIT_SECONDS)
        return closed, done

    # ---- writes (from the loop) ------------------------------------------------------------

    @contextmanager
    def storing(self) -> Iterator[None]:
        """Hold this while writing records to RocksDB and enqueueing them: a build publishes before
        or after, never between.

        A build publishes at the store's offset and progress record, and what it did not read
        must be waiting in the copy. A publish between a store's write and its enqueue marked the
        copy built with records the index lacked: a snapshot then saved claimed them, so a restart
        never replayed them, and ``after`` was satisfied early (review finding SP-17). The lock is
        held for a write batch on one side and two reads on the other."""
        with self._storing:
            yield

    def enqueue(self, partition: int, ops: list[Op], offset: int) -> Future[None] | None:
        """Index ``ops``, the writes of ``partition`` up to changelog ``offset``: the lane job's future,
        or None when the partition has no copy (its build reads RocksDB anyway) or is being built
        (the writes wait for the build)."""
        slot = self._slots.get(partition)
        if slot is None or not slot.copy.admit(ops, offset):
            return None
        return slot.lane.submit(self._apply, slot, ops, offset)

    # ---- lane jobs (on the pool) -------------------------------------------------------------

    def _apply(self, slot: _Slot, ops: list[Op], offset: int) -> None:
        if not slot.copy.admit(ops, offset):  # stopped, or a rebuild began after this job was queued
            return
        try:
            self._take(slot.copy, ops, offset)
        except Exception:
            logger.exception("partition %d: index update failed; rebuilding it from the local store",
                             slot.copy.partition)
            self._rebuild(slot)

    def _take(self, copy: PartitionCopy[list[Op]], ops: list[Op], offset: int) -> None:
        copy.took(offset, apply_ops(self.index, copy.partition, ops))

    def _rebuild(self, slot: _Slot) -> None:
        if slot.copy.rebuild():
            slot.lane.submit(self._build_chunk, slot, None)

    def _build_chunk(self, slot: _Slot, after: bytes | None) -> None:
        """Insert the next :data:`BUILD_CHUNK` records after key ``after``; queue the next chunk or finish."""
        partition = slot.copy.partition
        if slot.copy.stopped:
            return
        try:
            if after is None:
                self.index.drop_partition(partition)
                self.index.reserve(self._estimated_documents(partition))
            ops, last = self._read_chunk(partition, after)
            if ops is None:
                logger.info("partition %d: its database is closed; build abandoned", partition)
                return
            apply_ops(self.index, partition, ops)
            if last is None:
                self._publish(slot.copy)
        except Exception:
            logger.exception("partition %d: index build failed; retrying it from the start", partition)
            self._rebuild(slot)
            return
        if last is not None:
            slot.lane.submit(self._build_chunk, slot, last)

    def _estimated_documents(self, partition: int) -> int:
        db = self._source.opened(partition)
        estimate = db.property_int_value("rocksdb.estimate-num-keys") if db is not None else None
        return int(estimate or 0)

    def _read_chunk(self, partition: int, after: bytes | None) -> tuple[list[Op] | None, bytes | None]:
        """Up to :data:`BUILD_CHUNK` document records after ``after``, and the key to go on from
        (None at the end). The database handle is held only for this read; the progress record
        read with the first chunk tells how far the copy is."""
        db = self._source.opened(partition)
        if db is None:
            return None, None
        ops: list[Op] = []
        last: bytes | None = None
        items = db.items(from_key=after) if after is not None else db.items()
        try:
            for key, value in items:
                if key == after or key == self._source.offset_key:
                    continue
                ops.append((key, value))
                if len(ops) == BUILD_CHUNK:
                    last = key
                    break
        finally:
            del items, db
        return ops, last

    def _publish(self, copy: PartitionCopy[list[Op]]) -> None:
        """Apply the writes that came during the build, then let the copy answer queries."""
        with self._storing:  # every write the store holds is read by the build or waits in the copy (SP-17)
            copy.built(self._source.stored_offset(copy.partition), self._source.progress(copy.partition))
        while True:
            pending = copy.drain()
            if pending is None:
                return
            if not pending:
                break
            for ops, offset in pending:
                self._take(copy, ops, offset)
        logger.info("partition %d: built into the index from the local store, %d documents",
                    copy.partition, self.index.count(copy.partition))


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
