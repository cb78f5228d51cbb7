"""The Debezium CDC input: its topic's parser, after a startup check that it can be consumed.

The ingest agent writes each document into the table partition of the record it came
from, so Faust co-partitions every input topic with the vectors table: the CDC topic must
have exactly ``STREAMVEC_PARTITIONS`` partitions. A mismatch found only at the first
write would crash the agent mid-stream; found here, the worker refuses to start and says
how to fix it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from aiokafka.errors import KafkaError

from app.settings import ENV_PREFIX, Settings
from app.topics import partitions_of, run_before_faust
from index.records.debezium import parse_debezium
from index.records.events import Event
from index.exceptions import StreamvecError

Parser = Callable[[bytes | None, bytes | None], Event]


class CdcTopicError(StreamvecError, RuntimeError):
    """The CDC topic cannot be consumed as configured; the message names the fix."""


def cdc_parsers(settings: Settings, dim: int) -> dict[str, Parser]:
    """``{CDC topic: Debezium parser}`` once the topic checks out; empty when CDC is off."""
    if not settings.cdc_topic:
        return {}
    check_copartitioned(settings.broker, settings.cdc_topic, settings.partitions)
    return {settings.cdc_topic: functools.partial(parse_debezium, dim=dim, mapping=settings.cdc_mapping)}


def check_copartitioned(broker: str, topic: str, partitions: int) -> None:
    """Raise :class:`CdcTopicError` unless ``topic`` exists with ``partitions`` partitions."""
    count = run_before_faust(_partition_count(broker, topic))
    if count is None:
        raise CdcTopicError(
            f"the CDC topic {topic!r} ({ENV_PREFIX}CDC_TOPIC) does not exist on {broker}. Create it with "
            f"{partitions} partitions before the connector first writes to it (kafka-topics.sh --create --topic "
            f"{topic} --partitions {partitions}), or set topic.creation.default.partitions={partitions} in the "
            "Debezium connector; a broker that auto-creates it gives it its default count (often 1)")
    if count != partitions:
        raise CdcTopicError(
            f"the CDC topic {topic!r} has {count} partitions but {ENV_PREFIX}PARTITIONS is {partitions}; they must "
            f"be equal (the vectors table is co-partitioned with its input topics). Either run this app with "
            f"{ENV_PREFIX}PARTITIONS={count} (a new {ENV_PREFIX}APP_ID if its topics already exist), or let the "
            f"connector write to a new topic with {partitions} partitions and snapshot again (adding partitions "
            "to this topic would move rows to other partitions)")


async def _partition_count(broker: str, topic: str) -> int | None:
    """Partitions of ``topic``, ``None`` if it does not exist (asked without auto-creating it)."""
    try:
        return len(await partitions_of(broker, topic)) or None
    except KafkaError as exc:
        raise CdcTopicError(f"cannot check the CDC topic {topic!r} on {broker}: {exc!r}; is "
                            f"{ENV_PREFIX}BROKER right and the broker up?") from None
