"""Novelty: how close each new document comes to the documents indexed before it.

A batch of new documents is compared with what was indexed before each of them: the
partition indexes (an approximate search), the batch before this one and the earlier
documents of this batch (exactly, because the indexes may not hold them yet: the index
trails the table by up to a batch). Hits of the index whose id belongs to either batch
are left out of the index part, since the exact part covers them as they were. A
document is never compared with itself or with its own earlier versions (same id).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from index.ann.hnsw import Hit


@dataclass(frozen=True)
class Nearest:
    """The most similar document indexed before this one (``id`` None: there was none)."""

    id: str | None
    score: float | None


@dataclass(frozen=True)
class Recent:
    """The previous batch's documents, kept for the next one's exact comparison."""

    ids: tuple[str, ...]
    vectors: np.ndarray

    @classmethod
    def empty(cls, dim: int) -> Recent:
        return cls((), np.zeros((0, dim), np.float32))


def nearest_before(ids: Sequence[str], vectors: np.ndarray, index_hits: Sequence[Sequence[Hit]], k: int | None,
                   recent: Recent) -> list[Nearest | None]:
    """For each document of a batch (in offset order), its nearest earlier document.

    ``index_hits[i]`` are the top ``k`` hits of the partition indexes for ``vectors[i]``
    (``k`` None: every document the indexes hold). A row is None when every one of its
    ``k`` index hits was left out (they all belong to the two batches), so a better one may
    lie deeper: search again with a larger ``k``.
    """
    skip = set(ids) | set(recent.ids)
    codes: dict[str, int] = {}
    batch_codes = np.array([codes.setdefault(doc_id, len(codes)) for doc_id in ids], dtype=np.int64)
    recent_codes = np.array([codes.setdefault(doc_id, len(codes)) for doc_id in recent.ids], dtype=np.int64)
    positions = np.arange(len(ids))
    # Earlier documents of the batch, other ids only; then the previous batch, other ids only.
    earlier = _best(vectors @ vectors.T if len(ids) else np.zeros((0, 0), np.float32),
                    (positions[None, :] < positions[:, None]) & (batch_codes[None, :] != batch_codes[:, None]))
    before = _best(vectors @ recent.vectors.T if len(recent.ids) else np.zeros((len(ids), 0), np.float32),
                   recent_codes[None, :] != batch_codes[:, None])
    answers: list[Nearest | None] = []
    for row, hits in enumerate(index_hits):
        outside = next((hit for hit in hits if hit.id not in skip), None)
        if outside is None and k is not None and len(hits) >= k:
            answers.append(None)
            continue
        candidates = [] if outside is None else [(outside.score, outside.id)]
        for best, others in ((earlier, ids), (before, recent.ids)):
            column, score = best[row]
            if column >= 0:
                candidates.append((score, others[column]))
        if candidates:
            score, nearest = max(candidates)
            answers.append(Nearest(nearest, score))
        else:
            answers.append(Nearest(None, None))
    return answers


def _best(scores: np.ndarray, allowed: np.ndarray) -> list[tuple[int, float]]:
    """Per row, the allowed column with the highest score as ``(column, score)``; column -1 if none."""
    if not scores.shape[1]:
        return [(-1, 0.0)] * scores.shape[0]
    masked = np.where(allowed, scores, -np.inf)
    columns = masked.argmax(axis=1)
    best = masked[np.arange(len(columns)), columns]
    return [(int(c), float(b)) if np.isfinite(b) else (-1, 0.0) for c, b in zip(columns, best, strict=True)]
