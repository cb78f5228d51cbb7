"""The vectors table: document records by id, with their partition indexes.

The table is a plain Faust table with raw bytes keys and values (records are encoded by
:mod:`index.records.codec`); only its store is special (:class:`tables.indexed_store.IndexedStore`),
and it shares the worker's one :class:`~index.ann.hnsw.VectorIndex` with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

import faust
import numpy as np

from index.records import codec
from index.ann.filters import Predicate
from index.ann.hnsw import Hit, VectorIndex
from index.records.progress import Progress
from tables.changelog_reader import ChangelogReader
from tables.index_snapshots import Snapshots
from tables.indexed_store import Copy, IndexedStore, OnRecovered
from tables.ordered_store import store_for

TABLE_NAME = "vectors"


def raw_bytes() -> faust.Schema:
    """Bytes in, bytes out for a topic: keys are document ids as UTF-8, values JSON we parse.

    A new Schema per use: Faust changes a schema it is given, so a table and a topic that
    shared one instance ended up decoding the topic's keys as JSON (seen with 0.15.3).
    """
    return faust.Schema(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")


class VectorTable(faust.Table):
    """A Faust table whose store feeds the worker's index (see :mod:`tables.indexed_store`)."""

    def __init__(self, app: faust.App, *, index: VectorIndex, reader: ChangelogReader,
                 snapshots: Snapshots | None = None, keep_moved: float = 0.0, **kwargs: Any) -> None:
        self.index = index
        self.reader = reader
        self.snapshots = snapshots
        self.keep_moved = keep_moved
        self._on_recovered: list[OnRecovered] = []
        # bytes types make Faust pick the "raw" codec for the store and the changelog.
        super().__init__(app, name=TABLE_NAME, key_type=bytes, value_type=bytes, **kwargs)

    def _new_store(self) -> IndexedStore:
        return store_for(self, IndexedStore, index=self.index, reader=self.reader, snapshots=self.snapshots,
                         keep_moved=self.keep_moved, on_recovered=self._recovered)

    def on_actives_recovered(self, callback: OnRecovered) -> None:
        """Call ``callback`` with the active partitions at the end of every rebalance's recovery,
        before Faust seeks the input partitions (the ingest agent commits where it resumes)."""
        self._on_recovered.append(callback)

    async def _recovered(self, actives: set[int]) -> None:
        for callback in self._on_recovered:
            await callback(actives)

    @property
    def store(self) -> IndexedStore:
        return self.data  # type: ignore[no-any-return]

    def copies(self) -> dict[int, Copy]:
        """The partitions this worker holds, active or standby, with their state."""
        return self.store.copies()

    def actives(self) -> set[int]:
        """The partitions this worker consumes whose index is built."""
        return {p for p, copy in self.copies().items() if copy.active and copy.built}

    def actives_built(self) -> bool:
        """Every partition this worker consumes is built into the index (standbys aside)."""
        return all(copy.built for copy in self.copies().values() if copy.active)

    def record_in(self, partition: int, doc_id: str) -> codec.Record | None:
        """The stored record of ``doc_id`` in ``partition`` (a partition this worker holds),
        tombstones included: deletes keep their version."""
        data = self.store.read(partition, doc_id.encode())
        return None if data is None else codec.decode(data)

    def stored(self, partition: int, doc_id: str) -> codec.Record | None:
        """The live record of ``doc_id`` in ``partition``, which this worker must hold (an agent of a
        topic co-partitioned with the table reads the partition of its current event)."""
        record = self.record_in(partition, doc_id)
        return None if record is None or record.deleted else record

    def documents(self, ids: Sequence[str], partitions: set[int]) -> dict[str, tuple[int, codec.Record]]:
        """The live documents among ``ids`` in ``partitions``, with the partition each is in."""
        found = {}
        for doc_id in dict.fromkeys(ids):
            for partition in sorted(partitions):
                record = self.stored(partition, doc_id)
                if record is not None:
                    found[doc_id] = (partition, record)
                    break
        return found

    def progress(self, partition: int) -> Progress:
        """What ingest has done in ``partition`` (an active partition of this worker)."""
        return self.store.progress(partition)

    def commit(self, partition: int, writes: Sequence[tuple[bytes, bytes]],
               changelog_offset: int) -> Future[None] | None:
        """Store and index records the changelog acknowledged (see :meth:`IndexedStore.commit`)."""
        return self.store.commit(partition, writes, changelog_offset)

    def search(self, queries: np.ndarray, k: int, ef: int | None, predicate: Predicate | None,
               partitions: set[int]) -> list[list[Hit]]:
        """Search the index for each query row, limited to ``partitions`` (call it off the loop for
        anything but a single query: hnswlib releases the GIL)."""
        return self.index.search_many(queries, k, ef=ef, predicate=predicate, partitions=partitions)

    def counts(self, partitions: set[int]) -> dict[int, int]:
        """Live documents per partition."""
        return {p: self.index.count(p) for p in sorted(partitions)}


def keep_standbys_fresh(app: faust.App, every: float) -> None:
    """Apply buffered changelog records every ``every`` seconds.

    Faust buffers a standby's changelog records and writes them only when 1,000 have
    arrived (``standby_buffer_size``), so a standby of a quiet partition could lag for ever;
    a warm standby that answers queries must not.
    """
    @app.timer(every)
    async def flush_changelog_buffers() -> None:
        app.tables.recovery.flush_buffers()


def forget_moved_partitions(app: faust.App, table: VectorTable, every: float) -> None:
    """Every ``every`` seconds, drop from the index the partitions that moved away and did not come
    back within ``keep_moved`` (see :mod:`tables.indexed_store`)."""
    @app.timer(every)
    async def forget_moved() -> None:
        await table.store.forget_moved()


def keep_snapshots(app: faust.App, table: VectorTable, every: float) -> None:
    """Save the index every ``every`` seconds when it moved on (and at a clean stop, see
    :meth:`IndexedStore.stop`), so a restart loads it instead of building."""
    @app.timer(every)
    async def snapshot_index() -> None:
        await table.store.snapshot()
