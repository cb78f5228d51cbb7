"""The ingest agent: events in, records and index entries out, one batch at a time.

A batch is parsed (by the parser of the topic each record came from), held to the size
limits, filtered by version, embedded with one model call (in a thread), and written to
the vectors table event by event. An event that cannot be indexed — it breaks the
contract, or embedding or writing it fails — goes to the dead-letter topic instead. The
batch is acknowledged only after the dead letters are acknowledged by the broker and the
partition indexes have taken the previous batch's writes, so ingest slows down rather
than queueing unbounded index work, and no event is acknowledged without an outcome.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import faust
import numpy as np
from faust.types import EventT

from agents.deadletters import DeadLetter, DeadLetterSink, refusal
from agents.observers import BatchObserver, DeletedDocument, IndexedDocument
from agents.outcomes import Outcomes
from index import codec
from index.embedder import TextEmbeddings
from index.events import Event, EventError, Limits, apply_limits
from tables.vectors import VectorTable, writing_for

logger = logging.getLogger(__name__)

Parser = Callable[[bytes | None, bytes | None], Event]
# (kind, seconds from each event's Kafka timestamp until its write was in the index);
# kind is "text" (the model's vector, new or reused) or "vector" (the producer's vector,
# and deletes: neither waits for the model).
OnSearchable = Callable[[str, Sequence[float]], None]
_PROBE_TEXT = "streamvec model probe"


class Embedding(Protocol):
    """What the agent needs from the model: its dimension and batch embedding off the loop."""

    dim: int

    async def embed(self, texts: Sequence[str]) -> np.ndarray: ...

    async def embed_with_stats(self, texts: Sequence[str]) -> TextEmbeddings: ...


class ModelUnavailable(RuntimeError):
    """The model fails on every text, so no single event is to blame: the batch must not be acked."""


@dataclass
class _Accepted:
    source: EventT
    event: Event
    vector: np.ndarray | None
    embedded: bool = False  # the model made ``vector`` in this batch
    norm: float | None = None  # the model's norm before normalising (embedding health)
    truncated: bool | None = None  # the text was longer than the model reads

    @property
    def kind(self) -> str:
        return "text" if self.event.op == "upsert" and self.event.vector is None else "vector"


@dataclass(frozen=True)
class _Prior:
    """A document as the next event finds it: as stored, or as an earlier event of the batch leaves it."""

    version: int | None
    live: bool
    text_hash: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    vector: np.ndarray | None = None  # also None while an earlier event of the batch waits for the model

    @classmethod
    def stored(cls, record: codec.Record | None) -> _Prior | None:
        if record is None:
            return None
        return cls(record.version, not record.deleted, record.text_hash, record.metadata, record.vector)

    @classmethod
    def after(cls, item: _Accepted) -> _Prior | None:
        event = item.event
        if event.op == "delete":
            return None if event.version is None else cls(event.version, live=False)
        return cls(event.version, True, event.text_hash, event.metadata, item.vector)


class IngestProcessor:
    """Turns one batch of Kafka events into table writes and dead letters; see the module docstring."""

    def __init__(self, table: VectorTable, embedding: Embedding, outcomes: Outcomes, *,
                 parsers: Mapping[str, Parser], limits: Limits, dead_letters: DeadLetterSink,
                 on_searchable: OnSearchable | None = None, observers: Sequence[BatchObserver] = ()) -> None:
        self.table = table
        self.embedding = embedding
        self.outcomes = outcomes
        self.parsers = parsers
        self.limits = limits
        self.dead_letters = dead_letters
        self.on_searchable = on_searchable
        self.observers = tuple(observers)
        self._index_sync: asyncio.Future[None] | None = None

    async def process(self, batch: Sequence[EventT]) -> None:
        refused: list[DeadLetter] = []
        accepted = self._accept(batch, refused)
        embedded = await self._embed_missing(accepted, refused)
        written = [item for item in embedded if self._write(item, refused)]
        await self._dead_letter(refused)
        await self._notify(written)
        # The index may trail the table by one batch: its inserts (writer thread) overlap
        # the next batch's embedding, and waiting here still bounds the queue.
        if self._index_sync is not None:
            await self._index_sync
        self._index_sync = asyncio.ensure_future(self.table.store.synced())
        if self.on_searchable is not None and written:
            self._index_sync.add_done_callback(partial(self._report_searchable, _timestamps_by_kind(written)))

    def _accept(self, batch: Sequence[EventT], refused: list[DeadLetter]) -> list[_Accepted]:
        """Parse, limit, and apply the version and "unchanged" rules; later events in the
        batch see what earlier ones will have written."""
        latest: dict[str, _Prior | None] = {}
        accepted = []
        for source in batch:
            message = source.message
            try:
                event = apply_limits(self.parsers[message.topic](message.key, message.value), self.limits)
            except EventError as exc:
                refused.append(refusal(source, exc.reason, str(exc)))
                continue
            prior = latest[event.id] if event.id in latest else _Prior.stored(self._stored(source, event.id))
            if _is_stale(event, prior):
                self.outcomes.add(message.partition, "stale")
                continue
            if _is_unchanged(event, prior):
                self.outcomes.add(message.partition, "unchanged")
                continue
            item = _Accepted(source, event, event.vector if event.vector is not None else _reusable(event, prior))
            latest[event.id] = _Prior.after(item)
            accepted.append(item)
        return accepted

    def _stored(self, source: EventT, doc_id: str) -> codec.Record | None:
        with writing_for(source):
            data = self.table.get(doc_id.encode())
        return None if data is None else codec.decode(data)

    async def _embed_missing(self, accepted: list[_Accepted], refused: list[DeadLetter]) -> list[_Accepted]:
        """One model call for the batch: the embedder sorts it by length, so a whole batch
        pads far less than chunks of it would (measured: 254 vs 190 texts/s for chunks of 64).

        If that call fails, the texts are embedded one by one and only those that fail
        alone are dead-lettered; returns the items that can be written."""
        todo = [item for item in accepted if item.event.op == "upsert" and item.vector is None]
        self.outcomes.embeddings_reused += sum(
            1 for item in accepted if item.event.vector is None and item.vector is not None)
        if not todo:
            return accepted
        texts = [item.event.text or "" for item in todo]
        try:
            embedded = await self.embedding.embed_with_stats(texts)
            vectors: Sequence[np.ndarray | None] = list(embedded.vectors)
            for item, norm, truncated in zip(todo, embedded.norms.tolist(), embedded.truncated.tolist(), strict=True):
                item.norm, item.truncated = norm, truncated
        except Exception as exc:  # noqa: BLE001 — any model error; the retry below tells text from model
            logger.warning("embedding a batch of %d texts failed (%s: %s); embedding them one by one",
                           len(texts), type(exc).__name__, exc)
            vectors = await self._embed_one_by_one(todo, refused)
        for item, vector in zip(todo, vectors, strict=True):
            item.vector = vector
            item.embedded = vector is not None
        return [item for item in accepted if item.event.op == "delete" or item.vector is not None]

    async def _embed_one_by_one(self, todo: list[_Accepted], refused: list[DeadLetter]) -> list[np.ndarray | None]:
        vectors: list[np.ndarray | None] = []
        model_checked = False
        for item in todo:
            try:
                vectors.append((await self.embedding.embed([item.event.text or ""]))[0])
            except Exception as exc:  # noqa: BLE001 — see _embed_missing
                if not model_checked:
                    await self._check_model(exc)
                    model_checked = True
                refused.append(refusal(item.source, "embed_failed", f"the model failed on this text: "
                                                                     f"{type(exc).__name__}: {exc}"))
                vectors.append(None)
        return vectors

    async def _check_model(self, error: Exception) -> None:
        """A text is to blame only if the model still embeds another one; otherwise stop the batch."""
        try:
            await self.embedding.embed([_PROBE_TEXT])
        except Exception as probe_error:
            raise ModelUnavailable(f"the model fails on every text ({type(error).__name__}: {error}; a probe text: "
                                   f"{type(probe_error).__name__}: {probe_error}); the batch stays "
                                   "unacknowledged and is consumed again after a restart: check the worker's "
                                   "model and memory") from probe_error

    def _write(self, item: _Accepted, refused: list[DeadLetter]) -> bool:
        key = item.event.id.encode()
        partition = item.source.message.partition
        try:
            with writing_for(item.source):
                if item.event.op == "delete" and item.event.version is None:
                    self.table.pop(key, None)
                else:
                    self.table[key] = codec.encode(_as_record(item))
        except Exception as exc:  # one event's failed write must not fail its batch
            logger.exception("partition %d offset %d: writing %r failed", partition, item.source.message.offset,
                             item.event.id)
            refused.append(refusal(item.source, "write_failed", f"the table write failed: {type(exc).__name__}: {exc}"))
            return False
        self.outcomes.add(partition, "deleted" if item.event.op == "delete" else "indexed")
        return True

    async def _dead_letter(self, refused: list[DeadLetter]) -> None:
        """Send and wait for the broker's acks; only then count (a failed send fails the batch)."""
        await self.dead_letters.send(refused)
        for letter in refused:
            logger.warning("partition %d offset %d: dead-lettered (%s): %s",
                           letter.partition, letter.offset, letter.reason, letter.error)
            self.outcomes.add_dead_letter(letter.partition, letter.reason)

    async def _notify(self, written: list[_Accepted]) -> None:
        if not self.observers or not written:
            return
        indexed = [_indexed(item) for item in written if item.event.op == "upsert"]
        deleted = [DeletedDocument(item.event.id, item.source.message.partition, item.source.message.offset,
                                   item.event.version) for item in written if item.event.op == "delete"]
        for observer in self.observers:
            await observer.on_batch(indexed, deleted)

    def _report_searchable(self, stamps: dict[str, list[float]], synced: asyncio.Future[None]) -> None:
        if synced.cancelled() or synced.exception() is not None or self.on_searchable is None:
            return
        now = time.time()
        for kind, timestamps in stamps.items():
            self.on_searchable(kind, [now - stamp for stamp in timestamps])


