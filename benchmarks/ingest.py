"""``make bench-ingest``: how close end-to-end ingest gets to the bare embedder, and what the
real-time uses cost.

One run, one machine, two tables:
  * the embedder alone (sentences/s, batch = STREAMVEC_EMBED_BATCH_SIZE);
  * one worker ingesting N text events from a real Kafka (events/s from the moment the
    worker is ready until all N are searchable), with the normal batched agent; again with a
    watchlist of 100 patterns; again with novelty on as well;
  * the same worker with batches of one event: the naive per-message loop (embed one,
    write it, index it, next);
  * latency at half the maximum rate, from the workers' histograms: watchlist alerts (event
    time → alert acknowledged, with the watchlist and novelty on) and activity → profile.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.brokers.kafka import start_kafka
from app.cli.producer import Line
from app.settings import Settings
from benchmarks.feed import paced_feed, text_events
from benchmarks.histograms import quantile, scrape
from index.model.models import load_embedder
from tests.support.kafka import sample_texts, send_events, send_records
from tests.support.workers import Worker, wait_for, wait_for_documents

PATTERNS = 100
PATTERN_EVERY = 20  # the patterns are every 20th text of the events
PATTERN_THRESHOLD = 0.95  # the patterns are texts of the feed: they match their own events (score 1)
NOVELTY_THRESHOLD = 0.3
FEED_SECONDS = 20.0
USERS = 50
ACTIVITY_BACKLOG = 5000


def embedder_rate(texts: list[str], settings: Settings, cache: Path) -> float:
    embedder = load_embedder(settings.model, cache, threads=settings.embed_threads or None,
                             batch_size=settings.embed_batch_size)
    embedder.embed(texts[:64])  # warm-up: first runs allocate
    started = time.perf_counter()
    embedder.embed(texts)
    return len(texts) / (time.perf_counter() - started)


@dataclass
class Run:
    """One worker of its own app id, ingesting the same events."""

    broker: str
    root: Path
    cache: Path
    env: dict[str, str]
    app_id: str = ""
    worker: Worker | None = None

    def __post_init__(self) -> None:
        self.app_id = f"bench{uuid.uuid4().hex[:8]}"
        self.env = {"STREAMVEC_BROKER": self.broker, "STREAMVEC_APP_ID": self.app_id,
                    "STREAMVEC_MODEL_CACHE": str(self.cache), "STREAMVEC_LOG_LEVEL": "warning", **self.env}

    def start(self) -> Worker:
        self.worker = Worker(f"worker-{self.app_id}", self.env, self.root / self.app_id).start()
        self.worker.wait_ready(timeout=120)
        return self.worker

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()

    def load_watchlist(self, texts: list[str]) -> None:
        """Patterns in place before the events (a worker reads the whole watchlist when it
        starts): a first worker creates the topics and takes the patterns, then stops."""
        patterns = [(f"pattern-{n}".encode(), json.dumps({"id": f"pattern-{n}", "text": text, "metadata": {
            "threshold": PATTERN_THRESHOLD, "labels": ["bench"]}}).encode()) for n, text in enumerate(texts)]
        worker = self.start()
        send_records(self.broker, f"{self.app_id}-watchlist", patterns)
        wait_for("the watchlist", lambda: worker.stats()["watchlist"]["patterns"] == len(texts), timeout=120)
        self.stop()

    def ingest_rate(self, events: list[dict]) -> float:
        send_events(self.broker, self.app_id, events)
        worker = self.start()
        started = time.perf_counter()
        wait_for_documents(worker, len(events), timeout=3600, interval=0.1)
        return len(events) / (time.perf_counter() - started)


def alert_latency(run: Run, texts: list[str], rate: float) -> tuple[int, float, float]:
    """Text events at ``rate`` for FEED_SECONDS, cycling through ``texts`` (every 20th is a
    pattern's text, which alerts); returns (alerts, p50, p99) in seconds."""
    worker = run.worker
    assert worker is not None
    count = int(rate * FEED_SECONDS)
    target = worker.stats()["documents"] + count
    feed = text_events([f"live-{n}" for n in range(count)], [texts[n % len(texts)] for n in range(count)])
    return _feed(run, feed, rate, f"{run.app_id}-events", "streamvec_alert_latency_seconds", "watchlist",
                 lambda: worker.stats()["documents"] >= target)


def activity_latency(run: Run, items: list[str]) -> tuple[float, float, int, float, float]:
    """The profile pipeline's most on a backlog, then (most, half, events, p50, p99) at half that rate."""
    rng = random.Random(1)

    def activity(count: int) -> list[Line]:
        users = [f"user-{rng.randrange(USERS)}" for _ in range(count)]
        return [Line(user.encode(), json.dumps({"user": user, "item": rng.choice(items), "action": "view",
                                                "ts": time.time()}).encode()) for user in users]
    topic = f"{run.app_id}-activity"
    target = _profiled(run) + ACTIVITY_BACKLOG
    backlog = activity(ACTIVITY_BACKLOG)
    started = time.perf_counter()
    asyncio.run(paced_feed(run.broker, topic, backlog, rate=1e9))
    wait_for("the activity backlog", lambda: _profiled(run) >= target, timeout=600, interval=0.1)
    most = ACTIVITY_BACKLOG / (time.perf_counter() - started)
    feed = activity(int(most / 2 * FEED_SECONDS))
    target = _profiled(run) + len(feed)
    events, p50, p99 = _feed(run, feed, most / 2, topic, "streamvec_profile_latency_seconds", None,
                             lambda: _profiled(run) >= target)
    return most, most / 2, events, p50, p99


def _profiled(run: Run) -> int:
    """Activity events folded into profiles so far (the profile latency histogram's count)."""
    assert run.worker is not None
    buckets = scrape([run.worker.url], None, "streamvec_profile_latency_seconds") or {}
    return int(max(buckets.values(), default=0))


def _feed(run: Run, feed: list[Line], rate: float, topic: str, metric: str, kind: str | None,
          done: Callable[[], bool]) -> tuple[int, float, float]:
    """Send ``feed`` at ``rate``, wait until ``done``, and read the histogram's new observations."""
    assert run.worker is not None
    urls = [run.worker.url]
    before = scrape(urls, kind, metric) or {}
    asyncio.run(paced_feed(run.broker, topic, feed, rate))
    wait_for("the feed to be processed", done, timeout=600, interval=0.2)
    after = scrape(urls, kind, metric) or {}
    p50, p99 = (quantile(before, after, q) for q in (0.5, 0.99))
    observed = int(max(after.values(), default=0) - max(before.values(), default=0))
    return observed, p50[0] if p50 else float("nan"), p99[0] if p99 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=2000, help="text events per run (default 2000)")
    parser.add_argument("--naive-n", type=int, default=500, help="events for the per-message run (default 500)")
    args = parser.parse_args()
    settings = Settings.from_env()
    root = Path(tempfile.mkdtemp(prefix="streamvec-bench-"))
    cache = settings.model_cache_dir.resolve()
    events = [{"id": e["id"], "text": e["text"], "metadata": e["metadata"]} for e in sample_texts(args.n)]
    texts = [e["text"] for e in events]
    patterns = texts[::PATTERN_EVERY][:PATTERNS]
    broker = start_kafka()
    try:
        embed = embedder_rate(texts, settings, cache)
        batch = str(settings.ingest_batch_size)
        plain = Run(broker.url, root, cache, {"STREAMVEC_INGEST_BATCH_SIZE": batch})
        batched = plain.ingest_rate(events)
        plain.stop()
        watched = Run(broker.url, root, cache, {"STREAMVEC_INGEST_BATCH_SIZE": batch})
        watched.load_watchlist(patterns)
        with_watchlist = watched.ingest_rate(events)
        watched.stop()
        novel = Run(broker.url, root, cache, {"STREAMVEC_INGEST_BATCH_SIZE": batch,
                                              "STREAMVEC_NOVELTY_THRESHOLD": str(NOVELTY_THRESHOLD)})
        novel.load_watchlist(patterns)
        with_novelty = novel.ingest_rate(events)
        alerts = alert_latency(novel, texts, with_novelty / 2)
        activity = activity_latency(novel, [e["id"] for e in events])
        novel.stop()
        naive_run = Run(broker.url, root, cache, {"STREAMVEC_INGEST_BATCH_SIZE": "1"})
        naive = naive_run.ingest_rate(events[:args.naive_n])
        naive_run.stop()
    finally:
        broker.stop()
        shutil.rmtree(root, ignore_errors=True)
    _report(args, settings, len(events), embed, batched, with_watchlist, with_novelty, naive, alerts, activity)


