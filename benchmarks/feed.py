"""Producing the query benchmark's events: a bulk load as fast as Kafka takes it.

Lines are bring-your-own-vector events (``{"id", "vector", "metadata"}``), keyed by id,
encoded before the clock starts: the figures should be streamvec's, not the cost of the
benchmark's own ``json.dumps``. Vectors are written with 8 significant digits (float32 holds
about 7), which halves the bytes of Python's float repr; pgvector's COPY gets the same text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from app.cli.producer import Line, produce
from benchmarks.loadstats import vector_literal


def vector_events(ids: Sequence[str], vectors: np.ndarray, metadata: Sequence[dict]) -> list[Line]:
    """BYO-vector events, encoded."""
    return [Line(doc_id.encode(), b'{"id":%s,"vector":%s,"metadata":%s}' % (
                json.dumps(doc_id).encode(), row.encode(), json.dumps(meta).encode()))
            for doc_id, row, meta in zip(ids, vector_literal(vectors), metadata, strict=True)]


async def bulk_load(broker: str, topic: str, partitions: int, events: list[Line]) -> None:
    """Send every event with batching and ``acks=all`` (as ``streamvec produce`` does); returns
    when the broker has acknowledged all."""
    await produce(broker, topic, partitions, events)
