"""The vectors table: document records by id, with their partition indexes.

The table is a plain Faust table with raw bytes keys and values (records are encoded by
:mod:`index.codec`); only its store is special (:class:`tables.indexed_store.IndexedStore`).
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any

import faust
import numpy as np
from yarl import URL

from index import codec
from index.filters import Predicate
from index.partition import Hit, PartitionIndex
from index.progress import Progress
from tables.indexed_store import IndexFactory, IndexedStore

TABLE_NAME = "vectors"


def raw_bytes() -> faust.Schema:
    """Bytes in, bytes out for a topic: keys are document ids as UTF-8, values JSON we parse.

    A new Schema per use: Faust changes a schema it is given, so a table and a topic that
    shared one instance ended up decoding the topic's keys as JSON (seen with 0.15.3).
    """
    return faust.Schema(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")


@dataclass(frozen=True)
class LocalResult:
    """What this worker's indexes answered: per query, hits best first; and which partitions
    were searched."""

    hits: list[list[Hit]]
    partitions: list[int]


class VectorTable(faust.Table):
    """A Faust table whose store keeps one HNSW index per owned partition."""

    def __init__(self, app: faust.App, *, index_factory: IndexFactory, **kwargs: Any) -> None:
        self._index_factory = index_factory
        # bytes types make Faust pick the "raw" codec for the store and the changelog.
        super().__init__(app, name=TABLE_NAME, key_type=bytes, value_type=bytes, **kwargs)

    def _new_store(self) -> IndexedStore:
        # Per-table store URLs are broken in Faust 0.15 (notes/faust-internals.md §2.1),
        # so the store class is chosen here instead of by URL.
        return IndexedStore(
            URL("rocksdb://"), self.app, self, table_name=self.name,
            key_type=self.key_type, key_serializer=self.key_serializer,
            value_type=self.value_type, value_serializer=self.value_serializer,
            options=self.options, index_factory=self._index_factory,
        )

    @property
    def store(self) -> IndexedStore:
        return self.data  # type: ignore[no-any-return]

    def record(self, doc_id: str) -> codec.Record | None:
        """The stored record of ``doc_id`` if an owned partition holds it and it is not deleted."""
        data = self.store.get_owned(doc_id.encode())
        record = None if data is None else codec.decode(data)
        return None if record is None or record.deleted else record

    def record_in(self, partition: int, doc_id: str) -> codec.Record | None:
        """The stored record of ``doc_id`` in ``partition`` (an active partition of this worker),
        tombstones included: deletes keep their version."""
        data = self.store.read(partition, doc_id.encode())
        return None if data is None else codec.decode(data)

    def stored(self, partition: int, doc_id: str) -> codec.Record | None:
        """The live record of ``doc_id`` in ``partition``, which this worker must own (an agent of a
        topic co-partitioned with the table reads the partition of its current event)."""
        record = self.record_in(partition, doc_id)
        return None if record is None or record.deleted else record

    def progress(self, partition: int) -> Progress:
        """What ingest has done in ``partition`` (an active partition of this worker)."""
        return self.store.progress(partition)

    def commit(self, partition: int, writes: Sequence[tuple[bytes, bytes]],
               changelog_offset: int) -> Future[None] | None:
        """Store and index records the changelog acknowledged (see :meth:`IndexedStore.commit`)."""
        return self.store.commit(partition, writes, changelog_offset)

    def outcomes(self) -> dict[int, dict[str, Any]]:
        """Each served partition's outcome counts since the app id's first event (durable)."""
        return {partition: self.store.progress(partition).counts() for partition in sorted(self.store.serving())}

    async def search_local(self, queries: np.ndarray, k: int, ef: int | None, predicate: Predicate | None,
                           pool: Executor, threads: int) -> LocalResult:
        """Search every owned, built partition for each query row and merge once.

        The partitions are split over ``threads`` pool jobs that run in parallel (hnswlib
        releases the GIL); one job per partition would cost a thread hand-off and a loop
        wake-up each, which measured more than a small partition's search."""
        serving = self.store.serving()
        indexes = list(serving.values())
        loop = asyncio.get_running_loop()

        def search(share: list[PartitionIndex]) -> list[list[list[Hit]]]:
            return [index.search_many(queries, k, ef=ef, predicate=predicate) for index in share]

        shares = [indexes[i::threads] for i in range(min(threads, len(indexes)))]
        answers = [answer for share in await asyncio.gather(*(loop.run_in_executor(pool, search, s) for s in shares))
                   for answer in share]
        hits = [merge_hits([answer[row] for answer in answers], k) for row in range(len(queries))]
        return LocalResult(hits=hits, partitions=sorted(serving))

    def counts(self) -> dict[int, int]:
        """Live documents per owned partition index."""
        return {p: len(index) for p, index in sorted(self.store.serving().items())}


def merge_hits(lists: list[list[Hit]], k: int) -> list[Hit]:
    """Global top-k of per-partition answers; one id counts once (it can briefly live in two
    partitions' answers while a partition moves between workers)."""
    seen: set[str] = set()
    merged: list[Hit] = []
    for hit in heapq.merge(*lists, key=lambda h: -h.score):
        if hit.id not in seen:
            seen.add(hit.id)
            merged.append(hit)
            if len(merged) == k:
                break
    return merged


