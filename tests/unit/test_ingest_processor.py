"""The ingest agent's batch logic on fakes of its seams (table, model, producer).

The real table, model and broker are exercised by the integration and fault suites; here
each rule is pinned down with events built to hit it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from types import SimpleNamespace
from typing import Any

import faust
import numpy as np
import pytest
from aiokafka.structs import RecordMetadata
from faust.types import TP

import agents.ingest as ingest
from agents.ingest import IngestProcessor, Options, register_ingest
from agents.observers import DeletedDocument, IndexedDocument
from agents.status import IngestStatus
from index.records import codec, progress
from index.model.embedder import TextEmbeddings
from index.records.events import Event, Limits, parse_event
from index.records.progress import OUTCOMES, Progress
from agents.producer import BrokerUnavailable, Outgoing, RecordsTooLarge

DIM = 4
EVENTS = "app-events"
CHANGELOG = "app-vectors-changelog"
DEAD = "app-dead-letters"
ALERTS = "app-alerts"


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest, "_BACKOFF_FIRST", 0.01)
    monkeypatch.setattr(ingest, "_BACKOFF_MAX", 0.02)


@dataclass
class Message:
    key: bytes | None
    value: bytes | None
    partition: int = 0
    offset: int = 0
    topic: str = EVENTS
    timestamp: float | None = None
    headers: list[tuple[str, bytes]] = field(default_factory=list)


@dataclass(eq=False)
class Source:
    message: Message


class Table:
    """The vectors table as the agent uses it: RocksDB per partition, and what reached the changelog."""

    changelog_topic_name = CHANGELOG

    def __init__(self, changelog: list[Outgoing]) -> None:
        self.data: defaultdict[int, dict[bytes, bytes]] = defaultdict(dict)
        self.changelog = changelog  # what the fake producer acknowledged
        self.fail_commits = 0
        self.on_recovered: list[Callable[[set[int]], Awaitable[None]]] = []

    def on_actives_recovered(self, callback: Callable[[set[int]], Awaitable[None]]) -> None:
        self.on_recovered.append(callback)

    def record_in(self, partition: int, doc_id: str) -> codec.Record | None:
        data = self.data[partition].get(doc_id.encode())
        return None if data is None else codec.decode(data)

    def progress(self, partition: int) -> Progress:
        return progress.decode(self.data[partition].get(progress.KEY))

    def commit(self, partition: int, writes: Sequence[tuple[bytes, bytes]], changelog_offset: int) -> Future[None]:
        acknowledged = {(r.partition, r.key, r.value) for r in self.changelog if r.topic == CHANGELOG}
        assert all((partition, key, value) in acknowledged for key, value in writes), \
            "a record reached the local store before the changelog acknowledged it"
        if self.fail_commits:
            self.fail_commits -= 1
            raise OSError("disk full")
        self.data[partition].update(writes)
        job: Future[None] = Future()
        job.set_result(None)
        return job


class Producer:
    """Acknowledges every record (offsets per topic partition), or fails the next ``fail`` sends."""

    def __init__(self) -> None:
        self.sent: list[Outgoing] = []
        self.offsets: Counter[tuple[str, int | None]] = Counter()
        self.fail = 0

    async def send_all(self, records: Sequence[Outgoing]) -> list[RecordMetadata]:
        if self.fail:
            self.fail -= 1
            raise BrokerUnavailable("Kafka did not acknowledge: broker gone")
        acks = []
        for record in records:
            where = (record.topic, record.partition)
            acks.append(RecordMetadata(record.topic, record.partition or 0, None, self.offsets[where], 0, 0, None))
            self.offsets[where] += 1
        self.sent += records
        return acks

    def letters(self) -> list[Outgoing]:
        return [record for record in self.sent if record.topic == DEAD]

    def documents(self) -> list[Outgoing]:
        return [record for record in self.sent if record.topic == CHANGELOG and record.key != progress.KEY]


class Model:
    """Deterministic unit vectors; fails on texts with "poison" in them, or on everything when broken."""

    dim = DIM

    def __init__(self, broken: bool = False, model_id: str = "model-a") -> None:
        self.broken = broken
        self.model_id = model_id
        self.calls: list[list[str]] = []

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        if self.broken or any("poison" in text for text in texts):
            raise RuntimeError("the model choked")
        rows = [np.frombuffer(hashlib.sha256(text.encode()).digest()[:DIM], dtype=np.uint8) + 1.0 for text in texts]
        return np.array([row / np.linalg.norm(row) for row in rows], dtype=np.float32)

    async def embed_with_stats(self, texts: Sequence[str]) -> TextEmbeddings:
        vectors = await self.embed(texts)
        return TextEmbeddings(vectors, np.full(len(texts), 2.0, np.float32), np.array(["long" in t for t in texts]))


class Positions:
    """Topics begin at offset 0; every offset holds a record but those in ``absent`` (markers,
    compacted); rewinds are remembered."""

    def __init__(self) -> None:
        self.rewinds: list[tuple[str, int, int]] = []
        self.resumed: list[dict[tuple[str, int], int]] = []
        self.absent: set[int] = set()
        self.unreadable = False

    async def earliest(self, partitions: set[tuple[str, int]]) -> dict[tuple[str, int], int]:
        return {where: 0 for where in partitions}

    async def held(self, topic: str, partition: int, start: int, end: int) -> list[int]:
        if self.unreadable:
            raise ConnectionError("broker down")
        return [offset for offset in range(start, end) if offset not in self.absent]

    async def rewind(self, topic: str, partition: int, offset: int) -> None:
        self.rewinds.append((topic, partition, offset))

    async def resume_at(self, offsets: Mapping[tuple[str, int], int]) -> None:
        if not offsets:
            raise AssertionError("resumed at no offsets")
        self.resumed.append(dict(offsets))


class Observer:
    def __init__(self) -> None:
        self.batches: list[tuple[list[IndexedDocument], list[DeletedDocument]]] = []
        self.fail = 0

    async def on_batch(self, indexed: Sequence[IndexedDocument], deleted: Sequence[DeletedDocument]) -> None:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("alerts topic refused")
        self.batches.append((list(indexed), list(deleted)))


@dataclass
class Rig:
    model: Model = field(default_factory=Model)
    producer: Producer = field(default_factory=Producer)
    options: Options = field(default_factory=lambda: Options(limits=Limits(max_text_chars=1000)))
    status: IngestStatus = field(default_factory=IngestStatus)
    observer: Observer = field(default_factory=Observer)
    positions: Positions = field(default_factory=Positions)
    searchable: list[tuple[str, list[float]]] = field(default_factory=list)
    may_retry: bool = True
    offsets: Counter[tuple[str, int]] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.table = Table(self.producer.sent)
        self.processor = IngestProcessor(
            self.table, self.model, self.producer, self.positions, self.status,
            parsers={EVENTS: partial(parse_event, dim=DIM)},
            dead_letter_topic=DEAD, options=self.options, observers=[self.observer],
            on_searchable=lambda kind, seconds: self.searchable.append((kind, list(seconds))),
            may_retry=lambda: self.may_retry)

    def source(self, key: bytes | None, value: bytes | None, partition: int = 0, **fields: Any) -> Source:
        where = (fields.get("topic", EVENTS), partition)
        offset = self.offsets[where]
        self.offsets[where] += 1
        return Source(Message(key, value, partition=partition, offset=offset, **fields))

    def event(self, body: dict[str, Any], partition: int = 0, **fields: Any) -> Source:
        return self.source(str(body["id"]).encode(), json.dumps(body).encode(), partition, **fields)

    def run(self, *batch: Source) -> bool:
        return asyncio.run(self.processor.process(list(batch)))

    def stored(self, doc_id: str, partition: int = 0) -> codec.Record | None:
        return self.table.record_in(partition, doc_id)

    def total(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for partition in list(self.table.data):
            counts.update(self.table.progress(partition).outcomes)
        return {name: counts[name] for name in OUTCOMES}


def _headers(record: Outgoing) -> dict[str, bytes]:
    return dict(record.headers)


def test_a_bad_event_is_dead_lettered_with_its_original_bytes_and_why_and_where() -> None:
    rig = Rig()
    good = rig.event({"id": "d1", "text": "a cat"}, partition=2)
    not_json = rig.source(b"d2", b"\xffnot json", partition=5, headers=[("trace", b"t-1")])
    assert rig.run(good, not_json)

    assert rig.stored("d1", partition=2) is not None and rig.stored("d2", partition=5) is None
    [letter] = rig.producer.letters()
    assert (letter.key, letter.value) == (b"d2", b"\xffnot json")
    headers = _headers(letter)
    assert headers["streamvec-reason"] == b"bad_json" and b"not UTF-8 JSON" in headers["streamvec-error"]
    assert (headers["streamvec-topic"], headers["streamvec-partition"], headers["streamvec-offset"]) == \
        (EVENTS.encode(), b"5", str(not_json.message.offset).encode())
    assert headers["trace"] == b"t-1"  # the record's own headers come along
    counts = rig.table.progress(5)
    assert counts.outcomes["dead_lettered"] == 1 and counts.reasons == {"bad_json": 1}


def test_a_lone_surrogate_dead_letters_its_event_alone_and_the_rest_of_the_batch_is_indexed() -> None:
    """The case of issue 9: valid JSON that UTF-8 cannot hold once crashed the agent and lost its batch."""
    rig = Rig()
    batch = [rig.event({"id": f"g{n}", "text": f"good text {n}"}) for n in range(5)]
    batch.insert(2, rig.source(b"s01", b'{"id": "s01", "text": "broken \\ud800 surrogate"}'))
    batch.append(rig.source(b"s02", b'{"id": "s02", "text": "ok", "metadata": {"k": "\\udc00"}}'))
    batch.append(rig.source(None, b'{"id": "s\\ud83d", "text": "ok"}'))
    assert rig.run(*batch)
    assert [_headers(letter)["streamvec-reason"] for letter in rig.producer.letters()] == [b"bad_text"] * 3
    assert all(rig.stored(f"g{n}") is not None for n in range(5))
    assert rig.total() == {"indexed": 5, "deleted": 0, "stale": 0, "unchanged": 0, "dead_lettered": 3}


def test_a_record_with_neither_key_nor_value_is_kept_with_an_empty_value() -> None:
    rig = Rig()
    rig.run(rig.source(None, None))  # the producer client cannot write null/null back
    [letter] = rig.producer.letters()
    assert (letter.key, letter.value, _headers(letter)["streamvec-reason"]) == (None, b"", b"missing_key")


def test_an_event_whose_parser_raises_unexpectedly_is_dead_lettered_alone() -> None:
    rig = Rig()

    def broken(key: bytes | None, value: bytes | None) -> Event:
        raise KeyError("a bug in a parser")
    rig.processor.parsers = {**rig.processor.parsers, "odd": broken}
    assert rig.run(rig.event({"id": "a", "text": "fine"}), rig.source(b"b", b"{}", topic="odd"))
    assert [_headers(letter)["streamvec-reason"] for letter in rig.producer.letters()] == [b"processing_failed"]
    assert rig.stored("a") is not None


def test_when_the_broker_does_not_acknowledge_nothing_is_stored_or_counted_until_a_retry_goes_through() -> None:
    rig = Rig()
    rig.producer.fail = 2
    assert rig.run(rig.source(b"x", b"nope"), rig.event({"id": "y", "text": "fine"}))
    assert rig.status.retries["broker"] == 2 and rig.status.stall is None
    assert len(rig.producer.letters()) == 1 and rig.total()["dead_lettered"] == 1 and rig.total()["indexed"] == 1


def test_while_a_batch_is_retried_the_status_says_why() -> None:
    rig = Rig()
    rig.producer.fail = 10**6
    seen: list[dict[str, Any]] = []

    async def main() -> None:
        task = asyncio.create_task(rig.processor.process([rig.event({"id": "y", "text": "fine"})]))
        await asyncio.sleep(0.2)
        seen.append(rig.status.report())
        rig.producer.fail = 0
        assert await task
        seen.append(rig.status.report())
    asyncio.run(main())
    assert seen[0]["flowing"] is False and seen[0]["cause"] == "broker" and "broker gone" in seen[0]["error"]
    assert seen[1] == {"flowing": True}


def test_each_topic_is_read_by_its_own_parser() -> None:
    rig = Rig()
    rig.processor.parsers = {**rig.processor.parsers,
                             "plain": lambda key, value: Event(id=(key or b"").decode(), op="upsert",
                                                               text=(value or b"").decode())}
    rig.run(rig.event({"id": "d1", "text": "from the events topic"}),
            rig.source(b"p1", b"from a plain-text topic", topic="plain"))
    assert rig.stored("d1") is not None and rig.stored("p1") is not None
    assert rig.table.progress(0).next == {EVENTS: 1, "plain": 1}


def test_an_agent_over_a_topic_without_a_parser_is_refused_at_declaration() -> None:
    app = faust.App("parsers-test", broker="kafka://127.0.0.1:1")
    with pytest.raises(ValueError, match="no parser for topic"):
        register_ingest(app, app.topic(EVENTS, "unparsed"), Rig().processor, app.topic(DEAD),
                        batch_size=8, batch_wait=0.1)


def test_the_agent_resumes_each_recovered_partition_where_its_progress_record_says() -> None:
    """The vectors table calls this at the end of every rebalance's recovery: the group's own
    commits may be past events nobody indexed. A partition without a record resumes at offset 0
    (tests/integration/test_offset_gaps.py proves the consumer really goes there)."""
    app = faust.App("resume-test", broker="kafka://127.0.0.1:1")
    rig = Rig()
    register_ingest(app, app.topic(EVENTS), rig.processor, app.topic(DEAD), batch_size=8, batch_wait=0.1)
    assert rig.table.on_recovered == [rig.processor.resume_from_progress]
    first, _, third = (rig.event({"id": f"d{n}", "vector": [1, n, 0, 0]}) for n in range(3))
    rig.run(first, third)  # the consumer skipped the second
    asyncio.run(rig.processor.resume_from_progress({0, 3}))
    assert rig.positions.resumed == [{(EVENTS, 0): 1, (EVENTS, 3): 0}]
    asyncio.run(rig.processor.resume_from_progress(set()))  # nothing recovered: nothing resumed
    assert len(rig.positions.resumed) == 1


class AssignedConsumer:
    """Faust's consumer as ConsumerPositions.resume_at uses it: an assignment, commits, seeks."""

    def __init__(self, assigned: set[TP]) -> None:
        self.assigned = assigned
        self.commits: list[dict[TP, int]] = []
        self.seeks: list[dict[TP, int]] = []

    def assignment(self) -> set[TP]:
        return self.assigned

    async def _commit(self, offsets: Mapping[TP, int]) -> bool:
        if not offsets:
            raise ValueError(offsets)  # as aiokafka's commit does, on which Faust crashes the consumer
        self.commits.append(dict(offsets))
        return True

    async def seek_wait(self, offsets: Mapping[TP, int]) -> None:
        self.seeks.append(dict(offsets))


