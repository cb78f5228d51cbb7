"""A RocksDB table store that keeps one HNSW index per actively owned partition.

Faust writes table data through three doors, and each must reach the index
(notes/faust-internals.md §2.5):

* ``_set``/``_del``: the ingest agent's own writes;
* ``apply_changelog_batch``: changelog replay during recovery (and standby updates);
* ``on_recovery_completed``: the end of every rebalance, when the partitions this worker
  owns are known. A newly owned partition's index is built from its local RocksDB there,
  because recovery replays only what came after the persisted offset.

Index work never runs on the event loop. Every mutation is queued and applied, in order,
by one writer thread; a build is just another job in that queue, so no write can slip
between "read RocksDB" and "install the index". Searches run in a separate pool under
each index's own lock.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
from faust.stores.rocksdb import Store
from faust.streams import current_event
from faust.types import TP, EventT

from index import codec
from index.partition import PartitionIndex

logger = logging.getLogger(__name__)

IndexFactory = Callable[[], PartitionIndex]
_Op = tuple[bytes, bytes | None]


class IndexedStore(Store):
    """Faust's RocksDB store plus partition indexes; see the module docstring for the flow."""

    def __init__(self, *args: Any, index_factory: IndexFactory, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._index_factory = index_factory
        self.indexes: dict[int, PartitionIndex] = {}
        self._owned: set[int] = set()
        self._pending: dict[int, list[_Op]] = defaultdict(list)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="index-writer")
        self._last_job: Future[None] | None = None
        # A partition's epoch changes each time this worker loses it, so a build that was
        # started before the loss can tell that its result is out of date.
        self._epoch: dict[int, int] = defaultdict(int)
        self._building: dict[int, int] = {}

    # ---- what the web layer reads --------------------------------------------------

    def serving(self) -> dict[int, PartitionIndex]:
        """Indexes that answer queries: built, owned, and still in the group's latest assignment.

        The assignment check matters between a new assignment and the end of its recovery:
        a partition that just moved away must not be answered from a copy that no longer
        receives writes.
        """
        assigned = {tp.partition for tp in self.app.assignor.assigned_actives()
                    if tp.topic in self.table.changelog_topic.topics}
        return {p: index for p, index in list(self.indexes.items()) if p in self._owned and p in assigned}

    @property
    def ready(self) -> bool:
        """Every owned partition's index is built."""
        return not self._building and self._owned <= set(self.indexes)

    def get_owned(self, key: bytes) -> bytes | None:
        """Read ``key`` from the partitions this worker serves (standby copies are not answers)."""
        for partition in sorted(self.serving()):
            db = self._dbs.get(partition)
            value = None if db is None else db.get(key)
            if value is not None:
                return value
        return None

    def read(self, partition: int, key: bytes) -> bytes | None:
        """``key`` as stored in ``partition``'s RocksDB (an active partition of this worker)."""
        return self._db_for_partition(partition).get(key)

    async def synced(self) -> None:
        """Wait until every write made so far is in the indexes (backpressure for ingest)."""
        self._flush()
        if self._last_job is not None:
            await asyncio.wrap_future(self._last_job)

    # ---- Faust hooks ------------------------------------------------------------------

    def _set(self, key: bytes, value: bytes | None) -> None:
        super()._set(key, value)
        self._enqueue(self._event_partition(), key, value)

    def _del(self, key: bytes) -> None:
        super()._del(key)
        self._enqueue(self._event_partition(), key, None)

    def apply_changelog_batch(
        self, batch: Iterable[EventT], to_key: Callable[[Any], Any], to_value: Callable[[Any], Any]
    ) -> None:
        events = list(batch)
        super().apply_changelog_batch(events, to_key, to_value)
        for event in events:
            self._enqueue(event.message.partition, event.message.key, event.message.value)

    async def on_rebalance(
        self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP], generation_id: int = 0
    ) -> None:
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
        lost = {tp.partition for tp in revoked if tp.topic in self.table.changelog_topic.topics}
        if lost:
            self._release(lost)
            logger.info("partitions %s revoked: their indexes are dropped", sorted(lost))

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        await super().on_recovery_completed(active_tps, standby_tps)
        topics = self.table.changelog_topic.topics
        owned = {tp.partition for tp in active_tps if tp.topic in topics}
        self._release(self._owned - owned)
        to_build = owned - set(self.indexes) - set(self._building)
        self._owned = owned
        for partition in sorted(to_build):
            epoch = self._building[partition] = self._epoch[partition]
            self._submit(self._build, partition, self._db_for_partition(partition), epoch)
        logger.info("recovery completed: serving partitions %s, building %s", sorted(owned), sorted(to_build))

    async def stop(self) -> None:
        self._writer.shutdown(wait=True, cancel_futures=False)
        await super().stop()

    # ---- the writer queue -------------------------------------------------------------

    @staticmethod
    def _event_partition() -> int:
        event = current_event()
        if event is None:
            raise RuntimeError("vectors table written outside an agent event; Faust needs the source partition")
        return event.message.partition

    def _enqueue(self, partition: int, key: bytes, value: bytes | None) -> None:
        if partition not in self._owned:
            return  # a standby partition, or one the next build reads from RocksDB anyway
        if not self._pending:
            asyncio.get_event_loop().call_soon(self._flush)
        self._pending[partition].append((key, value))

    def _flush(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, defaultdict(list)
            self._last_job = self._writer.submit(self._apply, pending)

    def _submit(self, job: Callable[..., None], *args: Any) -> None:
        self._flush()
        self._last_job = self._writer.submit(job, *args)

    def _apply(self, pending: dict[int, list[_Op]]) -> None:
        for partition, ops in pending.items():
            index = self.indexes.get(partition)
            if index is not None:
                apply_ops(index, ops)

    def _release(self, partitions: set[int]) -> None:
        """Stop serving ``partitions`` now; a build still running for one is discarded."""
        self._owned -= partitions
        for partition in partitions:
            self._epoch[partition] += 1
            self._building.pop(partition, None)
            self.indexes.pop(partition, None)

    def _build(self, partition: int, db: Any, epoch: int) -> None:
        index = self._index_factory()
        try:
            apply_ops(index, self._visible_items(db))
        except Exception:
            logger.exception("partition %d: index build failed; the next rebalance retries it", partition)
            self._building.pop(partition, None)
            raise
        if self._epoch[partition] != epoch:
            logger.info("partition %d: moved away during its index build; build discarded", partition)
            return
        self.indexes[partition] = index
        if self._building.get(partition) == epoch:
            del self._building[partition]
        logger.info("partition %d: index built from the local store, %d documents", partition, len(index))


def apply_ops(index: PartitionIndex, ops: Iterable[_Op]) -> None:
    """Apply table writes to an index: upserts in bulk, deletes and tombstones in order.

    Consecutive upserts go to ``upsert_many`` (hnswlib adds a batch on several threads);
    a delete flushes the upserts before it so the order of writes to one id is kept.
    """
    ids: list[str] = []
    vectors: list[Any] = []
    metadatas: list[Any] = []

    def flush() -> None:
        if ids:
            index.upsert_many(ids, np.stack(vectors), metadatas)
            ids.clear(), vectors.clear(), metadatas.clear()

    for key, value in ops:
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

