"""Producing the benchmarks' events: a bulk load as fast as Kafka takes it, and a paced feed.

Lines are bring-your-own-vector (``{"id", "vector", "metadata"}``) or text events, keyed by
id, encoded before the clock starts: the figures should be streamvec's, not the cost of the
benchmark's own ``json.dumps``. Vectors are written with 8 significant digits (float32 holds
about 7), which halves the bytes of Python's float repr; pgvector's COPY gets the same text.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence

import numpy as np
from aiokafka import AIOKafkaProducer

from app.cli.producer import Line, produce
from app.topics import bootstrap
from benchmarks.loadstats import vector_literal



def vector_events(ids: Sequence[str], vectors: np.ndarray, metadata: Sequence[dict]) -> list[Line]:
    """BYO-vector events, encoded."""
    return [Line(doc_id.encode(), b'{"id":%s,"vector":%s,"metadata":%s}' % (
                json.dumps(doc_id).encode(), row.encode(), json.dumps(meta).encode()))
            for doc_id, row, meta in zip(ids, vector_literal(vectors), metadata, strict=True)]


def text_events(ids: Sequence[str], texts: Sequence[str]) -> list[Line]:
    """Text events (the worker embeds them), encoded."""
    return [Line(doc_id.encode(), json.dumps({"id": doc_id, "text": text, "metadata": {}}).encode())
            for doc_id, text in zip(ids, texts, strict=True)]


def _producer(broker: str, linger_ms: int) -> AIOKafkaProducer:
    return AIOKafkaProducer(bootstrap_servers=bootstrap(broker), acks="all", linger_ms=linger_ms,
                            max_batch_size=1 << 20, max_request_size=8 << 20, enable_idempotence=False)


async def bulk_load(broker: str, topic: str, partitions: int, events: list[Line]) -> None:
    """Send every event with batching and ``acks=all`` (as ``streamvec produce`` does); returns
    when the broker has acknowledged all."""
    await produce(broker, topic, partitions, events)


async def paced_feed(broker: str, topic: str, events: list[Line], rate: float) -> float:
    """Send ``events`` at ``rate`` per second, each stamped with the wall-clock time it is sent
    (the workers' latency histograms start from it); returns the rate achieved."""
    producer = _producer(broker, linger_ms=1)
    await producer.start()
    try:
        pending = []
        started = time.perf_counter()
        for i, event in enumerate(events):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            pending.append(await producer.send(topic, key=event.key, value=event.value,
                                               timestamp_ms=int(time.time() * 1000)))
        await asyncio.gather(*pending)
        return len(events) / (time.perf_counter() - started)
    finally:
        await producer.stop()