def test_resuming_commits_and_seeks_only_the_input_partitions_the_consumer_was_assigned() -> None:
    """An input topic created after the group formed is missing from the first assignment, while
    the table's partitions are there: nothing of it is committed (a clean-clone CI run crashed)."""
    consumer = AssignedConsumer({TP(EVENTS, 0)})
    positions = ingest.ConsumerPositions(SimpleNamespace(consumer=consumer), reader=None)  # type: ignore[arg-type]
    asyncio.run(positions.resume_at({(EVENTS, 0): 5, (EVENTS, 1): 0}))
    assert consumer.commits == consumer.seeks == [{TP(EVENTS, 0): 5}]
    consumer.assigned = set()
    asyncio.run(positions.resume_at({(EVENTS, 0): 5}))
    assert len(consumer.commits) == 1


def test_resuming_cut_short_by_another_rebalance_is_a_warning_not_a_crash(caplog: pytest.LogCaptureFixture) -> None:
    rig = Rig()

    async def refused(offsets: Mapping[tuple[str, int], int]) -> None:
        raise RuntimeError("already rebalanced")
    rig.positions.resume_at = refused  # type: ignore[method-assign]
    asyncio.run(rig.processor.resume_from_progress({2}))
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "partitions [2]: resuming them at their progress records' offsets failed (RuntimeError: "
                    "already rebalanced); the rebalance that follows resumes them again")]


