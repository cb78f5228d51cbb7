"""Index snapshots on a real worker: a restart loads the snapshot and replays only the changelog
after it; a snapshot of another model is discarded and the index built; kill -9 while a
snapshot is being written leaves nothing wrong behind. Every case checks each id's last
version on the restarted worker (tests/support/ledger.py's ledger and checks)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.group import Group
from tests.support.ledger import PARTITIONS, Feed, Ledger, assert_sound, send_now, topic_size, verify
from tests.support.workers import Worker, wait_for

pytestmark = pytest.mark.integration

SNAPSHOT = "vectors-index.ann.snapshot"


@pytest.fixture
def worker(kafka_broker: str, model_cache: Path, tmp_path: Path) -> Iterator[Worker]:
    group = Group(kafka_broker, f"snap{int(time.time() * 1000)}", tmp_path, model_cache, PARTITIONS,
                  {"STREAMVEC_SESSION_TIMEOUT": "6", "STREAMVEC_SNAPSHOT_INTERVAL": "3600"}, quick_rebalance=False)
    worker = group.worker("w")
    try:
        yield worker
    finally:
        group.stop_all()


def topic(worker: Worker) -> str:
    return f"{worker.env['STREAMVEC_APP_ID']}-events"


def snapshot_dir(worker: Worker) -> Path | None:
    found = list(worker.datadir.rglob(SNAPSHOT))
    return found[0] if found else None


def restart(worker: Worker) -> tuple[float, str]:
    """Start ``worker`` again on its data dir; the seconds until /ready, and its log since."""
    size = worker.log_path.stat().st_size
    started = time.monotonic()
    worker.start().wait_ready(timeout=180)
    ready = time.monotonic() - started
    return ready, worker.log_path.read_text(errors="replace")[size:]


def consumed(worker: Worker, produced: int) -> None:
    wait_for(f"all {produced} events counted", lambda: sum(worker.stats()["outcomes"].values()) == produced,
             timeout=180, interval=0.3)


def test_a_restart_loads_the_snapshot_and_replays_only_what_came_after(worker: Worker) -> None:
    ledger = Ledger(seed=7)
    ids = [f"doc-{n}" for n in range(3000)]
    worker.start().wait_ready(timeout=300)
    send_now(worker.env["STREAMVEC_BROKER"], topic(worker), ledger.upserts(ids))
    consumed(worker, 3000)
    worker.stop()  # a clean stop saves the snapshot
    directory = snapshot_dir(worker)
    assert directory is not None, f"no snapshot after a clean stop:\n{worker.log_tail()}"
    manifest = json.loads((directory / "manifest.json").read_text())
    assert sorted(manifest["partitions"]) == [str(p) for p in range(PARTITIONS)]

    # While it is down: updates, deletes and new documents, which only the changelog will hold.
    tail = ledger.vector_events(ids, 600, delete_share=0.3) + ledger.upserts([f"new-{n}" for n in range(200)])
    send_now(worker.env["STREAMVEC_BROKER"], topic(worker), tail)
    produced = 3000 + len(tail)
    ready, log = restart(worker)
    consumed(worker, produced)
    print(f"\nrestart from the snapshot: ready {ready:.1f} s after start, {len(tail)} events after it")
    assert "index restored from the snapshot" in log and "built into the index from the local store" not in log, log
    assert_sound(verify(worker, ledger, produced, sample=300), "restarted from its snapshot")


def test_a_snapshot_of_another_model_is_discarded_and_the_index_built(worker: Worker) -> None:
    ledger = Ledger(seed=8)
    worker.start().wait_ready(timeout=300)
    send_now(worker.env["STREAMVEC_BROKER"], topic(worker), ledger.upserts([f"d{n}" for n in range(1000)]))
    consumed(worker, 1000)
    worker.stop()
    directory = snapshot_dir(worker)
    assert directory is not None
    manifest = json.loads((directory / "manifest.json").read_text())
    (directory / "manifest.json").write_text(json.dumps({**manifest, "model": "some-other-model@0"}))
    _, log = restart(worker)
    assert "snapshot not used (snapshot of model 'some-other-model@0'" in log, log
    assert "index restored from the snapshot" not in log and "built into the index from the local store" in log
    assert_sound(verify(worker, ledger, 1000), "after a foreign snapshot")


def test_kill_9_while_a_snapshot_is_written_leaves_nothing_wrong(worker: Worker) -> None:
    ledger = Ledger(seed=9)
    ids = [f"doc-{n}" for n in range(4000)]
    worker.env["STREAMVEC_SNAPSHOT_INTERVAL"] = "0.2"  # snapshots back to back while events flow
    broker = worker.env["STREAMVEC_BROKER"]
    worker.start().wait_ready(timeout=300)
    send_now(broker, topic(worker), ledger.upserts(ids))
    feed = Feed(broker, topic(worker), lambda n: ledger.vector_events(ids, n, delete_share=0.2),
                        rate=200).start()
    kills: list[str] = []
    starts: list[str] = []
    for _ in range(3):
        # A name not seen before: what a killed save left stays until the next save clears it.
        writing = wait_for("a snapshot being written", lambda: [
            path.name for path in worker.datadir.rglob(".writing-*") if path.name not in kills], timeout=120,
            interval=0.005)
        worker.kill()
        kills.extend(writing)
        ready, log = restart(worker)
        starts.append(f"{'restored' if 'index restored from the snapshot' in log else 'built'} in {ready:.1f} s")
    feed.stop()
    feed.wait(timeout=60)
    produced = topic_size(broker, topic(worker))
    consumed(worker, produced)
    print(f"\nkilled during snapshot writes {kills}; restarts {starts}; {produced} events")
    assert_sound(verify(worker, ledger, produced, sample=300), "after kill -9 during snapshots")
