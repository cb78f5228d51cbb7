"""The vectors table's store over a real RocksDB (rocksdict, in a throwaway Faust app with no
broker): a build that ends while a write is on its way from RocksDB to the index feed."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.types import TP

from index.ann import snapshot
from index.ann.hnsw import VectorIndex
from index.records import progress
from tables.copies import CopyState, PartitionCopy
from tables.index_feed import Op
from tables.index_snapshots import Snapshots
from tables.indexed_store import IndexedStore
from tables.vectors import VectorTable
from tests.support.records import done_upto, record

WAIT = 10.0  # seconds: only a failing test waits that long


@pytest.fixture
def store(tmp_path: Path) -> Iterator[IndexedStore]:
    app = faust.App("indexed-store-test", broker="kafka://127.0.0.1:1", store="rocksdb://",
                    datadir=str(tmp_path / "data"))
    table = VectorTable(app, index=VectorIndex(2), reader=None, partitions=1)  # type: ignore[arg-type]  # no gaps here
    yield table.store
    table.store._feed.pool.shutdown(wait=True)


class Hooked:
    """A partition's Rdict that calls ``reached`` once, the moment its stored changelog offset
    becomes ``offset`` (after the write batch or Faust's offset put), before the write returns."""

    def __init__(self, db: Any, offset_key: bytes, offset: int, reached: Callable[[], None]) -> None:
        self._db, self._offset_key, self._offset, self._reached = db, offset_key, offset, reached
        self._fired = False

    def write(self, batch: Any) -> None:
        self._db.write(batch)
        self._check()

    def put(self, key: bytes, value: bytes) -> None:
        self._db.put(key, value)
        self._check()

    def _check(self) -> None:
        if not self._fired and self._db.get(self._offset_key) == str(self._offset).encode():
            self._fired = True
            self._reached()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


class Watched:
    """A lock that sets ``waiting`` when a thread has to wait for it."""

    def __init__(self, waiting: threading.Event) -> None:
        self._lock = threading.Lock()
        self._waiting = waiting

    def __enter__(self) -> None:
        if not self._lock.acquire(blocking=False):
            self._waiting.set()
            self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


LATE: list[Op] = [(b"late", record(0.0, 1.0)), (progress.KEY, progress.encode(done_upto(3)))]


def commit_late(store: IndexedStore) -> None:
    store.commit(0, LATE, 3)  # type: ignore[arg-type]  # no tombstone among them


def replay_late(store: IndexedStore) -> None:
    tp = TP(store.table.changelog_topic_name, 0)
    store._write_changelog([SimpleNamespace(message=SimpleNamespace(tp=tp, partition=0, offset=offset, key=key,
                                                                    value=value))  # shaped like Faust's events
                            for offset, (key, value) in zip((2, 3), LATE)])


@pytest.mark.parametrize("door", [commit_late, replay_late], ids=["commit", "changelog"])
def test_a_build_never_publishes_between_a_write_to_rocksdb_and_its_enqueue(
        store: IndexedStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        door: Callable[[IndexedStore], None]) -> None:
    """Review finding SP-17: ``commit`` and ``_write_changelog`` wrote RocksDB and then enqueued the
    same records for the index. A build that published in between read the store's offset and
    progress record with the write in them while nothing waited in the copy: the copy served, and a
    snapshot then saved, claimed records the index lacked (a restart replays after the snapshot's
    offset, so they would never come; ``after`` was satisfied early). Here the build publishes
    exactly then, or, where it has to wait for the write to be enqueued, once it has been."""
    feed = store._feed
    store.commit(0, [(b"d0", record(1.0, 0.0)), (b"d1", record(1.0, 1.0)),
                     (progress.KEY, progress.encode(done_upto(2)))], 1)  # no copy yet: the build reads them

    reached, release, moved_on, published = (threading.Event() for _ in range(4))
    claimed: dict[str, Any] = {}
    snapshots = Snapshots(tmp_path / "snapshot", "model-a")
    publish = feed._publish

    def gated(copy: PartitionCopy[list[Op]]) -> None:
        reached.set()  # the build has read the store (without "late")
        assert release.wait(WAIT)
        publish(copy)
        claimed.update(offset=copy.offset, serving=copy.serving, late="late" in feed.index, applied=copy.applied)
        snapshots.save(feed)
        published.set()
        moved_on.set()

    def between() -> None:
        """In RocksDB, not yet handed to the index feed: let the build publish now."""
        copy = feed.copies.get(0)
        assert copy is not None and copy.state is CopyState.BUILDING and copy.pending == []
        release.set()
        assert moved_on.wait(WAIT)  # it published, or it waits for this write to be enqueued

    monkeypatch.setattr(feed, "_publish", gated)
    monkeypatch.setattr(feed, "_storing", Watched(moved_on), raising=False)  # the lock of IndexFeed.storing
    feed.build(0)
    assert reached.wait(WAIT)
    store._dbs[0] = Hooked(store._dbs[0], store.offset_key, 3, between)  # type: ignore[assignment]
    door(store)
    assert published.wait(WAIT)
    feed._slots[0].lane.idle().result(timeout=WAIT)

    assert claimed["serving"] and claimed["offset"] == 3
    assert claimed["late"], "the copy served at offset 3 without its record"
    assert claimed["applied"].next == {"events": 3}
    found = snapshot.load(tmp_path / "snapshot", model_id="model-a", dim=2, ef_search=feed.index.ef_search)
    assert found.partitions[0].offset == 3 and "late" in found.index