def test_an_upsert_identical_to_the_stored_record_is_unchanged_and_not_rewritten() -> None:
    rig = Rig()
    vector = [0.5, 0.5, 0.5, 0.5]
    rig.run(rig.event({"id": "t", "text": "a cat", "metadata": {"a": 1}, "ts": 1.0}),
            rig.event({"id": "v", "vector": vector, "text": "own vector"}))
    writes = len(rig.producer.documents())
    rig.run(rig.event({"id": "t", "text": "a cat", "metadata": {"a": 1}, "ts": 2.0}),  # only ts differs
            rig.event({"id": "v", "vector": vector, "text": "own vector"}))
    assert len(rig.producer.documents()) == writes and rig.total()["unchanged"] == 2

    rig.run(rig.event({"id": "t", "text": "a cat", "metadata": {"a": 2}}),
            rig.event({"id": "v", "vector": [1, 0, 0, 0], "text": "own vector"}))
    assert len(rig.producer.documents()) == writes + 2 and rig.total()["indexed"] == 4


def test_a_text_whose_stored_vector_another_model_or_the_producer_made_is_embedded_again() -> None:
    rig = Rig()
    rig.run(rig.event({"id": "t", "text": "a cat"}), rig.event({"id": "v", "vector": [1, 0, 0, 0], "text": "a dog"}))
    assert rig.model.calls == [["a cat"]]
    rig.run(rig.event({"id": "v", "text": "a dog"}))  # the producer's vector is not the model's
    assert rig.model.calls[-1] == ["a dog"] and rig.stored("v").model == "model-a"  # type: ignore[union-attr]

    rig.model.model_id = "model-b"  # a new model: re-sent texts must not keep the old vectors
    rig.run(rig.event({"id": "t", "text": "a cat"}))
    assert rig.model.calls[-1] == ["a cat"] and rig.stored("t").model == "model-b"  # type: ignore[union-attr]
    assert rig.total()["indexed"] == 4 and rig.total()["unchanged"] == 0


