"""Debezium CDC input end to end: real Kafka, a real worker, PostgreSQL-connector records.

Each scenario runs twice, once with the JsonConverter's ``schemas.enable=true`` and once
without, on its own CDC topic (8 partitions) and app id. The records are keyed like
Debezium's (the JSON key struct), so a row's changes stay in one partition in order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.topics import ensure_topic
from tests.debezium_records import Table, articles_table
from tests.support.group import Group
from tests.support.kafka import sample_texts, send_records
from tests.support.workers import Worker, wait_for, wait_for_documents

pytestmark = pytest.mark.integration

PARTITIONS = 8
SNAPSHOT_ROWS = 30
INSERTED_ROWS = 10
Record = tuple[bytes | None, bytes | None]


def article_rows(count: int) -> list[dict[str, Any]]:
    """Rows of ``public.articles`` made from the demo glosses: title = the word, body = its gloss."""
    rows = []
    for number, sample in enumerate(sample_texts(count), 1):
        word, _, gloss = sample["text"].partition(": ")
        rows.append({"id": number, "title": word, "body": gloss, "category": sample["metadata"]["category"],
                     "year": 2000 + number, "embedding": None})
    return rows


def text_of(row: dict[str, Any]) -> str:
    return f"{row['title']}\n{row['body']}"


def send(broker: str, topic: str, records: list[Record]) -> None:
    """Produce like Kafka Connect: the default partitioner hashes the key bytes (murmur2)."""
    send_records(broker, topic, records)


class Cdc:
    """One app id, one CDC topic, one worker; ``rows`` is what the database holds."""

    def __init__(self, broker: str, schemas: bool, root: Path, models: Path) -> None:
        self.broker, self.schemas = broker, schemas
        self.table: Table = articles_table()
        suffix = f"{'schemas' if schemas else 'plain'}{int(time.time() * 1000)}"
        self.topic = f"{self.table.topic}.{suffix}"
        self.group = Group(broker, f"cdc-{suffix}", root, models, PARTITIONS, {
            "STREAMVEC_CDC_TOPIC": self.topic, "STREAMVEC_CDC_TEXT_COLUMNS": "title,body",
            "STREAMVEC_CDC_METADATA_COLUMNS": "category,year"}, quick_rebalance=False)
        self.rows: dict[str, dict[str, Any]] = {}
        self.worker: Worker | None = None

    def send(self, records: list[Record]) -> None:
        send(self.broker, self.topic, records)

    def start_worker(self) -> Worker:
        self.worker = self.group.start(f"cdc-{'schemas' if self.schemas else 'plain'}", datadir=self.group.root / "worker")
        return self.worker

    def top1(self, text: str) -> str | None:
        assert self.worker is not None
        results = self.worker.search(text=text, k=1)["results"]
        return results[0]["id"] if results else None


@pytest.fixture(scope="module", params=[True, False], ids=["schemas", "no-schemas"])
def cdc(request: pytest.FixtureRequest, kafka_broker: str, tmp_path_factory: pytest.TempPathFactory,
        model_cache: Path) -> Iterator[Cdc]:
    cdc = Cdc(kafka_broker, request.param, tmp_path_factory.mktemp("cdc"), model_cache)
    asyncio.run(ensure_topic(kafka_broker, cdc.topic, PARTITIONS))
    try:
        yield cdc
    finally:
        cdc.group.stop_all()


def test_snapshot_reads_and_inserts_become_searchable_with_their_columns(cdc: Cdc) -> None:
    rows = article_rows(SNAPSHOT_ROWS + INSERTED_ROWS)
    snapshot, inserted = rows[:SNAPSHOT_ROWS], rows[SNAPSHOT_ROWS:]
    # The connector snapshots the table before the worker exists; inserts stream in after it started.
    cdc.send([cdc.table.snapshot_read(row, schemas=cdc.schemas, last=row is snapshot[-1]) for row in snapshot])
    worker = cdc.start_worker()
    worker.wait_ready(timeout=180)
    cdc.send([cdc.table.insert(row, schemas=cdc.schemas) for row in inserted])
    wait_for_documents(worker, len(rows), timeout=120)
    cdc.rows = {str(row["id"]): row for row in rows}

    misses = [(doc_id, got) for doc_id, row in cdc.rows.items() if (got := cdc.top1(text_of(row))) != doc_id]
    assert not misses, f"rows not found top-1 by their own text: {misses[:5]}"
    status, document = worker.get("/documents/31")
    assert status == 200, document
    assert document["metadata"] == {"category": rows[30]["category"], "year": 2031}
    assert document["version"] is None and document["ts"] > 1_764_000_000


def test_an_update_re_embeds_the_new_text(cdc: Cdc) -> None:
    assert cdc.worker is not None
    row = {**cdc.rows["1"], "title": "cable", "body": "a submarine cable carrying internet traffic between continents",
           "category": "technology"}
    old_text = text_of(cdc.rows["1"])
    cdc.send([cdc.table.update(row, schemas=cdc.schemas)])
    wait_for("the updated text to find row 1", lambda: cdc.top1(text_of(row)) == "1", timeout=30)
    assert cdc.top1(old_text) != "1"
    assert cdc.worker.get("/documents/1")[1]["metadata"] == {"category": "technology", "year": 2001}
    cdc.rows["1"] = row


def test_a_delete_and_its_tombstone_remove_the_row(cdc: Cdc) -> None:
    worker = cdc.worker
    assert worker is not None
    row = cdc.rows.pop("2")
    deleted_before = worker.stats()["outcomes"]["deleted"]
    cdc.send(cdc.table.delete(row, schemas=cdc.schemas))
    wait_for("row 2 to disappear", lambda: worker.get("/documents/2")[0] == 404, timeout=30)
    assert "2" not in {hit["id"] for hit in worker.search(text=text_of(row), k=10)["results"]}
    wait_for_documents(worker, len(cdc.rows), timeout=30)
    wait_for("the delete and the tombstone to be counted",
             lambda: worker.stats()["outcomes"]["deleted"] == deleted_before + 2, timeout=30)


def test_a_truncate_is_dead_lettered_and_changes_nothing(cdc: Cdc) -> None:
    worker = cdc.worker
    assert worker is not None
    cdc.send([cdc.table.truncate(schemas=cdc.schemas)])
    wait_for("the truncate to be dead-lettered",
             lambda: worker.stats()["dead_letter_reasons"].get("cdc_unsupported_op") == 1, timeout=30)
    assert worker.stats()["documents"] == len(cdc.rows)
    assert cdc.top1(text_of(cdc.rows["3"])) == "3"


@pytest.mark.parametrize(("partitions", "complaint"), [
    (3, "has 3 partitions but STREAMVEC_PARTITIONS is 8"),
    (None, "does not exist on"),
], ids=["3-partitions", "missing"])
def test_a_cdc_topic_that_is_not_co_partitioned_stops_the_worker_with_the_fix(
        kafka_broker: str, tmp_path: Path, model_cache: Path, partitions: int | None, complaint: str) -> None:
    topic = f"dbserver1.public.other{int(time.time() * 1000)}"
    if partitions is not None:
        asyncio.run(ensure_topic(kafka_broker, topic, partitions))
    group = Group(kafka_broker, f"mismatch{int(time.time() * 1000)}", tmp_path, model_cache, PARTITIONS,
                  {"STREAMVEC_CDC_TOPIC": topic, "STREAMVEC_CDC_TEXT_COLUMNS": "title"}, quick_rebalance=False)
    worker = group.start("cdc-mismatch", datadir=tmp_path / "worker")
    try:
        assert worker.process is not None
        assert worker.process.wait(timeout=120) != 0
        assert f"CdcTopicError: the CDC topic '{topic}'" in worker.log_tail(200)
        assert complaint in worker.log_tail(200)
    finally:
        worker.stop()
