"""What the index layout costs a query: one index over all partitions vs. one per partition.

A worker keeps ONE :class:`index.ann.hnsw.VectorIndex` over every partition it holds; before, it
kept one graph per partition, and a query searched all of them and merged the top k. This
measures both layouts in one process, with no HTTP or Kafka in the way, on one thread, with
the workers' own class: documents are split by Kafka's default partitioner (murmur2 of the
key), as the events topic splits them.

* ``one index``: every partition in one graph, searched at once (a worker whose copies may
  all answer: the fast path).
* ``one index, half asked``: the same graph asked for half its partitions (``partitions=``),
  as when some local copies are too stale to answer: the search then tests each visited
  node's partition in a Python callback, and recall is against the exact top k of those
  partitions alone.
* ``P separate``: P graphs of N/P documents, each searched in turn with the same ef and merged
  (the old layout, for the record of why it went).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from aiokafka.partitioner import murmur2
from tqdm import tqdm

from benchmarks.recall import exact_neighbours, recall_at_k
from index.ann.hnsw import Hit, VectorIndex

K = 10


@dataclass(frozen=True)
class CostRow:
    """Recall@10 and one-thread queries/s of one layout at one ef."""

    layout: str
    partitions: int
    ef: int
    recall: float
    qps: float
    build_seconds: float


def kafka_partition(doc_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a keyed record."""
    return (murmur2(doc_id.encode()) & 0x7FFFFFFF) % partitions


def _index(ids: Sequence[str], vectors: np.ndarray, owner: np.ndarray, parts: Sequence[int], m: int,
           ef_construction: int) -> tuple[VectorIndex, float]:
    """One VectorIndex holding the documents of ``parts``, labelled with their partition; build seconds."""
    started = time.perf_counter()
    rows_of = {p: np.flatnonzero(owner == p) for p in parts}
    index = VectorIndex(vectors.shape[1], m=m, ef_construction=ef_construction,
                        capacity=max(1, sum(len(r) for r in rows_of.values())))
    for p, rows in rows_of.items():
        index.upsert_many([ids[r] for r in rows], vectors[rows], [{}] * len(rows), partition=p)
    return index, time.perf_counter() - started


def _timed(search: Callable[[np.ndarray], list[Hit]], queries: np.ndarray) -> tuple[list[list[str]], float]:
    """Each query in turn; the ids found and queries/s."""
    started = time.perf_counter()
    found = [[hit.id for hit in search(query)] for query in queries]
    return found, len(queries) / (time.perf_counter() - started)


def partition_cost(ids: Sequence[str], vectors: np.ndarray, queries: np.ndarray, truth: list[list[str]],
                   counts: Sequence[int], efs: Sequence[int], m: int, ef_construction: int) -> list[CostRow]:
    """Recall@10 and single-thread queries/s of each layout, for every partition count and ef."""
    rows: list[CostRow] = []
    with tqdm(total=len(counts) * 3, unit="layout", desc="partition cost (one thread)") as bar:
        for partitions in counts:
            owner = np.fromiter((kafka_partition(d, partitions) for d in ids), dtype=np.int64, count=len(ids))
            whole, seconds = _index(ids, vectors, owner, range(partitions), m, ef_construction)
            for ef in efs:
                found, qps = _timed(lambda q: whole.search(q, K, ef=ef), queries)
                rows.append(CostRow("one index", partitions, ef, recall_at_k(found, truth, K), qps, seconds))
            bar.update()
            asked = set(range(partitions // 2 or 1))
            kept = np.flatnonzero(np.isin(owner, list(asked)))
            kept_truth = [[ids[kept[j]] for j in row] for row in exact_neighbours(vectors[kept], queries, K)]
            for ef in efs:
                found, qps = _timed(lambda q: whole.search(q, K, ef=ef, partitions=asked), queries)
                rows.append(CostRow("one index, half asked", partitions, ef, recall_at_k(found, kept_truth, K), qps,
                                    seconds))
            del whole
            bar.update()
            started = time.perf_counter()
            graphs = [_index(ids, vectors, owner, [p], m, ef_construction)[0] for p in range(partitions)]
            seconds = time.perf_counter() - started
            for ef in efs:
                found, qps = _timed(lambda q: heapq.nlargest(
                    K, (hit for graph in graphs for hit in graph.search(q, K, ef=ef)), key=lambda hit: hit.score),
                    queries)
                rows.append(CostRow(f"{partitions} separate", partitions, ef, recall_at_k(found, truth, K), qps,
                                    seconds))
            del graphs
            bar.update()
    return rows


def cheapest(rows: Sequence[CostRow], layout: str, min_recall: float) -> CostRow | None:
    """The lowest ef at which ``layout`` reaches ``min_recall``."""
    good = [row for row in rows if row.layout == layout and row.recall >= min_recall]
    return min(good, key=lambda row: row.ef, default=None)