def test_the_text_is_stored_unless_turned_off() -> None:
    rig = Rig()
    rig.run(rig.event({"id": "t", "text": "a cat"}))
    assert rig.stored("t").text == "a cat"  # type: ignore[union-attr]
    quiet = Rig(options=Options(store_text=False))
    quiet.run(quiet.event({"id": "t", "text": "a cat"}))
    assert quiet.stored("t").text is None and quiet.stored("t").text_hash is not None  # type: ignore[union-attr]


def test_a_versioned_duplicate_is_stale_and_a_duplicate_in_one_batch_is_unchanged() -> None:
    rig = Rig()
    rig.run(rig.event({"id": "d", "text": "x", "version": 3}))
    rig.run(rig.event({"id": "d", "text": "x", "version": 3}),
            rig.event({"id": "e", "text": "y"}), rig.event({"id": "e", "text": "y"}))
    assert (rig.total()["stale"], rig.total()["unchanged"], rig.total()["indexed"]) == (1, 1, 2)
    assert rig.model.calls == [["x"], ["y"]]


def test_versions_only_grow_a_delete_without_version_keeps_the_stored_one() -> None:
    rig = Rig()
    rig.run(rig.event({"id": "d", "text": "x", "version": 5}))
    rig.run(rig.source(b"d", None))  # a tombstone: no version of its own
    tombstone = rig.stored("d")
    assert tombstone is not None and tombstone.deleted and tombstone.version == 5
    rig.run(rig.event({"id": "d", "text": "an older edit", "version": 4}))
    assert rig.stored("d").deleted and rig.total()["stale"] == 1  # type: ignore[union-attr]
    # every delete reaches the changelog as a record, never as Kafka's null tombstone
    assert all(record.value is not None for record in rig.producer.sent if record.topic == CHANGELOG)


