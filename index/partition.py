"""The vector index of one Kafka partition: hnswlib HNSW, cosine space, string ids.

hnswlib facts this module is built around (v0.8.0):

* ``add_items``/``mark_deleted``/``resize_index`` must not overlap ``knn_query``, while
  ``knn_query`` calls may overlap one another. A readers-writer lock enforces exactly that,
  so searches run in parallel in a thread pool (hnswlib releases the GIL) and writes are
  exclusive.
* Labels are ints. Each document id gets a label; a deleted document's label goes to a free
  list and is handed to the next new document. Re-adding a deleted label makes hnswlib
  unmark it and update the node in place, so the graph never holds more nodes than the peak
  number of live documents, however much churn there is. ``allow_replace_deleted`` stays
  off on purpose: with it on, re-adding a live label while deleted slots exist leaves the old
  node searchable under the same label, and reusing a label whose slot is still deleted
  later drops the live label from hnswlib's lookup table.
* ``knn_query`` raises when it finds fewer than k results; searches clamp k to the live count
  and fall back to an exact scan when the graph still comes up short.
* hnswlib's ``ef`` is index-wide state (``set_ef``), which concurrent searches with different
  ``ef`` would race on. It is fixed at 1 and a search asks for ``max(ef, k)`` results instead
  (hnswlib searches with ``max(ef_, k)``), which is the same search, then keeps the best k.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple

import hnswlib
import numpy as np

from index.exceptions import VectorError
from index.filters import Predicate

__all__ = ["Hit", "PartitionIndex"]

_TOO_FEW_RESULTS = "Cannot return the results in a contiguous 2D array"
_SAMPLE_SIZE = 256
_EXACT_FACTOR = 4
_SAME_VECTOR_TOLERANCE = 1e-5


@dataclass(frozen=True)
class Hit:
    """One search result; ``score`` is the cosine similarity (1 is identical)."""

    id: str
    score: float
    metadata: Mapping[str, Any]


class _Doc(NamedTuple):
    doc_id: str
    metadata: dict[str, Any]


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


class PartitionIndex:
    """HNSW index of one partition's documents, safe to share between threads.

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
        self._index = hnswlib.Index(space="cosine", dim=dim)
        self._index.init_index(
            max_elements=capacity, M=m, ef_construction=ef_construction, random_seed=seed
        )
        self._index.set_ef(1)
        self._labels: dict[str, int] = {}
        self._docs: list[_Doc | None] = []
        self._free: list[int] = []
        self._lock = _ReadWriteLock()
        self._rng = random.Random(seed)

    @property
    def dim(self) -> int:
        """Vector dimension the index accepts."""
        return self._dim

    @property
    def capacity(self) -> int:
        """Nodes hnswlib has memory for; grows by doubling when full."""
        return int(self._index.get_max_elements())

    @property
    def allocated(self) -> int:
        """Nodes in the graph: live documents plus deleted slots waiting for reuse."""
        return len(self._docs)

    def __len__(self) -> int:
        """Number of live documents (a single dict read, so no lock is needed)."""
        return len(self._labels)

    def __contains__(self, doc_id: object) -> bool:
        """Whether ``doc_id`` is a live document."""
        return doc_id in self._labels

    def upsert(self, doc_id: str, vector: np.ndarray, metadata: Mapping[str, Any]) -> None:
        """Insert a document, or replace the vector and metadata of an existing one.

        Raises:
            VectorError: wrong dimension, a NaN/infinite value, or a zero vector.
        """
        row = _as_matrix(vector, self._dim, 1, what=f'vector of "{doc_id}"')
        self.upsert_many([doc_id], row, [metadata])

    def upsert_many(
        self, ids: Sequence[str], vectors: np.ndarray, metadatas: Sequence[Mapping[str, Any]]
    ) -> None:
        """Insert or replace many documents with one ``add_items`` call (all cores).

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
        if not last_row:
            return
        doc_ids = list(last_row)
        batch = matrix[np.fromiter(last_row.values(), dtype=np.intp, count=len(last_row))]
        with self._lock.write():
            labels = self._assign_labels(doc_ids)
            changed = self._changed_rows(doc_ids, labels, batch)
            if changed.any():
                self._index.add_items(batch[changed], labels[changed])
            for doc_id, row, label in zip(doc_ids, last_row.values(), labels.tolist(), strict=True):
                self._docs[label] = _Doc(doc_id, dict(metadatas[row]))
                self._labels[doc_id] = label

    def delete(self, doc_id: str) -> bool:
        """Remove a document; returns False if it was not in the index."""
        with self._lock.write():
            label = self._labels.pop(doc_id, None)
            if label is None:
                return False
            self._index.mark_deleted(label)
            self._docs[label] = None
            self._free.append(label)
            return True

    def get(self, doc_id: str) -> tuple[np.ndarray, Mapping[str, Any]] | None:
        """The stored (L2-normalised) vector and metadata of a document, or None."""
        with self._lock.read():
            label = self._labels.get(doc_id)
            if label is None:
                return None
            doc = self._docs[label]
            assert doc is not None
            return self._index.get_items([label])[0], MappingProxyType(doc.metadata)

    def search(
        self, query: np.ndarray, k: int, *, ef: int | None = None, predicate: Predicate | None = None
    ) -> list[Hit]:
        """The k live documents most similar to ``query``, best first.

        Returns fewer than k hits only when fewer than k live documents match.
        ``ef`` (default: the index's ``ef_search``) trades speed for recall; at least k is used.

        Raises:
            VectorError: the query has the wrong dimension, a non-finite value or zero length.
        """
        return self.search_many(np.reshape(query, (1, -1)), k, ef=ef, predicate=predicate)[0]

    def search_many(
        self, queries: np.ndarray, k: int, *, ef: int | None = None, predicate: Predicate | None = None
    ) -> list[list[Hit]]:
        """:meth:`search` for each row of ``queries``; unfiltered rows go to hnswlib in one call,
        which saves its per-call overhead (the batch search endpoint relies on this)."""
        _require_positive("k", k)
        if ef is not None:
            _require_positive("ef", ef)
        q = _as_matrix(queries, self._dim, len(queries), what="query")
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        with self._lock.read():
            if not self._labels:
                return [[] for _ in q]
            want = min(max(ef or self._ef_search, k), len(self._labels))
            if predicate is not None:
                return [self._search_filtered(row, want, k, predicate) for row in q]
            hits = self._knn(q, want, k, None)
            return hits if hits is not None else [self._knn_or_exact(row, want, k) for row in q]

    def _assign_labels(self, doc_ids: list[str]) -> np.ndarray:
        """Labels for a batch: a live id keeps its label, new ids reuse freed ones first."""
        labels = []
        fresh = 0
        for doc_id in doc_ids:
            label = self._labels.get(doc_id)
            if label is None and self._free:
                label = self._free.pop()
            if label is None:
                label = len(self._docs) + fresh
                fresh += 1
            labels.append(label)
        self._grow_to(len(self._docs) + fresh)
        self._docs.extend([None] * fresh)
        return np.array(labels, dtype=np.intp)

    def _changed_rows(self, doc_ids: list[str], labels: np.ndarray, batch: np.ndarray) -> np.ndarray:
        """Mask of rows that need ``add_items``: new documents and changed vectors.

        A document re-sent with the same vector (a Kafka redelivery, a metadata-only edit)
        skips hnswlib's in-place update, which costs about five fresh inserts.
        """
        changed = np.ones(len(doc_ids), dtype=bool)
        live = np.flatnonzero([doc_id in self._labels for doc_id in doc_ids])
        if live.size:
            stored = self._index.get_items(labels[live])
            new = batch[live] / np.linalg.norm(batch[live], axis=1, keepdims=True)
            changed[live] = np.abs(stored - new).max(axis=1) > _SAME_VECTOR_TOLERANCE
        return changed

    def _grow_to(self, needed: int) -> None:
        """Resize hnswlib (at least doubling, so growth is amortised) to hold ``needed`` nodes."""
        current = self._index.get_max_elements()
        if needed > current:
            self._index.resize_index(max(needed, 2 * current))

    def _search_filtered(self, q: np.ndarray, want: int, k: int, predicate: Predicate) -> list[Hit]:
        """Filtered search; see the class docstring for the strategy."""
        if self._looks_selective(predicate, want):
            return self._exact(q, k, self._matching_labels(predicate))
        docs = self._docs

        def allowed(label: int) -> bool:
            doc = docs[label]
            return doc is not None and predicate(doc.metadata)

        hits = self._knn(q, want, k, allowed)
        return hits[0] if hits is not None else self._exact(q, k, self._matching_labels(predicate))

    def _knn_or_exact(self, q: np.ndarray, want: int, k: int) -> list[Hit]:
        hits = self._knn(q, want, k, None)
        return hits[0] if hits is not None else self._exact(q, k, self._live_labels())

    def _looks_selective(self, predicate: Predicate, want: int) -> bool:
        """Whether a random sample predicts at most ``_EXACT_FACTOR * want`` matching documents."""
        sampled = matched = 0
        for _ in range(4 * _SAMPLE_SIZE):
            doc = self._docs[self._rng.randrange(len(self._docs))]
            if doc is not None:
                sampled += 1
                matched += bool(predicate(doc.metadata))
                if sampled == _SAMPLE_SIZE:
                    break
        return sampled == 0 or matched * len(self._labels) <= _EXACT_FACTOR * want * sampled

    def _knn(
        self, q: np.ndarray, want: int, k: int, label_filter: Callable[[int], bool] | None
    ) -> list[list[Hit]] | None:
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

    def _matching_labels(self, predicate: Predicate) -> list[int]:
        """Labels of all live documents whose metadata satisfies ``predicate``."""
        return [lb for lb, doc in enumerate(self._docs) if doc is not None and predicate(doc.metadata)]

    def _live_labels(self) -> list[int]:
        """Labels of all live documents."""
        return list(self._labels.values())

    def _hit(self, label: int, score: float) -> Hit:
        """A result for ``label``; metadata is exposed read-only."""
        doc = self._docs[label]
        assert doc is not None, f"hnswlib returned deleted label {label}"
        return Hit(doc.doc_id, score, MappingProxyType(doc.metadata))


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