def _indexed(item: _Accepted) -> IndexedDocument:
    message, event = item.source.message, item.event
    assert item.vector is not None
    event_ts = event.ts if event.ts is not None else message.timestamp
    return IndexedDocument(id=event.id, partition=message.partition, offset=message.offset, version=event.version,
                           vector=item.vector, text=event.text, metadata=event.metadata, event_ts=event_ts,
                           embedded=item.embedded, norm=item.norm, truncated=item.truncated)


def _timestamps_by_kind(items: list[_Accepted]) -> dict[str, list[float]]:
    stamps: defaultdict[str, list[float]] = defaultdict(list)
    for item in items:
        if item.source.message.timestamp is not None:
            stamps[item.kind].append(item.source.message.timestamp)
    return dict(stamps)


def _is_stale(event: Event, prior: _Prior | None) -> bool:
    return event.version is not None and prior is not None and prior.version is not None \
        and event.version <= prior.version


def _is_unchanged(event: Event, prior: _Prior | None) -> bool:
    """Writing this upsert would store the same record (``ts`` aside): skip the write and the index work."""
    if event.op != "upsert" or prior is None or not prior.live:
        return False
    same_vector = event.vector is None or (prior.vector is not None and np.array_equal(prior.vector, event.vector))
    return (prior.text_hash == event.text_hash and prior.version == event.version
            and dict(prior.metadata) == dict(event.metadata) and same_vector)


