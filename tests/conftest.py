"""Session fixtures: a real Kafka broker for every integration test, and producers.

The broker is started by the suite (or taken from ``STREAMVEC_TEST_BROKER``). If it
cannot start, every test that needs it fails and says why: a skipped integration
suite must never look green.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.brokers.process import BrokerError, BrokerHandle
from app.producer import Line, produce

REPO = Path(__file__).resolve().parents[1]


def running_broker(start: Callable[[], BrokerHandle], kind: str) -> Iterator[str]:
    """Yield a started broker's URL and stop it after; a broker that cannot start fails the test."""
    try:
        broker = start()
    except BrokerError as exc:
        pytest.fail(f"the test {kind} broker did not start, so integration tests cannot run: {exc}")
    try:
        yield broker.url
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[str]:
    """``host:port`` of a running Apache Kafka (KRaft, one node), or ``STREAMVEC_TEST_BROKER``."""
    given = os.environ.get("STREAMVEC_TEST_BROKER")
    if given:
        yield given
        return
    from app.brokers.kafka import start_kafka

    yield from running_broker(start_kafka, "Kafka")


def send_events(broker: str, app_id: str, events: list[dict[str, Any]], partitions: int = 8,
                tombstones: tuple[str, ...] = ()) -> None:
    """Produce events (and null-value deletes) to ``<app_id>-events`` and wait for the acks."""
    lines = [Line(e["id"].encode(), json.dumps(e).encode()) for e in events]
    lines += [Line(doc_id.encode(), None) for doc_id in tombstones]
    asyncio.run(produce(broker, f"{app_id}-events", partitions, lines, progress=False))


def sample_texts(count: int) -> list[dict[str, Any]]:
    """The first ``count`` events of the demo data set (real, distinct texts)."""
    with (REPO / "data" / "sample.jsonl").open() as handle:
        return [json.loads(line) for _, line in zip(range(count), handle)]
