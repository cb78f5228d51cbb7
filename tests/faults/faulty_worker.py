"""A real ``streamvec worker`` whose model fails while a file exists.

The one fault the suite cannot cause from outside: a model that fails on every text for a while
(a broken GPU driver, memory pressure). Everything else about the worker is the product's own.
Set ``FAULT_MODEL_DOWN_FILE`` to the file's path.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from app.cli import main
from app.embedding import EmbeddingService
from index.model.embedder import TextEmbeddings

_DOWN = Path(os.environ["FAULT_MODEL_DOWN_FILE"])
_real_embed = EmbeddingService.embed
_real_embed_with_stats = EmbeddingService.embed_with_stats


def _fail_while_down() -> None:
    if _DOWN.exists():
        raise RuntimeError("injected fault: the model is down")


async def _embed(self: EmbeddingService, texts: Sequence[str]) -> np.ndarray:
    _fail_while_down()
    return await _real_embed(self, texts)


async def _embed_with_stats(self: EmbeddingService, texts: Sequence[str]) -> TextEmbeddings:
    _fail_while_down()
    return await _real_embed_with_stats(self, texts)


EmbeddingService.embed = _embed  # type: ignore[method-assign]
EmbeddingService.embed_with_stats = _embed_with_stats  # type: ignore[method-assign]
main(["worker"])