def _reusable(event: Event, prior: _Prior | None) -> np.ndarray | None:
    """The stored vector, when the text is unchanged: re-sent events skip the model."""
    if event.op == "upsert" and prior is not None and prior.live and prior.text_hash == event.text_hash:
        return prior.vector
    return None


def _as_record(item: _Accepted) -> codec.Record:
    event = item.event
    if event.op == "delete":
        return codec.Record(vector=None, version=event.version, ts=event.ts)
    return codec.Record(vector=item.vector, metadata=event.metadata, version=event.version,
                        text_hash=event.text_hash, ts=event.ts)


def register_ingest(app: faust.App, topic: faust.TopicT, processor: IngestProcessor,
                    batch_size: int, batch_wait: float) -> faust.types.AgentT:
    """Declare the ingest agent on ``app``: batches of at most ``batch_size`` events from ``topic``,
    whose every topic name needs a parser, and the dead-letter topic created at start."""
    missing = sorted(set(topic.topics) - set(processor.parsers))
    if missing:
        raise ValueError(f"no parser for topic(s) {missing}: the ingest agent cannot read them")

    @app.agent(topic, name="ingest")
    async def ingest(stream: faust.StreamT) -> None:
        async for batch in stream.take_events(batch_size, within=batch_wait):
            await processor.process(batch)

    @app.task
    async def declare_dead_letter_topic() -> None:
        await processor.dead_letters.declare()

    return ingest
