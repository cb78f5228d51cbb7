"""``make bench-restart``: how soon a worker holding N documents answers again.

One worker, all partitions, N real bring-your-own vectors (the WordNet corpus of bench-query,
or ``--synthetic``), on a real Kafka. Each row starts the worker and times start → ``/ready``
and → every document answering (``GET /stats``: N documents, nothing partial):

* restart after a clean stop, with the index snapshot it saved on the way down;
* restart after ``kill -9`` (the snapshot of the last schedule, plus the changelog after it);
* restart with snapshots off (``STREAMVEC_SNAPSHOT_INTERVAL=0``): the index built from RocksDB;
* a fresh worker with an empty data dir (the changelog replayed, the index built).

It also prints the RSS after each start, the snapshot's size, and for each SIGTERM the seconds
to the process's exit and whether the worker left the group on the way (the group has no member
right after: its partitions move at once, not a session timeout later). The harness kills a
worker that has not exited 20 s after SIGTERM, and says so.

    python -m benchmarks.restart [--n 100000] [--synthetic] [--partitions 8]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import tempfile
import time
import uuid
from pathlib import Path

import psutil
from aiokafka.admin import AIOKafkaAdminClient

from app.brokers.kafka import start_kafka
from app.settings import Settings
from app.topics import bootstrap
from benchmarks.corpus import DEFAULT_CACHE, load_corpus
from benchmarks.embed import cpu_isa, cpu_name
from benchmarks.feed import bulk_load, vector_events
from tests.support.workers import Worker, wait_for

SNAPSHOT = "vectors-index.ann.snapshot"


def started(worker: Worker, documents: int) -> tuple[float, float, float]:
    """Start ``worker``; seconds to /ready, seconds until all ``documents`` answer, RSS in MB."""
    began = time.perf_counter()
    worker.start().wait_ready(timeout=1800)
    ready = time.perf_counter() - began

    def complete() -> bool:
        stats = worker.stats()
        return stats["documents"] == documents and not stats["partial"]
    wait_for(f"{worker.name} to answer for all {documents} documents", complete, timeout=1800, interval=0.1)
    answering = time.perf_counter() - began
    assert worker.process is not None
    rss = sum(p.memory_info().rss for p in [psutil.Process(worker.process.pid),
                                            *psutil.Process(worker.process.pid).children(recursive=True)])
    return ready, answering, rss / 2**20


def stopped(worker: Worker, broker: str, group: str) -> tuple[float, str]:
    """SIGTERM ``worker``: seconds until its process exited, and how it left the group."""
    began = time.perf_counter()
    worker.stop()
    took = time.perf_counter() - began
    assert worker.process is not None
    if worker.process.returncode == -signal.SIGKILL:
        return took, "killed after 20 s"
    members = asyncio.run(group_members(broker, group))
    return took, "left the group" if members == 0 else f"{members} member(s) still in the group"


async def group_members(broker: str, group: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap(broker))
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([group])
        (described,) = response.groups
        return len(described[5])  # DescribeGroups v0+: error, group id, state, protocol type, protocol, members
    finally:
        await admin.close()


def snapshot_mb(worker: Worker) -> float:
    found = list(worker.datadir.rglob(SNAPSHOT))
    return sum(path.stat().st_size for path in found[0].iterdir()) / 1e6 if found else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="documents (default 100,000)")
    parser.add_argument("--synthetic", action="store_true", help="clustered random vectors instead of WordNet")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args()
    settings = Settings.from_env()
    corpus = load_corpus(args.cache, args.n, 0, args.synthetic)
    root = Path(tempfile.mkdtemp(prefix="streamvec-bench-restart-"))
    broker = start_kafka()
    app_id = f"restart{uuid.uuid4().hex[:8]}"
    env = {"STREAMVEC_BROKER": broker.url, "STREAMVEC_APP_ID": app_id, "STREAMVEC_PARTITIONS": str(args.partitions),
           "STREAMVEC_MODEL_CACHE": str(settings.model_cache_dir.resolve()), "STREAMVEC_LOG_LEVEL": "warning",
           "STREAMVEC_SNAPSHOT_INTERVAL": "30"}
    rows: list[tuple[str, float, float, float]] = []
    stops: list[tuple[str, float, str]] = []
    worker = Worker("restart", env, root / "worker")
    try:
        worker.start().wait_ready(timeout=300)
        began = time.perf_counter()
        asyncio.run(bulk_load(broker.url, f"{app_id}-events", args.partitions,
                              vector_events(corpus.doc_ids, corpus.doc_vectors, corpus.doc_metadata)))
        wait_for("the load to be queryable", lambda: worker.stats()["documents"] == args.n, timeout=3600, interval=0.2)
        load = time.perf_counter() - began
        stops.append(("after the load", *stopped(worker, broker.url, app_id)))
        size = snapshot_mb(worker)
        rows.append(("restart after a clean stop (snapshot)", *started(worker, args.n)))
        time.sleep(35)  # one scheduled snapshot at least, then kill -9
        worker.kill()
        rows.append(("restart after kill -9 (snapshot + changelog)", *started(worker, args.n)))
        stops.append(("after a restart from the snapshot", *stopped(worker, broker.url, app_id)))
        off = Worker("restart", {**env, "STREAMVEC_SNAPSHOT_INTERVAL": "0"}, worker.datadir, port=worker.port)
        rows.append(("restart, snapshots off (built from RocksDB)", *started(off, args.n)))
        stops.append(("snapshots off", *stopped(off, broker.url, app_id)))
        fresh = Worker("fresh", env, root / "fresh")
        rows.append(("fresh worker, empty data dir (changelog)", *started(fresh, args.n)))
        stops.append(("after a rebuild from the changelog", *stopped(fresh, broker.url, app_id)))
    finally:
        worker.stop()
        broker.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(f"\nstreamvec bench-restart: one worker, {args.n:,} {'synthetic' if args.synthetic else 'WordNet'} "
          f"vectors, {args.partitions} partitions; loaded in {load:.1f} s; snapshot {size:.0f} MB")
    print(f"{cpu_name()}, {psutil.cpu_count()} cores; {cpu_isa()}\n")
    print(f"{'start':<46} {'→ /ready s':>11} {'→ all answer s':>15} {'RSS MB':>8}")
    for name, ready, answering, rss in rows:
        print(f"{name:<46} {ready:>11.1f} {answering:>15.1f} {rss:>8.0f}")
    print(f"\n{'SIGTERM, holding ' + format(args.n, ',') + ' documents':<46} {'→ exit s':>11}   group")
    for name, took, left in stops:
        print(f"{name:<46} {took:>11.1f}   {left}")


if __name__ == "__main__":
    main()
