"""The store reads the changelog records Faust's consumer skipped straight from the broker: a
range comes back whole and in order, a range the broker kept only part of comes back short (as
after compaction), one the broker does not have yet is an error, not a hang, and one that takes
longer than the timeout in all but keeps moving is read to its end."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from app.topics import bootstrap, ensure_topic
from tables.changelog_reader import ChangelogReader, ChangelogUnreadable
from tests.support.kafka import send_records

pytestmark = pytest.mark.integration


def test_a_range_of_a_partition_comes_back_whole_and_in_order(kafka_broker: str) -> None:
    topic = f"reader-{uuid.uuid4().hex[:8]}"
    asyncio.run(ensure_topic(kafka_broker, topic, 1))
    send_records(kafka_broker, topic, [(f"doc-{n}".encode(), f"v{n}".encode()) for n in range(50)])

    events = asyncio.run(ChangelogReader(kafka_broker).read(topic, 0, 10, 20))

    assert [e.message.offset for e in events] == list(range(10, 20))
    assert [(e.message.key, e.message.value) for e in events] == [(f"doc-{n}".encode(), f"v{n}".encode())
                                                                  for n in range(10, 20)]
    assert {(e.message.tp.topic, e.message.tp.partition) for e in events} == {(topic, 0)}


def test_a_range_the_broker_kept_only_part_of_comes_back_short(kafka_broker: str) -> None:
    topic = f"reader-{uuid.uuid4().hex[:8]}"
    asyncio.run(ensure_topic(kafka_broker, topic, 1))
    send_records(kafka_broker, topic, [(f"doc-{n}".encode(), b"v") for n in range(30)])

    async def delete_before(offset: int) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap(kafka_broker))
        await admin.start()
        try:
            await admin.delete_records({TopicPartition(topic, 0): RecordsToDelete(offset)})
        finally:
            await admin.close()
    asyncio.run(delete_before(12))

    events = asyncio.run(ChangelogReader(kafka_broker).read(topic, 0, 5, 20))

    assert [e.message.offset for e in events] == list(range(12, 20))


def test_a_range_past_the_end_is_an_error_after_the_timeout(kafka_broker: str) -> None:
    topic = f"reader-{uuid.uuid4().hex[:8]}"
    asyncio.run(ensure_topic(kafka_broker, topic, 1))
    send_records(kafka_broker, topic, [(b"doc", b"v")])

    with pytest.raises(ChangelogUnreadable, match="not read"):
        asyncio.run(ChangelogReader(kafka_broker, timeout=2.0).read(topic, 0, 0, 5))


def test_a_range_that_takes_longer_than_the_timeout_but_keeps_moving_is_read_whole(
        kafka_broker: str, monkeypatch: pytest.MonkeyPatch) -> None:
    topic = f"reader-{uuid.uuid4().hex[:8]}"
    asyncio.run(ensure_topic(kafka_broker, topic, 1))
    send_records(kafka_broker, topic, [(f"doc-{n}".encode(), b"v") for n in range(12)])
    real_getmany = AIOKafkaConsumer.getmany

    async def slow_getmany(self: AIOKafkaConsumer, *partitions: TopicPartition, **kwargs: object) -> object:
        await asyncio.sleep(0.5)  # a slow broker: 3 records a fetch, half a second each
        return await real_getmany(self, *partitions, timeout_ms=500, max_records=3)
    monkeypatch.setattr(AIOKafkaConsumer, "getmany", slow_getmany)

    began = time.monotonic()
    events = asyncio.run(ChangelogReader(kafka_broker, timeout=1.5).read(topic, 0, 0, 12))

    assert [e.message.offset for e in events] == list(range(12))
    assert time.monotonic() - began > 1.5, "the read was meant to take longer than its timeout"
