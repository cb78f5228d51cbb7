"""app/pools.py: one owner shuts every worker pool down, once, whatever one close does."""

from __future__ import annotations

import threading

import pytest

from app.pools import WorkerPools


def _threads(prefix: str) -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith(prefix)]


def test_close_shuts_every_pool_down_and_their_threads_end() -> None:
    pools = WorkerPools(cores=2)
    search, analysis = pools.pool("test-search", pools.cores), pools.pool("test-analysis", 1)
    assert search.submit(lambda: 1).result() == analysis.submit(lambda: 2).result() - 1
    pools.close()
    for thread in _threads("test-search") + _threads("test-analysis"):
        thread.join(timeout=5)
    assert not _threads("test-search") and not _threads("test-analysis")
    with pytest.raises(RuntimeError):
        search.submit(lambda: 1)


def test_closers_run_once_in_reverse_order_and_a_failing_one_stops_none_of_the_others() -> None:
    pools = WorkerPools(cores=1)
    ran: list[str] = []

    def failing() -> None:
        ran.append("failing")
        raise OSError("already closed")

    pools.on_close("first", lambda: ran.append("first"))
    pools.on_close("failing", failing)
    pools.on_close("last", lambda: ran.append("last"))
    pools.close()
    pools.close()
    assert ran == ["last", "failing", "first"]


def test_pools_are_sized_by_the_cores_this_process_may_use() -> None:
    from index.model.embedder import usable_cores
    assert WorkerPools().cores == usable_cores()
