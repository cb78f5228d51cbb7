"""Writes through Kafka: events keyed by document id onto ``<app id>-events``, acked by all replicas.

The workers own the events topic (they create it with the group's partition count), so
the writer only checks that it exists: a topic auto-created by the broker would get the
broker's default count and split the group's partitions.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from streamvec.errors import WriteError
from streamvec.models import WriteResult

Record = tuple[bytes, bytes | None]  # (key, value); a None value is a tombstone (delete)


def bootstrap(broker: str) -> str:
    """``host:port[,host:port]`` from that or the workers' ``kafka://host:port;…`` form."""
    return broker.split("://", 1)[-1].replace(";", ",")


class EventWriter:
    """One producer, started on first use."""

    def __init__(self, broker: str, topic: str) -> None:
        self.broker = broker
        self.topic = topic
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def send(self, records: Sequence[Record]) -> WriteResult:
        """Send every record, wait until each is acknowledged; the highest offset per partition."""
        producer = await self._started()
        try:
            pending = [await producer.send(self.topic, key=key, value=value) for key, value in records]
            written = await asyncio.gather(*pending)
        except KafkaError as exc:
            raise WriteError(f"writing to {self.topic} on {self.broker} failed: {exc}; some events may have been "
                             "written: sending them again is safe (upserts by id are idempotent)") from exc
        offsets: dict[int, int] = {}
        for meta in written:
            offsets[meta.partition] = max(meta.offset, offsets.get(meta.partition, -1))
        return WriteResult(count=len(records), topic=self.topic, offsets=offsets)

    async def _started(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                await self._check_topic()
                producer = AIOKafkaProducer(bootstrap_servers=bootstrap(self.broker), acks="all", linger_ms=5,
                                            enable_idempotence=False)
                try:
                    await producer.start()
                except KafkaError as exc:
                    await producer.stop()
                    raise WriteError(f"cannot reach the Kafka broker at {self.broker}: {exc}") from exc
                self._producer = producer
            return self._producer

    async def _check_topic(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap(self.broker))
        try:
            await admin.start()
            topics = await admin.list_topics()
        except KafkaError as exc:
            raise WriteError(f"cannot reach the Kafka broker at {self.broker}: {exc}; check broker=") from exc
        finally:
            await admin.close()
        if self.topic not in topics:
            raise WriteError(f"topic {self.topic} does not exist on {self.broker}: start a worker with this app id "
                             "first (it creates the topic with the group's partition count), or check app_id=")


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
