"""The LangChain vector store on a live worker and real Kafka: LangChain's own standard
vector-store tests (langchain-tests), then filters, scores, search by vector and from_texts.

The group has its own app id and starts empty; each standard test deletes what it wrote.
Page content is the stored text, which search hits carry.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_tests.integration_tests.vectorstores import VectorStoreIntegrationTests

from index.model.models import load_embedder
from streamvec import Client
from streamvec.langchain import StreamvecVectorStore
from tests.support.group import Group
from tests.support.workers import wait_for

pytestmark = pytest.mark.integration

@pytest.fixture(scope="module")
def langchain_client(kafka_broker: str, model_cache: Path,
                     tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    group = Group(kafka_broker, f"langchain{int(time.time())}", tmp_path_factory.mktemp("langchain"), model_cache, 2,
                  quick_rebalance=False)
    app_id = group.app_id
    worker = group.start("lc")
    try:
        worker.wait_ready(timeout=120)
        with Client(worker.url, broker=kafka_broker, app_id=app_id) as client:
            wait_for("the events topic", lambda: _topic_ready(client), timeout=60)
            yield client
    finally:
        worker.stop()


def _topic_ready(client: Client) -> bool:
    client.delete(["probe"])  # fails until the worker has created the events topic
    return True


class RecordingStore(StreamvecVectorStore):
    """Remembers every id it wrote, so the fixture can leave the group empty after each test."""

    written: set[str]

    def add_texts(self, *args: Any, **kwargs: Any) -> list[str]:
        ids = super().add_texts(*args, **kwargs)
        self.written.update(ids)
        return ids


class TestStreamvecStandard(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self, langchain_client: Client) -> Iterator[RecordingStore]:
        store = RecordingStore(langchain_client)
        store.written = set()
        assert langchain_client.stats().documents == 0, "the group must be empty before each standard test"
        try:
            yield store
        finally:
            store.delete(sorted(store.written))


@pytest.fixture
def store(langchain_client: Client) -> Iterator[StreamvecVectorStore]:
    store = RecordingStore(langchain_client)
    store.written = set()
    try:
        yield store
    finally:
        store.delete(sorted(store.written))


PETS = [("a tabby cat asleep on the sofa", {"kind": "pet", "legs": 4}),
        ("a goldfish in a round bowl", {"kind": "pet", "legs": 0}),
        ("a tractor ploughing a field", {"kind": "machine", "legs": 0})]


def test_metadata_filters_and_scores(store: StreamvecVectorStore) -> None:
    ids = store.add_texts([text for text, _ in PETS], [metadata for _, metadata in PETS])
    scored = store.similarity_search_with_score("a kitten", k=3)
    assert scored[0][0].id == ids[0] and scored[0][0].metadata == PETS[0][1]
    assert [score for _, score in scored] == sorted((score for _, score in scored), reverse=True)
    pets = store.similarity_search("farm machinery", k=3, filter={"kind": "pet"})
    assert {doc.id for doc in pets} == {ids[0], ids[1]}
    legless = store.similarity_search("an animal", k=3, filter={"legs": {"$lt": 1}, "kind": "pet"})
    assert [doc.id for doc in legless] == [ids[1]]
    relevant = store.similarity_search_with_relevance_scores("a kitten", k=1)
    assert relevant[0][1] == pytest.approx(scored[0][1])


def test_search_by_vector_matches_search_by_text(store: StreamvecVectorStore, model_cache: Path) -> None:
    store.add_texts([text for text, _ in PETS], [metadata for _, metadata in PETS])
    vector = load_embedder("all-MiniLM-L6-v2", model_cache).embed(["a kitten"])[0].tolist()
    by_vector = store.similarity_search_by_vector(vector, k=3)
    assert [d.id for d in by_vector] == [d.id for d in store.similarity_search("a kitten", k=3)]


def test_from_texts_builds_a_store_on_a_client(langchain_client: Client) -> None:
    made = StreamvecVectorStore.from_texts(["the violin has four strings"], metadatas=[{"topic": "music"}],
                                           ids=["violin"], client=langchain_client)
    try:
        assert made.get_by_ids(["violin"]) == [Document(id="violin", page_content="the violin has four strings",
                                                        metadata={"topic": "music"})]
    finally:
        made.delete(["violin"])
    assert made.get_by_ids(["violin"]) == []
