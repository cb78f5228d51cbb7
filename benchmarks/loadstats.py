"""What every query client of ``make bench-query`` shares, whichever system it queries.

streamvec is queried over HTTP (benchmarks/loadgen.py, in the project's venv) and pgvector
over libpq (benchmarks/pgvector.py, in the bench's own pgvector venv). For their figures to
compare, both clients are driven the same way, and this module (standard library and numpy
only, so both venvs import it) is that way:

* one client = one process with one connection: throughput with C clients is C processes,
  so no client shares an interpreter or a GIL with another;
* a client warms up off the clock, says ``ready`` on stdout and waits for ``go`` on stdin;
  the parent says ``go`` to all at once (a start barrier across processes);
* client i of C sends requests i, i + C, i + 2C, ... of ``--requests``, request j carrying
  query j modulo the number of queries; query bodies are encoded before the clock starts;
* each client prints one JSON object (raw latencies included), and :func:`merge` turns them
  into one report: queries/s over the span from the first start to the last end, latency
  percentiles over all requests.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

WARMUP = 20
"""Requests each client sends before the clock starts: connection set-up, first-call costs, caches."""


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every client takes (the system-specific ones are added by the client)."""
    parser.add_argument("--queries", type=Path, required=True, help=".npy query vectors or .json query texts")
    parser.add_argument("--requests", type=int, default=3000, help="requests of the whole run (all clients)")
    parser.add_argument("--client", type=int, default=0, help="this client's number, 0 .. clients-1")
    parser.add_argument("--clients", type=int, default=1, help="client processes in the run")
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--ef", type=int, default=None, help="HNSW ef per query (default: the system's)")
    parser.add_argument("--record", type=Path, help="write the result ids of each query's first request here (JSON)")


@dataclass
class ClientRun:
    """One client's measurements, filled in as it runs."""

    requests: list[int]
    latencies: list[float] = field(default_factory=list)
    results: dict[int, list[str]] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    started: float = 0.0
    ended: float = 0.0
    cpu_seconds: float = 0.0
    cpu_started: float = 0.0

    @classmethod
    def for_args(cls, args: argparse.Namespace) -> ClientRun:
        return cls(list(range(args.client, args.requests, args.clients)))

    def fail(self, reason: str) -> None:
        self.failures[reason[:120]] = self.failures.get(reason[:120], 0) + 1

    def wait_for_go(self) -> None:
        """Tell the parent this client is warm and block until every client is; then start the clock."""
        print("ready", flush=True)
        if sys.stdin.readline().strip() != "go":
            raise SystemExit("the parent went away before the start")
        self.started, self.cpu_started = time.time(), time.process_time()

    def finish(self, args: argparse.Namespace, queries: int) -> None:
        """Stop the clock, write the recorded ids if asked, print the JSON report."""
        self.ended, self.cpu_seconds = time.time(), time.process_time() - self.cpu_started
        if args.record:
            args.record.write_text(json.dumps([self.results.get(i) for i in range(min(queries, args.requests))]))
        json.dump({"latencies_ms": [s * 1000 for s in self.latencies], "failures": self.failures,
                   "started": self.started, "ended": self.ended, "cpu_seconds": self.cpu_seconds}, sys.stdout)
        print(flush=True)


def run_clients(commands: Sequence[Sequence[str]], cwd: Path, timeout: float = 1800) -> dict:
    """Start one process per command, release them together once all are warm, merge their reports."""
    processes = [subprocess.Popen(list(c), cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for c in commands]
    try:
        for process, command in zip(processes, commands, strict=True):
            line = process.stdout.readline().strip() if process.stdout else ""
            if line != "ready":
                raise SystemExit(f"client {' '.join(command)} did not start ({line!r}):\n"
                                 f"{process.stderr.read()[-2000:] if process.stderr else ''}")
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        reports = []
        for process, command in zip(processes, commands, strict=True):
            out, err = process.communicate(timeout=timeout)
            if process.returncode != 0:
                raise SystemExit(f"client {' '.join(command)} failed:\n{err[-2000:]}")
            reports.append(json.loads(out))
        return merge(reports)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def merge(reports: Sequence[dict]) -> dict:
    """One report for clients that ran together: queries/s over their common span, percentiles over all."""
    ms = np.asarray([x for r in reports for x in r["latencies_ms"]])
    seconds = max(r["ended"] for r in reports) - min(r["started"] for r in reports)
    failures: dict[str, int] = {}
    for r in reports:
        for reason, count in r["failures"].items():
            failures[reason] = failures.get(reason, 0) + count
    return {"clients": len(reports), "requests": len(ms), "failures": failures, "seconds": seconds,
            "qps": len(ms) / seconds, "mean_ms": float(ms.mean()),
            "client_cpu": sum(r["cpu_seconds"] for r in reports) / seconds,
            **{f"p{q}_ms": float(np.percentile(ms, q)) for q in (50, 95, 99)}}


def vector_literal(rows: np.ndarray) -> list[str]:
    """Vectors as JSON arrays with 8 significant digits (float32 holds about 7): the text both
    streamvec's JSON bodies and pgvector's ``'[...]'`` literals carry."""
    fmt = "[" + ",".join(["%.8g"] * rows.shape[1]) + "]"
    return [fmt % tuple(row) for row in rows.tolist()]
