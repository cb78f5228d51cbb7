"""The model inside a worker: run on its own thread, never on the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from index.embedder import Embedder


class EmbeddingService:
    """Runs embedding batches, one at a time, on one dedicated thread.

    One thread is enough: onnxruntime spreads a batch over its own intra-op threads, and
    queueing batches keeps two model runs from fighting over the same cores.
    """

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self.dim = embedder.dim
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedder")

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.embedder.embed, list(texts))

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
