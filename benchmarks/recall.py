"""Ground truth for recall: exact cosine top-k by brute force, and recall@k against it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_QUERY_CHUNK = 100  # 100 queries × 100k documents = 40 MB of scores at a time


def exact_neighbours(documents: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Row indices of the k documents most similar to each query (cosine; all rows are unit vectors)."""
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), _QUERY_CHUNK):
        scores = queries[start:start + _QUERY_CHUNK] @ documents.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
        out[start:start + len(top)] = np.take_along_axis(top, order, axis=1)
    return out


def recall_at_k(found: Sequence[Sequence[str] | None], truth: Sequence[Sequence[str]], k: int) -> float:
    """Mean share of each query's true top k that was returned; a query without an answer counts 0."""
    hits = [len(set(got[:k]) & set(want[:k])) if got is not None else 0 for got, want in zip(found, truth, strict=True)]
    return sum(hits) / (k * len(truth))
