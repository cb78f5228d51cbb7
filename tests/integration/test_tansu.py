"""Smoke test on the demo's default broker, Tansu: produce, index, search, with two workers,
one started by ``streamvec worker`` and one by Faust's own ``faust -A app worker``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.brokers.tansu import start_tansu
from tests.cluster import FAUST_WORKER, Worker, stop_all, wait_for_documents
from tests.conftest import running_broker, sample_texts, send_events

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tansu() -> Iterator[str]:
    yield from running_broker(start_tansu, "Tansu")


def test_tansu_produce_index_search(tansu: str, tmp_path: Path) -> None:
    app_id = f"tansu{uuid.uuid4().hex[:6]}"
    env = {"STREAMVEC_BROKER": tansu, "STREAMVEC_APP_ID": app_id, "STREAMVEC_PARTITIONS": "4",
           "STREAMVEC_SESSION_TIMEOUT": "6", "STREAMVEC_REBALANCE_TIMEOUT": "10",
           "STREAMVEC_MODEL_CACHE": str(tmp_path / "models"), "STREAMVEC_IDEMPOTENT_PRODUCER": "false"}
    workers = [Worker("t1", env, tmp_path / "t1").start(),
               Worker("t2", env, tmp_path / "t2", command=FAUST_WORKER).start()]
    try:
        docs = sample_texts(100)
        send_events(tansu, app_id, docs, partitions=4)
        for worker in workers:
            wait_for_documents(worker, len(docs), timeout=120)
        for worker, doc in zip(workers * 5, docs[::10]):
            assert worker.search(text=doc["text"], k=1)["results"][0]["id"] == doc["id"]
    finally:
        stop_all(workers)
