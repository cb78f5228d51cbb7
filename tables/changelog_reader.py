"""Reading a range of a partition straight from the broker, outside Faust's consumer.

The store asks for the changelog records Faust's recovery consumer skipped
(:mod:`tables.changelog_order`); ingest asks which offsets of an input range hold records at all
(:meth:`index.records.progress.Progress.settle`), with the input consumer's isolation level.
A consumer of its own, with no group, assigned the one partition and seeked to the range's start:
Faust's consumer is left alone, so its positions and its in-flight fetches cannot interfere.

A read gives up only when the broker gives nothing for the timeout, never because the range is
long: a cap on the whole read (30 s until 2026-12-08) made a range that took longer fail, and
the store's next try read an even longer one, held records growing meanwhile (review SP-8).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.types import TP

from index.exceptions import StreamvecError

READ_TIMEOUT_SECONDS = 30.0
"""How long a read waits for the broker to start, or for its position to move on."""


class ChangelogUnreadable(StreamvecError):
    """The broker gave nothing of the range for the timeout (down, or the range is not written
    yet); the store tries again."""


@dataclass(frozen=True)
class ChangelogMessage:
    """The parts of a Kafka message that Faust's RocksDB store applies."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    @property
    def tp(self) -> TP:
        return TP(self.topic, self.partition)


@dataclass(frozen=True)
class ChangelogEvent:
    """A record read here, shaped like the Faust event that would have brought it."""

    message: ChangelogMessage


class ChangelogReader:
    """Reads ranges of partitions from the brokers at ``bootstrap`` (``host:port,…``); with
    ``read_committed``, records of aborted transactions are left out, as Kafka's consumers do."""

    def __init__(self, bootstrap: str, timeout: float = READ_TIMEOUT_SECONDS, *, read_committed: bool = False) -> None:
        self._bootstrap = bootstrap
        self._timeout = timeout
        self._isolation_level = "read_committed" if read_committed else "read_uncommitted"

    async def read(self, topic: str, partition: int, start: int, end: int) -> list[ChangelogEvent]:
        """The records of offsets ``start`` to ``end`` (exclusive) that the broker still has, in order.

        Raises:
            ChangelogUnreadable: the broker did not start, or the read's position stood still, for
                the timeout.
        """
        consumer = AIOKafkaConsumer(bootstrap_servers=self._bootstrap, group_id=None, enable_auto_commit=False,
                                    auto_offset_reset="earliest", isolation_level=self._isolation_level)
        try:
            await asyncio.wait_for(consumer.start(), self._timeout)
            return await self._read(consumer, topic, partition, start, end)
        except Exception as exc:
            raise ChangelogUnreadable(f"{topic} partition {partition}: offsets {start} to {end - 1} not read "
                                      f"({type(exc).__name__}: {exc}); check that the brokers at {self._bootstrap} "
                                      "are up") from exc
        finally:
            await consumer.stop()

    async def _read(self, consumer: AIOKafkaConsumer, topic: str, partition: int, start: int,
                    end: int) -> list[ChangelogEvent]:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, start)
        found: list[ChangelogEvent] = []
        clock = asyncio.get_running_loop().time
        at, moved = start, clock()
        # A compacted range ends early, so the position, not the last offset, says when it is read.
        while (position := await asyncio.wait_for(consumer.position(tp), self._timeout)) < end:
            if position > at:
                at, moved = position, clock()
            elif clock() - moved > self._timeout:
                raise TimeoutError(f"the position stood at offset {position} for {self._timeout:.0f} s")
            fetched = await consumer.getmany(tp, timeout_ms=500)
            found += [ChangelogEvent(ChangelogMessage(topic, partition, r.offset, r.key, r.value))
                      for r in fetched.get(tp, []) if start <= r.offset < end]
        return found
