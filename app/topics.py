"""Kafka topics as streamvec uses them outside Faust: create one, count its partitions, read
it from the beginning to its end, check how it is replicated.

The CLI, the CDC start-up check, the dead-letter commands and the cluster secret all need
these; one copy keeps the aiokafka traps in one place (see :func:`read_to_end`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from app.replication import DEFAULT_REPLICATION_FACTOR, MIN_INSYNC, UNCLEAN_ELECTION, Replication, \
    plan_replication, topic_warnings

logger = logging.getLogger(__name__)
T = TypeVar("T")


def bootstrap(broker: str) -> str:
    """aiokafka wants ``host:port[,host:port]``; Faust's URL form is ``kafka://host:port;…``."""
    return broker.split("://", 1)[-1].replace(";", ",")


def run_before_faust(work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` to its end on a private event loop: the app is built synchronously, before
    Faust's loop runs, and the caller's current loop must stay untouched for Faust."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(work)
    finally:
        loop.close()


async def ensure_topic(broker: str, topic: str, partitions: int, configs: dict[str, str] | None = None,
                       replication_factor: int = DEFAULT_REPLICATION_FACTOR) -> None:
    """Create a topic with the app's partition count (auto-creation would give it one) and
    ``replication_factor`` replicas (fewer on a smaller cluster: :func:`plan_replication`); a
    topic someone else created meanwhile is fine (the broker answers "exists", no exception)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap(broker))
    await admin.start()
    try:
        existing = await admin.list_topics()
        if topic not in existing:
            replication = plan_replication(replication_factor, await broker_count(admin))
            if replication.warning:
                logger.warning("creating topic %s: %s", topic, replication.warning)
            await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=replication.factor,
                                                topic_configs={**replication.topic_configs, **(configs or {})})])
    finally:
        await admin.close()


async def broker_count(admin: AIOKafkaAdminClient) -> int:
    """How many brokers the cluster's metadata lists now (a broker that is down is not listed)."""
    return len((await admin.describe_cluster())["brokers"])


async def check_replication(broker: str, wanted: int, topics: Iterable[str]) -> tuple[Replication, list[str]]:
    """The replication to create topics with (:func:`plan_replication` on the cluster's broker
    count), and what is unsafe about those of ``topics`` that exist (:func:`topic_warnings`)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap(broker))
    try:
        await admin.start()
        replication = plan_replication(wanted, await broker_count(admin))
        existing = sorted(set(topics) & set(await admin.list_topics()))
        if not existing:
            return replication, []
        replicas = {described["topic"]: min(len(p["replicas"]) for p in described["partitions"])
                    for described in await admin.describe_topics(existing)}
        try:
            configs, why = await _safety_configs(admin, existing), "the broker reported an error for it"
        except KafkaError as exc:  # a broker without DescribeConfigs, say: the worker still starts
            configs, why = {}, repr(exc)
        unread = [f"the settings of topic {topic} could not be read ({why}), so they were not checked"
                  for topic in existing if topic not in configs]
        return replication, unread + [warning for topic in existing if topic in configs
                                      for warning in topic_warnings(topic, replicas[topic], configs[topic],
                                                                    replication, bootstrap(broker))]
    finally:
        await admin.close()


async def _safety_configs(admin: AIOKafkaAdminClient, topics: list[str]) -> dict[str, dict[str, str]]:
    """The effective ``min.insync.replicas`` and ``unclean.leader.election.enable`` of each topic
    (its own value, else the broker's default); a topic the broker reports an error for is left out."""
    wanted = {MIN_INSYNC: None, UNCLEAN_ELECTION: None}
    responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic, wanted)
                                              for topic in topics])
    return {resource["resource_name"]: {entry["config_names"]: entry["config_value"]
                                        for entry in resource["config_entries"]}
            for response in responses for resource in response.to_object()["resources"]
            if resource["error_code"] == 0}


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
