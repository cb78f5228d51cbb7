"""Kafka topics as streamvec uses them outside Faust: create one, count its partitions, read
it from the beginning to its end.

The CLI, the CDC start-up check, the dead-letter commands and the cluster secret all need
these; one copy keeps the aiokafka traps in one place (see :func:`read_to_end`).
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import ConsumerRecord


def bootstrap(broker: str) -> str:
    """aiokafka wants ``host:port[,host:port]``; Faust's URL form is ``kafka://host:port;…``."""
    return broker.split("://", 1)[-1].replace(";", ",")


async def ensure_topic(broker: str, topic: str, partitions: int, configs: dict[str, str] | None = None) -> None:
    """Create a topic with the app's partition count (auto-creation would give it one); a
    topic someone else created meanwhile is fine (the broker answers "exists", no exception)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap(broker))
    await admin.start()
    try:
        existing = await admin.list_topics()
        if topic not in existing:
            await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1,
                                                topic_configs=configs or {})])
    finally:
        await admin.close()


async def partitions_of(broker: str, topic: str) -> list[TopicPartition]:
    """The topic's partitions in order, none if it does not exist. Asked of the admin API: a
    consumer's metadata only covers topics it already reads, and asking it about others could
    auto-create them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap(broker))
    try:
        await admin.start()
        return await partitions_known_to(admin, topic)
    finally:
        await admin.close()


async def partitions_known_to(admin: AIOKafkaAdminClient, topic: str) -> list[TopicPartition]:
    """:func:`partitions_of` with a started admin client of the caller's."""
    if topic not in await admin.list_topics():
        return []
    (described,) = await admin.describe_topics([topic])
    return [TopicPartition(topic, n) for n in sorted(p["partition"] for p in described["partitions"])]


async def read_to_end(broker: str, partitions: list[TopicPartition],
                      last: int | None = None) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``partitions`` (with ``last``: only the last ``last`` of each) up to the
    end offsets they have now, in offset order per partition: records written meanwhile are not
    waited for.

    No group and ``auto_offset_reset="earliest"``: every assigned partition starts at its
    beginning. An explicit ``seek_to_beginning()`` right after ``assign()`` races with the
    reset that ``assign()`` starts under the default "latest"; inside a Faust worker
    ``getone()`` then waited forever. A ``seek()`` to an offset is safe: aiokafka's fetcher
    does not overwrite a position sought while it fetched the reset offset.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap(broker), group_id=None, auto_offset_reset="earliest")
    try:
        await consumer.start()
        return await read_tail(consumer, partitions, last)
    finally:
        await consumer.stop()


async def read_tail(consumer: AIOKafkaConsumer, partitions: list[TopicPartition],
                    last: int | None = None) -> list[ConsumerRecord[bytes, bytes]]:
    """:func:`read_to_end` with a started consumer of the caller's (no group, ``earliest``), which
    may have read other partitions before: ``assign()`` replaces what it read."""
    consumer.assign(partitions)
    ends = await consumer.end_offsets(partitions)
    if last is not None:
        starts = await consumer.beginning_offsets(partitions)
        for tp in partitions:
            consumer.seek(tp, max(starts[tp], ends[tp] - last))
    found: list[ConsumerRecord[bytes, bytes]] = []
    remaining = [tp for tp in partitions if await consumer.position(tp) < ends[tp]]
    while remaining:
        for tp, records in (await consumer.getmany(*remaining, timeout_ms=1000)).items():
            found += [record for record in records if record.offset < ends[tp]]
        remaining = [tp for tp in remaining if await consumer.position(tp) < ends[tp]]
    return found
