"""``make bench-ingest``: how close end-to-end ingest gets to the bare embedder.

One run, one machine, one table:
  * the embedder alone (sentences/s, batch = STREAMVEC_EMBED_BATCH_SIZE);
  * one worker ingesting N text events from a real Kafka (events/s from the moment the
    worker is ready until all N are searchable), with the normal batched agent;
  * the same worker with batches of one event: the naive per-message loop (embed one,
    write it, index it, next).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from app.brokers.kafka import start_kafka
from app.settings import Settings
from index.models import load_embedder
from tests.cluster import Worker, wait_for_documents
from tests.conftest import sample_texts, send_events


def embedder_rate(texts: list[str], settings: Settings, cache: Path) -> float:
    embedder = load_embedder(settings.model, cache, threads=settings.embed_threads or None,
                             batch_size=settings.embed_batch_size)
    embedder.embed(texts[:64])  # warm-up: first runs allocate
    started = time.perf_counter()
    embedder.embed(texts)
    return len(texts) / (time.perf_counter() - started)


def ingest_rate(broker: str, events: list[dict], root: Path, cache: Path, batch_size: int) -> float:
    app_id = f"bench{uuid.uuid4().hex[:8]}"
    send_events(broker, app_id, events)
    env = {"STREAMVEC_BROKER": broker, "STREAMVEC_APP_ID": app_id, "STREAMVEC_MODEL_CACHE": str(cache),
           "STREAMVEC_INGEST_BATCH_SIZE": str(batch_size), "STREAMVEC_LOG_LEVEL": "warning"}
    worker = Worker(f"worker-batch{batch_size}", env, root / app_id).start()
    try:
        worker.wait_ready(timeout=120)
        started = time.perf_counter()
        wait_for_documents(worker, len(events), timeout=3600, interval=0.1)
        return len(events) / (time.perf_counter() - started)
    finally:
        worker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=2000, help="text events per run (default 2000)")
    parser.add_argument("--naive-n", type=int, default=500, help="events for the per-message run (default 500)")
    args = parser.parse_args()
    settings = Settings.from_env()
    root = Path(tempfile.mkdtemp(prefix="streamvec-bench-"))
    cache = settings.model_cache_dir.resolve()
    events = [{"id": e["id"], "text": e["text"], "metadata": e["metadata"]} for e in sample_texts(args.n)]
    broker = start_kafka()
    try:
        embed = embedder_rate([e["text"] for e in events], settings, cache)
        batched = ingest_rate(broker.url, events, root, cache, settings.ingest_batch_size)
        naive = ingest_rate(broker.url, events[:args.naive_n], root, cache, 1)
    finally:
        broker.stop()
        shutil.rmtree(root, ignore_errors=True)
    rows = [
        ("embedder alone", f"batch {settings.embed_batch_size}", args.n, embed, "1.00"),
        ("ingest, one worker", f"batches of ≤{settings.ingest_batch_size}", args.n, batched, f"{batched / embed:.2f}"),
        ("ingest, per-message loop", "batches of 1", args.naive_n, naive, f"{naive / embed:.2f}"),
    ]
    print(f"\nstreamvec bench-ingest: {len(events)} WordNet sample texts, model {settings.model}, real Kafka\n")
    print(f"{'pipeline':<26} {'batching':<18} {'events':>7} {'per s':>9} {'÷ embedder':>11}")
    for name, batching, n, rate, ratio in rows:
        print(f"{name:<26} {batching:<18} {n:>7} {rate:>9.1f} {ratio:>11}")
    print(f"\nbatched ingest vs per-message loop: {batched / naive:.1f}x"
          f"  (targets: ingest ≥ 0.85 × embedder, ≥ 4 × per-message)")


if __name__ == "__main__":
    main()
