"""The group's shared secret, which workers present to each other on the ``/internal/*`` endpoints.

It is ``STREAMVEC_CLUSTER_SECRET`` when given; otherwise the first worker of the group draws a
random one and shares it through the one-partition topic ``<app id>-cluster-secret`` (kept
forever, never compacted), so a group works with no setup and every member agrees on the first
record of that topic. :mod:`app.http.auth` checks it on the way in; :mod:`app.search.fanout`
sends it on the way out. The secret is never logged.
"""

from __future__ import annotations

import asyncio
import logging
import secrets

from aiokafka import AIOKafkaProducer, TopicPartition

from app.replication import DEFAULT_REPLICATION_FACTOR
from app.topics import bootstrap, ensure_topic, read_to_end

logger = logging.getLogger(__name__)

SECRET_HEADER = "X-Streamvec-Secret"
_READ_TIMEOUT = 30.0  # seconds


class ClusterSecret:
    """The group's shared secret, fetched once (from the setting or the secret topic)."""

    def __init__(self, configured: str, broker: str, topic: str,
                 replication_factor: int = DEFAULT_REPLICATION_FACTOR) -> None:
        self._value = configured or None
        self._broker = broker
        self._topic = topic
        self._replication_factor = replication_factor
        self._lock = asyncio.Lock()

    async def get(self) -> str:
        if self._value is None:
            async with self._lock:
                if self._value is None:
                    self._value = await _shared_secret(self._broker, self._topic, self._replication_factor)
                    logger.info("cluster secret taken from topic %s", self._topic)
        return self._value


async def _shared_secret(broker: str, topic: str, replication_factor: int) -> str:
    """The first record of the secret topic, after writing one if the topic is empty."""
    await ensure_topic(broker, topic, 1, {"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"},
                       replication_factor)
    first = await _first_record(broker, topic)
    if first is None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap(broker), acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(topic, key=b"secret", value=secrets.token_urlsafe(32).encode())
        finally:
            await producer.stop()
        first = await _first_record(broker, topic)
    assert first is not None, f"topic {topic} is empty right after a write"
    return first


async def _first_record(broker: str, topic: str) -> str | None:
    try:
        records = await asyncio.wait_for(read_to_end(broker, [TopicPartition(topic, 0)]), _READ_TIMEOUT)
    except asyncio.TimeoutError:
        raise RuntimeError(f"could not read the cluster secret from topic {topic}; is the broker healthy?") from None
    return records[0].value.decode() if records else None