def test_versions_only_grow_an_upsert_without_version_keeps_the_stored_one() -> None:
    """Review finding SP-21: v5, then an unversioned upsert, then v3 resent (a replayed dead letter)."""
    rig = Rig()
    rig.run(rig.event({"id": "d", "text": "x", "version": 5}))
    rig.run(rig.event({"id": "d", "text": "x"}))  # would store the same record: version 5 kept
    assert rig.total()["unchanged"] == 1
    unversioned = "an edit from a producer without versions"
    rig.run(rig.event({"id": "d", "text": unversioned}))
    assert (rig.stored("d").version, rig.stored("d").text) == (5, unversioned)  # type: ignore[union-attr]
    rig.run(rig.event({"id": "d", "text": "an old edit", "version": 3}))
    rig.run(rig.event({"id": "d", "text": "the edit of v5 again", "version": 5}))
    assert rig.stored("d").text == unversioned and rig.total()["stale"] == 2  # type: ignore[union-attr]
    rig.run(rig.event({"id": "d", "text": "a newer edit", "version": 6}))
    assert rig.stored("d").version == 6 and rig.total()["indexed"] == 3  # type: ignore[union-attr]


def test_a_record_too_large_for_the_changelog_is_refused_before_the_model_runs() -> None:
    rig = Rig(options=Options(max_record_bytes=200))
    rig.run(rig.event({"id": "big", "text": "words " * 40}), rig.event({"id": "ok", "text": "fine"}))
    assert [_headers(letter)["streamvec-reason"] for letter in rig.producer.letters()] == [b"record_too_large"]
    assert rig.model.calls == [["fine"]]


def test_a_batch_embedding_error_dead_letters_only_the_texts_that_fail_alone() -> None:
    rig = Rig()
    rig.run(rig.event({"id": "a", "text": "fine"}), rig.event({"id": "b", "text": "poison pill"}),
            rig.event({"id": "c", "text": "also fine"}))
    assert rig.stored("a") is not None and rig.stored("c") is not None and rig.stored("b") is None
    assert [letter.key for letter in rig.producer.letters()] == [b"b"]
    assert _headers(rig.producer.letters()[0])["streamvec-reason"] == b"embed_failed"
    assert (rig.total()["indexed"], rig.total()["dead_lettered"]) == (2, 1)


