"""``make bench-query``: streamvec against PostgreSQL + pgvector, same run, same data, same clients.

For each corpus (``--corpus wordnet|debian|both``; benchmarks/corpus.py: N documents and
1,000 held-out query texts, embedded once by streamvec's model), three systems are loaded
and queried one after another, never two at once:

1. pgvector: a fresh PostgreSQL in the bench's own venv (benchmarks/pgvector.py), the
   documents by COPY, then CREATE INDEX ... USING hnsw (m = 16, ef_construction = 200);
2. streamvec, ONE worker holding every partition (the counterpart of one database server);
3. streamvec, TWO workers with a standby replica each (the scale-out and failover one):
   real workers (tests/support/workers.py) on a real Kafka (app/brokers/kafka.py), the documents as
   bring-your-own-vector events.

For each: time to queryable (first row / first produce until every document is searchable;
the server or workers are already up), recall@10 against exact search at the system's
default ef and the lowest ef reaching recall@10 >= 0.95 (a search over a grid of ef), then at
that ef the latency (p50/p95/p99) of one client and the queries/s of 2 client processes
(benchmarks/loadstats.py drives both systems' clients the same way), and the RSS and PSS of
the server processes, sampled during the 2-client run. The table prints streamvec ÷ pgvector
for every figure. Last, in this process, what the index layout costs a query
(benchmarks/partition_cost.py).

    python -m benchmarks.query [--corpus both] [--n 100000] [--json FILE]
    python -m benchmarks.query --quick      # 5,000 synthetic vectors, fewer requests: a few minutes
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import psutil
from tqdm import tqdm

from app.brokers.kafka import start_kafka
from app.settings import Settings
from app.topics import ensure_topic
from benchmarks import query_report
from benchmarks.embed import cpu_isa, cpu_name
from benchmarks.corpus import DEFAULT_CACHE, SOURCES, Corpus, load_corpus
from benchmarks.feed import bulk_load, vector_events
from benchmarks.loadstats import run_clients
from benchmarks.partition_cost import partition_cost
from benchmarks.recall import exact_neighbours, recall_at_k
from tests.support.workers import Worker, copies_agree, wait_for

REPO = Path(__file__).resolve().parents[1]
PG_PYTHON = REPO / ".cache" / "bench-pg-venv" / "bin" / "python"
K = 10
MIN_RECALL = 0.95
PG_DEFAULT_EF = 40
"""pgvector's default ``hnsw.ef_search``: what its users get when they tune nothing."""
EF_GRID = (10, 12, 16, 20, 24, 32, 40, 48, 64, 80, 96, 128, 160, 200, 256)
"""The ef values the tuning may pick from (both systems): a binary search over them."""
QUICK = {"n": 5000, "synthetic": True, "queries": 500, "requests": 1000, "corpus": "wordnet",
         "partition_counts": [8]}


@dataclass(frozen=True)
class Target:
    """A system as its query clients see it: the command of client ``i`` (before the common options)."""

    name: str
    client: Callable[[int], list[str]]
    pids: Callable[[], list[int]]


def measure(target: Target, work: Path, truth: list[list[str]], default_ef: int | None,
            args: argparse.Namespace) -> dict:
    """Recall at the default ef (None: the system's own, which the client does not set), the
    lowest ef reaching MIN_RECALL, and at that ef latency (1 client), throughput (2 clients)
    and the servers' memory during the 2-client run."""
    queries, record = work / "queries.npy", work / f"ids-{uuid.uuid4().hex[:6]}.json"

    def clients(count: int, ef: int | None, requests: int, save: bool = False) -> dict:
        common = ["--queries", str(queries), "--requests", str(requests), "--clients", str(count), "-k", str(K)]
        common += ["--ef", str(ef)] if ef is not None else []
        return run_clients([target.client(i) + common + ["--client", str(i)] + (
            ["--record", str(record)] if save and i == 0 else []) for i in range(count)], REPO)

    def recall(ef: int | None) -> float:
        report = clients(1, ef, len(truth), save=True)
        if report["failures"]:
            print(f"  {target.name}, ef={ef}: failures {report['failures']}", file=sys.stderr)
        return recall_at_k(json.loads(record.read_text()), truth, K)

    at_default = recall(default_ef)
    tuned, sweep = lowest_ef(recall, EF_GRID, MIN_RECALL)
    ef = tuned if tuned is not None else EF_GRID[-1]
    latency = clients(1, ef, args.requests)
    with MemorySampler(target.pids()) as memory:
        throughput = clients(2, ef, args.requests)
    return {"label": target.name, "recall_default": at_default, "ef": ef, "ef_reached": tuned is not None, "recall": sweep[ef],
            "sweep": {str(e): r for e, r in sorted(sweep.items())}, "latency": latency, "throughput": throughput,
            "memory": memory.peak}


