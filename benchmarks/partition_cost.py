"""What partitioning costs a query: the same vectors in 1, 4, 8 or 16 HNSW indexes, one thread.

streamvec keeps one index per Kafka partition, so a query searches every partition and merges
the top k. Each small graph must be searched with the same ef to keep its own top k accurate,
so a query does roughly P times the work of one big graph, less the log-factor a smaller graph
saves. This measures that trade in one process, with no HTTP or Kafka in the way: documents
are split by Kafka's default partitioner (murmur2 of the key), every partition is searched one
after another with :class:`index.partition.PartitionIndex` (the workers' own class), and the
hits are merged.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from aiokafka.partitioner import murmur2

from benchmarks.recall import recall_at_k
from index.partition import PartitionIndex

K = 10


@dataclass(frozen=True)
class CostRow:
    partitions: int
    ef: int
    recall: float
    qps: float
    build_seconds: float


def kafka_partition(doc_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a keyed record."""
    return (murmur2(doc_id.encode()) & 0x7FFFFFFF) % partitions


def build(ids: Sequence[str], vectors: np.ndarray, partitions: int, m: int, ef_construction: int) -> list[PartitionIndex]:
    """One PartitionIndex per partition, holding the documents Kafka would route to it."""
    owner = np.fromiter((kafka_partition(doc_id, partitions) for doc_id in ids), dtype=np.int64, count=len(ids))
    indexes = []
    for p in range(partitions):
        rows = np.flatnonzero(owner == p)
        index = PartitionIndex(vectors.shape[1], m=m, ef_construction=ef_construction, capacity=max(len(rows), 1))
        index.upsert_many([ids[r] for r in rows], vectors[rows], [{}] * len(rows))
        indexes.append(index)
    return indexes


def search_all(indexes: list[PartitionIndex], queries: np.ndarray, ef: int) -> tuple[list[list[str]], float]:
    """Each query against every partition in turn, merged to the top K; returns ids and queries/s."""
    found = []
    started = time.perf_counter()
    for query in queries:
        hits = [hit for index in indexes for hit in index.search(query, K, ef=ef)]
        found.append([hit.id for hit in heapq.nlargest(K, hits, key=lambda hit: hit.score)])
    return found, len(queries) / (time.perf_counter() - started)


def partition_cost(ids: Sequence[str], vectors: np.ndarray, queries: np.ndarray, truth: list[list[str]],
                   counts: Sequence[int], efs: Sequence[int], m: int, ef_construction: int) -> list[CostRow]:
    """Recall@10 and single-thread queries/s for every partition count and ef."""
    rows = []
    for partitions in counts:
        started = time.perf_counter()
        indexes = build(ids, vectors, partitions, m, ef_construction)
        build_seconds = time.perf_counter() - started
        for ef in efs:
            found, qps = search_all(indexes, queries, ef)
            rows.append(CostRow(partitions, ef, recall_at_k(found, truth, K), qps, build_seconds))
        del indexes
    return rows


def cheapest(rows: Sequence[CostRow], partitions: int, min_recall: float) -> CostRow | None:
    """The lowest ef that reaches ``min_recall`` with ``partitions`` partitions."""
    good = [row for row in rows if row.partitions == partitions and row.recall >= min_recall]
    return min(good, key=lambda row: row.ef, default=None)