def test_an_event_after_a_refused_one_of_the_same_id_is_judged_against_what_is_stored() -> None:
    rig = Rig()
    rig.run(rig.event({"id": "a", "text": "poison pill"}), rig.event({"id": "a", "text": "poison pill"}))
    # the second copy is not "unchanged" against a write that never happened: it fails alone too
    assert rig.total() == {"indexed": 0, "deleted": 0, "stale": 0, "unchanged": 0, "dead_lettered": 2}


def test_when_the_model_fails_on_every_text_the_batch_waits_for_it_and_loses_nothing() -> None:
    rig = Rig(model=Model(broken=True))

    async def main() -> bool:
        task = asyncio.create_task(rig.processor.process([rig.event({"id": "a", "text": "fine"}),
                                                          rig.event({"id": "b", "text": "fine too"})]))
        await asyncio.sleep(0.2)
        assert rig.status.stall is not None and rig.status.stall.cause == "model"
        assert rig.producer.sent == []  # nothing is dead-lettered for the model's fault
        rig.model.broken = False
        return await task
    assert asyncio.run(main())
    assert rig.total()["indexed"] == 2 and rig.producer.letters() == []


def test_a_failed_local_write_is_retried_and_each_event_is_counted_once() -> None:
    rig = Rig()
    rig.table.fail_commits = 1  # the first partition's commit fails, the retry goes through
    assert rig.run(rig.event({"id": "a", "text": "one"}, partition=0), rig.event({"id": "b", "text": "two"}, partition=1))
    assert rig.status.retries["store"] == 1
    assert rig.total()["indexed"] == 2 and rig.stored("a") is not None and rig.stored("b", partition=1) is not None


def test_a_redelivered_batch_is_skipped_and_not_counted_again() -> None:
    rig = Rig()
    batch = [rig.event({"id": "a", "text": "one"}), rig.source(b"b", b"nope"), rig.event({"id": "c", "text": "x"})]
    rig.run(*batch)
    sent = len(rig.producer.sent)
    rig.run(*batch)  # as after a crash before the offsets were committed
    assert len(rig.producer.sent) == sent and rig.model.calls == [["one", "x"]]
    assert rig.total() == {"indexed": 2, "deleted": 0, "stale": 0, "unchanged": 0, "dead_lettered": 1}


def test_events_handed_over_out_of_order_or_twice_are_each_counted_once_and_skipped_ones_are_read_again() -> None:
    rig = Rig()
    events = [rig.event({"id": f"d{n}", "vector": [1, n + 1, 0, 0]}) for n in range(5)]
    rig.run(events[0], events[1], events[3], events[3])  # 2 skipped by the consumer, 3 handed over twice
    assert rig.total()["indexed"] == 3 and rig.positions.rewinds == [(EVENTS, 0, 2)]
    rig.run(events[2], events[3], events[4])  # read again from there
    assert rig.total()["indexed"] == 5 and rig.table.progress(0).next == {EVENTS: 5}
    assert rig.table.progress(0).gaps() == {}


def test_offsets_that_hold_no_record_are_passed_in_the_batch_and_never_read_again() -> None:
    rig = Rig()
    rig.positions.absent = {2, 5, 6}  # a commit marker, then an aborted transaction and its marker
    events = [rig.event({"id": f"d{n}", "vector": [1, n + 1, 0, 0]}) for n in range(8)]
    rig.run(*(events[n] for n in (0, 1, 3, 4, 7)))
    done = rig.table.progress(0)
    assert rig.positions.rewinds == [] and (done.next, done.ahead) == ({EVENTS: 8}, {})
    assert rig.total()["indexed"] == 5


def test_a_gap_the_broker_cannot_show_stays_open_and_nothing_is_read_again() -> None:
    rig = Rig()
    rig.positions.absent, rig.positions.unreadable = {1}, True
    events = [rig.event({"id": f"d{n}", "vector": [1, n + 1, 0, 0]}) for n in range(4)]
    assert rig.run(events[0], events[2])
    assert rig.table.progress(0).gaps() == {EVENTS: range(1, 2)} and rig.positions.rewinds == []
    rig.positions.unreadable = False
    assert rig.run(events[3])  # the next batch settles it
    assert rig.table.progress(0).next == {EVENTS: 4} and rig.total()["indexed"] == 3


def test_without_versions_an_older_offset_of_the_same_id_is_stale() -> None:
    rig = Rig()
    older = rig.event({"id": "x", "vector": [1, 0, 0, 0], "metadata": {"n": 1}})
    newer = rig.event({"id": "x", "vector": [0, 1, 0, 0], "metadata": {"n": 2}})
    rig.run(newer)
    rig.run(older)  # a consumer that seeks can hand it over after the newer one
    assert rig.stored("x").metadata == {"n": 2} and rig.total()["stale"] == 1  # type: ignore[union-attr]