def lowest_ef(recall: Callable[[int], float], grid: Sequence[int], target: float) -> tuple[int | None, dict[int, float]]:
    """The lowest ef of ``grid`` whose recall reaches ``target`` (recall grows with ef, so a
    binary search), and every recall measured on the way; None if even the largest falls short."""
    seen: dict[int, float] = {}

    def at(i: int) -> float:
        if grid[i] not in seen:
            seen[grid[i]] = recall(grid[i])
        return seen[grid[i]]

    low, high = 0, len(grid) - 1
    if at(high) < target:
        return None, seen
    while low < high:
        middle = (low + high) // 2
        if at(middle) >= target:
            high = middle
        else:
            low = middle + 1
    at(low)
    return grid[low], seen


class MemorySampler:
    """Peak RSS and PSS (MB), summed over processes and their children, sampled every 0.5 s
    while a block runs. PSS splits shared pages (PostgreSQL's shared buffers, which every
    backend maps) among the processes sharing them, so its sum counts them once."""

    def __init__(self, pids: Sequence[int]) -> None:
        self.pids = list(pids)
        self.peak = {"rss_mb": 0.0, "pss_mb": 0.0, "processes": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(0.5):
                return

    def sample(self) -> None:
        rss = pss = count = 0
        for pid in self.pids:
            try:
                root = psutil.Process(pid)
                for process in [root, *root.children(recursive=True)]:
                    info = process.memory_full_info()
                    rss, pss, count = rss + info.rss, pss + info.pss, count + 1
            except psutil.Error:
                continue
        if pss / 2**20 > self.peak["pss_mb"]:
            self.peak = {"rss_mb": rss / 2**20, "pss_mb": pss / 2**20, "processes": count}


# ---- pgvector -----------------------------------------------------------------------------------

def pgvector_run(corpus: Corpus, work: Path, truth: list[list[str]], args: argparse.Namespace,
                 settings: Settings) -> dict:
    """A fresh PostgreSQL + pgvector: COPY, CREATE INDEX, then the common measurements."""
    if not PG_PYTHON.exists():
        raise SystemExit(f"{PG_PYTHON} is missing: `make bench-query` creates the pgvector venv first")
    np.save(work / "docs.npy", corpus.doc_vectors)
    (work / "doc-ids.json").write_text(json.dumps(corpus.doc_ids))
    (work / "doc-metadata.json").write_text(json.dumps(corpus.doc_metadata))
    started = time.perf_counter()
    server = subprocess.Popen([str(PG_PYTHON), "-W", "ignore", "-m", "benchmarks.pgvector", "serve", "--pgdata",
                               str(work / "pgdata")], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if not line:
            raise SystemExit(f"the PostgreSQL server did not start (exit status {server.wait()})")
        info = json.loads(line)
        start_seconds = time.perf_counter() - started
        loaded = subprocess.run([str(PG_PYTHON), "-m", "benchmarks.pgvector", "load", "--uri", info["uri"],
                                 "--work", str(work), "--m", str(settings.hnsw_m),
                                 "--ef-construction", str(settings.hnsw_ef_construction)],
                                cwd=REPO, check=True, capture_output=True, text=True)
        load = json.loads(loaded.stdout)
        target = Target(f"pgvector {info['pgvector']}, COPY + CREATE INDEX",
                        lambda i: [str(PG_PYTHON), "-m", "benchmarks.pgvector", "client", "--uri", info["uri"]],
                        lambda: [info["pid"]])
        figures = measure(target, work, truth, None, args)
    finally:
        if server.stdin:
            server.stdin.close()
        server.wait(timeout=120)
    return {"system": f"pgvector {info['pgvector']} (PostgreSQL {info['postgres']}), COPY + CREATE INDEX",
            "settings": info["settings"], "start_seconds": start_seconds, "load": load,
            "queryable_seconds": load["seconds"], **figures, "ef_default": PG_DEFAULT_EF}


# ---- streamvec ----------------------------------------------------------------------------------

def start_workers(broker: str, app_id: str, partitions: int, count: int, root: Path, model_cache: Path) -> list[Worker]:
    """``count`` workers sharing the group, a standby replica per partition; returns once they
    serve every partition."""
    env = {"STREAMVEC_BROKER": f"kafka://{broker}", "STREAMVEC_APP_ID": app_id,
           "STREAMVEC_PARTITIONS": str(partitions), "STREAMVEC_MODEL_CACHE": str(model_cache),
           "STREAMVEC_STANDBY_REPLICAS": "1",
           "STREAMVEC_CLUSTER_SECRET": secrets.token_hex(16), "STREAMVEC_LOG_LEVEL": "warning"}
    workers = [Worker(f"{app_id}-worker-{i}", env, root / f"worker-{i}").start() for i in range(1, count + 1)]
    for worker in workers:
        worker.wait_ready(timeout=180)

    def serving_all() -> bool:
        stats = workers[0].stats()
        return not stats["partial"] and len(stats["workers"]) == len(workers)

    wait_for(f"{count} worker(s) to answer for every partition", serving_all, timeout=120)
    return workers


def load_streamvec(broker: str, topic: str, partitions: int, corpus: Corpus, worker: Worker) -> dict:
    """Seconds from the first produce until the last ack, until every document is queryable
    (active copies), and until every standby copy has caught up too."""
    events = vector_events(corpus.doc_ids, corpus.doc_vectors, corpus.doc_metadata)
    started = time.perf_counter()
    asyncio.run(bulk_load(broker, topic, partitions, events))
    times = {"produce_seconds": time.perf_counter() - started}
    with tqdm(total=len(events), unit="vec", desc="waiting until queryable (GET /stats)") as bar:
        while "standbys_seconds" not in times:
            stats = worker.stats()
            bar.update(stats["documents"] - bar.n)
            if stats["documents"] == len(events) and not stats["partial"]:
                times.setdefault("queryable_seconds", time.perf_counter() - started)
                if copies_agree(stats):
                    times["standbys_seconds"] = time.perf_counter() - started
            if not worker.alive():
                raise SystemExit(f"{worker.name} exited during the load:\n{worker.log_tail()}")
            time.sleep(0.1)
    return times


def streamvec_run(broker: str, corpus: Corpus, work: Path, truth: list[list[str]], count: int,
                  args: argparse.Namespace, settings: Settings) -> dict:
    """One deployment of ``count`` workers on a fresh app id: load, then the common measurements."""
    app_id = f"benchq{uuid.uuid4().hex[:8]}"
    topic = f"{app_id}-events"
    asyncio.run(ensure_topic(broker, topic, args.partitions))  # before the group forms: it must see the topic
    workers = start_workers(broker, app_id, args.partitions, count, work / app_id, settings.model_cache_dir.resolve())
    try:
        times = load_streamvec(broker, topic, args.partitions, corpus, workers[0])
        target = Target(f"streamvec, {count} worker{'s' if count > 1 else ''}", lambda i: [
            sys.executable, "-m", "benchmarks.loadgen", "--url", workers[i % len(workers)].url],
            lambda: [w.process.pid for w in workers if w.process is not None])
        figures = measure(target, work, truth, settings.ef_search, args)
        held = {url: sorted(body.get("partitions", [])) for url, body in workers[0].stats()["workers"].items()}
    finally:
        for worker in workers:
            worker.stop()
    name = "1 worker, all partitions" if count == 1 else f"{count} workers, standby_replicas=1"
    return {"system": f"streamvec, {name}", "workers": count, "active_partitions": held, **times, **figures,
            "ef_default": settings.ef_search}


# ---- the run ------------------------------------------------------------------------------------

def corpus_run(name: str, args: argparse.Namespace, settings: Settings, times: dict[str, float]) -> dict:
    """Every system on one corpus; the Kafka broker lives only while streamvec runs."""
    with stage(f"{name}: data", times):
        corpus = load_corpus(args.cache, args.n, args.queries, name == "synthetic", name)
        exact = exact_neighbours(corpus.doc_vectors, corpus.query_vectors, K)
        truth = [[corpus.doc_ids[j] for j in row] for row in exact]
    work = Path(tempfile.mkdtemp(prefix="streamvec-bench-query-"))
    np.save(work / "queries.npy", corpus.query_vectors)
    result: dict = {"corpus": corpus.name, "source": corpus.source, "n": len(corpus.doc_ids),
                    "queries": len(corpus.query_vectors)}
    try:
        with stage(f"{name}: pgvector", times):
            result["pgvector"] = pgvector_run(corpus, work, truth, args, settings)
        with stage(f"{name}: Kafka", times):
            broker = start_kafka()
        try:
            result["streamvec"] = []
            for count in (1, 2):
                with stage(f"{name}: streamvec, {count} worker(s)", times):
                    result["streamvec"].append(streamvec_run(broker.url, corpus, work, truth, count, args, settings))
        finally:
            broker.stop()
        if args.partition_counts:
            with stage(f"{name}: partition cost (in this process)", times):
                rows = partition_cost(corpus.doc_ids, corpus.doc_vectors, corpus.query_vectors, truth,
                                      args.partition_counts, args.cost_efs, settings.hnsw_m,
                                      settings.hnsw_ef_construction)
            result["partition_cost"] = [asdict(row) for row in rows]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", choices=[*SOURCES, "both"], default="both", help="real-text corpus (default both)")
    parser.add_argument("--n", type=int, default=100_000, help="documents (default 100,000)")
    parser.add_argument("--queries", type=int, default=1000, help="held-out queries (default 1,000)")
    parser.add_argument("--synthetic", action="store_true", help="clustered random vectors: no model, no download")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"embedding cache (default {DEFAULT_CACHE})")
    parser.add_argument("--partitions", type=int, default=8, help="partitions of the events topic (default 8)")
    parser.add_argument("--requests", type=int, default=3000, help="requests per latency or throughput run (default 3,000)")
    parser.add_argument("--partition-counts", type=lambda s: [int(x) for x in s.split(",") if x], default=[8],
                        help="partition counts of the in-process layout cost table (default 8; '' skips it)")
    parser.add_argument("--cost-efs", type=lambda s: [int(x) for x in s.split(",")], default=[16, 32, 64, 128],
                        help="ef values of the layout cost table (default 16,32,64,128)")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--quick", action="store_true", help="a check of the whole harness in a few minutes: the "
                        "defaults become --n 5000 --synthetic --queries 500 --requests 1000 --corpus wordnet")
    if parser.parse_known_args()[0].quick:
        parser.set_defaults(**QUICK)  # explicit options still win
    args = parser.parse_args()

    settings = Settings.from_env().replace(partitions=args.partitions)
    times: dict[str, float] = {}
    names = ["synthetic"] if args.synthetic else list(SOURCES) if args.corpus == "both" else [args.corpus]
    figures = {"setup": {"k": K, "min_recall": MIN_RECALL, "partitions": args.partitions, "requests": args.requests,
                         "ef_default": settings.ef_search, "m": settings.hnsw_m,
                         "ef_construction": settings.hnsw_ef_construction, "cpus": psutil.cpu_count(),
                         "cpu": cpu_name(), "isa": cpu_isa(),
                         "command": " ".join(sys.argv[1:])},
               "corpora": [], "stage_seconds": times}
    for name in names:
        figures["corpora"].append(corpus_run(name, args, settings, times))
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2))
    query_report.print_report(figures)


@contextmanager
def stage(name: str, seconds: dict[str, float]) -> Iterator[None]:
    """Time one step: where a long run spends its time is part of the report."""
    print(f"{name} ...", file=sys.stderr)
    started = time.perf_counter()
    yield
    seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - started
    seconds[f"{name}: load average"] = os.getloadavg()[0]  # others' work on the machine skews every figure


if __name__ == "__main__":
    main()
