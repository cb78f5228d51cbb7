"""The watchlist as a global table: written once by the group, held whole by every worker.

Two parts, the way Kafka Streams keeps a global table:

* :class:`WatchlistProcessor`, a group agent on ``<app id>-watchlist`` (the event contract):
  it validates each pattern (bad ones are dead-lettered), applies the version rule, embeds
  texts once, and writes the result to the compacted internal topic
  ``<app id>-watchlist-patterns`` (key = pattern id, value = a table record with the vector).
* :class:`PatternReader`, on every worker: a consumer outside the group that reads all of
  ``<app id>-watchlist-patterns`` from the beginning and keeps reading, into the worker's
  :class:`~index.uses.watchlist.Watchlist`. That topic is the global table's changelog: a worker
  that starts reads it whole, with no model run, and holds every pattern.

Only winners reach the patterns topic (the processor decides with the reader's view, after
waiting until the reader has caught up with the topic), so compaction, which keeps the last
record of each id, keeps the right one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord
from faust.types import EventT

from agents.deadletters import DeadLetter, dead_letter_records, refusal
from agents.ingest import Sender
from index.exceptions import StreamvecError
from index.records import codec
from index.records.events import Event, EventError, Limits, apply_limits, parse_event
from index.uses.watchlist import Pattern, Watchlist, pattern_options, supersedes
from agents.producer import Outgoing

logger = logging.getLogger(__name__)
_RESTART_PAUSE = 2.0
_PROBE_TEXT = "streamvec model probe"
CATCH_UP_WAIT = 10.0
"""Longest wait inside a batch for the patterns reader to reach the topic's end. Unbounded, a
reader that is down held the batch through a rebalance (Faust's ``wait_empty`` has no timeout),
and the member was evicted (review finding SP-16); past it the batch fails and is retried."""


class PatternsBehind(StreamvecError):
    """The patterns topic has not been read to its end yet: the watchlist batch must wait."""


class PatternReader:
    """Keeps a :class:`Watchlist` equal to the patterns topic; see the module docstring."""

    def __init__(self, bootstrap: str, topic: str, watchlist: Watchlist, default_threshold: float) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.watchlist = watchlist
        self.default_threshold = default_threshold
        self.loaded = asyncio.Event()  # read to where the topic ended when the reader started
        self._consumer: AIOKafkaConsumer | None = None
        self._partitions: list[TopicPartition] = []
        self._applied: dict[TopicPartition, int] = {}  # next offset to apply
        self._progress = asyncio.Condition()

    async def run(self, partitions: Sequence[int]) -> None:
        """Read ``partitions`` of the topic forever (a worker task); a failure (the broker away)
        restarts the reading where it stopped."""
        if not partitions:
            raise ValueError(f"topic {self.topic} has no partitions: it must exist before it is read")
        self._partitions = [TopicPartition(self.topic, n) for n in sorted(partitions)]
        while True:
            try:
                await self._read()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 — keep the watchlist alive; the log says why
                logger.exception("reading %s failed; starting again in %.0f s", self.topic, _RESTART_PAUSE)
                await asyncio.sleep(_RESTART_PAUSE)

    async def caught_up(self) -> None:
        """Wait until every record the topic holds now has been applied (the writer's barrier)."""
        await self.loaded.wait()
        async with self._progress:
            while self._consumer is None:
                await self._progress.wait()
            ends = await self._consumer.end_offsets(self._partitions)
            while not self._reached(ends):
                await self._progress.wait()

    async def _read(self) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, auto_offset_reset="earliest",
                                    enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign(self._partitions)
            if self._applied:  # a restart: go on from what is applied
                for tp in self._partitions:
                    consumer.seek(tp, self._applied.get(tp, 0))
            start_ends = await consumer.end_offsets(self._partitions)
            self._consumer = consumer
            while True:
                batches = await consumer.getmany(*self._partitions, timeout_ms=1000)
                for records in batches.values():
                    self._apply(records)
                for tp in self._partitions:  # past what was applied, and past compacted gaps
                    self._applied[tp] = await consumer.position(tp)
                if not self.loaded.is_set() and self._reached(start_ends):
                    self.loaded.set()
                    logger.info("watchlist loaded from %s: %d patterns", self.topic, len(self.watchlist))
                async with self._progress:
                    self._progress.notify_all()
        finally:
            self._consumer = None
            await consumer.stop()

    def _reached(self, ends: dict[TopicPartition, int]) -> bool:
        return all(self._applied.get(tp, 0) >= end for tp, end in ends.items())

    def _apply(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        upserts: dict[str, Pattern] = {}
        deletes: dict[str, int | None] = {}
        for record in records:
            if record.key is None:
                continue
            pattern_id = record.key.decode("utf-8", "replace")
            try:
                pattern = self._pattern(pattern_id, record.value)
            except (codec.CodecError, EventError) as exc:  # written by another version, or by hand
                logger.error("%s partition %d offset %d: pattern %r skipped: %s", record.topic, record.partition,
                             record.offset, pattern_id, exc)
                continue
            upserts.pop(pattern_id, None)
            deletes.pop(pattern_id, None)
            if isinstance(pattern, Pattern):
                upserts[pattern_id] = pattern
            else:
                deletes[pattern_id] = pattern
        self.watchlist.apply(upserts.values(), deletes.items())

    def _pattern(self, pattern_id: str, value: bytes | None) -> Pattern | int | None:
        """The pattern a record holds, or the version of its delete (None: unversioned)."""
        record = None if value is None else codec.decode(value)
        if record is None or record.deleted:
            return None if record is None else record.version
        threshold, labels = pattern_options(record.metadata, self.default_threshold)
        return Pattern(pattern_id, np.asarray(record.vector, dtype=np.float32), threshold, labels, record.version)


class Embedding(Protocol):
    """What the processor needs of the model (the worker's embedding service)."""

    dim: int

    async def embed(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass
class _Change:
    source: EventT
    event: Event
    vector: np.ndarray | None


class WatchlistProcessor:
    """Turns a batch of watchlist events into pattern records and dead letters."""

    def __init__(self, reader: PatternReader, sender: Sender, dead_letter_topic: str, embedding: Embedding,
                 limits: Limits) -> None:
        self.reader = reader
        self.sender = sender
        self.dead_letter_topic = dead_letter_topic
        self.embedding = embedding
        self.limits = limits

    async def process(self, batch: Sequence[EventT]) -> None:
        try:
            await asyncio.wait_for(self.reader.caught_up(), CATCH_UP_WAIT)
        except asyncio.TimeoutError:
            raise PatternsBehind(f"the patterns topic {self.reader.topic} was not read to its end within "
                                 f"{CATCH_UP_WAIT:.0f} s; the batch is retried (see the worker log for the reader)") \
                from None
        refused: list[DeadLetter] = []
        changes = self._accept(batch, refused)
        await self._embed(changes, refused)
        patterns = [_outgoing(self.reader.topic, change) for change in changes
                    if change.vector is not None or change.event.op == "delete"]
        await self.sender.send_all(patterns + dead_letter_records(refused, self.dead_letter_topic))
        for letter in refused:
            logger.warning("watchlist partition %d offset %d: dead-lettered (%s): %s",
                           letter.partition, letter.offset, letter.reason, letter.error)

    def _accept(self, batch: Sequence[EventT], refused: list[DeadLetter]) -> list[_Change]:
        versions: dict[str, int | None] = {}
        changes = []
        for source in batch:
            message = source.message
            try:
                event = apply_limits(parse_event(message.key, message.value, self.reader.watchlist.dim), self.limits)
                if event.op == "upsert":
                    pattern_options(event.metadata, self.reader.default_threshold)
            except EventError as exc:
                refused.append(refusal(source, exc.reason, str(exc)))
                continue
            prior = versions[event.id] if event.id in versions else self.reader.watchlist.version_of(event.id)
            if not supersedes(event.version, prior):
                logger.info("watchlist: pattern %r version %s is not newer than %s; ignored", event.id,
                            event.version, prior)
                continue
            versions[event.id] = event.version
            changes.append(_Change(source, event, event.vector))
        return changes

    async def _embed(self, changes: list[_Change], refused: list[DeadLetter]) -> None:
        """One model call for the batch; if it fails, one by one, dead-lettering the texts that fail alone."""
        todo = [change for change in changes if change.event.op == "upsert" and change.vector is None]
        if not todo:
            return
        try:
            vectors = list(await self.embedding.embed([change.event.text or "" for change in todo]))
        except Exception as exc:  # noqa: BLE001 — tell a bad text from a broken model below
            logger.warning("watchlist: embedding %d patterns failed (%s); embedding them one by one", len(todo), exc)
            vectors = [await self._embed_one(change, refused) for change in todo]
        for change, vector in zip(todo, vectors, strict=True):
            change.vector = vector

    async def _embed_one(self, change: _Change, refused: list[DeadLetter]) -> np.ndarray | None:
        try:
            return (await self.embedding.embed([change.event.text or ""]))[0]
        except Exception as exc:  # noqa: BLE001 — blame the text only if the model still embeds another one
            await self.embedding.embed([_PROBE_TEXT])  # raises if the model is broken: the batch is retried
            refused.append(refusal(change.source, "embed_failed", f"the model failed on this text: {exc}"))
            return None


def _outgoing(topic: str, change: _Change) -> Outgoing:
    event = change.event
    key = event.id.encode()
    if event.op == "delete":
        # A versioned delete stays as a record without a vector, so an older upsert cannot return.
        value = None if event.version is None else codec.encode(codec.Record(vector=None, version=event.version))
        return Outgoing(topic, key, value)
    return Outgoing(topic, key, codec.encode(codec.Record(vector=change.vector, metadata=event.metadata,
                                                          version=event.version, text_hash=event.text_hash,
                                                          ts=event.ts)))
