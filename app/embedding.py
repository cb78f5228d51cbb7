"""The model inside a worker: run on its own thread, never on the event loop."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from app.settings import Settings
from index.embedder import Embedder, TextEmbeddings, load_embedder
from index.quantize import QualityGate


def embedder_from_settings(settings: Settings) -> Embedder:
    """The embedder the settings ask for: model, threads, batch size, precision (with its gate), device."""
    return load_embedder(
        settings.model, settings.model_cache_dir, threads=settings.embed_threads or None,
        batch_size=settings.embed_batch_size, quantize=settings.quantize, provider=settings.embed_provider,
        gate=QualityGate(min_mean_cosine=settings.int8_min_cosine, min_recall=settings.int8_min_recall),
    )


class EmbeddingService:
    """Runs embedding batches, one at a time, on one dedicated thread.

    One thread is enough: onnxruntime spreads a batch over its own intra-op threads, and
    queueing batches keeps two model runs from fighting over the same cores.

    Query texts (``embed_query``) go through a bounded LRU cache: a repeated search costs
    no model run. Ingest texts (``embed``) do not: re-sent documents are caught by the
    text hash in their stored record instead.
    """

    def __init__(self, embedder: Embedder, query_cache_size: int = 1024) -> None:
        self.embedder = embedder
        self.dim = embedder.dim
        self.model_id = embedder.model_id
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedder")
        self._query_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._query_cache_size = query_cache_size
        self.query_cache_hits = 0
        self.query_cache_misses = 0

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.embedder.embed, list(texts))

    async def embed_with_stats(self, texts: Sequence[str]) -> TextEmbeddings:
        """Vectors plus each text's norm before normalising and truncation (for embedding health)."""
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self.embedder.embed_with_stats, list(texts))

    async def embed_query(self, text: str) -> np.ndarray:
        """One query text's vector (read-only), from the cache when this text was embedded lately."""
        cached = self._query_cache.get(text)
        if cached is not None:
            self._query_cache.move_to_end(text)
            self.query_cache_hits += 1
            return cached
        self.query_cache_misses += 1
        vector = (await self.embed([text]))[0]
        vector.setflags(write=False)  # shared by every later hit: nobody may change it in place
        if self._query_cache_size:
            self._query_cache[text] = vector
            self._query_cache.move_to_end(text)
            while len(self._query_cache) > self._query_cache_size:
                self._query_cache.popitem(last=False)
        return vector

    def cache_stats(self) -> dict[str, Any]:
        return {"size": len(self._query_cache), "capacity": self._query_cache_size,
                "hits": self.query_cache_hits, "misses": self.query_cache_misses}

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
