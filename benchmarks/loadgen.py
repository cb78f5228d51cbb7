"""Query load generator for ``make bench-query``: C clients, R requests, one JSON report on stdout.

It runs as its own process so that the client's JSON encoding and HTTP parsing do not share
an interpreter (and a GIL) with the benchmark that drives it. Each client holds one
keep-alive connection (aiohttp, connection limit 1) to one worker; clients alternate between
the given URLs, so with two workers half of them hit each. Request bodies are encoded before
the clock starts, so the figures are the server's and the network's, not ``json.dumps``'s.

    python -m benchmarks.loadgen --urls http://127.0.0.1:6066,http://127.0.0.1:6067 \\
        --queries queries.npy --clients 8 --requests 3000 [--ef 40] [--record ids.json]

``--queries`` is an ``.npy`` matrix of query vectors or a ``.json`` list of query texts;
request i uses query i modulo their number. Warm-up requests (before the clock) all use the
last query, so with text queries fewer requests than texts never meet the worker's query
cache. ``--record`` writes the result ids of each
query's first request (for recall). Report: requests, errors, partial answers, seconds,
queries/s, latency percentiles in milliseconds, and the share of a core this client used
(``client_cpu``: on a small machine the client competes with the workers for it).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np

WARMUP_PER_CLIENT = 20


def request_bodies(queries: Path, k: int, ef: int | None, batch: int) -> list[bytes]:
    """One encoded ``POST /search`` body per query, or with ``batch`` > 1 one
    ``POST /search/batch`` body per ``batch`` consecutive queries."""
    extra = {"k": k} if ef is None else {"k": k, "ef": ef}
    if queries.suffix == ".npy":
        searches = [{"vector": row, **extra} for row in np.load(queries).tolist()]
    else:
        searches = [{"text": text, **extra} for text in json.loads(queries.read_text())]
    if batch == 1:
        return [json.dumps(search).encode() for search in searches]
    return [json.dumps({"queries": searches[i:i + batch]}).encode() for i in range(0, len(searches) - batch + 1, batch)]


@dataclass
class Tally:
    """What the clients of one run share: the next request number and what came back."""

    bodies: list[bytes]
    total: int
    barrier: asyncio.Barrier
    path: str
    counter: itertools.count = field(default_factory=itertools.count)
    started: float = 0.0
    cpu_started: float = 0.0
    latencies: list[float] = field(default_factory=list)
    results: dict[int, list[str]] = field(default_factory=dict)
    failures: Counter = field(default_factory=Counter)


async def client(url: str, tally: Tally) -> None:
    """Warm up, wait for the others, then send requests one after another until all are taken."""
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector, headers={"Content-Type": "application/json"}) as session:
        for _ in range(WARMUP_PER_CLIENT):  # connection set-up and first-call costs stay off the clock
            async with session.post(f"{url}{tally.path}", data=tally.bodies[-1]) as response:
                await response.read()
        await tally.barrier.wait()
        if not tally.started:
            tally.started, tally.cpu_started = time.perf_counter(), time.process_time()
        while (i := next(tally.counter)) < tally.total:
            started = time.perf_counter()
            async with session.post(f"{url}{tally.path}", data=tally.bodies[i % len(tally.bodies)]) as response:
                answer = await response.json()
            tally.latencies.append(time.perf_counter() - started)
            if response.status != 200:
                tally.failures[f"http {response.status}: {answer.get('error', '')}"[:120]] += 1
            elif answer["partial"]:
                tally.failures["partial"] += 1
            elif i < len(tally.bodies) and tally.path == "/search":
                tally.results[i] = [hit["id"] for hit in answer["results"]]


async def run(urls: list[str], bodies: list[bytes], clients: int, total: int, batch: int) -> dict:
    tally = Tally(bodies, total, asyncio.Barrier(clients), "/search" if batch == 1 else "/search/batch")
    await asyncio.gather(*(client(urls[c % len(urls)], tally) for c in range(clients)))
    seconds = time.perf_counter() - tally.started
    cpu_seconds = time.process_time() - tally.cpu_started
    ms = np.asarray(tally.latencies) * 1000
    return {
        "clients": clients, "requests": len(ms), "failures": dict(tally.failures), "seconds": seconds,
        "batch": batch, "qps": len(ms) * batch / seconds, "mean_ms": float(ms.mean()), "client_cpu": cpu_seconds / seconds,
        **{f"p{q}_ms": float(np.percentile(ms, q)) for q in (50, 95, 99)},
        "results": [tally.results.get(i) for i in range(min(len(bodies), total))],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--urls", required=True, help="comma-separated worker base URLs")
    parser.add_argument("--queries", type=Path, required=True, help=".npy query vectors or .json query texts")
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--ef", type=int, default=None, help="HNSW ef per query (default: the workers')")
    parser.add_argument("--batch", type=int, default=1, help="queries per request: >1 uses POST /search/batch")
    parser.add_argument("--record", type=Path, help="write each query's result ids here (JSON; single queries only)")
    args = parser.parse_args()
    bodies = request_bodies(args.queries, args.k, args.ef, args.batch)
    report = asyncio.run(run(args.urls.split(","), bodies, args.clients, args.requests, args.batch))
    results = report.pop("results")
    if args.record:
        args.record.write_text(json.dumps(results))
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
