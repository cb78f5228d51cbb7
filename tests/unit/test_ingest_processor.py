"""The ingest agent's batch logic on fakes of its seams (table, model, dead-letter topic).

The real table, model and broker are exercised by tests/integration/test_dead_letters.py;
here each rule is pinned down with events built to hit it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import faust
import numpy as np
import pytest

from agents.deadletters import DeadLetterSink
from agents.ingest import IngestProcessor, ModelUnavailable, register_ingest
from agents.outcomes import OUTCOMES, Outcomes
from index import codec
from index.embedder import TextEmbeddings
from index.events import Event, Limits, parse_event

DIM = 4
EVENTS = "app-events"


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


class Store:
    async def synced(self) -> None:
        await asyncio.sleep(0)


class Table(dict[bytes, bytes]):
    """The vectors table as the agent uses it; counts writes and can refuse some ids."""

    def __init__(self, refuse: frozenset[bytes] = frozenset()) -> None:
        super().__init__()
        self.store = Store()
        self.writes = 0
        self.refuse = refuse

    def __setitem__(self, key: bytes, value: bytes) -> None:
        if key in self.refuse:
            raise OSError("disk full")
        self.writes += 1
        super().__setitem__(key, value)


class Model:
    """Deterministic unit vectors; fails on texts with "poison" in them, or on everything when broken."""

    dim = DIM

    def __init__(self, broken: bool = False) -> None:
        self.broken = broken
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


class Topic:
    """A dead-letter topic whose acks succeed, or fail when ``fail`` is set."""

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[dict[str, Any]] = []
        self.declared = 0
        self.fail = fail

    async def send(self, *, key: Any = None, value: Any = None, headers: Any = None) -> asyncio.Future[None]:
        self.sent.append({"key": key, "value": value, "headers": dict(headers)})
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.fail:
            ack.set_exception(ConnectionError("broker gone"))
        else:
            ack.set_result(None)
        return ack

    async def maybe_declare(self) -> None:
        self.declared += 1


@dataclass
class Rig:
    table: Table = field(default_factory=Table)
    model: Model = field(default_factory=Model)
    topic: Topic = field(default_factory=Topic)
    outcomes: Outcomes = field(default_factory=Outcomes)
    searchable: list[tuple[str, list[float]]] = field(default_factory=list)
    offset: int = 0

    def __post_init__(self) -> None:
        self.processor = IngestProcessor(
            self.table, self.model, self.outcomes, parsers={EVENTS: partial(parse_event, dim=DIM)},
            limits=Limits(max_text_chars=1000), dead_letters=DeadLetterSink(self.topic),
            on_searchable=lambda kind, seconds: self.searchable.append((kind, list(seconds))))

    def source(self, key: bytes | None, value: bytes | None, partition: int = 0, **fields: Any) -> Source:
        self.offset += 1
        return Source(Message(key, value, partition=partition, offset=self.offset, **fields))

    def event(self, body: dict[str, Any], partition: int = 0, **fields: Any) -> Source:
        return self.source(str(body["id"]).encode(), json.dumps(body).encode(), partition, **fields)

    def run(self, *batch: Source) -> None:
        async def process() -> None:
            await self.processor.process(list(batch))
            await self.processor._index_sync  # the index has taken the batch's writes (and reported)
        asyncio.run(process())

    def stored(self, doc_id: str) -> codec.Record | None:
        data = self.table.get(doc_id.encode())
        return None if data is None else codec.decode(data)

    def total(self) -> dict[str, int]:
        return self.outcomes.snapshot()["total"]  # type: ignore[no-any-return]


def test_a_bad_event_is_dead_lettered_with_its_original_bytes_and_why_and_where() -> None:
    rig = Rig()
    good = rig.event({"id": "d1", "text": "a cat"}, partition=2)
    not_json = rig.source(b"d2", b"\xffnot json", partition=5, headers=[("trace", b"t-1")])
    rig.run(good, not_json)

    assert rig.stored("d1") is not None and rig.stored("d2") is None
    [letter] = rig.topic.sent
    assert (letter["key"], letter["value"]) == (b"d2", b"\xffnot json")
    headers = letter["headers"]
    assert headers["streamvec-reason"] == b"bad_json" and b"not UTF-8 JSON" in headers["streamvec-error"]
    assert (headers["streamvec-topic"], headers["streamvec-partition"], headers["streamvec-offset"]) == \
        (EVENTS.encode(), b"5", str(not_json.message.offset).encode())
    assert headers["trace"] == b"t-1"  # the record's own headers come along
    snapshot = rig.outcomes.snapshot()
    assert snapshot["total"]["dead_lettered"] == 1 and snapshot["dead_letter_reasons"] == {"bad_json": 1}
    assert snapshot["partitions"]["5"]["dead_letter_reasons"] == {"bad_json": 1}


def test_a_record_with_neither_key_nor_value_is_kept_with_an_empty_value() -> None:
    rig = Rig()
    rig.run(rig.source(None, None))  # the producer client cannot write null/null back
    [letter] = rig.topic.sent
    assert (letter["key"], letter["value"], letter["headers"]["streamvec-reason"]) == (None, b"", b"missing_key")


def test_the_dead_letter_topic_is_declared_once() -> None:
    rig = Rig()
    asyncio.run(rig.processor.dead_letters.declare())
    rig.run(rig.source(b"x", b"nope"), rig.source(b"y", b"nope"))
    rig.run(rig.source(b"z", b"nope"))
    assert rig.topic.declared == 1 and len(rig.topic.sent) == 3


def test_a_dead_letter_send_the_broker_does_not_acknowledge_fails_the_batch() -> None:
    rig = Rig(topic=Topic(fail=True))
    with pytest.raises(ConnectionError):
        rig.run(rig.source(b"x", b"nope"))
    assert rig.total()["dead_lettered"] == 0  # not counted: the batch will be consumed again


def test_each_topic_is_read_by_its_own_parser() -> None:
    rig = Rig()
    rig.processor.parsers = {**rig.processor.parsers,
                             "plain": lambda key, value: Event(id=(key or b"").decode(), op="upsert",
                                                               text=(value or b"").decode())}
    rig.run(rig.event({"id": "d1", "text": "from the events topic"}),
            rig.source(b"p1", b"from a plain-text topic", topic="plain"))
    assert rig.stored("d1") is not None and rig.stored("p1") is not None


def test_an_agent_over_a_topic_without_a_parser_is_refused_at_declaration() -> None:
    app = faust.App("parsers-test", broker="kafka://127.0.0.1:1")
    with pytest.raises(ValueError, match="no parser for topic"):
        register_ingest(app, app.topic(EVENTS, "unparsed"), Rig().processor, batch_size=8, batch_wait=0.1)


def test_an_upsert_identical_to_the_stored_record_is_unchanged_and_not_rewritten() -> None:
    rig = Rig()
    vector = [0.5, 0.5, 0.5, 0.5]
    rig.run(rig.event({"id": "t", "text": "a cat", "metadata": {"a": 1}, "ts": 1.0}),
            rig.event({"id": "v", "vector": vector, "text": "own vector"}))
    writes = rig.table.writes
    rig.run(rig.event({"id": "t", "text": "a cat", "metadata": {"a": 1}, "ts": 2.0}),  # only ts differs
            rig.event({"id": "v", "vector": vector, "text": "own vector"}),
            rig.event({"id": "v", "text": "own vector"}))  # would reuse the stored vector: same record
    assert rig.table.writes == writes and rig.total()["unchanged"] == 3

    rig.run(rig.event({"id": "t", "text": "a cat", "metadata": {"a": 2}}),
            rig.event({"id": "v", "vector": [1, 0, 0, 0], "text": "own vector"}))
    assert rig.table.writes == writes + 2 and rig.total()["indexed"] == 4


def test_a_versioned_duplicate_is_stale_and_a_duplicate_in_one_batch_is_unchanged() -> None:
    rig = Rig()
    rig.run(rig.event({"id": "d", "text": "x", "version": 3}))
    rig.run(rig.event({"id": "d", "text": "x", "version": 3}),
            rig.event({"id": "e", "text": "y"}), rig.event({"id": "e", "text": "y"}))
    assert (rig.total()["stale"], rig.total()["unchanged"], rig.total()["indexed"]) == (1, 1, 2)
    assert rig.model.calls == [["x"], ["y"]]


def test_a_batch_embedding_error_dead_letters_only_the_texts_that_fail_alone() -> None:
    rig = Rig()
    rig.run(rig.event({"id": "a", "text": "fine"}), rig.event({"id": "b", "text": "poison pill"}),
            rig.event({"id": "c", "text": "also fine"}))
    assert rig.stored("a") is not None and rig.stored("c") is not None and rig.stored("b") is None
    assert [letter["key"] for letter in rig.topic.sent] == [b"b"]
    assert rig.topic.sent[0]["headers"]["streamvec-reason"] == b"embed_failed"
    assert (rig.total()["indexed"], rig.total()["dead_lettered"]) == (2, 1)


def test_when_the_model_fails_on_every_text_the_batch_fails_instead_of_dead_lettering() -> None:
    rig = Rig(model=Model(broken=True))
    with pytest.raises(ModelUnavailable, match="fails on every text"):
        rig.run(rig.event({"id": "a", "text": "fine"}), rig.event({"id": "b", "text": "fine too"}))
    assert rig.topic.sent == [] and sum(rig.total().values()) == 0


def test_a_failed_table_write_dead_letters_that_event_only() -> None:
    rig = Rig(table=Table(refuse=frozenset({b"bad"})))
    rig.run(rig.event({"id": "bad", "text": "x"}), rig.event({"id": "good", "text": "y"}))
    assert [letter["headers"]["streamvec-reason"] for letter in rig.topic.sent] == [b"write_failed"]
    assert b"disk full" in rig.topic.sent[0]["headers"]["streamvec-error"]
    assert rig.stored("good") is not None and rig.total()["indexed"] == 1


def test_every_consumed_event_ends_as_exactly_one_outcome() -> None:
    rig = Rig()
    rig.run(rig.event({"id": "old", "text": "x", "version": 5}), rig.event({"id": "gone", "text": "y"}))
    batch = [
        rig.event({"id": "new", "text": "fresh"}, partition=1),
        rig.event({"id": "old", "text": "older", "version": 4}, partition=1),           # stale
        rig.event({"id": "old", "text": "x", "version": 6}, partition=2),               # indexed
        rig.event({"id": "gone", "text": "y"}, partition=2),                           # unchanged
        rig.source(b"gone", None, partition=2),                                       # deleted
        rig.event({"id": "x" * 600, "text": "long key"}, partition=3),                 # key_too_long
        rig.event({"id": "m", "text": "z", "metadata": {"k": "v" * 20_000}}, partition=3),  # metadata_too_large
        rig.event({"id": "p", "text": "poison"}, partition=3),                         # embed_failed
    ]
    before = sum(rig.total().values())
    rig.run(*batch)
    snapshot = rig.outcomes.snapshot()
    assert sum(snapshot["total"].values()) - before == len(batch)
    assert snapshot["total"] == {"indexed": 4, "deleted": 1, "stale": 1, "unchanged": 1, "dead_lettered": 3}
    assert snapshot["dead_letter_reasons"] == {"key_too_long": 1, "metadata_too_large": 1, "embed_failed": 1}
    assert set(snapshot["partitions"]) == {"0", "1", "2", "3"}
    assert all(set(counts) == {*OUTCOMES, "dead_letter_reasons"} for counts in snapshot["partitions"].values())


def test_searchable_latency_is_reported_per_kind_once_the_index_has_the_batch() -> None:
    rig = Rig()
    produced = time.time() - 2.0
    rig.run(rig.event({"id": "t1", "text": "embedded"}, timestamp=produced),
            rig.event({"id": "t2", "text": "embedded too"}, timestamp=produced),
            rig.event({"id": "v", "vector": [1, 0, 0, 0]}, timestamp=produced),
            rig.source(b"t0", None, timestamp=produced),
            rig.source(b"bad", b"{", timestamp=produced))  # dead-lettered: never searchable
    kinds = {kind: seconds for kind, seconds in rig.searchable}
    assert len(rig.searchable) == 2 and sorted(kinds) == ["text", "vector"]
    assert len(kinds["text"]) == 2 and len(kinds["vector"]) == 2  # a delete waits for no model either
    assert all(2.0 <= seconds < 10.0 for values in kinds.values() for seconds in values)


def test_observers_see_what_the_model_measured_of_each_embedded_text() -> None:
    seen: list[Any] = []

    class Observer:
        async def on_batch(self, indexed: Sequence[Any], deleted: Sequence[Any]) -> None:
            seen.extend(indexed)

    rig = Rig()
    rig.processor.observers = (Observer(),)
    rig.run(rig.event({"id": "short", "text": "a cat"}), rig.event({"id": "long", "text": "a long text"}),
            rig.event({"id": "mine", "vector": [1, 0, 0, 0]}))
    measured = {doc.id: (doc.embedded, doc.norm, doc.truncated) for doc in seen}
    assert measured == {"short": (True, 2.0, False), "long": (True, 2.0, True), "mine": (False, None, None)}
