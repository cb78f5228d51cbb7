"""The model inside a worker: run on its own threads, never on the event loop.

Ingest batches and query texts have separate lanes, so a search never waits for
a 512-text ingest batch to finish: each lane is one thread calling the same
onnxruntime session (``InferenceSession.run`` may be called from several threads
at once; the weights are loaded once). A query's run is small (one text) and
proceeds on its own thread while an ingest run is under way.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from app.settings import Settings
from index.model.embedder import Embedder, TextEmbeddings
from index.model.models import load_embedder
from index.model.quantize import QualityGate


def embedder_from_settings(settings: Settings) -> Embedder:
    """The embedder the settings ask for: model, cache, threads, batch size, precision (with its gate), device.

    Workers and ``streamvec embed`` both build theirs here, so they embed alike.
    """
    return load_embedder(
        settings.model, settings.model_cache_dir, threads=settings.embed_threads or None,
        batch_size=settings.embed_batch_size, quantize=settings.quantize, provider=settings.embed_provider,
        gate=QualityGate(min_mean_cosine=settings.int8_min_cosine, min_recall=settings.int8_min_recall),
    )


def _load_malloc_trim() -> Any:
    """glibc's malloc_trim, or None where the C library has none (musl, macOS)."""
    name = ctypes.util.find_library("c")
    return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None


_MALLOC_TRIM = _load_malloc_trim()


def _trim_heap() -> None:
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


class EmbeddingService:
    """Runs ingest batches on one thread and query texts on another, off the event loop.

    Ingest batches queue behind each other on their lane: onnxruntime spreads a
    batch over its own intra-op threads, and two batches at once would only fight
    over the same cores. Queries have their own lane and never queue behind them.

    Query texts (``embed_query``) go through a bounded LRU cache: a repeated search costs
    no model run. Ingest texts (``embed``) do not: re-sent documents are caught by the
    text hash in their stored record instead.
    """

    def __init__(self, embedder: Embedder, query_cache_size: int = 1024) -> None:
        self.embedder = embedder
        self.dim = embedder.dim
        self.model_id = embedder.model_id
        self._ingest_lane = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed-ingest")
        self._query_lane = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed-query")
        self._query_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._query_cache_size = query_cache_size
        self.query_cache_hits = 0
        self.query_cache_misses = 0

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of ingest texts, in order, from the ingest lane."""
        return (await self.embed_with_stats(texts)).vectors

    async def embed_with_stats(self, texts: Sequence[str]) -> TextEmbeddings:
        """:meth:`embed` plus each text's norm before normalising and whether it was truncated
        (embedding health watches both)."""
        return await asyncio.get_running_loop().run_in_executor(self._ingest_lane, self._embed_batch, list(texts))

    def _embed_batch(self, texts: list[str]) -> TextEmbeddings:
        """One ingest batch, then its activation memory handed back to the system.

        onnxruntime frees it after the batch, but glibc keeps what a non-main thread frees
        in that thread's heap: after a batch of long texts the worker kept ~80 MB more.
        """
        try:
            return self.embedder.embed_with_stats(texts)
        finally:
            _trim_heap()

    async def embed_query(self, text: str) -> np.ndarray:
        """One query text's vector (read-only), from the cache when this text was embedded lately."""
        cached = self._query_cache.get(text)
        if cached is not None:
            self._query_cache.move_to_end(text)
            self.query_cache_hits += 1
            return cached
        self.query_cache_misses += 1
        vectors = await asyncio.get_running_loop().run_in_executor(self._query_lane, self.embedder.embed, [text])
        vector = vectors[0]
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
        self._ingest_lane.shutdown(wait=False, cancel_futures=True)
        self._query_lane.shutdown(wait=False, cancel_futures=True)
