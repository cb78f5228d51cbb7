"""One HNSW index for every partition a worker holds: hnswlib, cosine space, string ids.

Why one index and not one per partition: a query must see every partition, and searching
eight graphs of 12,500 vectors cost 5.4 to 7.4 times one graph of 100,000 at recall@10 0.95
(bench-query's layout table, WordNet and Debian; hnswlib's cost grows with the log of the
graph's size, and each search pays its fixed part). The
partition stays the unit of recovery and of answers: every document carries its partition,
a partition is added by inserting its documents and dropped by deleting them, and a search
can be limited to some partitions (those this worker may answer for).

hnswlib facts this module is built around (v0.8.0):

* ``add_items``/``mark_deleted``/``resize_index`` must not overlap ``knn_query``, while
  ``knn_query`` calls may overlap one another. A readers-writer lock enforces exactly that,
  so searches run in parallel in a thread pool (hnswlib releases the GIL) and writes are
  exclusive. Writers hold it for at most :data:`WRITE_SLICE` inserts at a time, so a long
  build or a bulk load delays a query by one slice, not by all of it.
* Labels are ints. Each new document gets a fresh label; a deleted document's node stays in
  the graph, marked deleted (hnswlib has no real delete), and is never reused. Re-adding a
  deleted label (what hnswlib's ``allow_replace_deleted`` does too) moves the node with an in-place
  update that only repairs the links of its old neighbours: nodes that had linked to it since it
  was deleted keep links chosen for its old vector. After a partition was dropped and built
  again into its freed labels, 3.5 to 6.5% of the rebuilt documents were no longer the first
  hit for their own vector at ef 40 (2,000 documents, half rebuilt; 0 with fresh labels, and 0
  after in-place updates of 400 live documents). So deleted nodes pile up instead, and once
  they outnumber the documents (and :data:`_COMPACT_MIN`), :meth:`VectorIndex.compact` builds
  the graph again from the documents alone: searches go on meanwhile, writes wait.
* A delete mark only hides a node: its links stay. So a partition that moves away can be
  suspended (every node marked, labels kept) and resumed by clearing the marks, with no insert
  and no graph repair, if it comes back.
* ``knn_query`` raises when it finds fewer than k results; searches clamp k to the live count
  and fall back to an exact scan when the graph still comes up short.
* hnswlib's ``ef`` is index-wide state (``set_ef``), which concurrent searches with different
  ``ef`` would race on. It is fixed at 1 and a search asks for ``max(ef, k)`` results instead
  (hnswlib searches with ``max(ef_, k)``), which is the same search, then keeps the best k.

Memory per document beyond hnswlib's own (vector, links, label map): the id string, one
entry in its partition's id map, the label's partition (2 bytes) and the metadata as compact
JSON bytes (one shared object for the common empty metadata). Metadata is decoded only for
filters and hits.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import hnswlib
import numpy as np
import orjson

from index.exceptions import VectorError
from index.ann.filters import Predicate

__all__ = ["Hit", "VectorIndex"]

_TOO_FEW_RESULTS = "Cannot return the results in a contiguous 2D array"
_SAMPLE_SIZE = 256
_EXACT_FACTOR = 4
_SAME_VECTOR_TOLERANCE = 1e-5
_COMPACT_MIN = 2048
"""Deleted nodes a graph keeps before it may be compacted, however few its documents."""
_NO_METADATA = orjson.dumps({})
_FREE = -1
WRITE_SLICE = 256
"""Most documents inserted under one hold of the write lock."""
_GROWTH = 1.25
"""Capacity grows by this factor (not doubling), so a grown index wastes at most a quarter."""


@dataclass(frozen=True)
class Hit:
    """One search result; ``score`` is the cosine similarity (1 is identical). The index fills
    ``metadata``; ``text`` comes from the stored record when a caller asks for it."""

    id: str
    score: float
    partition: int
    metadata: Mapping[str, Any] | None
    text: str | None = None


class _ReadWriteLock:
    """Many readers or one writer; a waiting writer blocks new readers so it cannot starve."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        """Hold the lock shared (not re-entrant while a writer waits)."""
        with self._cond:
            while self._writing or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @property
    def busy(self) -> bool:
        """A writer holds the lock or waits for it: a reader now would wait."""
        return self._writing or self._writers_waiting > 0

    @contextmanager
    def write(self) -> Iterator[None]:
        """Hold the lock exclusively."""
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writing or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


class VectorIndex:
    """HNSW index of the documents of several partitions, safe to share between threads.

    Filtered search: the predicate runs on a random sample of live documents first. When
    it predicts at most ``4 * max(ef, k)`` matches, hnswlib's filtered search would wander
    over most of the graph calling Python for every node, so the index scans all metadata
    instead and ranks the matches exactly. Otherwise hnswlib's ``filter=`` callback runs
    the predicate on the nodes the search visits; if that finds fewer than ``max(ef, k)``
    matches, the exact scan runs, so a filtered query never silently misses matches.
    The exact path reads vectors back with ``get_items`` (about 15-25 us per vector in
    hnswlib 0.8.0) rather than keeping a second copy of every vector, which is why it is
    reserved for small match sets. Predicates must not raise: an exception escaping
    hnswlib's search leaks its visited-list buffer (compiled filters never raise).

    A search limited to some partitions (the others may be stale copies) takes the same
    path with a label test on the partition, so a limit never returns fewer results than
    exist in the partitions asked for.
    """

    def __init__(
        self,
        dim: int,
        *,
        m: int = 16,
        ef_construction: int = 200,
        ef_search: int = 64,
        capacity: int = 1024,
        seed: int = 100,
    ) -> None:
        for name, value in (("dim", dim), ("m", m), ("ef_construction", ef_construction),
                            ("ef_search", ef_search), ("capacity", capacity)):
            _require_positive(name, value)
        self._dim = dim
        self._ef_search = ef_search
        self._seed = seed
        self._index = _graph(dim, capacity, m, ef_construction, seed)
        self._by_partition: dict[int, dict[str, int]] = {}
        self._ids: list[str | None] = []
        self._partition_of = np.full(0, _FREE, dtype=np.int16)
        self._metadata: list[bytes | None] = []
        self._garbage = 0  # nodes of deleted documents, marked deleted, never reused
        self._suspended: dict[int, dict[str, int]] = {}
        self._live = 0
        self._lock = _ReadWriteLock()
        self._writer = threading.Lock()  # one writer at a time, and none while compacting
        self._rng = random.Random(seed)

    # ---- facts ---------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        """Vector dimension the index accepts."""
        return self._dim

    @property
    def ef_search(self) -> int:
        """The ``ef`` a search uses when it names none."""
        return self._ef_search

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        _require_positive("ef_search", value)
        self._ef_search = value

    @property
    def capacity(self) -> int:
        """Nodes hnswlib has memory for; grows by :data:`_GROWTH` when full."""
        return int(self._index.get_max_elements())

    @property
    def allocated(self) -> int:
        """Nodes in the graph: documents (suspended ones too) plus deleted ones until a compaction."""
        return len(self._ids)

    @property
    def garbage(self) -> int:
        """Nodes of deleted documents the graph still holds."""
        return self._garbage

    @property
    def writing(self) -> bool:
        """Whether a write holds the index or waits for it (a search now would wait for it)."""
        return self._lock.busy

    def __len__(self) -> int:
        """Number of live documents over all partitions."""
        return self._live

    def count(self, partition: int) -> int:
        """Live documents of ``partition``."""
        return len(self._by_partition.get(partition, ()))

    def partitions(self) -> list[int]:
        """Partitions with live documents."""
        return sorted(p for p, docs in list(self._by_partition.items()) if docs)

    def __contains__(self, doc_id: object) -> bool:
        """Whether ``doc_id`` is a live document of any partition."""
        return any(doc_id in docs for docs in list(self._by_partition.values()))

    # ---- writes --------------------------------------------------------------------------

    def upsert(self, doc_id: str, vector: np.ndarray, metadata: Mapping[str, Any], partition: int = 0) -> None:
        """Insert a document, or replace the vector and metadata of an existing one.

        Raises:
            VectorError: wrong dimension, a NaN/infinite value, or a zero vector.
        """
        row = _as_matrix(vector, self._dim, 1, what=f'vector of "{doc_id}"')
        self.upsert_many([doc_id], row, [metadata], partition)

    def upsert_many(self, ids: Sequence[str], vectors: np.ndarray, metadatas: Sequence[Mapping[str, Any]],
                    partition: int = 0) -> None:
        """Insert or replace many documents of ``partition``, in slices of :data:`WRITE_SLICE`.

        A document id repeated within the batch keeps its last row. Everything is
        validated before the index changes, so a bad row leaves the index untouched.
        Re-sent documents whose vector is unchanged only get their metadata replaced.

        Raises:
            VectorError: a row has the wrong dimension, a non-finite value or zero length.
            ValueError: ``ids``, ``vectors`` and ``metadatas`` differ in length.
        """
        matrix = _as_matrix(vectors, self._dim, len(ids), what="vectors", ids=ids)
        if len(metadatas) != len(ids):
            raise ValueError(f"upsert_many got {len(ids)} ids but {len(metadatas)} metadatas")
        last_row = {doc_id: row for row, doc_id in enumerate(ids)}
        encoded = {doc_id: _encode_metadata(metadatas[row]) for doc_id, row in last_row.items()}
        doc_ids = list(last_row)
        for start in range(0, len(doc_ids), WRITE_SLICE):
            part = doc_ids[start:start + WRITE_SLICE]
            rows = np.fromiter((last_row[d] for d in part), dtype=np.intp, count=len(part))
            with self._write():
                self._insert(partition, part, matrix[rows], [encoded[d] for d in part])
        self._compact_if_worn()

    def delete(self, doc_id: str, partition: int = 0) -> bool:
        """Remove a document; returns False if ``partition`` does not hold it."""
        with self._write():
            deleted = self._delete(partition, doc_id)
        self._compact_if_worn()
        return deleted

    def drop_partition(self, partition: int) -> int:
        """Remove every document of ``partition`` (it moved away); returns how many."""
        docs = list(self._by_partition.get(partition, {}))
        for start in range(0, len(docs), WRITE_SLICE * 8):
            with self._write():
                for doc_id in docs[start:start + WRITE_SLICE * 8]:
                    self._delete(partition, doc_id)
        with self._write():
            self._by_partition.pop(partition, None)
        self._compact_if_worn()
        return len(docs)

    def suspend_partition(self, partition: int) -> int:
        """Hide every document of ``partition`` from searches but keep it in the graph; returns how many.

        hnswlib's delete mark only hides a node, its links stay, so :meth:`resume_partition`
        brings the partition back by clearing the marks: no insert, no graph repair. A
        suspended partition's labels are not reused until it is dropped.
        """
        with self._write():
            if partition in self._suspended:
                raise ValueError(f"partition {partition} is suspended already")
            docs = self._by_partition.pop(partition, {})
            for doc_id, label in docs.items():
                self._index.mark_deleted(label)
                self._ids[label] = None
            self._suspended[partition] = docs
            self._live -= len(docs)
        return len(docs)

    def resume_partition(self, partition: int) -> int:
        """Make the documents :meth:`suspend_partition` hid searchable again; returns how many.

        Raises:
            ValueError: ``partition`` is not suspended, or got documents while it was.
        """
        with self._write():
            if partition not in self._suspended:
                raise ValueError(f"partition {partition} is not suspended")
            if self._by_partition.get(partition):
                raise ValueError(f"partition {partition} got documents while it was suspended")
            docs = self._suspended.pop(partition)
            for doc_id, label in docs.items():
                self._index.unmark_deleted(label)
                self._ids[label] = doc_id
            self._by_partition[partition] = docs
            self._live += len(docs)
        return len(docs)

    def drop_suspended(self, partition: int) -> int:
        """Delete the documents of a suspended ``partition``; returns how many. Documents of
        ``partition`` inserted since it was suspended are not touched."""
        with self._write():
            docs = self._suspended.pop(partition, {})
            for label in docs.values():  # hnswlib has them marked deleted already
                self._retire(label)
        self._compact_if_worn()
        return len(docs)

    def suspended(self) -> list[int]:
        """Partitions hidden by :meth:`suspend_partition`."""
        return sorted(self._suspended)

    def reserve(self, documents: int) -> None:
        """Make room for ``documents`` more documents at once (one resize before a build, not many)."""
        with self._write():
            self._grow_to(len(self._ids) + documents, exact=True)

    def compact(self) -> int:
        """Build the graph again from its documents (suspended ones too, still hidden), without the
        nodes of deleted documents; returns how many nodes were left out. Searches run on the
        old graph meanwhile; writes wait."""
        with self._writer:
            return self._compact()

    # ---- reads ---------------------------------------------------------------------------

    def get(self, doc_id: str, partition: int = 0) -> tuple[np.ndarray, Mapping[str, Any]] | None:
        """The stored (L2-normalised) vector and metadata of a document, or None."""
        with self._lock.read():
            label = self._by_partition.get(partition, {}).get(doc_id)
            if label is None:
                return None
            return self._index.get_items([label])[0], self._metadata_of(label)

    def search(self, query: np.ndarray, k: int, *, ef: int | None = None, predicate: Predicate | None = None,
               partitions: set[int] | None = None) -> list[Hit]:
        """The k live documents most similar to ``query``, best first.

        Returns fewer than k hits only when fewer than k live documents match.
        ``ef`` (default: the index's ``ef_search``) trades speed for recall; at least k is used.
        ``partitions`` limits the answer to those partitions (None: all).

        Raises:
            VectorError: the query has the wrong dimension, a non-finite value or zero length.
        """
        return self.search_many(np.reshape(query, (1, -1)), k, ef=ef, predicate=predicate, partitions=partitions)[0]

    def search_many(self, queries: np.ndarray, k: int, *, ef: int | None = None,
                    predicate: Predicate | None = None, partitions: set[int] | None = None) -> list[list[Hit]]:
        """:meth:`search` for each row of ``queries``; unfiltered rows go to hnswlib in one call,
        which saves its per-call overhead (the batch search endpoint relies on this)."""
        _require_positive("k", k)
        if ef is not None:
            _require_positive("ef", ef)
        q = _as_matrix(queries, self._dim, len(queries), what="query")
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        with self._lock.read():
            held = {p for p, docs in self._by_partition.items() if docs}
            wanted = held if partitions is None else held & partitions
            live = sum(len(self._by_partition[p]) for p in wanted)
            if not live:
                return [[] for _ in q]
            want = min(max(ef or self._ef_search, k), live)
            if predicate is None and wanted == held:
                if live <= _EXACT_FACTOR * want:
                    # A few documents: walk the whole graph (microseconds) rather than stop at ef,
                    # so a graph worn by in-place updates still finds every document it holds.
                    want = live
                hits = self._knn(q, want, k, None)
                return hits if hits is not None else [self._knn_or_exact(row, want, k) for row in q]
            keep = self._keep(predicate, wanted if wanted != held else None)
            return [self._search_limited(row, want, k, keep, live) for row in q]

    # ---- persistence -----------------------------------------------------------------------

    def state(self) -> tuple[list[str | None], np.ndarray, list[bytes | None], list[int]]:
        """What besides hnswlib's own file a snapshot needs: ids, partitions, metadata, and the
        labels hnswlib's file has marked deleted (call under :meth:`frozen`). A suspended partition
        is not in it: its nodes count as deleted."""
        deleted = [label for label, doc_id in enumerate(self._ids) if doc_id is None]
        return list(self._ids), self._partition_of[:len(self._ids)].copy(), list(self._metadata), deleted

    @contextmanager
    def frozen(self) -> Iterator[hnswlib.Index]:
        """Hold off every write while a snapshot is taken; yields the hnswlib index to save."""
        with self._lock.read():
            yield self._index

    def adopt(self, other: VectorIndex, partitions: set[int]) -> None:
        """Take over ``other``'s graph and documents (a loaded snapshot), then drop every
        partition but ``partitions``; this index must be empty, and keeps its own ``ef_search``."""
        with self._write():
            if self._live or self._ids:
                raise ValueError("adopt() needs an empty index")
            if other.dim != self._dim:
                raise ValueError(f"adopt() got an index of dimension {other.dim}, this one has {self._dim}")
            self._index, self._ids, self._partition_of = other._index, other._ids, other._partition_of
            self._metadata, self._garbage, self._by_partition, self._live, self._suspended = (
                other._metadata, other._garbage, other._by_partition, other._live, other._suspended)
        for partition in set(self._by_partition) - partitions:
            self.drop_partition(partition)

    @classmethod
    def restore(cls, index: hnswlib.Index, ids: list[str | None], partitions: np.ndarray,
                metadata: list[bytes | None], deleted: list[int], *, ef_search: int, seed: int = 100) -> VectorIndex:
        """An index around a loaded hnswlib index and the state :meth:`state` gave; a label
        without an id that is not marked deleted yet (a partition left out of a snapshot) is."""
        restored = cls.__new__(cls)
        restored._dim = index.dim
        restored._ef_search = ef_search
        restored._seed = seed
        restored._index = index
        restored._index.set_ef(1)
        restored._ids = ids
        restored._partition_of = np.asarray(partitions, dtype=np.int16).copy()
        restored._metadata = metadata
        restored._suspended = {}
        marked = set(deleted)
        restored._by_partition = {}
        for label, doc_id in enumerate(ids):
            if doc_id is not None:
                restored._by_partition.setdefault(int(partitions[label]), {})[doc_id] = label
            else:
                if label not in marked:
                    index.mark_deleted(label)
                restored._partition_of[label] = _FREE
                restored._metadata[label] = None
        restored._live = sum(len(docs) for docs in restored._by_partition.values())
        restored._garbage = len(ids) - restored._live
        restored._lock = _ReadWriteLock()
        restored._writer = threading.Lock()
        restored._rng = random.Random(seed)
        return restored

    # ---- internals (callers hold the lock) --------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[None]:
        with self._writer, self._lock.write():
            yield

    def _compact_if_worn(self) -> None:
        if self._worn():
            with self._writer:
                if self._worn():  # another writer may have compacted meanwhile
                    self._compact()

    def _worn(self) -> bool:
        """Deleted nodes outnumber the nodes that hold a document, live or suspended (every other
        node), and :data:`_COMPACT_MIN`."""
        return self._garbage > max(_COMPACT_MIN, len(self._ids) - self._garbage)

    def _compact(self) -> int:
        """:meth:`compact`, with the writer lock held: the graph cannot change under the reads."""
        held = [(p, docs, False) for p, docs in self._by_partition.items()]
        held += [(p, docs, True) for p, docs in self._suspended.items()]
        entries = [(p, doc_id, label, hidden) for p, docs, hidden in held for doc_id, label in docs.items()]
        old = np.fromiter((label for _, _, label, _ in entries), dtype=np.intp, count=len(entries))
        hidden_rows = np.fromiter((hidden for _, _, _, hidden in entries), dtype=bool, count=len(entries))
        vectors = np.empty((len(entries), self._dim), dtype=np.float32)
        with self._lock.read():
            if (~hidden_rows).any():
                vectors[~hidden_rows] = self._index.get_items(old[~hidden_rows])
        if hidden_rows.any():  # hnswlib reads no vector of a node marked deleted: unmark them a moment
            with self._lock.write():
                for label in old[hidden_rows].tolist():
                    self._index.unmark_deleted(label)
                vectors[hidden_rows] = self._index.get_items(old[hidden_rows])
                for label in old[hidden_rows].tolist():
                    self._index.mark_deleted(label)
        metadata = [self._metadata[label] for label in old.tolist()]
        left_out = self._garbage
        graph = _graph(self._dim, max(len(entries), 1), self._index.M, self._index.ef_construction, self._seed)
        if entries:
            graph.add_items(vectors, np.arange(len(entries)))
        for label, (_, _, _, hidden) in enumerate(entries):
            if hidden:
                graph.mark_deleted(label)
        partition_of = np.full(graph.get_max_elements(), _FREE, dtype=np.int16)
        partition_of[:len(entries)] = [p for p, _, _, _ in entries]
        by_partition: dict[int, dict[str, int]] = {p: {} for p, _, hidden in held if not hidden}
        suspended: dict[int, dict[str, int]] = {p: {} for p, _, hidden in held if hidden}
        for label, (p, doc_id, _, hidden) in enumerate(entries):
            (suspended if hidden else by_partition)[p][doc_id] = label
        with self._lock.write():
            self._index, self._partition_of, self._metadata = graph, partition_of, metadata
            self._ids = [None if hidden else doc_id for _, doc_id, _, hidden in entries]
            self._by_partition, self._suspended, self._garbage = by_partition, suspended, 0
        return left_out

    def _insert(self, partition: int, doc_ids: list[str], batch: np.ndarray, encoded: list[bytes]) -> None:
        docs = self._by_partition.setdefault(partition, {})
        labels = self._assign_labels(docs, doc_ids)
        changed = self._changed_rows(docs, doc_ids, labels, batch)
        if changed.any():
            self._index.add_items(batch[changed], labels[changed])
        for doc_id, label, metadata in zip(doc_ids, labels.tolist(), encoded, strict=True):
            if doc_id not in docs:
                self._live += 1
            docs[doc_id] = label
            self._ids[label] = doc_id
            self._partition_of[label] = partition
            self._metadata[label] = metadata

    def _delete(self, partition: int, doc_id: str) -> bool:
        label = self._by_partition.get(partition, {}).pop(doc_id, None)
        if label is None:
            return False
        self._index.mark_deleted(label)
        self._ids[label] = None
        self._retire(label)
        self._live -= 1
        return True

    def _retire(self, label: int) -> None:
        """A deleted document's node stays in the graph, marked deleted, until a compaction."""
        self._metadata[label] = None
        self._partition_of[label] = _FREE
        self._garbage += 1

    def _assign_labels(self, docs: dict[str, int], doc_ids: list[str]) -> np.ndarray:
        """Labels for a batch: a live id keeps its label, a new id gets a fresh one (see the module
        docstring for why a deleted document's label is never reused)."""
        labels = []
        fresh = 0
        for doc_id in doc_ids:
            label = docs.get(doc_id)
            if label is None:
                label = len(self._ids) + fresh
                fresh += 1
            labels.append(label)
        self._grow_to(len(self._ids) + fresh)
        self._ids.extend([None] * fresh)
        self._metadata.extend([None] * fresh)
        return np.array(labels, dtype=np.intp)

    def _changed_rows(self, docs: dict[str, int], doc_ids: list[str], labels: np.ndarray,
                      batch: np.ndarray) -> np.ndarray:
        """Mask of rows that need ``add_items``: new documents and changed vectors.

        A document re-sent with the same vector (a Kafka redelivery, a metadata-only edit)
        skips hnswlib's in-place update, which costs about five fresh inserts.
        """
        changed = np.ones(len(doc_ids), dtype=bool)
        live = np.flatnonzero([doc_id in docs for doc_id in doc_ids])
        if live.size:
            stored = self._index.get_items(labels[live])
            new = batch[live] / np.linalg.norm(batch[live], axis=1, keepdims=True)
            changed[live] = np.abs(stored - new).max(axis=1) > _SAME_VECTOR_TOLERANCE
        return changed

    def _grow_to(self, needed: int, exact: bool = False) -> None:
        """Resize hnswlib to hold ``needed`` nodes: by :data:`_GROWTH` at least (amortised), or
        exactly ``needed`` when the caller knows the final size."""
        current = self._index.get_max_elements()
        if needed > current:
            self._index.resize_index(needed if exact else max(needed, int(current * _GROWTH) + 1))
        if len(self._partition_of) < self._index.get_max_elements():
            grown = np.full(self._index.get_max_elements(), _FREE, dtype=np.int16)
            grown[:len(self._partition_of)] = self._partition_of
            self._partition_of = grown

    def _keep(self, predicate: Predicate | None, partitions: set[int] | None) -> Callable[[int], bool]:
        """The label test for a search limited by metadata and/or partitions."""
        ids, part_of = self._ids, self._partition_of
        if predicate is None:
            assert partitions is not None
            return lambda label: ids[label] is not None and int(part_of[label]) in partitions
        if partitions is None:
            return lambda label: ids[label] is not None and predicate(self._metadata_of(label))
        return lambda label: (ids[label] is not None and int(part_of[label]) in partitions
                              and predicate(self._metadata_of(label)))

    def _search_limited(self, q: np.ndarray, want: int, k: int, keep: Callable[[int], bool], live: int) -> list[Hit]:
        """Search with a label test; see the class docstring for the strategy."""
        if self._looks_selective(keep, want):
            return self._exact(q, k, self._matching_labels(keep))
        hits = self._knn(q, want, k, keep)
        return hits[0] if hits is not None else self._exact(q, k, self._matching_labels(keep))

    def _knn_or_exact(self, q: np.ndarray, want: int, k: int) -> list[Hit]:
        hits = self._knn(q, want, k, None)
        return hits[0] if hits is not None else self._exact(q, k, self._live_labels())

    def _looks_selective(self, keep: Callable[[int], bool], want: int) -> bool:
        """Whether a random sample predicts at most ``_EXACT_FACTOR * want`` matching documents."""
        sampled = matched = 0
        for _ in range(4 * _SAMPLE_SIZE):
            label = self._rng.randrange(len(self._ids))
            if self._ids[label] is not None:
                sampled += 1
                matched += bool(keep(label))
                if sampled == _SAMPLE_SIZE:
                    break
        return sampled == 0 or matched * self._live <= _EXACT_FACTOR * want * sampled

    def _knn(self, q: np.ndarray, want: int, k: int,
             label_filter: Callable[[int], bool] | None) -> list[list[Hit]] | None:
        """Search hnswlib for ``want`` results per query row and keep the best k; None if any
        row found fewer."""
        try:
            labels, distances = self._index.knn_query(q, k=want, num_threads=1, filter=label_filter)
        except RuntimeError as exc:
            if _TOO_FEW_RESULTS not in str(exc):
                raise
            return None
        return [[self._hit(label, 1.0 - distance) for label, distance in zip(row_labels, row_distances, strict=True)]
                for row_labels, row_distances in zip(labels[:, :k].tolist(), distances[:, :k].tolist(), strict=True)]

    def _exact(self, q: np.ndarray, k: int, labels: list[int]) -> list[Hit]:
        """Exact top-k among ``labels`` by brute force over the stored vectors."""
        if not labels:
            return []
        scores = self._index.get_items(labels) @ q
        top = np.argsort(-scores, kind="stable")[:k]
        return [self._hit(labels[i], float(scores[i])) for i in top]

    def _matching_labels(self, keep: Callable[[int], bool]) -> list[int]:
        return [label for label in range(len(self._ids)) if keep(label)]

    def _live_labels(self) -> list[int]:
        return [label for docs in self._by_partition.values() for label in docs.values()]

    def _metadata_of(self, label: int) -> Mapping[str, Any]:
        data = self._metadata[label]
        return MappingProxyType({} if data is None or data is _NO_METADATA else orjson.loads(data))

    def _hit(self, label: int, score: float) -> Hit:
        """A result for ``label``; metadata is exposed read-only."""
        doc_id = self._ids[label]
        assert doc_id is not None, f"hnswlib returned deleted label {label}"
        return Hit(doc_id, score, int(self._partition_of[label]), self._metadata_of(label))


def _encode_metadata(metadata: Mapping[str, Any]) -> bytes:
    return orjson.dumps(metadata) if metadata else _NO_METADATA


def _as_matrix(
    data: np.ndarray, dim: int, rows: int, *, what: str, ids: Sequence[str] | None = None
) -> np.ndarray:
    """Validate ``rows`` vectors of ``dim`` floats as a float32 matrix (a 1-D vector is one row).

    Raises:
        VectorError: wrong shape, NaN/infinity (including float32 overflow) or a zero vector.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        matrix = np.atleast_2d(np.asarray(data, dtype=np.float32))
    if matrix.shape != (rows, dim):
        raise VectorError(
            f"{what} has shape {_shape(np.shape(data))}; the index expects "
            f"{_shape((dim,)) if ids is None else _shape((rows, dim))} (dimension {dim})"
        )
    not_finite = np.flatnonzero(~np.isfinite(matrix).all(axis=1))
    if not_finite.size:
        raise VectorError(f"{what}{_row(not_finite, ids)} contains NaN or infinity")
    all_zero = np.flatnonzero(~matrix.any(axis=1))
    if all_zero.size:
        raise VectorError(f"{what}{_row(all_zero, ids)} is all zeros; cosine similarity is undefined")
    return matrix


def _shape(shape: tuple[int, ...]) -> str:
    """Shapes in messages read like ``(10, 384)``."""
    return str(tuple(shape))


def _row(bad_rows: np.ndarray, ids: Sequence[str] | None) -> str:
    """Name the first failing row of a batch, by position and document id."""
    if ids is None:
        return ""
    row = int(bad_rows[0])
    return f' row {row} (id "{ids[row]}")'


def _require_positive(name: str, value: int) -> None:
    """Reject non-positive sizes early, with the parameter's name."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _graph(dim: int, capacity: int, m: int, ef_construction: int, seed: int) -> hnswlib.Index:
    """An empty hnswlib graph; ``ef`` stays 1 (see the module docstring)."""
    graph = hnswlib.Index(space="cosine", dim=dim)
    graph.init_index(max_elements=capacity, M=m, ef_construction=ef_construction, random_seed=seed)
    graph.set_ef(1)
    return graph
