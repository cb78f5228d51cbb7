"""A real ``streamvec worker`` with the faults the suite cannot cause from outside.

* ``FAULT_MODEL_DOWN_FILE``: while that file exists, the model fails on every text (a broken GPU
  driver, memory pressure).
* ``FAULT_EXIT_AFTER_PROGRESS_FILE``: if that file exists when a batch's changelog records and
  progress record have been acknowledged, the file is removed and the process dies at once
  (``os._exit``: no cleanup, as kill -9 at that exact point), before the batch reaches RocksDB
  and before its events are acknowledged.

Everything else about the worker is the product's own.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents.ingest import IngestProcessor
from app.cli import main
from app.embedding import EmbeddingService
from index.model.embedder import TextEmbeddings
from tables.changelog_reader import ChangelogReader

_DOWN = Path(os.environ.get("FAULT_MODEL_DOWN_FILE", "/nonexistent/model-down"))
_EXIT = Path(os.environ.get("FAULT_EXIT_AFTER_PROGRESS_FILE", "/nonexistent/exit-after-progress"))
_real_embed = EmbeddingService.embed
_real_embed_with_stats = EmbeddingService.embed_with_stats
_real_make_durable = IngestProcessor._make_durable
_SLOW_READS = float(os.environ.get("FAULT_SLOW_CHANGELOG_READS", "0"))
_real_read = ChangelogReader.read


def _fail_while_down() -> None:
    if _DOWN.exists():
        raise RuntimeError("injected fault: the model is down")


async def _make_durable(self: IngestProcessor, records: Mapping[int, Mapping[bytes, bytes]]) -> dict[int, int]:
    offsets = await _real_make_durable(self, records)
    if _EXIT.exists():
        _EXIT.unlink()
        os._exit(9)
    return offsets


async def _embed(self: EmbeddingService, texts: Sequence[str]) -> np.ndarray:
    _fail_while_down()
    return await _real_embed(self, texts)


async def _embed_with_stats(self: EmbeddingService, texts: Sequence[str]) -> TextEmbeddings:
    _fail_while_down()
    return await _real_embed_with_stats(self, texts)


async def _slow_read(self: ChangelogReader, *args: Any, **kwargs: Any) -> Any:
    await asyncio.sleep(_SLOW_READS)
    return await _real_read(self, *args, **kwargs)


EmbeddingService.embed = _embed  # type: ignore[method-assign]
EmbeddingService.embed_with_stats = _embed_with_stats  # type: ignore[method-assign]
IngestProcessor._make_durable = _make_durable  # type: ignore[method-assign]
if _SLOW_READS:
    ChangelogReader.read = _slow_read  # type: ignore[method-assign]
main(["worker"])
