"""One streamvec query client for ``make bench-query``: one process, one keep-alive connection.

Driven by benchmarks/loadstats.py like the pgvector client, so that the two systems meet the
same clients: it warms up, says ``ready``, waits for ``go``, sends its share of the requests
one after another to one worker, and prints one JSON report. A separate process keeps the
client's JSON encoding and HTTP parsing out of the benchmark's interpreter, and with two
clients, out of each other's. Request bodies are encoded before the clock starts, so the
figures are the server's and the network's, not ``json.dumps``'s.

    python -m benchmarks.loadgen --url http://127.0.0.1:6066 --queries queries.npy \\
        --requests 3000 [--client 0 --clients 2] [--ef 40] [--record ids.json]

``--queries`` is an ``.npy`` matrix of query vectors or a ``.json`` list of query texts.
Warm-up requests all use the last query, so with text queries fewer requests than texts never
meet the worker's query cache.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import aiohttp
import numpy as np

from benchmarks.loadstats import WARMUP, ClientRun, add_client_arguments, vector_literal


def request_bodies(queries: Path, k: int, ef: int | None) -> list[bytes]:
    """One encoded ``POST /search`` body per query."""
    extra = (b',"k":%d' % k) + (b',"ef":%d' % ef if ef is not None else b"")
    if queries.suffix == ".npy":
        return [b'{"vector":%s%s}' % (row.encode(), extra) for row in vector_literal(np.load(queries))]
    return [b'{"text":%s%s}' % (json.dumps(text).encode(), extra) for text in json.loads(queries.read_text())]


async def run(url: str, bodies: list[bytes], run: ClientRun) -> None:
    """Warm up, wait for the start, then send this client's requests one after another."""
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector, headers={"Content-Type": "application/json"}) as session:
        for _ in range(WARMUP):
            async with session.post(f"{url}/search", data=bodies[-1]) as response:
                await response.read()
        run.wait_for_go()
        loop = asyncio.get_running_loop()
        for i in run.requests:
            started = loop.time()
            async with session.post(f"{url}/search", data=bodies[i % len(bodies)]) as response:
                answer = await response.json()
            run.latencies.append(loop.time() - started)
            if response.status != 200:
                run.fail(f"http {response.status}: {answer.get('error', '')}")
            elif answer["partial"]:
                run.fail("partial")
            elif i < len(bodies):
                run.results[i] = [hit["id"] for hit in answer["results"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="the worker's base URL")
    add_client_arguments(parser)
    args = parser.parse_args()
    bodies = request_bodies(args.queries, args.k, args.ef)
    client = ClientRun.for_args(args)
    asyncio.run(run(args.url, bodies, client))
    client.finish(args, len(bodies))


if __name__ == "__main__":
    main()
