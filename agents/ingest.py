"""The ingest agent: events in, durable records and index entries out, one batch at a time.

A batch goes through four steps, and only after the last are its events acknowledged:

1. **Decide.** Each event is parsed by the parser of its topic, held to the limits, and judged
   against the stored record, or against what an earlier event of the batch leaves: stale,
   unchanged, refused (a dead letter with its reason), or a write. An event the partition's
   progress record (:mod:`index.records.progress`) already covers was done before a crash or a
   rebalance and is skipped. Nothing an event carries can raise out of this step.
2. **Embed.** The texts that need the model go to it in one call. If that fails, they go one by
   one; a text that fails while the model still embeds a probe text is refused alone
   (``embed_failed``), and the batch is decided again without it.
3. **Make durable.** The dead letters go to their topic and the observers (alerts and the like)
   see the batch; then each partition's records and its new progress record go to the changelog.
   Every send is acknowledged by the broker (:mod:`agents.producer`) before the next. The
   progress record is what makes a redelivery skip an event, so it goes last: a crash or an
   abandoned batch before it produces the batch's dead letters and alerts again on redelivery (at
   least once), and none after it is lost. (They once went after it: a crash in between, or an
   alerts topic down across a rebalance, lost them for good; review finding SP-2.)
4. **Apply.** The acknowledged records go into RocksDB and the index
   (:meth:`tables.indexed_store.IndexedStore.commit`).

A failure that is no event's fault (the model fails on every text, Kafka does not acknowledge,
the local store cannot be written) acknowledges nothing: the batch is retried with backoff until
it goes through, and :class:`agents.status.IngestStatus` says what is wrong meanwhile. Retrying is
safe: nothing local changes before step 4, and a partition that step 4 did reach has its progress
record, so its events are skipped on the next try. So an event is acknowledged only once its
outcome is durable (docs/architecture.md "Semantics to hold"), and every event ends as exactly one outcome.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import faust
import numpy as np
from aiokafka.structs import RecordMetadata
from faust.types import TP, EventT

from agents.deadletters import DeadLetter, dead_letter_records
from agents.deadletters import refusal as _refusal
from agents.observers import BatchObserver, DeletedDocument, IndexedDocument
from agents.status import Cause, IngestStatus
from index.records import codec, progress
from index.model.embedder import TextEmbeddings
from index.records.events import Event, EventError, Limits, apply_limits
from index.exceptions import StreamvecError
from index.records.progress import Progress
from agents.producer import BrokerUnavailable, Outgoing, RecordsTooLarge
from tables.changelog_reader import ChangelogReader

logger = logging.getLogger(__name__)

Parser = Callable[[bytes | None, bytes | None], Event]
# (kind, seconds from each event's Kafka timestamp until its write was in the index); kind is
# "text" (the model's vector, new or reused) or "vector" (the producer's vector, and deletes).
OnSearchable = Callable[[str, Sequence[float]], None]
_PROBE_TEXT = "streamvec model probe"
_BACKOFF_FIRST, _BACKOFF_MAX = 0.5, 5.0
_LOUD_GAP = 100
"""Offsets passed at once from which the log says so at INFO: a deleted prefix or a compacted
stretch. The markers of a transactional producer are passed in every batch, at DEBUG."""
_Where = tuple[str, int, int]  # topic, partition, offset of a consumed event


class Embedding(Protocol):
    """What the agent needs from the model: its id and dimension, and batch embedding off the loop."""

    dim: int
    model_id: str

    async def embed(self, texts: Sequence[str]) -> np.ndarray: ...

    async def embed_with_stats(self, texts: Sequence[str]) -> TextEmbeddings: ...


class IngestTable(Protocol):
    """What the agent needs from the vectors table (tables/vectors.py; a fake will do in tests)."""

    changelog_topic_name: str

    def on_actives_recovered(self, callback: Callable[[set[int]], Awaitable[None]]) -> None: ...

    def record_in(self, partition: int, doc_id: str) -> codec.Record | None: ...

    def progress(self, partition: int) -> Progress: ...

    def commit(self, partition: int, writes: Sequence[tuple[bytes, bytes]],
               changelog_offset: int) -> Future[None] | None: ...


class Positions(Protocol):
    """Where the input partitions begin, which offsets of a range hold a record the consumer delivers
    (read from the broker), reading one again from an offset, and resuming partitions at given
    offsets: committed for the group and sought to by the consumer (Faust's)."""

    async def earliest(self, partitions: set[tuple[str, int]]) -> dict[tuple[str, int], int]: ...

    async def held(self, topic: str, partition: int, start: int, end: int) -> list[int]: ...

    async def rewind(self, topic: str, partition: int, offset: int) -> None: ...

    async def resume_at(self, offsets: Mapping[tuple[str, int], int]) -> None: ...


class Sender(Protocol):
    """Sends records and returns once the broker acknowledged each (agents/producer.py)."""

    async def send_all(self, records: Sequence[Outgoing]) -> list[RecordMetadata]: ...


class Stalled(StreamvecError):
    """The batch cannot go through, and no event is to blame: it is retried, nothing is acknowledged."""

    def __init__(self, cause: Cause, message: str) -> None:
        super().__init__(message)
        self.cause = cause


class ModelUnavailable(Stalled):
    """The model fails on every text, a probe text included."""

    def __init__(self, message: str) -> None:
        super().__init__("model", message)


@dataclass(frozen=True)
class Options:
    """How the processor treats events; from the worker's settings."""

    limits: Limits = field(default_factory=Limits)
    store_text: bool = True
    max_record_bytes: int = 1_000_000


class _Measured(NamedTuple):
    """What the model measured of a text it embedded (embedding health reads it)."""

    norm: float
    truncated: bool


@dataclass
class _Kept:
    """What a batch keeps over its retries: the model's vectors by text and what it measured of
    each, and whether its dead letters and its alerts went out, each on its own (a retry after the
    alerts or the changelog send failed does not produce what went out again; a redelivery does:
    review finding SP-15 saw a batch's dead letters sent once per retry of an alerts outage).
    Retries decide the batch the same way: the vectors kept mean no text is embedded again."""

    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    measured: dict[str, _Measured] = field(default_factory=dict)
    dead_letters_sent: bool = False
    observers_told: bool = False


@dataclass
class _Write:
    """An accepted event and the record it leaves (None: a delete of a document never stored)."""

    source: EventT
    event: Event
    record: codec.Record | None
    from_model: bool = False  # its vector is the model's, made in this batch
    reused: bool = False

    @property
    def kind(self) -> str:
        return "text" if self.event.op == "upsert" and self.event.vector is None else "vector"


@dataclass(frozen=True)
class _Prior:
    """A document as the next event finds it: as stored, or as an earlier event of the batch leaves it."""

    version: int | None
    live: bool
    text_hash: str | None
    metadata: Mapping[str, Any]
    vector: np.ndarray | None  # None also while an earlier event of the batch waits for the model
    model: str | None
    source: tuple[str, int] | None

    @classmethod
    def of(cls, record: codec.Record | None, live: bool | None = None) -> _Prior | None:
        """``record`` as a prior; ``live`` overrides what its vector says (a write still waiting
        for the model has no vector yet)."""
        if record is None:
            return None
        live = not record.deleted if live is None else live
        return cls(record.version, live, record.text_hash, record.metadata, record.vector, record.model,
                   record.source)


@dataclass
class _Decisions:
    """What step 1 made of a batch."""

    writes: list[_Write] = field(default_factory=list)
    refused: list[DeadLetter] = field(default_factory=list)
    progress: dict[int, Progress] = field(default_factory=dict)  # partitions with an event not done before
    skipped: int = 0


class IngestProcessor:
    """Turns one batch of Kafka events into durable records, index entries and dead letters."""

    def __init__(self, table: IngestTable, embedding: Embedding, sender: Sender, positions: Positions,
                 status: IngestStatus, *, parsers: Mapping[str, Parser], dead_letter_topic: str,
                 options: Options = Options(),
                 observers: Sequence[BatchObserver] = (), on_searchable: OnSearchable | None = None,
                 may_retry: Callable[[], bool] = lambda: True) -> None:
        self.table = table
        self.embedding = embedding
        self.sender = sender
        self.positions = positions
        self.status = status
        self.parsers = parsers
        self.dead_letter_topic = dead_letter_topic
        self.options = options
        self.observers = tuple(observers)
        self.on_searchable = on_searchable
        self.may_retry = may_retry
        self._indexing: list[Future[None]] = []

    async def process(self, batch: Sequence[EventT]) -> bool:
        """Process ``batch`` until its outcomes are durable (True), or until a failure meets a
        rebalance or the worker's stop (False): then the batch is left for the partitions' next
        owner (which may be this worker) to read again from their progress records.
        """
        kept = _Kept()
        attempt = 0
        while True:
            try:
                await self._process_once(batch, kept)
            except Stalled as exc:
                cause, error = exc.cause, str(exc)
            except Exception as exc:  # noqa: BLE001 — a bug must stall the batch, never lose it
                logger.exception("processing a batch of %d events failed", len(batch))
                cause, error = "internal", f"{type(exc).__name__}: {exc}"
            else:
                if self.status.stall is not None:
                    logger.warning("ingest flows again after %d failed attempts", self.status.stall.attempts)
                self.status.flowing()
                return True
            self.status.stalled(cause, error)
            if attempt % 10 == 0:
                logger.error("partitions %s: ingest stalled (%s): %s. The batch of %d events is retried, nothing "
                             "is acknowledged meanwhile", _partitions(batch), cause, error, len(batch))
            deadline = time.monotonic() + min(_BACKOFF_MAX, _BACKOFF_FIRST * 2 ** attempt)
            while self.may_retry() and time.monotonic() < deadline:
                await asyncio.sleep(min(0.25, _BACKOFF_FIRST))
            if not self.may_retry():
                logger.warning("partitions %s: the worker is rebalancing or stopping while the batch is stalled; "
                               "the batch is left, and read again from the partitions' progress records by "
                               "their next owner", _partitions(batch))
                return False
            attempt += 1

    async def _process_once(self, batch: Sequence[EventT], kept: _Kept) -> None:
        refused: dict[_Where, DeadLetter] = {}
        stored = await self._stored_progress(batch)
        decisions = self._decide(batch, stored, refused)
        while await self._embed(decisions.writes, refused, kept.vectors, kept.measured):
            decisions = self._decide(batch, stored, refused)  # a text failed alone: decide without it
        if decisions.skipped:
            logger.info("partitions %s: %d redelivered events were already processed; skipped",
                        sorted(decisions.progress) or _partitions(batch), decisions.skipped)
        skipped = await self._settle_gaps(decisions)
        writes = [_with_vector(write, kept.vectors) for write in decisions.writes]
        records = self._records(writes, decisions)
        if not kept.dead_letters_sent:
            await self._send_dead_letters(decisions.refused)
            kept.dead_letters_sent = True
        if not kept.observers_told:
            await self._notify(writes, kept.measured)
            kept.observers_told = True
        offsets = await self._make_durable(records)
        indexing = self._apply(records, offsets, writes)
        await self._read_again(skipped)
        self.status.embeddings_reused += sum(write.reused for write in writes)
        for letter in decisions.refused:
            logger.warning("partition %d offset %d: dead-lettered (%s): %s",
                           letter.partition, letter.offset, letter.reason, letter.error)
        # The index may trail RocksDB by one batch: its inserts overlap the next batch's
        # embedding, and waiting here for the previous batch's still bounds its queue.
        previous, self._indexing = self._indexing, indexing
        if previous:
            await asyncio.wait([asyncio.wrap_future(job) for job in previous])

    async def resume_from_progress(self, partitions: set[int]) -> None:
        """Resume each input partition of ``partitions`` at the first offset its progress record
        says is not done (:func:`index.records.progress.resume_offsets`): commit it and seek there.

        The vectors table calls this when a rebalance's recovery completes. The group's own commits
        can be past events nobody indexed (a batch abandoned to a rebalance is acknowledged, and
        after a seek Faust counts a jump in offsets as done), so ingest starts from what the
        changelog says it did instead. Committing is not enough: Faust seeks to the committed
        offset right after, but aiokafka's ``seek_to_committed`` ignores a committed offset 0, so a
        partition without a progress record stayed where the group's old commit had put it, and its
        events were passed until a later one arrived (CI saw partitions idle for 5 minutes).
        """
        offsets = progress.resume_offsets({p: self.table.progress(p) for p in partitions}, self.parsers)
        if not offsets:
            return
        try:
            await self.positions.resume_at(offsets)
        except Exception as exc:  # noqa: BLE001 — a rebalance under way; its recovery resumes them again
            logger.warning("partitions %s: resuming them at their progress records' offsets failed (%s: %s); "
                           "the rebalance that follows resumes them again", sorted(partitions),
                           type(exc).__name__, exc)

    # ---- 1. decide ----------------------------------------------------------------------

    def _decide(self, batch: Sequence[EventT], stored: Mapping[int, Progress],
                refused: Mapping[_Where, DeadLetter]) -> _Decisions:
        """Step 1, in delivery order; an event already done (before, or earlier in this batch) is skipped."""
        decisions = _Decisions()
        latest: dict[tuple[int, str], _Prior | None] = {}
        working = {partition: progress.copy() for partition, progress in stored.items()}
        for source in batch:
            message = source.message
            counts = working[message.partition]
            if counts.done(message.topic, message.offset):
                decisions.skipped += 1
                continue
            decisions.progress[message.partition] = counts
            outcome = refused.get(_where(source)) or self._judge(source, latest, decisions)
            if isinstance(outcome, DeadLetter):
                decisions.refused.append(outcome)
                counts.record(message.topic, message.offset, "dead_lettered", outcome.reason)
            else:
                counts.record(message.topic, message.offset, outcome)
        return decisions

    def _judge(self, source: EventT, latest: dict[tuple[int, str], _Prior | None],
               decisions: _Decisions) -> str | DeadLetter:
        """One event's outcome, with its write added to ``decisions``, or its dead letter."""
        message = source.message
        try:
            event = apply_limits(self.parsers[message.topic](message.key, message.value), self.options.limits)
        except EventError as exc:
            return _refusal(source, exc.reason, str(exc))
        except Exception as exc:  # noqa: BLE001 — nothing one event carries may stop the batch
            logger.exception("partition %d offset %d: parsing raised", message.partition, message.offset)
            return _refusal(source, "processing_failed", f"processing this event raised {type(exc).__name__}: "
                                                         f"{exc}; report it to the streamvec developers")
        key = (message.partition, event.id)
        if key not in latest:
            try:
                latest[key] = _Prior.of(self.table.record_in(message.partition, event.id))
            except codec.CodecError as exc:
                return _refusal(source, "stored_unreadable", f"the stored record of {event.id!r} is unreadable: {exc}")
        prior = latest[key]
        if _is_stale(event, prior, (message.topic, message.offset)):
            return "stale"
        if _is_unchanged(event, prior, self.embedding.model_id):
            return "unchanged"
        write = self._write_for(source, event, prior)
        if write.record is not None:
            size = codec.encoded_size(write.record, self.embedding.dim)
            if size > self.options.max_record_bytes:
                return _refusal(source, "record_too_large", f"the stored record would take {size} bytes, more than "
                                                            f"{self.options.max_record_bytes}: send less metadata "
                                                            "or text, or raise STREAMVEC_MAX_RECORD_BYTES (and the "
                                                            "changelog topic's max.message.bytes)")
        latest[key] = _Prior.of(write.record, live=event.op == "upsert")
        decisions.writes.append(write)
        return "deleted" if event.op == "delete" else "indexed"

    def _write_for(self, source: EventT, event: Event, prior: _Prior | None) -> _Write:
        """The record an accepted event leaves: versions only grow, so an event without one (a delete,
        or an upsert) keeps the highest seen. An unversioned upsert once stored no version, and an
        older versioned event resent after it was indexed (review finding SP-21)."""
        version = _version_after(event, prior)
        if event.op == "delete":
            if prior is None and version is None:
                return _Write(source, event, None)  # nothing stored, nothing to remember
            return _Write(source, event, codec.Record(vector=None, version=version, ts=event.ts,
                                                      source=(source.message.topic, source.message.offset)))
        where = (source.message.topic, source.message.offset)
        record = codec.Record(vector=event.vector, metadata=event.metadata, version=version,
                              text_hash=event.text_hash, ts=event.ts,
                              text=event.text if self.options.store_text else None, source=where)
        if event.vector is not None:
            return _Write(source, event, record)
        model = self.embedding.model_id
        record = dataclasses.replace(record, model=model)
        if prior is not None and prior.live and prior.text_hash == event.text_hash and prior.model == model \
                and prior.vector is not None:
            return _Write(source, event, dataclasses.replace(record, vector=prior.vector), reused=True)
        return _Write(source, event, record, from_model=True)

    async def _stored_progress(self, batch: Sequence[EventT]) -> dict[int, Progress]:
        """The progress of each partition of the batch, tracking every topic of the batch."""
        found: dict[int, Progress] = {}
        for partition in {source.message.partition for source in batch}:
            try:
                found[partition] = self.table.progress(partition)
            except Exception as exc:
                raise Stalled("store", f"partition {partition}: reading its progress from the local store failed "
                                       f"({type(exc).__name__}: {exc})") from exc
        new = {(s.message.topic, s.message.partition) for s in batch
               if not found[s.message.partition].tracks(s.message.topic)}
        if new:
            try:
                starts = await self.positions.earliest(new)
            except Exception as exc:
                raise Stalled("broker", f"asking Kafka where partitions {sorted(new)} begin failed "
                                        f"({type(exc).__name__}: {exc})") from exc
            for (topic, partition), offset in starts.items():
                found[partition].begin(topic, offset)
        return found

    async def _settle_gaps(self, decisions: _Decisions) -> dict[tuple[str, int], int]:
        """Settle each partition's gaps against what the broker holds there
        (:meth:`index.records.progress.Progress.settle`): offsets that never come as records
        (transaction markers, aborted, compacted or deleted records) are done. Returns
        ``{(topic, partition): offset}`` of the records the consumer skipped, to read again.

        A gap whose range cannot be read stays open (its offsets are not done): a later batch
        settles it, and nothing is read again without the broker's word that a record is there.
        """
        gaps = [(partition, topic, counts, gap) for partition, counts in decisions.progress.items()
                for topic, gap in counts.gaps().items()]
        # All reads at once: a batch over many partitions waits for the slowest read only.
        reads = await asyncio.gather(*(self.positions.held(topic, partition, gap.start, gap.stop)
                                       for partition, topic, _, gap in gaps), return_exceptions=True)
        skipped: dict[tuple[str, int], int] = {}
        for (partition, topic, counts, gap), held in zip(gaps, reads, strict=True):
            if isinstance(held, BaseException):
                logger.warning("partition %d: reading %s offsets %d to %d failed (%s: %s); the gap there stays "
                               "open until a later batch settles it", partition, topic, gap.start, gap.stop - 1,
                               type(held).__name__, held)
                continue
            first = _settle(partition, topic, counts, gap, held)
            if first is not None:
                skipped[(topic, partition)] = first
        return skipped

    async def _read_again(self, skipped: Mapping[tuple[str, int], int]) -> None:
        """Seek back to each record the consumer skipped (it is on the broker, and not done)."""
        for (topic, partition), offset in skipped.items():
            logger.warning("partition %d: the consumer skipped %s offset %d, which the broker holds; reading "
                           "from there again", partition, topic, offset)
            try:
                await self.positions.rewind(topic, partition, offset)
            except Exception as exc:
                raise Stalled("broker", f"seeking {topic} partition {partition} to offset {offset} failed "
                                        f"({type(exc).__name__}: {exc})") from exc

    # ---- 2. embed -----------------------------------------------------------------------

    async def _embed(self, writes: list[_Write], refused: dict[_Where, DeadLetter],
                     vectors: dict[str, np.ndarray], measured: dict[str, _Measured]) -> bool:
        """Embed the texts that need it into ``vectors``; True if a text failed alone (its events refused)."""
        texts = list(dict.fromkeys(w.event.text for w in writes if w.from_model and w.event.text not in vectors))
        if not texts:
            return False
        try:
            embedded = await self.embedding.embed_with_stats(texts)
            vectors.update(zip(texts, embedded.vectors, strict=True))
            measured.update(zip(texts, map(_Measured, embedded.norms.tolist(), embedded.truncated.tolist()), strict=True))
            return False
        except Exception as exc:  # noqa: BLE001 — any model error; one by one tells text from model
            logger.warning("embedding %d texts failed (%s: %s); embedding them one by one",
                           len(texts), type(exc).__name__, exc)
        failed = False
        for text in texts:
            try:
                vectors[text] = (await self.embedding.embed([text]))[0]
            except Exception as exc:  # noqa: BLE001 — see above
                await self._check_model(exc)
                failed = True
                for write in writes:
                    if write.event.text == text:
                        refused[_where(write.source)] = _refusal(
                            write.source, "embed_failed", f"the model failed on this text: {type(exc).__name__}: {exc}")
        return failed

    async def _check_model(self, error: Exception) -> None:
        """A text is to blame only if the model still embeds another one."""
        try:
            await self.embedding.embed([_PROBE_TEXT])
        except Exception as probe_error:
            raise ModelUnavailable(f"the model fails on every text ({type(error).__name__}: {error}; a probe text: "
                                   f"{type(probe_error).__name__}: {probe_error}); check the worker's model "
                                   "files, memory and STREAMVEC_EMBED_PROVIDER") from probe_error

    # ---- 3. make durable ----------------------------------------------------------------

    def _records(self, writes: list[_Write], decisions: _Decisions) -> dict[int, dict[bytes, bytes]]:
        """Each partition's records as the changelog and RocksDB get them: the last record of each
        id, then the partition's new progress record."""
        records: dict[int, dict[bytes, bytes]] = {partition: {} for partition in decisions.progress}
        for write in writes:
            if write.record is not None:
                records[write.source.message.partition][write.event.id.encode()] = codec.encode(write.record)
        for partition, counts in decisions.progress.items():
            records[partition][progress.KEY] = progress.encode(counts)
        return records

    async def _make_durable(self, records: Mapping[int, Mapping[bytes, bytes]]) -> dict[int, int]:
        """Send every partition's records to the changelog; wait for every ack. Returns each
        partition's changelog offset after the batch (its progress record's, sent last)."""
        changelog = self.table.changelog_topic_name
        outgoing = [Outgoing(changelog, key, value, partition)
                    for partition, partition_records in records.items() for key, value in partition_records.items()]
        acks = await self._send(outgoing)
        return {record.partition: ack.offset for record, ack in zip(outgoing, acks, strict=True)
                if record.key == progress.KEY and record.partition is not None}

    async def _send_dead_letters(self, letters: list[DeadLetter]) -> None:
        """The batch's dead letters; if their topic refuses one as too large, all of them again
        without their values (a header says how many bytes each had), so ingest goes on."""
        try:
            await self.sender.send_all(dead_letter_records(letters, self.dead_letter_topic))
        except RecordsTooLarge as exc:
            logger.warning("%s; the batch's %d dead letters are sent again without their values (the header "
                           "streamvec-value-omitted says how many bytes each had)", exc, len(letters))
            await self._send(dead_letter_records(letters, self.dead_letter_topic, omit_values=True))
        except BrokerUnavailable as exc:
            raise Stalled("broker", str(exc)) from exc

    async def _send(self, outgoing: list[Outgoing]) -> list[RecordMetadata]:
        try:
            return await self.sender.send_all(outgoing)
        except BrokerUnavailable as exc:
            raise Stalled("broker", str(exc)) from exc

    async def _notify(self, writes: list[_Write], measured: Mapping[str, _Measured]) -> None:
        if not self.observers or not writes:
            return
        indexed = [_indexed(write, measured) for write in writes if write.event.op == "upsert"]
        deleted = [DeletedDocument(w.event.id, w.source.message.partition, w.source.message.offset, w.event.version)
                   for w in writes if w.event.op == "delete"]
        for observer in self.observers:
            try:
                await observer.on_batch(indexed, deleted)
            except Exception as exc:
                raise Stalled("observer", f"{type(observer).__name__} failed: {type(exc).__name__}: {exc}") from exc

    # ---- 4. apply -------------------------------------------------------------------------

    def _apply(self, records: Mapping[int, Mapping[bytes, bytes]], offsets: Mapping[int, int],
               writes: list[_Write]) -> list[Future[None]]:
        """Into RocksDB now, into the index on its lanes; returns the index jobs (none for a
        partition whose index is being built: its writes wait for the build)."""
        indexing: list[Future[None]] = []
        for partition, partition_records in records.items():
            try:
                job = self.table.commit(partition, list(partition_records.items()), offsets[partition])
            except Exception as exc:
                raise Stalled("store", f"partition {partition}: writing the local store failed "
                                       f"({type(exc).__name__}: {exc}); check the data dir's disk") from exc
            if job is not None:
                indexing.append(job)
                if self.on_searchable is not None:
                    stamps = _timestamps_by_kind([w for w in writes if w.source.message.partition == partition])
                    job.add_done_callback(lambda _job, stamps=stamps: self._report_searchable(stamps))
        return indexing

    def _report_searchable(self, stamps: dict[str, list[float]]) -> None:
        assert self.on_searchable is not None
        now = time.time()
        for kind, timestamps in stamps.items():
            self.on_searchable(kind, [now - stamp for stamp in timestamps])


def _settle(partition: int, topic: str, counts: Progress, gap: range, held: Sequence[int]) -> int | None:
    """:meth:`Progress.settle` one gap, saying in the log how many offsets it passed."""
    before = len(counts.ahead.get(topic, ()))
    first = counts.settle(topic, held)
    # the stretch the settle closed, less the records done in it
    passed = (gap.stop + 1 if first is None else first) - gap.start - (before - len(counts.ahead.get(topic, ())))
    if passed:
        logger.log(logging.INFO if passed >= _LOUD_GAP else logging.DEBUG,
                   "partition %d: %d %s offsets from %d on hold no record left to deliver (transaction markers, "
                   "aborted, compacted or deleted records); passed", partition, passed, topic, gap.start)
    return first


def _where(source: EventT) -> _Where:
    message = source.message
    return message.topic, message.partition, message.offset


def _partitions(batch: Sequence[EventT]) -> list[int]:
    return sorted({source.message.partition for source in batch})


def _with_vector(write: _Write, vectors: Mapping[str, np.ndarray]) -> _Write:
    if not write.from_model:
        return write
    assert write.record is not None and write.event.text is not None
    return dataclasses.replace(write, record=dataclasses.replace(write.record, vector=vectors[write.event.text]))


def _indexed(write: _Write, measured: Mapping[str, _Measured]) -> IndexedDocument:
    message, event, record = write.source.message, write.event, write.record
    assert record is not None and record.vector is not None
    event_ts = event.ts if event.ts is not None else message.timestamp
    stats = measured.get(event.text) if write.from_model and event.text is not None else None
    return IndexedDocument(id=event.id, partition=message.partition, offset=message.offset, version=event.version,
                           vector=record.vector, text=event.text, metadata=event.metadata, event_ts=event_ts,
                           embedded=write.from_model, norm=stats.norm if stats else None,
                           truncated=stats.truncated if stats else None)


def _timestamps_by_kind(writes: list[_Write]) -> dict[str, list[float]]:
    stamps: defaultdict[str, list[float]] = defaultdict(list)
    for write in writes:
        if write.source.message.timestamp is not None:
            stamps[write.kind].append(write.source.message.timestamp)
    return dict(stamps)


def _is_stale(event: Event, prior: _Prior | None, where: tuple[str, int]) -> bool:
    """An older or equal version; without versions on both sides, an older offset of the same topic
    (a consumer that seeks can hand over an event after a newer one of the same id)."""
    if prior is None:
        return False
    if event.version is not None and prior.version is not None:
        return event.version <= prior.version
    return prior.source is not None and prior.source[0] == where[0] and where[1] < prior.source[1]


def _version_after(event: Event, prior: _Prior | None) -> int | None:
    """The version an accepted event leaves: its own, or the stored one when it has none (versions only grow)."""
    return event.version if event.version is not None else (prior.version if prior else None)


def _is_unchanged(event: Event, prior: _Prior | None, model: str) -> bool:
    """Writing this upsert would store the same record (``ts`` aside): skip the write and the index work.

    A text-only upsert is unchanged only if the stored vector came from this model: after a
    model change (or over a vector the producer brought) the text is embedded again."""
    if event.op != "upsert" or prior is None or not prior.live:
        return False
    if event.vector is None:
        same_vector = prior.model == model
    else:
        same_vector = prior.vector is not None and np.array_equal(prior.vector, event.vector)
    return (same_vector and prior.text_hash == event.text_hash and prior.version == _version_after(event, prior)
            and dict(prior.metadata) == dict(event.metadata))


class RebalanceUnderway(StreamvecError):
    """The group moved on to another generation while a rebalance's recovery was finishing."""


class ConsumerPositions:
    """:class:`Positions` from a Faust app's consumer, and ``reader`` for what a range holds (a
    consumer of its own, with the input consumer's isolation level: it must see the records that
    consumer delivers, and no others)."""

    def __init__(self, app: faust.App, reader: ChangelogReader) -> None:
        self.app = app
        self.reader = reader

    async def earliest(self, partitions: set[tuple[str, int]]) -> dict[tuple[str, int], int]:
        found = await self.app.consumer.earliest_offsets(*(TP(topic, partition) for topic, partition in partitions))
        return {(tp.topic, tp.partition): offset for tp, offset in found.items()}

    async def held(self, topic: str, partition: int, start: int, end: int) -> list[int]:
        return [event.message.offset for event in await self.reader.read(topic, partition, start, end)]

    async def rewind(self, topic: str, partition: int, offset: int) -> None:
        # seek_wait seeks on the consumer's own thread. Consumer.seek calls aiokafka from the event
        # loop's thread, racing that thread's fetch: aiokafka's fetched_records raised KeyError and
        # Faust's Fetcher crashed (docs/faust.md §8).
        await self.app.consumer.seek_wait({TP(topic, partition): offset})

    async def resume_at(self, offsets: Mapping[tuple[str, int], int]) -> None:
        # Only the input partitions the consumer was assigned: an input topic created after the
        # group formed is missing from the first assignment (docs/faust.md §8) while its table
        # partitions are there, and a commit of nothing makes aiokafka raise ValueError, on which
        # Faust crashed the consumer and the worker stopped (a clean-clone CI run, 2026-12-08).
        # The rebalance that brings the topic's partitions resumes them.
        assigned = self.app.consumer.assignment()
        tps = {tp: offset for (topic, partition), offset in offsets.items() if (tp := TP(topic, partition)) in assigned}
        if not tps:
            return
        if not await self.app.consumer._commit(tps):  # noqa: SLF001 — Faust has no public commit of given offsets
            raise RebalanceUnderway("the group rebalanced again before the commit")
        await self.app.consumer.seek_wait(tps)  # on the consumer's thread, as in rewind


def register_ingest(app: faust.App, topic: faust.TopicT, processor: IngestProcessor, dead_letters: faust.TopicT,
                    batch_size: int, batch_wait: float) -> faust.types.AgentT:
    """Declare the ingest agent on ``app``: batches of at most ``batch_size`` events from ``topic``,
    whose every topic name needs a parser, acknowledged only once :meth:`IngestProcessor.process`
    made them durable; where the group resumes each partition the worker recovers
    (:meth:`IngestProcessor.resume_from_progress`); and the dead-letter topic, created at start."""
    missing = sorted(set(topic.topics) - set(processor.parsers))
    if missing:
        raise ValueError(f"no parser for topic(s) {missing}: the ingest agent cannot read them")
    processor.table.on_actives_recovered(processor.resume_from_progress)

    @app.agent(topic, name="ingest")
    async def ingest(stream: faust.StreamT) -> None:
        # noack_take: take_events would ack a batch in its generator's `finally`, even one that
        # failed (docs/faust.md §8).
        async for batch in stream.noack_take(batch_size, within=batch_wait):
            await processor.process(batch)
            # A batch abandoned to a rebalance or a stop (process() returned False) is acknowledged
            # too: Faust's rebalance waits for every event it handed out, and the events are not
            # lost, because where ingest resumes comes from the partitions' progress records in
            # the changelog (IngestProcessor.resume_from_progress), never from these acknowledgements.
            for event in batch:
                await stream.ack(event)

    @app.task
    async def declare_dead_letter_topic() -> None:
        await dead_letters.maybe_declare()

    return ingest
