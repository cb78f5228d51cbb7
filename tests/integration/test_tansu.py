"""Smoke test on the demo's default broker, Tansu: produce, index, search, with two workers,
one started by ``streamvec worker`` and one by Faust's own ``faust -A app worker``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.brokers.tansu import start_tansu
from tests.support.group import Group
from tests.support.kafka import running_broker, sample_texts, send_events
from tests.support.workers import FAUST_WORKER, wait_for_documents

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tansu() -> Iterator[str]:
    yield from running_broker(start_tansu, "Tansu")


def test_tansu_produce_index_search(tansu: str, model_cache: Path, tmp_path: Path) -> None:
    group = Group(tansu, f"tansu{uuid.uuid4().hex[:6]}", tmp_path, model_cache, 4,
                  {"STREAMVEC_IDEMPOTENT_PRODUCER": "false"})
    workers = [group.start("t1"), group.start("t2", command=FAUST_WORKER)]
    app_id = group.app_id
    try:
        docs = sample_texts(100)
        send_events(tansu, app_id, docs, partitions=4)
        for worker in workers:
            wait_for_documents(worker, len(docs), timeout=120)
        for worker, doc in zip(workers * 5, docs[::10]):
            assert worker.search(text=doc["text"], k=1)["results"][0]["id"] == doc["id"]
    finally:
        group.stop_all()
