"""Query texts: served from a bounded LRU cache that ingest texts never touch, and never queued behind ingest."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
import pytest

from app.embedding import EmbeddingService
from app.settings import Settings, SettingsError
from index.model.embedder import TextEmbeddings


class CountingEmbedder:
    """A stand-in model that records every text it is asked to embed."""

    dim = 4
    model_id = "counting-4"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def embed(self, texts: list[str]) -> np.ndarray:
        self.seen.extend(texts)
        return np.array([[len(text), 1.0, 0.0, 0.0] for text in texts], dtype=np.float32)

    def embed_with_stats(self, texts: list[str]) -> TextEmbeddings:
        vectors = self.embed(texts)
        return TextEmbeddings(vectors, np.linalg.norm(vectors, axis=1), np.zeros(len(texts), dtype=bool))


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def service(size: int) -> tuple[EmbeddingService, CountingEmbedder]:
    model = CountingEmbedder()
    return EmbeddingService(model, query_cache_size=size), model  # type: ignore[arg-type]


def test_a_repeated_query_is_embedded_once() -> None:
    embedding, model = service(8)

    async def go() -> None:
        first = await embedding.embed_query("wireless headphones")
        second = await embedding.embed_query("wireless headphones")
        assert second is first
        assert not first.flags.writeable  # shared between hits: nobody may change it

    run(go())
    assert model.seen == ["wireless headphones"]
    assert embedding.cache_stats() == {"size": 1, "capacity": 8, "hits": 1, "misses": 1}


def test_the_cache_is_bounded_and_evicts_the_least_recently_used() -> None:
    embedding, model = service(2)

    async def go() -> None:
        for text in ("a", "b", "a", "c", "a", "b"):  # "b" is evicted by "c", "a" stays hot
            await embedding.embed_query(text)

    run(go())
    assert model.seen == ["a", "b", "c", "b"]
    assert embedding.cache_stats()["size"] == 2


def test_size_zero_turns_the_cache_off() -> None:
    embedding, model = service(0)

    async def go() -> None:
        await embedding.embed_query("q")
        await embedding.embed_query("q")

    run(go())
    assert model.seen == ["q", "q"]
    assert embedding.cache_stats()["size"] == 0


def test_ingest_texts_bypass_the_query_cache() -> None:
    embedding, model = service(8)

    async def go() -> None:
        await embedding.embed(["doc text"])
        await embedding.embed_query("doc text")

    run(go())
    assert model.seen == ["doc text", "doc text"]


def test_embedding_settings_from_the_environment() -> None:
    settings = Settings.from_env({"STREAMVEC_QUANTIZE": "int8", "STREAMVEC_EMBED_PROVIDER": "cuda",
                                  "STREAMVEC_QUERY_CACHE_SIZE": "0", "STREAMVEC_INT8_MIN_RECALL": "0.8"})
    assert (settings.quantize, settings.embed_provider, settings.query_cache_size) == ("int8", "cuda", 0)
    assert settings.int8_min_recall == 0.8
    defaults = Settings()
    assert defaults.quantize == "none"  # int8 only when asked for
    assert defaults.embed_provider == "cpu"


@pytest.mark.parametrize(("name", "value"), [("STREAMVEC_QUANTIZE", "int4"), ("STREAMVEC_EMBED_PROVIDER", "tpu"),
                                             ("STREAMVEC_QUERY_CACHE_SIZE", "-1"), ("STREAMVEC_INT8_MIN_COSINE", "2")])
def test_bad_embedding_settings_are_refused(name: str, value: str) -> None:
    with pytest.raises(SettingsError):
        Settings.from_env({name: value})


class BlockingEmbedder(CountingEmbedder):
    """A model whose ingest batches (more than one text) run until released."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def embed(self, texts: list[str]) -> np.ndarray:
        if len(texts) > 1:
            assert self.release.wait(timeout=10)
        return super().embed(texts)


def test_a_query_does_not_wait_for_an_ingest_batch_in_progress() -> None:
    model = BlockingEmbedder()
    embedding = EmbeddingService(model, query_cache_size=8)  # type: ignore[arg-type]

    async def go() -> None:
        ingest = asyncio.create_task(embedding.embed(["doc one", "doc two"]))
        await asyncio.sleep(0.05)  # the batch holds the ingest lane
        vector = await asyncio.wait_for(embedding.embed_query("query"), timeout=5)
        assert vector[0] == len("query") and not ingest.done()
        model.release.set()
        assert (await ingest).shape == (2, 4)

    try:
        run(go())
    finally:
        model.release.set()
        embedding.close()
