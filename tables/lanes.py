"""Serial lanes on a shared thread pool: one partition's index jobs run in order, partitions in parallel.

A single writer thread for every partition (the first design) made ingest of one partition wait
behind another partition's long build. One thread per partition would not: but a worker holds a
changing set of partitions, and hnswlib's inserts already use every core. So each partition gets a
:class:`Lane`, a FIFO of jobs of which at most one runs at a time, and all lanes share one small
pool. A lane runs one job per turn and then yields its thread to the others, so a long chain of
jobs on one lane (a build in chunks) cannot starve the rest.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

T = TypeVar("T")


class Lane:
    """Jobs for one partition: run one at a time, in submission order, on ``pool``."""

    def __init__(self, pool: Executor) -> None:
        self._pool = pool
        self._jobs: deque[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]] = deque()
        self._lock = threading.Lock()
        self._scheduled = False

    def submit(self, job: Callable[..., T], *args: Any) -> Future[T]:
        """Queue ``job(*args)``; its future holds the result or the exception it raised."""
        future: Future[T] = Future()
        with self._lock:
            self._jobs.append((future, job, args))
            self._schedule()
        return future

    def idle(self) -> Future[None]:
        """A future that completes once every job submitted so far has run."""
        return self.submit(_nothing)

    def _schedule(self) -> None:
        """Hand the lane to the pool unless it is already there (caller holds the lock)."""
        if self._jobs and not self._scheduled:
            self._scheduled = True
            self._pool.submit(self._run_one)

    def _run_one(self) -> None:
        with self._lock:
            future, job, args = self._jobs.popleft()
        try:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(job(*args))
                except BaseException as exc:  # noqa: BLE001 — the future carries it to whoever waits
                    future.set_exception(exc)
        finally:
            with self._lock:
                self._scheduled = False
                self._schedule()


def _nothing() -> None:
    return None
