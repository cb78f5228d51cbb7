"""Waits inside a batch have a bound (review finding SP-16): a batch that waits through a rebalance
keeps Faust's ``wait_empty`` from ending, and the member is evicted. Past the bound the batch fails,
its agent retries it, and on a rebalance leaves it to the partitions' next owner."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import agents.analysis
import agents.watchlist
from agents.analysis import IndexNotBuilt, Novelty
from agents.watchlist import PatternReader, PatternsBehind, WatchlistProcessor
from index.records.events import Limits
from index.uses.watchlist import Watchlist


class Building:
    """A vectors table whose active partitions are still being built."""

    def actives_built(self) -> bool:
        return False


class NoSender:
    async def send_all(self, records: object) -> list[object]:
        raise AssertionError("nothing may be sent while the batch waits")


def test_novelty_fails_the_batch_when_the_active_indexes_stay_unbuilt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agents.analysis, "_BUILD_WAIT", 0.2)
    novelty = Novelty(Building(), threshold=0.3, pool=ThreadPoolExecutor(1))  # type: ignore[arg-type]
    started = time.monotonic()
    with pytest.raises(IndexNotBuilt, match="still being built"):
        asyncio.run(novelty.nearest(["d"], np.ones((1, 3), np.float32)))
    assert time.monotonic() - started < 2


def test_a_watchlist_batch_fails_when_the_patterns_reader_does_not_catch_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agents.watchlist, "CATCH_UP_WAIT", 0.2)
    reader = PatternReader("127.0.0.1:1", "app-watchlist-patterns", Watchlist(3), 0.5)  # never started: never loaded
    processor = WatchlistProcessor(reader, NoSender(), "app-dead-letters", embedding=None,  # type: ignore[arg-type]
                                   limits=Limits())
    started = time.monotonic()
    with pytest.raises(PatternsBehind, match="app-watchlist-patterns"):
        asyncio.run(processor.process([]))
    assert time.monotonic() - started < 2
