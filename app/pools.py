"""The worker's thread pools, with one owner for their lifecycle.

Index, embedding and analysis work runs off the event loop, on pools. Before this owner
existed, five pools were made in four files: the analysis pool was never shut down and the
embedding lanes were never closed, and two pools were sized by ``os.cpu_count()`` (the host's
cores: 64 threads in a container limited to 2 CPUs) where the embedder used the cgroup-aware
:func:`~index.model.embedder.usable_cores`.

Everything here is made while the app is composed and shut down once, when the worker's web
server is cleaned up: Faust stops its agents and tables before its web server, so no batch
still submits work by then. The index pool is the store's own (Faust builds stores itself), and
the store shuts it down when it stops.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from index.model.embedder import usable_cores

logger = logging.getLogger(__name__)


class WorkerPools:
    """Makes the worker's pools and closes them, and whatever else was handed to it, once."""

    def __init__(self, cores: int | None = None) -> None:
        self.cores = cores or usable_cores()
        self._closers: list[tuple[str, Callable[[], None]]] = []
        self._closed = False

    def pool(self, name: str, threads: int) -> ThreadPoolExecutor:
        """A new pool of ``threads`` threads named ``name-N``, shut down by :meth:`close`."""
        pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix=name)
        self.on_close(name, lambda: pool.shutdown(wait=False, cancel_futures=True))
        return pool

    def on_close(self, name: str, close: Callable[[], None]) -> None:
        """Run ``close`` (e.g. an embedding service's) when the pools close."""
        self._closers.append((name, close))

    def close(self) -> None:
        """Shut everything down, in reverse order of creation; a second call does nothing."""
        if self._closed:
            return
        self._closed = True
        for name, close in reversed(self._closers):
            try:
                close()
            except Exception:  # noqa: BLE001 — one failed close must not keep the others open
                logger.exception("closing %s failed", name)
