"""What the use-case integration tests share: sample glosses, partitions of keys, latency figures.

The data is real: glosses from ``data/sample.jsonl`` (WordNet, with categories).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterable
from typing import Any

from aiokafka.partitioner import murmur2

from benchmarks.histograms import quantile, scrape
from tests.support.kafka import REPO
from tests.support.workers import Worker

SAMPLE = REPO / "data" / "sample.jsonl"


def glosses(categories: Iterable[str], count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` sample documents of ``categories``, shuffled with ``seed`` (file order clusters categories)."""
    wanted = set(categories)
    with SAMPLE.open() as handle:
        found = [doc for doc in map(json.loads, handle) if doc["metadata"]["category"] in wanted]
    random.Random(seed).shuffle(found)
    return found[:count]


def gloss(word: str) -> dict[str, Any]:
    with SAMPLE.open() as handle:
        return next(doc for doc in map(json.loads, handle) if doc["metadata"]["word"] == word)


def partition_of(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner (and so every producer here) gives ``key``."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def histogram_quantiles(workers: Iterable[Worker], metric: str, kind: str | None = None) -> tuple[int, float, float]:
    """(count, p50, p99) of a Prometheus histogram summed over ``workers``, interpolated in its buckets."""
    buckets = scrape([worker.url for worker in workers], kind, metric) or {}
    p50, p99 = (quantile({}, buckets, q) for q in (0.5, 0.99))
    return int(max(buckets.values(), default=0)), p50[0] if p50 else math.nan, p99[0] if p99 else math.nan


def percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    if not ordered:
        return float("nan"), float("nan")
    return ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