def test_a_failing_observer_stalls_the_batch_and_sees_it_again() -> None:
    rig = Rig()
    rig.observer.fail = 1
    assert rig.run(rig.event({"id": "a", "text": "one", "ts": 7.0}), rig.source(b"z", None))
    [(indexed, deleted)] = rig.observer.batches
    assert [(d.id, d.embedded, d.event_ts, d.text) for d in indexed] == [("a", True, 7.0, "one")]
    assert [d.id for d in deleted] == ["z"] and rig.status.retries["observer"] == 1


class AlertingObserver(Observer):
    """Sends one alert per indexed document through the ingest producer, as the analysis agent does."""

    def __init__(self, producer: Producer) -> None:
        super().__init__()
        self.producer = producer

    async def on_batch(self, indexed: Sequence[IndexedDocument], deleted: Sequence[DeletedDocument]) -> None:
        await super().on_batch(indexed, deleted)
        await self.producer.send_all([Outgoing(ALERTS, d.id.encode(), b"alert") for d in indexed])


class ChangelogRefused(Producer):
    """Acknowledges everything but the changelog's records, ``refuse`` times (a changelog partition's
    leader down while the alerts and dead-letter topics answer)."""

    def __init__(self, refuse: int) -> None:
        super().__init__()
        self.refuse = refuse

    async def send_all(self, records: Sequence[Outgoing]) -> list[RecordMetadata]:
        if self.refuse and any(record.topic == CHANGELOG for record in records):
            self.refuse -= 1
            raise BrokerUnavailable("Kafka did not acknowledge: not the leader")
        return await super().send_all(records)


def alerting(rig: Rig) -> Rig:
    rig.processor.observers = (AlertingObserver(rig.producer),)
    return rig


def test_the_progress_record_goes_after_the_batchs_dead_letters_and_alerts() -> None:
    """Review finding SP-2: the progress record makes a redelivery skip the batch, so whatever the
    batch produces must be acknowledged before it, or a crash in between loses it for good."""
    rig = alerting(Rig())
    assert rig.run(rig.event({"id": "a", "text": "one"}), rig.source(b"b", b"{not json"))
    topics = [record.topic if record.key != progress.KEY else "progress" for record in rig.producer.sent]
    assert topics == [DEAD, ALERTS, CHANGELOG, "progress"]


def test_a_changelog_send_that_fails_is_retried_without_producing_the_side_outputs_again() -> None:
    rig = alerting(Rig(producer=ChangelogRefused(refuse=2)))
    assert rig.run(rig.event({"id": "a", "text": "one"}), rig.source(b"b", b"{not json"))
    assert [r.topic for r in rig.producer.sent if r.topic in (DEAD, ALERTS)] == [DEAD, ALERTS]
    assert rig.status.retries["broker"] == 2 and rig.total()["indexed"] == 1


def test_an_alerts_outage_does_not_send_the_batchs_dead_letters_again_on_every_retry() -> None:
    """Review finding SP-15: each retry of a failing observer sent the batch's dead letters again."""
    rig = alerting(Rig())
    rig.processor.observers[0].fail = 3  # type: ignore[attr-defined]
    assert rig.run(rig.event({"id": "a", "text": "one"}), rig.source(b"b", b"{not json"))
    assert [r.topic for r in rig.producer.sent if r.topic in (DEAD, ALERTS)] == [DEAD, ALERTS]
    assert rig.status.retries["observer"] == 3 and rig.total() == {**dict.fromkeys(OUTCOMES, 0), "indexed": 1,
                                                                   "dead_lettered": 1}


def test_a_batch_left_before_its_progress_record_produces_its_side_outputs_again_when_redelivered() -> None:
    """A crash (or a rebalance) after the alerts and before the progress record: the next owner
    reads the events again and produces their alerts and dead letters again (at least once)."""
    rig = alerting(Rig(producer=ChangelogRefused(refuse=1), may_retry=False))
    batch = [rig.event({"id": "a", "text": "one"}), rig.source(b"b", b"{not json")]
    assert rig.run(*batch) is False and rig.total()["indexed"] == 0
    rig.may_retry = True
    assert rig.run(*batch)
    assert [r.topic for r in rig.producer.sent if r.topic in (DEAD, ALERTS)] == [DEAD, ALERTS, DEAD, ALERTS]
    assert rig.total() == {**dict.fromkeys(OUTCOMES, 0), "indexed": 1, "dead_lettered": 1}


