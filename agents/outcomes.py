"""Counters of what happened to each consumed event, per partition.

Every event ends as exactly one outcome (indexed, deleted, stale, invalid); the sums are
what ``GET /stats`` reports and what a reconciliation compares with the produced count.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

OUTCOMES = ("indexed", "deleted", "stale", "invalid")


class Outcomes:
    """Per-partition outcome counts of this worker since it started."""

    def __init__(self) -> None:
        self._by_partition: defaultdict[int, Counter[str]] = defaultdict(Counter)
        self.invalid_reasons: Counter[str] = Counter()
        self.embeddings_reused = 0

    def add(self, partition: int, outcome: str) -> None:
        self._by_partition[partition][outcome] += 1

    def snapshot(self) -> dict[str, Any]:
        total: Counter[str] = Counter({name: 0 for name in OUTCOMES})
        for counts in self._by_partition.values():
            total.update(counts)
        return {
            "total": dict(total),
            "partitions": {str(p): dict(c) for p, c in sorted(self._by_partition.items())},
            "invalid_reasons": dict(self.invalid_reasons),
            "embeddings_reused": self.embeddings_reused,
        }
