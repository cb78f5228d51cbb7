"""``make bench-query``: search quality, latency, throughput, load time, memory and freshness.

One command, one run, one table, on a real Kafka with two real workers:

1. data: all WordNet 3.0 glosses embedded once by streamvec's model (cached outside the repo,
   see benchmarks/corpus.py): N documents plus 1,000 held-out query texts; ``--synthetic``
   uses clustered random vectors instead (no model, no download);
2. bulk load: the N documents as bring-your-own-vector events, from the first produce until
   ``GET /stats`` reports all N and nothing partial;
3. recall@10 of ``POST /search`` against exact (brute-force cosine) search, at the workers'
   default ef and over an ef sweep;
4. latency with one client, queries/s with 2 and 8, from a separate load-generator process
   (benchmarks/loadgen.py); also text queries, whose embedding is part of the query;
5. RSS of each worker after the load;
6. freshness: event → searchable p50/p99 at half the maximum ingest rate, for text and vector
   events (the workers' histogram, cross-checked by probing from outside);
7. in one process, what splitting the same vectors into 4, 8 or 16 partitions costs a query.

    python -m benchmarks.query [--n 100000] [--synthetic] [--cache DIR] [--partitions 8] [--json FILE]
    python -m benchmarks.query --quick      # 5,000 synthetic vectors, fewer requests: about 2 minutes
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
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np
import psutil
from tqdm import tqdm
from yarl import URL

from app.brokers.kafka import start_kafka
from app.topics import ensure_topic
from app.settings import Settings
from benchmarks import freshness, query_report
from benchmarks.corpus import DEFAULT_CACHE, Corpus, load_corpus
from benchmarks.feed import bulk_load, text_events, vector_events
from benchmarks.partition_cost import partition_cost
from benchmarks.recall import exact_neighbours, recall_at_k
from tests.cluster import Worker, wait_for, wait_for_documents

REPO = Path(__file__).resolve().parents[1]
K = 10
TEXT_RATE_EVENTS = 2000
BATCH = 32
QUICK = {"n": 5000, "synthetic": True, "queries": 500, "requests": 1000, "fresh_seconds": 10.0}


def start_workers(broker: str, app_id: str, partitions: int, root: Path, model_cache: Path) -> list[Worker]:
    """Two workers sharing the group; returns once both serve every partition."""
    env = {"STREAMVEC_BROKER": f"kafka://{broker}", "STREAMVEC_APP_ID": app_id,
           "STREAMVEC_PARTITIONS": str(partitions), "STREAMVEC_MODEL_CACHE": str(model_cache),
           "STREAMVEC_CLUSTER_SECRET": secrets.token_hex(16), "STREAMVEC_LOG_LEVEL": "warning"}
    workers = [Worker(f"worker-{i}", env, root / f"worker-{i}").start() for i in (1, 2)]
    for worker in workers:
        worker.wait_ready(timeout=180)

    def serving_all() -> bool:
        stats = workers[0].stats()
        return not stats["partial"] and len(stats["workers"]) == len(workers)

    wait_for("both workers to answer for every partition", serving_all, timeout=120)
    return workers


def load(broker: str, topic: str, partitions: int, corpus: Corpus, worker: Worker) -> tuple[float, float]:
    """Seconds from the first produce until all documents are queryable, and until the last ack."""
    events = vector_events(corpus.doc_ids, corpus.doc_vectors, corpus.doc_metadata)
    started = time.perf_counter()
    asyncio.run(bulk_load(broker, topic, partitions, events))
    produced = time.perf_counter() - started
    with tqdm(total=len(events), unit="vec", desc="waiting until queryable (GET /stats)") as bar:
        while True:
            stats = worker.stats()
            bar.update(stats["documents"] - bar.n)
            if stats["documents"] == len(events) and not stats["partial"]:
                return time.perf_counter() - started, produced
            if not worker.alive():
                raise SystemExit(f"{worker.name} exited during the load:\n{worker.log_tail()}")
            time.sleep(0.1)


def loadgen(urls: list[str], queries: Path, clients: int, requests: int, ef: int | None = None,
            record: Path | None = None, batch: int = 1) -> dict:
    """Run benchmarks/loadgen.py as its own process and return its JSON report."""
    command = [sys.executable, "-m", "benchmarks.loadgen", "--urls", ",".join(urls), "--queries", str(queries),
               "--clients", str(clients), "--requests", str(requests), "-k", str(K)]
    command += ["--ef", str(ef)] if ef is not None else []
    command += ["--record", str(record)] if record is not None else []
    command += ["--batch", str(batch)] if batch > 1 else []
    done = subprocess.run(command, check=False, cwd=REPO, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"the load generator failed ({' '.join(command)}):\n{done.stderr[-2000:]}")
    report = json.loads(done.stdout)
    if report["failures"]:
        print(f"  load generator, {clients} client(s), ef={ef}: failures {report['failures']}", file=sys.stderr)
    return report


def query_figures(urls: list[str], corpus: Corpus, truth: list[list[str]], work: Path, args: argparse.Namespace) -> dict:
    """Recall, the ef sweep, latency and throughput, vector and text queries."""
    vectors, record = work / "queries.npy", work / "ids.json"
    np.save(vectors, corpus.query_vectors)
    (work / "query-texts.json").write_text(json.dumps(corpus.query_texts))
    (work / "doc-texts.json").write_text(json.dumps(corpus.doc_texts[-len(corpus.query_texts):]))

    def recorded(report: dict) -> dict:
        return {**report, "recall": recall_at_k(json.loads(record.read_text()), truth, K)}

    runs = [{"query": "vector, default ef", **recorded(loadgen(urls, vectors, 1, args.requests, record=record))}]
    runs += [{"query": "vector, default ef", **loadgen(urls, vectors, c, args.requests)} for c in (2, 8)]
    runs += [{"query": f"vector, /search/batch of {BATCH}", **loadgen(urls, vectors, c, args.requests // BATCH, batch=BATCH)}
             for c in (2, 8)]
    for clients, texts in ((1, "query-texts.json"), (2, "doc-texts.json")):  # each text once: no query-cache hits
        runs.append({"query": "text (embedding included)",
                     **loadgen(urls, work / texts, clients, len(corpus.query_texts) - 1)})
    sweep = [{"ef": ef, **recorded(loadgen(urls, vectors, 1, len(corpus.query_vectors), ef=ef, record=record))}
             for ef in args.ef_sweep]
    return {"runs": runs, "ef_sweep": sweep}


def memory(workers: list[Worker]) -> list[dict]:
    """RSS of each worker process and its children, with the documents its partitions hold."""
    held = {URL(url).port: sum(body.get("documents", {}).values())
            for url, body in workers[0].stats()["workers"].items()}
    rows = []
    for worker in workers:
        assert worker.process is not None
        process = psutil.Process(worker.process.pid)
        rss = sum(p.memory_info().rss for p in [process, *process.children(recursive=True)])
        rows.append({"worker": worker.name, "rss_mb": rss / 2**20, "documents": held.get(worker.port, 0)})
    return rows


def text_ingest_rate(broker: str, topic: str, partitions: int, worker: Worker, texts: list[str]) -> float:
    """Text events/s the two workers index when given a backlog: the most they can be fed."""
    expected = worker.stats()["documents"] + len(texts)
    started = time.perf_counter()
    asyncio.run(bulk_load(broker, topic, partitions, text_events([f"rate-text-{i}" for i in range(len(texts))], texts)))
    wait_for_documents(worker, expected, timeout=1800, interval=0.1)
    return len(texts) / (time.perf_counter() - started)


def freshness_figures(broker: str, topic: str, workers: list[Worker], corpus: Corpus, max_vector_rate: float,
                      max_text_rate: float, args: argparse.Namespace) -> list[freshness.Freshness]:
    """Text events at half the text ingest rate, then vector events at half the bulk-load rate."""
    urls = [w.url for w in workers]
    expected = workers[0].stats()["documents"]

    def indexed() -> None:
        wait_for_documents(workers[0], expected, timeout=1800, interval=0.1)

    count = int(max_text_rate / 2 * args.fresh_seconds)
    texts = [corpus.spare_texts[(TEXT_RATE_EVENTS + i) % len(corpus.spare_texts)] for i in range(count)]
    events = text_events([f"fresh-text-{i}" for i in range(count)], texts)
    expected += count
    results = [freshness.measure("text", broker, topic, urls, events, [{"text": t} for t in texts],
                                 max_text_rate / 2, indexed)]
    count = int(max_vector_rate / 2 * args.fresh_seconds)
    rng = np.random.default_rng(5)
    fresh = corpus.doc_vectors[rng.integers(0, len(corpus.doc_vectors), count)]
    fresh = fresh + rng.standard_normal(fresh.shape, dtype=np.float32) * np.float32(0.02)  # new, distinct vectors
    fresh /= np.linalg.norm(fresh, axis=1, keepdims=True)
    expected += count
    results.append(freshness.measure(
        "vector", broker, topic, urls, vector_events([f"fresh-vec-{i}" for i in range(count)], fresh, [{}] * count),
        [{"vector": row} for row in fresh.tolist()], max_vector_rate / 2, indexed))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="documents (default 100,000)")
    parser.add_argument("--queries", type=int, default=1000, help="held-out queries (default 1,000)")
    parser.add_argument("--synthetic", action="store_true", help="clustered random vectors: no model, no download")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"embedding cache (default {DEFAULT_CACHE})")
    parser.add_argument("--partitions", type=int, default=8, help="partitions of the events topic (default 8)")
    parser.add_argument("--requests", type=int, default=3000, help="requests per load-generator run (default 3,000)")
    parser.add_argument("--ef-sweep", type=lambda s: [int(x) for x in s.split(",")], default=[10, 20, 40, 80],
                        help="ef values passed per query for the recall sweep (default 10,20,40,80)")
    parser.add_argument("--max-text-rate", type=float,
                        help=f"text events/s the workers ingest at most; freshness feeds half of it (default: "
                             f"measured here with a backlog of {TEXT_RATE_EVENTS:,} text events)")
    parser.add_argument("--fresh-seconds", type=float, default=20.0, help="length of each freshness feed (default 20)")
    parser.add_argument("--partition-counts", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4, 8, 16],
                        help="partition counts of the in-process partition cost table (default 1,4,8,16)")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--quick", action="store_true", help="a ~2 minute check of the whole harness: the defaults "
                        "become --n 5000 --synthetic --queries 500 --requests 1000 --fresh-seconds 10")
    if parser.parse_known_args()[0].quick:
        parser.set_defaults(**QUICK)  # explicit options still win
    args = parser.parse_args()

    settings = Settings.from_env().replace(partitions=args.partitions)
    times: dict[str, float] = {}
    with stage("data", times):
        corpus = load_corpus(args.cache, args.n, args.queries, args.synthetic)
        exact = exact_neighbours(corpus.doc_vectors, corpus.query_vectors, K)
        truth = [[corpus.doc_ids[j] for j in row] for row in exact]
    figures: dict = {"setup": {"n": args.n, "queries": len(corpus.query_vectors), "partitions": args.partitions,
                               "workers": 2, "source": corpus.source, "k": K, "ef_default": settings.ef_search,
                               "m": settings.hnsw_m, "ef_construction": settings.hnsw_ef_construction,
                               "cpus": psutil.cpu_count(), "cpu": query_report.cpu_name()}, "stage_seconds": times}
    work = Path(tempfile.mkdtemp(prefix="streamvec-bench-query-"))
    app_id = f"benchq{uuid.uuid4().hex[:8]}"
    topic = f"{app_id}-events"
    workers: list[Worker] = []
    with stage("Kafka and two workers", times):
        broker = start_kafka()
    try:
        with stage("Kafka and two workers", times):
            asyncio.run(ensure_topic(broker.url, topic, args.partitions))
            workers = start_workers(broker.url, app_id, args.partitions, work, settings.model_cache_dir.resolve())
            started = memory(workers)
        with stage("bulk load", times):
            seconds, produced = load(broker.url, topic, args.partitions, corpus, workers[0])
        figures["load"] = {"seconds": seconds, "produce_seconds": produced, "rate": args.n / seconds}
        with stage("queries", times):
            figures.update(query_figures([w.url for w in workers], corpus, truth, work, args))
        figures["memory"] = [{**after, "rss_mb_at_start": before["rss_mb"]}
                             for before, after in zip(started, memory(workers), strict=True)]
        with stage("text ingest rate", times):
            measured = args.max_text_rate is None
            text_rate = text_ingest_rate(broker.url, topic, args.partitions, workers[0], [
                corpus.spare_texts[i % len(corpus.spare_texts)] for i in range(TEXT_RATE_EVENTS)]) \
                if measured else args.max_text_rate
        figures["text_ingest"] = {"rate": text_rate, "events": TEXT_RATE_EVENTS if measured else None}
        with stage("freshness", times):
            figures["freshness"] = [asdict(f) for f in freshness_figures(
                broker.url, topic, workers, corpus, figures["load"]["rate"], text_rate, args)]
    finally:
        for worker in workers:
            worker.stop()
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    with stage("partition cost (in this process)", times):
        efs = sorted({*args.ef_sweep, settings.ef_search})
        rows = partition_cost(corpus.doc_ids, corpus.doc_vectors, corpus.query_vectors, truth,
                              args.partition_counts, efs, settings.hnsw_m, settings.hnsw_ef_construction)
    figures["partition_cost"] = [asdict(row) for row in rows]
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    query_report.print_report(figures)


@contextmanager
def stage(name: str, seconds: dict[str, float]) -> Iterator[None]:
    """Time one step (adding up repeated names): where a long run spends its time is part of the report."""
    print(f"{name} ...", file=sys.stderr)
    started = time.perf_counter()
    yield
    seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - started
    seconds[f"{name}: load average"] = os.getloadavg()[0]  # others' work on the machine skews every figure

if __name__ == "__main__":
    main()