class SmallDeadLetterTopic(Producer):
    """A dead-letter topic created with a smaller max.message.bytes than the input topic's."""

    async def send_all(self, records: Sequence[Outgoing]) -> list[RecordMetadata]:
        if any(record.topic == DEAD and len(record.value or b"") > 100 for record in records):
            raise RecordsTooLarge(f"topic(s) {DEAD} refused a record as too large (MessageSizeTooLargeError)")
        return await super().send_all(records)


def test_a_dead_letter_its_topic_refuses_as_too_large_goes_without_its_value_and_ingest_goes_on() -> None:
    """Review finding SP-12: the same letter would be refused for ever, and ingest stalled for good."""
    rig = Rig(producer=SmallDeadLetterTopic())
    big = b"{not json " + b"x" * 500
    assert rig.run(rig.source(b"big", big), rig.source(b"small", b"{bad"), rig.event({"id": "ok", "text": "one"}))
    letters = {letter.key: (letter.value, _headers(letter)) for letter in rig.producer.letters()}
    assert letters[b"big"] == (b"", {**letters[b"big"][1], "streamvec-value-omitted": str(len(big)).encode()})
    assert letters[b"big"][1]["streamvec-reason"] == b"bad_json" and letters[b"small"][0] == b""
    assert rig.total()["dead_lettered"] == 2 and rig.total()["indexed"] == 1 and rig.status.retries == {}


def test_a_stalled_batch_is_left_unacknowledged_when_a_rebalance_begins() -> None:
    rig = Rig(may_retry=False)
    rig.producer.fail = 1
    assert rig.run(rig.event({"id": "a", "text": "one"})) is False
    assert rig.total()["indexed"] == 0 and rig.stored("a") is None


def test_every_consumed_event_ends_as_exactly_one_outcome() -> None:
    rig = Rig()
    rig.run(rig.event({"id": "old", "text": "x", "version": 5}, partition=2),
            rig.event({"id": "gone", "text": "y"}, partition=2))
    batch = [
        rig.event({"id": "new", "text": "fresh"}, partition=1),
        rig.event({"id": "old", "text": "older", "version": 4}, partition=2),           # stale
        rig.event({"id": "old", "text": "x", "version": 6}, partition=2),               # indexed
        rig.event({"id": "gone", "text": "y"}, partition=2),                           # unchanged
        rig.source(b"gone", None, partition=2),                                       # deleted
        rig.event({"id": "x" * 600, "text": "long key"}, partition=3),                 # key_too_long
        rig.event({"id": "m", "text": "z", "metadata": {"k": "v" * 20_000}}, partition=3),  # metadata_too_large
        rig.event({"id": "p", "text": "poison"}, partition=3),                         # embed_failed
    ]
    before = sum(rig.total().values())
    rig.run(*batch)
    assert sum(rig.total().values()) - before == len(batch)
    assert rig.total() == {"indexed": 4, "deleted": 1, "stale": 1, "unchanged": 1, "dead_lettered": 3}
    assert rig.table.progress(3).reasons == {"key_too_long": 1, "metadata_too_large": 1, "embed_failed": 1}


def test_searchable_latency_is_reported_per_kind_once_the_index_has_the_batch() -> None:
    rig = Rig()
    produced = time.time() - 2.0
    rig.run(rig.event({"id": "t1", "text": "embedded"}, timestamp=produced),
            rig.event({"id": "t2", "text": "embedded too"}, timestamp=produced),
            rig.event({"id": "v", "vector": [1, 0, 0, 0]}, timestamp=produced),
            rig.source(b"t0", None, timestamp=produced),
            rig.source(b"bad", b"{", timestamp=produced))  # dead-lettered: never searchable
    kinds = {kind: seconds for kind, seconds in rig.searchable}
    assert sorted(kinds) == ["text", "vector"]
    assert len(kinds["text"]) == 2 and len(kinds["vector"]) == 2  # a delete waits for no model either
    assert all(2.0 <= seconds < 10.0 for values in kinds.values() for seconds in values)


def test_observers_see_what_the_model_measured_of_each_embedded_text() -> None:
    rig = Rig()
    assert rig.run(rig.event({"id": "short", "text": "a cat"}), rig.event({"id": "long", "text": "a long text"}),
                   rig.event({"id": "mine", "vector": [1, 0, 0, 0]}))
    [(indexed, _)] = rig.observer.batches
    measured = {doc.id: (doc.embedded, doc.norm, doc.truncated) for doc in indexed}
    assert measured == {"short": (True, 2.0, False), "long": (True, 2.0, True), "mine": (False, None, None)}
