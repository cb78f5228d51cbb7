"""The watchlist: patterns every new document is compared with, as it is indexed.

A pattern is a document of the watchlist topic (the event contract) whose metadata may
carry ``threshold`` (cosine similarity at or above which a document matches it) and
``labels`` (strings an alert carries along, e.g. ``["fraud", "card-testing"]``).

Matching is exact: all patterns are one matrix, and a batch of documents is one matrix
product. A watchlist is small (patterns, not documents), so this costs less than the
model, and no match is ever missed the way an approximate search could miss one. Every
worker holds the whole watchlist; the matrix is rebuilt once per batch of changes, and a
match reads one immutable snapshot, so matching may run in a thread while changes arrive.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from index.records.events import EventError


@dataclass(frozen=True)
class Pattern:
    """One live pattern: a unit vector and when it fires."""

    id: str
    vector: np.ndarray
    threshold: float
    labels: tuple[str, ...] = ()
    version: int | None = None


@dataclass(frozen=True)
class Match:
    """A document at or above a pattern's threshold."""

    pattern: str
    score: float
    threshold: float
    labels: tuple[str, ...]


def pattern_options(metadata: Mapping[str, Any], default_threshold: float) -> tuple[float, tuple[str, ...]]:
    """A pattern's ``threshold`` and ``labels`` from its metadata, or an :class:`EventError`
    with the reason code a dead letter carries (``bad_threshold``, ``bad_labels``)."""
    threshold = metadata.get("threshold", default_threshold)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold) \
            or not -1 <= threshold <= 1:
        raise EventError("bad_threshold", f'"metadata.threshold" must be a cosine similarity from -1 to 1, '
                                          f"got {threshold!r}")
    labels = metadata.get("labels", [])
    if not isinstance(labels, list) or not all(isinstance(label, str) and label for label in labels):
        raise EventError("bad_labels", f'"metadata.labels" must be a list of non-empty strings, got {labels!r}')
    return float(threshold), tuple(labels)


def supersedes(version: int | None, prior: int | None) -> bool:
    """The contract's version rule: a newer version wins; without versions, the later record does."""
    return version is None or prior is None or version > prior


@dataclass(frozen=True)
class _Snapshot:
    ids: tuple[str, ...]
    matrix: np.ndarray  # [patterns, dim], unit rows
    thresholds: np.ndarray
    labels: tuple[tuple[str, ...], ...]


class Watchlist:
    """All patterns of the watchlist, with the version each id last had (deleted ones too)."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._patterns: dict[str, Pattern] = {}
        self._versions: dict[str, int | None] = {}
        self._snapshot = _Snapshot((), np.zeros((0, dim), np.float32), np.zeros(0, np.float64), ())

    def __len__(self) -> int:
        return len(self._patterns)

    def __contains__(self, pattern_id: object) -> bool:
        return pattern_id in self._patterns

    def get(self, pattern_id: str) -> Pattern | None:
        return self._patterns.get(pattern_id)

    def version_of(self, pattern_id: str) -> int | None:
        """The version the id last had, live or deleted; None if it never had one."""
        return self._versions.get(pattern_id)

    def apply(self, upserts: Iterable[Pattern] = (), deletes: Iterable[tuple[str, int | None]] = ()) -> None:
        """Apply changes in the order given within each kind (upserts first), then rebuild the matrix once."""
        for pattern in upserts:
            if pattern.vector.shape != (self.dim,):
                raise ValueError(f"pattern {pattern.id!r} has shape {pattern.vector.shape}, expected ({self.dim},)")
            self._patterns[pattern.id] = pattern
            self._versions[pattern.id] = pattern.version
        for pattern_id, version in deletes:
            self._patterns.pop(pattern_id, None)
            self._versions[pattern_id] = version
        self._rebuild()

    def match(self, vectors: np.ndarray) -> list[list[Match]]:
        """For each row of ``vectors`` (unit length), the patterns it matches, best first."""
        snapshot = self._snapshot
        if not snapshot.ids or not len(vectors):
            return [[] for _ in range(len(vectors))]
        scores = np.asarray(vectors, dtype=np.float32) @ snapshot.matrix.T
        hits = scores >= snapshot.thresholds
        matches = []
        for row, mask in zip(scores, hits, strict=True):
            found = np.flatnonzero(mask)
            found = found[np.argsort(-row[found], kind="stable")]
            matches.append([Match(snapshot.ids[i], float(row[i]), float(snapshot.thresholds[i]), snapshot.labels[i])
                            for i in found.tolist()])
        return matches

    def scores(self, vector: np.ndarray) -> list[Match]:
        """Every pattern's score for one vector, best first, matching or not (``/watchlist/check``)."""
        snapshot = self._snapshot
        if not snapshot.ids:
            return []
        row = snapshot.matrix @ np.asarray(vector, dtype=np.float32)
        order = np.argsort(-row, kind="stable").tolist()
        return [Match(snapshot.ids[i], float(row[i]), float(snapshot.thresholds[i]), snapshot.labels[i]) for i in order]

    def _rebuild(self) -> None:
        patterns: Sequence[Pattern] = list(self._patterns.values())
        matrix = np.stack([p.vector for p in patterns]).astype(np.float32) if patterns \
            else np.zeros((0, self.dim), np.float32)
        self._snapshot = _Snapshot(tuple(p.id for p in patterns), matrix,
                                   np.array([p.threshold for p in patterns], dtype=np.float64),
                                   tuple(p.labels for p in patterns))
