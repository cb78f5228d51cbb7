"""Vectors that come from users (events, queries) are checked once, here, the same way."""

from __future__ import annotations

from typing import Any

import numpy as np

from index.exceptions import VectorError


def unit_vector(raw: Any, dim: int) -> np.ndarray:
    """A JSON list of ``dim`` numbers as a float32 unit vector, or a :class:`VectorError`."""
    if not isinstance(raw, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in raw):
        raise VectorError('"vector" must be a list of numbers')
    if len(raw) != dim:
        raise VectorError(f'"vector" has {len(raw)} numbers; the model has {dim} dimensions')
    vector = np.asarray(raw, dtype=np.float32)
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm == 0.0:
        raise VectorError('"vector" must be finite and not all zeros')
    return vector / norm
