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

_DOWN = Path(os.environ["FAULT_MODEL_DOWN_FILE"])
_real_embed = EmbeddingService.embed


async def _embed(self: EmbeddingService, texts: Sequence[str]) -> np.ndarray:
    if _DOWN.exists():
        raise RuntimeError("injected fault: the model is down")
    return await _real_embed(self, texts)


EmbeddingService.embed = _embed  # type: ignore[method-assign]
main(["worker"])
