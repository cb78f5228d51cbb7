"""``GET /alerts`` and ``GET /dead-letters`` read the newest records with one consumer per worker,
kept between requests, and answer 503 within 10 s when the broker is away (review finding SP-22)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid

import pytest

from app.brokers.process import free_port
from app.http.latest import READ_TIMEOUT, LatestRecords
from app.search.query import RequestError
from app.topics import ensure_topic
from tests.support.kafka import send_records

pytestmark = pytest.mark.integration


def test_one_consumer_serves_every_request_and_sees_topics_created_since(kafka_broker: str) -> None:
    alerts, later = (f"latest-{uuid.uuid4().hex[:8]}" for _ in range(2))

    async def scenario() -> None:
        latest = LatestRecords(kafka_broker)
        try:
            assert await latest.alerts(alerts, 5) == []  # no such topic yet: nothing, not an error
            consumer = latest._consumer
            await ensure_topic(kafka_broker, alerts, 3)
            await asyncio.to_thread(send_records, kafka_broker, alerts,
                                    [(f"d{n}".encode(), json.dumps({"kind": "novel", "n": n}).encode())
                                     for n in range(12)])
            found = await latest.alerts(alerts, 5)
            assert len(found) == 5 and {a["kind"] for a in found} == {"novel"}
            assert sorted(a["n"] for a in await latest.alerts(alerts, 100)) == list(range(12))
            await ensure_topic(kafka_broker, later, 1)
            await asyncio.to_thread(send_records, kafka_broker, later, [(b"k", b'{"kind": "drift"}')])
            assert [a["kind"] for a in await latest.alerts(later, 5)] == ["drift"]
            assert latest._consumer is consumer, "a request started a consumer of its own"
        finally:
            await latest.close()
    asyncio.run(scenario())


def test_nothing_listening_on_the_broker_port_is_a_503_at_once() -> None:
    async def scenario() -> float:
        latest = LatestRecords(f"kafka://127.0.0.1:{free_port()}")
        started = time.monotonic()
        with pytest.raises(RequestError, match="retry when the broker is reachable") as refused:
            await latest.dead_letters("anything", 5)
        assert refused.value.status == 503
        await latest.close()
        return time.monotonic() - started
    assert asyncio.run(scenario()) < 10


def test_a_broker_that_never_answers_is_a_503_after_the_read_timeout() -> None:
    """A listener that takes the connection and says nothing: aiokafka would wait on its own
    request timeouts (40 s and more); the request is answered within READ_TIMEOUT."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)

        async def scenario() -> float:
            latest = LatestRecords(f"kafka://127.0.0.1:{silent.getsockname()[1]}")
            started = time.monotonic()
            with pytest.raises(RequestError, match=f"no answer in {READ_TIMEOUT:.0f} s") as refused:
                await latest.alerts("anything", 5)
            assert refused.value.status == 503
            await latest.close()
            return time.monotonic() - started
        assert READ_TIMEOUT <= asyncio.run(scenario()) < 10


def test_requests_queued_behind_a_silent_broker_are_answered_within_the_timeout_too() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)

        async def scenario() -> list[float]:
            latest = LatestRecords(f"kafka://127.0.0.1:{silent.getsockname()[1]}", timeout=2.0)
            started = time.monotonic()

            async def one() -> float:
                with pytest.raises(RequestError):
                    await latest.alerts("anything", 5)
                return time.monotonic() - started
            took = await asyncio.gather(*(one() for _ in range(4)))
            await latest.close()
            return took
        assert max(asyncio.run(scenario())) < 3.0
