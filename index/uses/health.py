"""Embedding health: is what the model makes of the input still what it made before?

Per partition, new documents are counted in windows of a fixed number of documents. The
first full window a worker sees of a partition is its reference; every later window's
mean vector is compared with the reference's: drift = 1 − cosine of the two means (0 when
the input's topics are as before; it grows as they shift). Beside drift, each window
keeps the model's vector norm before normalising (its "magnitude"; a new kind of text, or
a broken tokenizer, moves it), the share of texts the model truncated, the mean text
length, and the mean best-neighbour similarity of new documents (from the novelty pass).

The state is in memory: a partition that moves to another worker, or a restart, starts a
new reference there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Observation:
    """What health looks at in one new document; the optional parts are not always known."""

    vector: np.ndarray
    norm: float | None = None
    truncated: bool | None = None
    text_chars: int | None = None
    best_similarity: float | None = None


@dataclass(frozen=True)
class WindowClosed:
    """A partition's window is full; ``drift`` is None for the reference window itself."""

    partition: int
    window: int
    documents: int
    drift: float | None


@dataclass
class _Window:
    dim: int
    documents: int = 0
    vector_sum: np.ndarray = field(init=False)
    sums: dict[str, float] = field(default_factory=lambda: dict.fromkeys(_MEANS, 0.0))
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_MEANS, 0))

    def __post_init__(self) -> None:
        self.vector_sum = np.zeros(self.dim, np.float64)

    def add(self, observation: Observation) -> None:
        self.documents += 1
        self.vector_sum += observation.vector
        for name, value in (("norm", observation.norm), ("truncated", observation.truncated),
                            ("text_chars", observation.text_chars), ("best_similarity", observation.best_similarity)):
            if value is not None and value == value:  # NaN: not known
                self.sums[name] += float(value)
                self.counts[name] += 1

    def mean_direction(self) -> np.ndarray | None:
        norm = float(np.linalg.norm(self.vector_sum))
        return None if norm == 0.0 else self.vector_sum / norm

    def summary(self, reference: np.ndarray | None) -> dict[str, Any]:
        mean = self.mean_direction()
        drift = None if reference is None or mean is None else 1.0 - float(mean @ reference)
        return {"documents": self.documents, "drift": drift,
                **{_MEANS[name]: (self.sums[name] / self.counts[name] if self.counts[name] else None)
                   for name in _MEANS}}


# Observation field -> name of its mean in a summary.
_MEANS = {"norm": "norm_mean", "truncated": "truncated_share", "text_chars": "text_chars_mean",
          "best_similarity": "best_similarity_mean"}


class PartitionHealth:
    """One partition's windows on this worker."""

    def __init__(self, dim: int, window: int) -> None:
        if window < 2:
            raise ValueError(f"a health window needs at least 2 documents, got {window}")
        self.dim = dim
        self.window = window
        self.reference: np.ndarray | None = None
        self.windows_closed = 0
        self.documents = 0
        self.last: dict[str, Any] | None = None
        self._current = _Window(dim)

    def observe(self, observation: Observation, partition: int) -> WindowClosed | None:
        self.documents += 1
        self._current.add(observation)
        if self._current.documents < self.window:
            return None
        closed = self._current
        self._current = _Window(self.dim)
        if self.reference is None:
            self.reference = closed.mean_direction()
        self.last = closed.summary(self.reference)
        self.windows_closed += 1
        drift = None if self.windows_closed == 1 else self.last["drift"]
        return WindowClosed(partition, self.windows_closed - 1, closed.documents, drift)

    def snapshot(self) -> dict[str, Any]:
        """``current``: the window being filled (the rolling figures); ``last``: the last full one."""
        return {"documents": self.documents, "window": self.window, "windows_closed": self.windows_closed,
                "reference": self.reference is not None, "current": self._current.summary(self.reference),
                "last": self.last}


class HealthMonitor:
    """Embedding health of every partition this worker has indexed documents of."""

    def __init__(self, dim: int, window: int, drift_threshold: float) -> None:
        self.dim = dim
        self.window = window
        self.drift_threshold = drift_threshold
        self._partitions: dict[int, PartitionHealth] = {}

    def observe(self, partition: int, observation: Observation) -> WindowClosed | None:
        """Count one new document; returns the window it closed, if it closed one."""
        health = self._partitions.get(partition)
        if health is None:
            health = self._partitions[partition] = PartitionHealth(self.dim, self.window)
        return health.observe(observation, partition)

    def drifted(self, closed: WindowClosed) -> bool:
        return closed.drift is not None and closed.drift > self.drift_threshold

    def snapshot(self, partitions: Iterable[int]) -> dict[str, dict[str, Any]]:
        """Per partition of ``partitions`` that has seen documents here, by partition number as text."""
        return {str(p): self._partitions[p].snapshot() for p in sorted(partitions) if p in self._partitions}


def combine(partitions: Mapping[str, Mapping[str, Any]], which: str = "last") -> dict[str, Any]:
    """The group's figures from per-partition snapshots: document-weighted means of the
    ``which`` ("last" or "current") window summaries, and the largest drift of any partition."""
    summaries = [snapshot[which] for snapshot in partitions.values() if snapshot.get(which)]
    combined: dict[str, Any] = {"partitions": len(summaries),
                                "documents": sum(s["documents"] for s in summaries)}
    for name in ("drift", *_MEANS.values()):
        weighted = [(s[name], s["documents"]) for s in summaries if s[name] is not None]
        total = sum(weight for _, weight in weighted)
        combined[name] = sum(value * weight for value, weight in weighted) / total if total else None
    drifts = [s["drift"] for s in summaries if s["drift"] is not None]
    combined["drift_max"] = max(drifts) if drifts else None
    return combined
