"""The local broker launchers start brokers real Kafka clients can use, and clean up after them.

A broker that cannot start fails these tests (never skips them): CI must notice a missing
``make install`` or a broken Tansu wheel.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from app.brokers import BrokerError, BrokerHandle, start_kafka, start_tansu

pytestmark = pytest.mark.integration

Starter = Callable[[], BrokerHandle]
STARTERS: dict[str, Starter] = {"kafka": start_kafka, "tansu": start_tansu}


def _start(kind: str) -> BrokerHandle:
    try:
        return STARTERS[kind]()
    except BrokerError as exc:
        pytest.fail(f"{kind} broker did not start: {exc}")


async def _round_trip(url: str, topic: str, count: int) -> dict[bytes, bytes]:
    """Create ``topic`` with 4 partitions, produce ``count`` keyed records, read them back."""
    admin = AIOKafkaAdminClient(bootstrap_servers=url)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])
    finally:
        await admin.close()

    producer = AIOKafkaProducer(bootstrap_servers=url)
    await producer.start()
    try:
        for i in range(count):
            await producer.send_and_wait(topic, f"value-{i}".encode(), key=f"key-{i}".encode())
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=url,
        group_id=f"g-{topic}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    received: dict[bytes, bytes] = {}
    try:
        async with asyncio.timeout(60):
            while len(received) < count:
                batch = await consumer.getmany(timeout_ms=1000)
                for records in batch.values():
                    for record in records:
                        assert record.key is not None and record.value is not None
                        received[record.key] = record.value
        partitions = consumer.partitions_for_topic(topic)
    finally:
        await consumer.stop()
    assert partitions == {0, 1, 2, 3}
    return received


@pytest.mark.timeout(180)
@pytest.mark.parametrize("kind", sorted(STARTERS))
def test_broker_round_trip(kind: str) -> None:
    broker = _start(kind)
    try:
        assert broker.kind == kind and broker.running()
        received = asyncio.run(_round_trip(broker.url, f"t-{uuid.uuid4().hex[:8]}", 10))
    finally:
        broker.stop()
    assert received == {f"key-{i}".encode(): f"value-{i}".encode() for i in range(10)}
    assert not broker.running()
    assert not broker.data_dir.exists(), "a temp data dir made by the launcher is removed on stop"


@pytest.mark.timeout(60)
def test_port_in_use_is_an_error_not_a_false_start() -> None:
    holder = _start("tansu")
    try:
        with pytest.raises(BrokerError, match="already listens"):
            start_tansu(port=int(holder.url.rsplit(":", 1)[1]))
    finally:
        holder.stop()


def test_missing_kafka_jars_say_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(BrokerError, match="make install"):
        start_kafka(lib_dir=tmp_path)


@pytest.mark.timeout(120)
def test_a_cluster_id_starting_with_a_dash_formats(monkeypatch: pytest.MonkeyPatch) -> None:
    """One random cluster id in 64 starts with "-"; the format step must not take it for an option."""
    import app.brokers.kafka as kafka

    monkeypatch.setattr(kafka, "new_cluster_id", lambda: "-" + "A" * 21)
    try:
        broker = start_kafka()
    except BrokerError as exc:
        pytest.fail(f"Kafka did not start with a cluster id that starts with '-': {exc}")
    broker.stop()
