"""Counters of what happened to each consumed event, per partition and in total.

Every consumed event ends as exactly one outcome, so the totals reconcile with what was
produced: produced = indexed + deleted + stale + unchanged + dead_lettered. Dead letters
are also counted by reason. ``GET /stats`` sums these snapshots over the workers: keep
the keys stable.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

OUTCOMES = ("indexed", "deleted", "stale", "unchanged", "dead_lettered")


class Outcomes:
    """Outcome counts of this worker since it started."""

    def __init__(self) -> None:
        self._by_partition: defaultdict[int, Counter[str]] = defaultdict(Counter)
        self._reasons_by_partition: defaultdict[int, Counter[str]] = defaultdict(Counter)
        self.embeddings_reused = 0

    def add(self, partition: int, outcome: str) -> None:
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}; outcomes are {', '.join(OUTCOMES)}")
        self._by_partition[partition][outcome] += 1

    def add_dead_letter(self, partition: int, reason: str) -> None:
        self.add(partition, "dead_lettered")
        self._reasons_by_partition[partition][reason] += 1

    def snapshot(self) -> dict[str, Any]:
        """``{"total": {outcome: n}, "dead_letter_reasons": {reason: n}, "partitions": {"3": {outcome: n,
        "dead_letter_reasons": {…}}}, "embeddings_reused": n}``; every outcome key is always present."""
        total: Counter[str] = Counter()
        reasons: Counter[str] = Counter()
        partitions = {}
        for partition in sorted(self._by_partition):
            counts = self._by_partition[partition]
            total.update(counts)
            reasons.update(self._reasons_by_partition[partition])
            partitions[str(partition)] = {**_all_outcomes(counts),
                                          "dead_letter_reasons": dict(self._reasons_by_partition[partition])}
        return {
            "total": _all_outcomes(total),
            "dead_letter_reasons": dict(reasons),
            "partitions": partitions,
            "embeddings_reused": self.embeddings_reused,
        }


def _all_outcomes(counts: Counter[str]) -> dict[str, int]:
    return {name: counts[name] for name in OUTCOMES}