def _report(args: argparse.Namespace, settings: Settings, n: int, embed: float, batched: float, with_watchlist: float,
            with_novelty: float, naive: float, alerts: tuple[int, float, float],
            activity: tuple[float, float, int, float, float]) -> None:
    batching = f"batches of ≤{settings.ingest_batch_size}"
    rows = [
        ("embedder alone", f"batch {settings.embed_batch_size}", n, embed),
        ("ingest, one worker", batching, n, batched),
        (f"  + watchlist ({PATTERNS} patterns)", batching, n, with_watchlist),
        ("  + watchlist + novelty", batching, n, with_novelty),
        ("ingest, per-message loop", "batches of 1", args.naive_n, naive),
    ]
    print(f"\nstreamvec bench-ingest: {n} WordNet sample texts, model {settings.model}, real Kafka\n")
    print(f"{'pipeline':<32} {'batching':<18} {'events':>7} {'per s':>9} {'÷ embedder':>11} {'÷ ingest':>9}")
    for name, batching_text, count, rate in rows:
        print(f"{name:<32} {batching_text:<18} {count:>7} {rate:>9.1f} {rate / embed:>11.2f} {rate / batched:>9.2f}")
    print(f"\nbatched ingest vs per-message loop: {batched / naive:.1f}x"
          f"  (targets: ingest ≥ 0.85 × embedder, ≥ 4 × per-message)")
    print(f"cost of the uses on ingest: watchlist {100 * (1 - with_watchlist / batched):.1f} %, "
          f"watchlist + novelty (threshold {NOVELTY_THRESHOLD}) {100 * (1 - with_novelty / batched):.1f} %")
    count, p50, p99 = alerts
    most, half, events, a50, a99 = activity
    print(f"\n{'latency at half the most the worker does':<44} {'rate/s':>8} {'events':>7} {'p50 ms':>8} "
          f"{'p99 ms':>8}  target")
    print(f"{'watchlist alert: event → alert acknowledged':<44} {with_novelty / 2:>8.1f} {count:>7} {p50 * 1000:>8.0f} "
          f"{p99 * 1000:>8.0f}  p99 ≤ 1000 ms: {'met' if p99 <= 1.0 else 'NOT met'}")
    print(f"{'activity → profile acknowledged':<44} {half:>8.1f} {events:>7} {a50 * 1000:>8.0f} {a99 * 1000:>8.0f}"
          f"  p50 ≤ 200 ms: {'met' if a50 <= 0.2 else 'NOT met'}")
    print(f"(most the worker does: {with_novelty:.1f} text events/s with the watchlist and novelty on; "
          f"{most:.0f} activity events/s on a backlog of {ACTIVITY_BACKLOG}; percentiles from the workers' "
          "histograms, interpolated within buckets)")


if __name__ == "__main__":
    main()
