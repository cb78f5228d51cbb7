"""The index feed: builds in chunks from the local store with writes waiting behind them, writes in
order on each partition's lane, a failed update rebuilt from the store, moved partitions suspended,
taken back or dropped, a build of a closed database abandoned; and the snapshot it is saved to and
restored from."""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from index.ann.hnsw import VectorIndex
from index.model.embedder import usable_cores
from index.records import codec, progress
from index.records.progress import Progress
from tables import index_feed
from tables.copies import Copies, CopyState
from tables.index_feed import IndexFeed, Op
from tables.index_snapshots import Snapshots
from tests.support.records import done_upto, record

OFFSET_KEY = b"__faust\x00offset__"


class Database:
    """A partition's RocksDB as the feed reads it: keys in order, ``items`` from a key on."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def items(self, from_key: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        keys = sorted(self.data)
        for key in keys[bisect.bisect_left(keys, from_key) if from_key is not None else 0:]:
            yield key, self.data[key]

    def property_int_value(self, name: str) -> int | None:
        return len(self.data)


class Store:
    """The feed's :class:`~tables.index_feed.Source`: databases by partition, which may be closed."""

    offset_key = OFFSET_KEY

    def __init__(self) -> None:
        self.dbs: dict[int, Database] = {}

    def write(self, partition: int, ops: list[tuple[bytes, bytes]], offset: int) -> None:
        db = self.dbs.setdefault(partition, Database())
        db.data.update(ops)
        db.data[OFFSET_KEY] = str(offset).encode()

    def stored_offset(self, partition: int) -> int | None:
        value = self.dbs[partition].data.get(OFFSET_KEY) if partition in self.dbs else None
        return None if value is None else int(value)

    def progress(self, partition: int) -> Progress:
        return progress.decode(self.dbs[partition].data.get(progress.KEY))

    def opened(self, partition: int) -> Database | None:
        return self.dbs.get(partition)


@pytest.fixture
def rig(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[IndexFeed, Store]]:
    monkeypatch.setattr(index_feed, "BUILD_CHUNK", 3)  # several chunks per build
    store = Store()
    feed = IndexFeed(VectorIndex(2), store, Copies(), keep_moved=60.0)
    yield feed, store
    feed.pool.shutdown(wait=True)


def settle(feed: IndexFeed) -> None:
    """Wait until no held copy is building and every lane is idle."""
    deadline = time.monotonic() + 10
    while any(c.state is CopyState.BUILDING for c in feed.copies.held().values()):
        assert time.monotonic() < deadline, "a build never ended"
        time.sleep(0.005)
    for slot in list(feed._slots.values()):
        slot.lane.idle().result(timeout=10)


def fill(store: Store, partition: int, documents: int, offset: int) -> None:
    store.write(partition, [(f"d{n}".encode(), record(1.0, n)) for n in range(documents)]
                + [(progress.KEY, progress.encode(done_upto(offset)))], offset)


def built(feed: IndexFeed, store: Store, partition: int, documents: int, offset: int) -> None:
    """``partition`` stored with ``documents`` documents up to changelog ``offset``, and built."""
    fill(store, partition, documents, offset)
    feed.build(partition)
    settle(feed)


def test_the_pool_is_sized_by_the_cores_this_process_may_use(rig: tuple[IndexFeed, Store]) -> None:
    feed, _ = rig
    assert feed.pool._max_workers == usable_cores()


def test_a_build_reads_the_store_in_chunks_and_writes_meanwhile_wait_then_go_in_order(
        rig: tuple[IndexFeed, Store]) -> None:
    feed, store = rig
    fill(store, 0, 10, offset=9)
    feed.build(0)
    copy = feed.copies.get(0)
    assert copy is not None
    # a write that comes before the build publishes waits for it (or, if the build already ended, goes in)
    store.write(0, [(b"d0", record(0.0, 1.0))], 10)
    feed.enqueue(0, [(b"d0", record(0.0, 1.0)), (b"d1", None)], 10)
    settle(feed)
    assert copy.state is CopyState.SERVING and copy.pending == []
    assert feed.index.count(0) == 9 and "d1" not in feed.index
    assert copy.offset == 10 and copy.applied.next == {"events": 9}
    vector, _ = feed.index.get("d0", 0)  # type: ignore[misc]
    assert np.allclose(vector, [0.0, 1.0])


def test_writes_to_a_serving_copy_go_on_its_lane_and_unheld_partitions_are_left_to_their_build(
        rig: tuple[IndexFeed, Store]) -> None:
    feed, store = rig
    built(feed, store, 1, 2, offset=1)
    job = feed.enqueue(1, [(b"new", record(1.0, 1.0)), (progress.KEY, progress.encode(done_upto(5)))], 7)
    assert job is not None
    job.result(timeout=10)
    copy = feed.copies.get(1)
    assert copy is not None and copy.offset == 7 and copy.applied.next == {"events": 5} and "new" in feed.index
    assert feed.enqueue(4, [(b"x", record(1.0, 0.0))], 3) is None and "x" not in feed.index


