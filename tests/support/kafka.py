"""Talking to a real broker without streamvec code: produce events and raw records, read a topic
back, count what a topic holds, start a broker for a test.

A broker that cannot start fails the test and says why: a skipped integration suite must never
look green.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.structs import ConsumerRecord

from app.brokers.process import BrokerError, BrokerHandle
from app.cli.producer import Line, produce
from app.topics import bootstrap, ensure_topic

REPO = Path(__file__).resolve().parents[2]
RawRecord = tuple[bytes | None, bytes | None]
DYNAMIC_TOPIC_CONFIG = 1
"""DescribeConfigs' ``config_source`` of a value set on the topic itself (not a broker default)."""


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


def send_records(broker: str, topic: str, records: Sequence[RawRecord]) -> None:
    """Produce raw (key, value) records in order and wait for every ack.

    Unlike ``send_events`` nothing is encoded or checked, so tests can send what a broken
    producer would: bytes that are not JSON, keys that are not UTF-8, no key at all (such a
    record goes to a partition of the producer's choosing). One producer, in order: records
    with the same key keep their order, as they would from a real producer.
    """
    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap(broker), acks="all", linger_ms=5,
                                    max_batch_size=1 << 20, enable_idempotence=False)
        await producer.start()
        try:
            await asyncio.gather(*[await producer.send(topic, key=key, value=value) for key, value in records])
        finally:
            await producer.stop()
    asyncio.run(run())


def read_topic(broker: str, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topic`` up to its current end, read without any streamvec code."""
    async def run() -> list[ConsumerRecord[bytes, bytes]]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap(broker))
        await admin.start()
        try:
            (described,) = await admin.describe_topics([topic])
        finally:
            await admin.close()
        partitions = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
        assert partitions, f"{topic} does not exist"
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap(broker), group_id=None, auto_offset_reset="earliest")
        await consumer.start()
        try:
            consumer.assign(partitions)
            ends = await consumer.end_offsets(partitions)
            records: list[ConsumerRecord[bytes, bytes]] = []
            while behind := [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
                for tp, batch in (await consumer.getmany(*behind, timeout_ms=1000)).items():
                    records += [record for record in batch if record.offset < ends[tp]]
            return records
        finally:
            await consumer.stop()
    return asyncio.run(run())


def create_topic(broker: str, topic: str, partitions: int) -> None:
    asyncio.run(ensure_topic(broker, topic, partitions))


def end_offsets(broker: str, topic: str, partitions: int) -> dict[int, int]:
    """Each partition's end offset: the offset its next record will get."""
    async def run() -> dict[int, int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap(broker), group_id=None)
        await consumer.start()
        try:
            ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
            return {tp.partition: end for tp, end in ends.items()}
        finally:
            await consumer.stop()
    return asyncio.run(run())


def commit_offsets(broker: str, group: str, topic: str, offsets: dict[int, int]) -> None:
    """Commit ``{partition: offset}`` of ``topic`` for consumer group ``group`` while it has no
    member, as a member that left would have (Faust commits what its streams acknowledged)."""
    async def run() -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap(broker), group_id=group, enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign([TopicPartition(topic, p) for p in offsets])
            await consumer.commit({TopicPartition(topic, p): offset for p, offset in offsets.items()})
        finally:
            await consumer.stop()
    asyncio.run(run())


def committed_offsets(broker: str, group: str) -> int:
    """The sum of the consumer group's committed offsets (0 before its first commit)."""
    async def run() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap(broker), request_timeout_ms=10_000)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(group)
            return sum(max(0, meta.offset) for meta in offsets.values())
        finally:
            await admin.close()
    return asyncio.run(run())


def partition_leaders(broker: str, topic: str) -> dict[int, int]:
    """``{partition: id of the broker leading it}``, as the cluster's metadata says now."""
    async def run() -> dict[int, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap(broker))
        await admin.start()
        try:
            (described,) = await admin.describe_topics([topic])
            return {p["partition"]: p["leader"] for p in described["partitions"]}
        finally:
            await admin.close()
    return asyncio.run(run())


def alter_topic(broker: str, topic: str, configs: dict[str, str]) -> None:
    """Set ``configs`` on ``topic``, keeping the rest of its own settings (AlterConfigs replaces
    them all, and a changelog that lost its ``cleanup.policy=compact`` would be deleted by age)."""
    async def run() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap(broker))
        await admin.start()
        try:
            (described,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
            entries = described.to_object()["resources"][0]["config_entries"]
            own = {e["config_names"]: e["config_value"] for e in entries if e["config_source"] == DYNAMIC_TOPIC_CONFIG}
            (response,) = await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic,
                                                                    {**own, **configs})])
        finally:
            await admin.close()
        errors = [(code, message) for code, message, *_ in response.resources if code]
        assert not errors, f"altering {topic}: {errors}"
    asyncio.run(run())


def topic_replication(broker: str, topic: str) -> tuple[int, str | None]:
    """The fewest replicas of any partition of ``topic``, and its own ``min.insync.replicas``
    (``None`` when the topic does not set it and the broker's default applies)."""
    async def run() -> tuple[int, str | None]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap(broker))
        await admin.start()
        try:
            (described,) = await admin.describe_topics([topic])
            (response,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic,
                                                                       {"min.insync.replicas": None})])
        finally:
            await admin.close()
        (entry,) = response.to_object()["resources"][0]["config_entries"]
        own = entry["config_source"] == DYNAMIC_TOPIC_CONFIG
        return min(len(p["replicas"]) for p in described["partitions"]), entry["config_value"] if own else None
    return asyncio.run(run())
