"""Dead letters end to end: real Kafka, one real worker, good and bad events mixed.

The tests run in order on one worker (module scope): the dead-letter topic exists before
any bad event; a mix of events ends as exactly the expected outcomes, with every bad one
in the dead-letter topic as it was produced; then `streamvec dead-letters` lists and
replays through the real CLI.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord

from agents.deadletters import OMITTED, DeadLetter
from app.topics import bootstrap, ensure_topic
from app.settings import Settings
from tests.support.fixtures import GroupFactory
from tests.support.group import Group
from tests.support.kafka import read_topic, sample_texts, send_records
from tests.support.workers import REPO, Worker, wait_for

pytestmark = pytest.mark.integration

PARTITIONS = 4
Record = tuple[bytes | None, bytes | None]


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


# key, value, the reason it must be dead-lettered with
BAD: list[tuple[bytes | None, bytes | None, str]] = [
    (b"bad-json", b"this is not json", "bad_json"),
    (b"\xff\xfe-key", _json({"text": "the key is not UTF-8"}), "bad_key"),
    (b"bad-utf8", b'{"id": "bad-utf8", "text": "caf\xe9"}', "bad_json"),
    (b"bad-type", _json({"id": "bad-type", "text": 42}), "bad_text"),
    (b"bad-op", _json({"id": "bad-op", "op": "merge", "text": "x"}), "bad_op"),
    (b"bad-field", _json({"id": "bad-field", "text": "x", "colour": "red"}), "unknown_field"),
    (b"bad-dim", _json({"id": "bad-dim", "vector": [0.1] * 10}), "bad_vector"),
    (b"bad-vector", _json({"id": "bad-vector", "vector": ["a"] * 384}), "bad_vector"),
    (b"k" * 600, _json({"id": "k" * 600, "text": "a long key"}), "key_too_long"),
    (b"big-meta", _json({"id": "big-meta", "text": "x", "metadata": {"blob": "x" * 20_000}}), "metadata_too_large"),
    (b"empty", _json({"id": "empty", "text": ""}), "empty_text"),
]


@dataclass
class Run:
    broker: str
    app_id: str
    worker: Worker
    env: dict[str, str]

    @property
    def events_topic(self) -> str:
        return Settings(app_id=self.app_id).events_topic

    @property
    def dead_letter_topic(self) -> str:
        return Settings(app_id=self.app_id).dead_letter_topic

    def send(self, records: list[Record]) -> None:
        send_records(self.broker, self.events_topic, records)

    def read(self, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
        return read_topic(self.broker, topic)

    def topics(self) -> set[str]:
        async def run() -> set[str]:
            consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap(self.broker))
            await consumer.start()
            try:
                return await consumer.topics()  # type: ignore[no-any-return]
            finally:
                await consumer.stop()
        return asyncio.run(run())

    def outcomes(self) -> dict[str, Any]:
        return self.worker.stats()["workers"][self.worker.url]["outcomes"]  # type: ignore[no-any-return]

    def cli(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=REPO, capture_output=True, text=True,
                              env={**os.environ, **(env or self.env)}, timeout=120, check=False)


@pytest.fixture(scope="module")
def run(kafka_broker: str, model_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    root: Path = tmp_path_factory.mktemp("dead-letters")
    group = Group(kafka_broker, f"dlq{int(time.time() * 1000)}", root, model_cache, PARTITIONS, quick_rebalance=False)
    worker = group.start("dlq", datadir=root / "worker")
    try:
        worker.wait_ready(timeout=300)
        yield Run(kafka_broker, group.app_id, worker, group.worker_env)
    finally:
        group.stop_all()


def test_the_dead_letter_topic_exists_once_a_worker_has_started(run: Run) -> None:
    wait_for("the dead-letter topic", lambda: run.dead_letter_topic in run.topics(), timeout=30)
    assert run.read(run.dead_letter_topic) == []


def test_bad_events_are_dead_lettered_as_produced_and_good_ones_are_searchable(run: Run) -> None:
    texts = [doc["text"] for doc in sample_texts(3)]
    vector = np.random.default_rng(7).normal(size=384).tolist()
    huge_text = texts[0] + " " + "and then it goes on " * 15_000  # 300 kB: cut to 100,000 characters, indexed
    good: list[Record] = [
        (b"text-0", _json({"id": "text-0", "text": texts[0], "metadata": {"n": 0}})),
        (b"text-1", _json({"id": "text-1", "text": texts[1]})),
        (b"text-2", _json({"id": "text-2", "text": texts[2]})),
        (b"own-vector", _json({"id": "own-vector", "vector": vector})),
        (b"huge", _json({"id": "huge", "text": huge_text})),
        (b"versioned", _json({"id": "versioned", "text": "version two", "version": 2})),
        (b"text-0", _json({"id": "text-0", "text": texts[0], "metadata": {"n": 0}, "ts": 5.0})),  # unchanged
        (b"text-2", _json({"id": "text-2", "op": "delete"})),                                    # deleted
        (b"versioned", _json({"id": "versioned", "text": "version one", "version": 1})),          # stale
    ]
    assert len(huge_text.encode()) > 300_000
    bad = [(key, value) for key, value, _ in BAD]
    run.send(good[:6] + bad[:6] + good[6:] + bad[6:])
    produced = len(good) + len(bad)

    wait_for("every event to have an outcome", lambda: sum(run.outcomes()["total"].values()) == produced, timeout=120)
    outcomes = run.outcomes()
    assert outcomes["total"] == {"indexed": 6, "deleted": 1, "stale": 1, "unchanged": 1, "dead_lettered": len(BAD)}
    expected_reasons: dict[str, int] = {}
    for _, _, reason in BAD:
        expected_reasons[reason] = expected_reasons.get(reason, 0) + 1
    assert outcomes["dead_letter_reasons"] == expected_reasons
    assert sum(sum(v for k, v in p.items() if k != "dead_letter_reasons") for p in outcomes["partitions"].values()) \
        == produced

    letters = run.read(run.dead_letter_topic)
    assert sorted((r.key, r.value) for r in letters) == sorted(bad)
    for record in letters:
        headers = {name: value.decode() for name, value in record.headers}
        expected = next(reason for key, value, reason in BAD if (key, value) == (record.key, record.value))
        assert headers["streamvec-reason"] == expected and headers["streamvec-error"]
        assert headers["streamvec-topic"] == run.events_topic
        assert 0 <= int(headers["streamvec-partition"]) < PARTITIONS and int(headers["streamvec-offset"]) >= 0
        assert len(record.headers) == 5

    for doc_id, text in (("text-0", texts[0]), ("text-1", texts[1])):
        assert run.worker.search(text=text, k=1)["results"][0]["id"] == doc_id
    assert run.worker.search(vector=vector, k=1)["results"][0]["id"] == "own-vector"
    assert run.worker.get("/documents/huge")[0] == 200
    assert run.worker.get("/documents/text-2")[0] == 404
    assert run.worker.get("/documents/versioned")[1]["version"] == 2
    assert run.worker.stats()["documents"] == 5


def test_the_cli_lists_and_replays_dead_letters(run: Run) -> None:
    listed = run.cli("dead-letters", "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].startswith("OFFSET") and len(lines) == 1 + len(BAD)
    assert f"{len(BAD)} of {len(BAD)} dead letters" in listed.stderr
    only_ops = run.cli("dead-letters", "list", "--reason", "bad_op")
    assert only_ops.returncode == 0 and len(only_ops.stdout.splitlines()) == 2
    assert "bad_op" in only_ops.stdout and "bad-op" in only_ops.stdout and "merge" in only_ops.stdout
    assert len(run.cli("dead-letters", "list", "--limit", "2").stdout.splitlines()) == 3

    dry = run.cli("dead-letters", "replay", "--reason", "bad_op", "--dry-run")
    assert dry.returncode == 0 and "1 dead letters with reason bad_op would be replayed" in dry.stdout
    before = run.outcomes()["total"]["dead_lettered"]

    replayed = run.cli("dead-letters", "replay", "--reason", "bad_op")
    assert replayed.returncode == 0 and "replayed 1 dead letters with reason bad_op" in replayed.stdout, replayed.stderr
    # Replayed to the events topic with its original bytes and none of our headers, so the
    # worker refuses it again for the same reason: a second identical dead letter.
    wait_for("the replayed event to be dead-lettered again",
             lambda: run.outcomes()["total"]["dead_lettered"] == before + 1, timeout=60)
    again = [r for r in run.read(run.dead_letter_topic) if r.key == b"bad-op"]
    assert len(again) == 2 and again[0].value == again[1].value
    assert [name for name, _ in again[1].headers].count("streamvec-reason") == 1 and len(again[1].headers) == 5
    assert dict(again[1].headers)["streamvec-offset"] != dict(again[0].headers)["streamvec-offset"]


def test_the_cli_says_when_the_topic_or_the_broker_is_missing(run: Run) -> None:
    no_topic = run.cli("dead-letters", "list", env={**run.env, "STREAMVEC_APP_ID": "never-started"})
    assert no_topic.returncode == 1 and "never-started-dead-letters does not exist" in no_topic.stderr
    no_broker = run.cli("dead-letters", "replay", env={**run.env, "STREAMVEC_BROKER": "127.0.0.1:1"})
    assert no_broker.returncode == 1 and "cannot read" in no_broker.stderr and "STREAMVEC_BROKER" in no_broker.stderr


def test_a_dead_letter_topic_smaller_than_an_input_record_takes_the_letter_without_its_value(
        group_factory: GroupFactory) -> None:
    """Review finding SP-12: a dead-letter topic created beforehand with a smaller
    ``max.message.bytes`` than an input topic's refused the letter of a large bad event, and the
    batch was retried for ever, so ingest stopped. The letter now goes without its value."""
    group = group_factory("smalldlq")
    dead_letters = group.topic_of("dead-letters")
    asyncio.run(ensure_topic(group.broker, dead_letters, group.partitions, {"max.message.bytes": "500000"}))
    worker = group.start("a")
    worker.wait_ready(timeout=300)
    big = b"{not json " + b"x" * 600_000
    good = [(doc["id"].encode(), _json(doc)) for doc in sample_texts(100)]
    send_records(group.broker, group.topic, [(b"big", big), *good])
    stats = group.wait_consumed(101, timeout=60)
    assert stats["outcomes"]["indexed"] == 100 and stats["outcomes"]["dead_lettered"] == 1, stats["outcomes"]
    [record] = read_topic(group.broker, dead_letters)
    letter = DeadLetter.from_record(record.key, record.value, record.headers)
    omitted = dict(record.headers).get(OMITTED)
    print(f"\nthe letter of a {len(big):,}-byte event on a 500,000-byte dead-letter topic: reason {letter.reason}, "
          f"value {len(letter.value or b'')} bytes, {OMITTED} {omitted!r}")
    assert (letter.key, letter.reason, letter.value, omitted) == (b"big", "bad_json", b"", str(len(big)).encode())
    assert "refused a record as too large" in worker.log_path.read_text(errors="replace")
