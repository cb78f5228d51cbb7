"""Repeated query texts are served from a bounded LRU cache; ingest texts never touch it."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from app.embedding import EmbeddingService
from app.settings import Settings, SettingsError


class CountingEmbedder:
    """A stand-in model that records every text it is asked to embed."""

    dim = 4
    model_id = "counting-4"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def embed(self, texts: list[str]) -> np.ndarray:
        self.seen.extend(texts)
        return np.array([[len(text), 1.0, 0.0, 0.0] for text in texts], dtype=np.float32)


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
