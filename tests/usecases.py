"""What the use-case integration tests share: a small cluster, topics read back, latency figures.

The data is real: glosses from ``data/sample.jsonl`` (WordNet, with categories).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aiokafka.partitioner import murmur2

from benchmarks.histograms import quantile, scrape
from tests.cluster import Worker, stop_all
from tests.conftest import REPO, read_topic, send_events, send_records

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


class Group:
    """Workers of one app id on a real broker, started and stopped together."""

    def __init__(self, broker: str, app_id: str, root: Path, partitions: int, **settings: str) -> None:
        self.broker, self.app_id, self.root, self.partitions = broker, app_id, root, partitions
        self.env = {"STREAMVEC_BROKER": broker, "STREAMVEC_APP_ID": app_id, "STREAMVEC_PARTITIONS": str(partitions),
                    "STREAMVEC_MODEL_CACHE": str(root / "models"), "STREAMVEC_SESSION_TIMEOUT": "6",
                    "STREAMVEC_REBALANCE_TIMEOUT": "10", **{f"STREAMVEC_{k.upper()}": v for k, v in settings.items()}}
        self.workers: dict[str, Worker] = {}

    def start(self, name: str) -> Worker:
        worker = Worker(name, self.env, self.root / name).start()
        self.workers[name] = worker
        return worker

    def stop(self) -> None:
        stop_all(self.workers.values())

    def topic(self, suffix: str) -> str:
        return f"{self.app_id}-{suffix}"

    def send(self, events: list[dict[str, Any]], tombstones: tuple[str, ...] = ()) -> None:
        send_events(self.broker, self.app_id, events, self.partitions, tombstones)

    def send_json(self, suffix: str, records: list[tuple[str, dict[str, Any]]]) -> None:
        send_records(self.broker, self.topic(suffix), [(key.encode(), json.dumps(value).encode())
                                                       for key, value in records])

    def read_json(self, suffix: str) -> list[dict[str, Any]]:
        return [json.loads(record.value) for record in read_topic(self.broker, self.topic(suffix))]


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
