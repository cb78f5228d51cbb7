"""``make bench-embed-latency``: how long a query text waits for its vector while ingest embeds flat out.

A worker's EmbeddingService (the real one, with the real model) gets search
queries at a steady rate, first alone, then while an ingest task hands it batches
of 512 mixed-length texts back to back (the ingest agent's batch size, with no
pause: the worst case for queries). Each query is a distinct WordNet gloss of
10-20 tokens, so the query cache never answers. Printed: the query latency
percentiles, the ingest throughput with and without queries, and what the loaded
model adds to the process's memory.

    python -m benchmarks.embed_latency [--queries 300] [--interval 0.02] [--threads N]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from app.embedding import EmbeddingService
from benchmarks.embed import MODEL_CACHE, bench_texts, cpu_isa, cpu_name
from index.model.embedder import usable_cores
from index.model.models import DEFAULT_MODEL, load_embedder

INGEST_CALL = 512
TARGET_P99_MS = 30.0


async def query_latencies(service: EmbeddingService, texts: list[str], interval: float) -> np.ndarray:
    """Send ``texts`` one at a time, one every ``interval`` seconds; milliseconds each took."""
    latencies = []
    for text in texts:
        started = time.perf_counter()
        await service.embed_query(text)
        took = time.perf_counter() - started
        latencies.append(took * 1e3)
        await asyncio.sleep(max(0.0, interval - took))
    return np.asarray(latencies)


async def ingest_flat_out(service: EmbeddingService, texts: list[str], stop: asyncio.Event) -> tuple[int, float]:
    """Embed ``texts`` in calls of INGEST_CALL back to back until ``stop``; (texts embedded, seconds)."""
    done, started = 0, time.perf_counter()
    while not stop.is_set():
        for start in range(0, len(texts), INGEST_CALL):
            await service.embed(texts[start:start + INGEST_CALL])
            done += len(texts[start:start + INGEST_CALL])
            if stop.is_set():
                break
    return done, time.perf_counter() - started


async def run(service: EmbeddingService, queries: list[str], ingest: list[str], interval: float,
              ingest_seconds: float) -> list[tuple[str, np.ndarray | None, float | None]]:
    half = len(queries) // 2
    idle = await query_latencies(service, queries[:half], interval)
    stop = asyncio.Event()
    alone = asyncio.create_task(ingest_flat_out(service, ingest, stop))
    await asyncio.sleep(ingest_seconds)
    stop.set()
    done, seconds = await alone
    stop = asyncio.Event()
    loaded = asyncio.create_task(ingest_flat_out(service, ingest, stop))
    await asyncio.sleep(0.5)  # the first ingest call is under way
    busy = await query_latencies(service, queries[half:], interval)
    stop.set()
    busy_done, busy_seconds = await loaded
    return [("queries alone", idle, None), ("ingest alone", None, done / seconds),
            ("queries during ingest", busy, busy_done / busy_seconds)]


def rss_mb() -> float:
    """This process's resident memory now, in MB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=400, help="queries in all, half alone, half during ingest")
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between query starts (default 0.02)")
    parser.add_argument("--ingest-seconds", type=float, default=10.0, help="length of the ingest-alone run")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (default: usable cores)")
    args = parser.parse_args()
    threads = args.threads or usable_cores()
    before_model = rss_mb()
    embedder = load_embedder(DEFAULT_MODEL, MODEL_CACHE, threads=threads)
    with_model = rss_mb()
    mixes = bench_texts(embedder.files.tokenizer_path)
    queries = mixes["short"][:args.queries]
    service = EmbeddingService(embedder, query_cache_size=0)
    embedder.embed(mixes["mixed"][:64])  # warm-up: first runs allocate
    rows = asyncio.run(run(service, queries, mixes["mixed"], args.interval, args.ingest_seconds))
    service.close()
    after_ingest = rss_mb()

    print(f"\nstreamvec bench-embed-latency: {DEFAULT_MODEL} fp32, {threads} threads, {cpu_name()}, {cpu_isa()}, "
          f"onnxruntime {ort.__version__}, Python {platform.python_version()}")
    print(f"queries: distinct texts of {np.mean(embedder.token_counts(queries)):.0f} tokens, one every "
          f"{args.interval * 1e3:.0f} ms; ingest: calls of {INGEST_CALL} mixed texts (8-256 tokens), back to back\n")
    header = f"{'condition':<24} {'queries':>7} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'max ms':>7} {'ingest texts/s':>15}"
    print(header)
    print("-" * len(header))
    for name, latencies, rate in rows:
        cells = ["—"] * 5 if latencies is None else [f"{len(latencies)}"] + [
            f"{np.percentile(latencies, p):.1f}" for p in (50, 95, 99, 100)]
        print(f"{name:<24} {cells[0]:>7} {cells[1]:>7} {cells[2]:>7} {cells[3]:>7} {cells[4]:>7} "
              f"{'—' if rate is None else f'{rate:,.1f}':>15}")
    print(f"\nmemory (RSS): the loaded model adds {with_model - before_model:.0f} MB to this process "
          f"({before_model:.0f} → {with_model:.0f} MB); after the ingest runs {after_ingest:.0f} MB")
    busy = rows[2][1]
    assert busy is not None
    p99 = float(np.percentile(busy, 99))
    print(f"\ntarget: query p99 ≤ {TARGET_P99_MS:.0f} ms while ingest embeds flat out: {p99:.1f} ms "
          f"{'met' if p99 <= TARGET_P99_MS else 'MISSED'}")


if __name__ == "__main__":
    main()