def test_a_failed_index_update_rebuilds_the_copy_from_the_store(rig: tuple[IndexFeed, Store]) -> None:
    feed, store = rig
    built(feed, store, 2, 4, offset=3)
    bad: list[Op] = [(b"wrong", codec.encode(codec.Record(vector=np.ones(3, dtype=np.float32))))]  # 3 dims in a 2-dim index
    feed.enqueue(2, bad, 4).result(timeout=10)  # type: ignore[union-attr]
    settle(feed)
    copy = feed.copies.get(2)
    assert copy is not None and copy.state is CopyState.SERVING and feed.index.count(2) == 4


def test_a_build_of_a_database_closed_meanwhile_is_abandoned(rig: tuple[IndexFeed, Store]) -> None:
    feed, store = rig
    fill(store, 3, 8, offset=7)
    del store.dbs[3]  # Faust closed it (the partition moved) before the build ran
    feed.build(3)
    feed._slots[3].lane.idle().result(timeout=10)
    copy = feed.copies.get(3)
    assert copy is not None and copy.state is CopyState.BUILDING and feed.index.count(3) == 0


def test_a_moved_partition_is_suspended_then_taken_back_from_its_offset_or_dropped(
        rig: tuple[IndexFeed, Store]) -> None:
    feed, store = rig
    for partition in (0, 1, 2):
        fill(store, partition, 5, offset=20)
        feed.build(partition)
    settle(feed)

    asyncio.run(feed.close({0, 1, 2}, keep=True))
    assert feed.copies.held() == {} and feed.index.suspended() == [0, 1, 2] and len(feed.index) == 0
    assert feed.enqueue(0, [(b"late", record(1.0, 0.0))], 21) is None  # a suspended copy takes nothing

    store.write(1, [], 10)  # partition 1's store went back behind its copy (offset 20)
    back = feed.copies.take_back({0, 1})
    feed.take_back(back)
    restored = feed.copies.get(0)
    assert restored is not None and restored.state is CopyState.RESTORING and feed.index.count(0) == 5
    assert feed.copies.replay_from(0) == 20
    assert feed.copies.get(1) is None and feed.index.suspended() == [2]

    asyncio.run(feed.restored({0}))
    assert restored.state is CopyState.SERVING

    assert feed.copies.get(2) is None  # suspended: not held
    feed.copies._copies[2].since = time.monotonic() - 61  # suspended longer than keep_moved
    asyncio.run(feed.expire())
    assert feed.index.suspended() == [] and 2 not in feed.copies._copies


def test_a_copy_not_serving_is_dropped_when_its_partition_moves_and_stop_removes_nothing_from_the_index(
        rig: tuple[IndexFeed, Store], monkeypatch: pytest.MonkeyPatch) -> None:
    """Review finding SP-14: a stop that dropped every partition rebuilt the graph as deleted nodes
    came to outnumber live ones; the index goes with the process, so a stop only ends the jobs."""
    feed, store = rig
    for partition in range(4):
        built(feed, store, partition, 5, offset=4)
    feed.restore(4, 3, Progress(), until=3)
    asyncio.run(feed.close({4}, keep=True))  # restoring: not kept
    assert feed.index.suspended() == [] and feed.copies.get(4) is None
    dropped: list[int] = []
    monkeypatch.setattr(feed.index, "drop_partition", dropped.append)
    asyncio.run(feed.stop())
    assert feed.copies.held() == {} and dropped == [] and len(feed.index) == 20
    with pytest.raises(RuntimeError):
        feed.pool.submit(print)


def test_a_snapshot_restores_the_partitions_whose_store_reached_it_and_skips_a_save_when_nothing_moved(
        rig: tuple[IndexFeed, Store], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tables.index_snapshots")
    feed, store = rig
    built(feed, store, 0, 4, offset=30)
    built(feed, store, 1, 3, offset=40)
    snapshots = Snapshots(tmp_path / "snapshot", "model-a")
    snapshots.save(feed)
    saved = (tmp_path / "snapshot").stat().st_mtime_ns
    snapshots.save(feed)  # nothing moved since
    assert (tmp_path / "snapshot").stat().st_mtime_ns == saved

    restarted = IndexFeed(VectorIndex(2), store, Copies())
    try:
        store.write(1, [], 39)  # partition 1's store is behind the snapshot: it is built instead
        snapshots.restore(restarted, {0, 1, 2}, store.stored_offset)
        copy = restarted.copies.get(0)
        assert copy is not None and copy.state is CopyState.RESTORING and copy.applied.next == {"events": 30}
        assert restarted.copies.replay_from(0) == 30 and restarted.index.count(0) == 4
        assert restarted.copies.get(1) is None and restarted.index.count(1) == 0
        assert "ahead of the local store" in caplog.text
    finally:
        restarted.pool.shutdown(wait=True)

    Snapshots(tmp_path / "snapshot", "model-b").restore(restarted, {0}, store.stored_offset)
    assert "index snapshot not used" in caplog.text
