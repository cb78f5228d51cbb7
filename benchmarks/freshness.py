"""Event → searchable latency, read from the workers' own histogram and probed from outside.

The workers export ``streamvec_searchable_latency_seconds{kind="text"|"vector"}`` (event's
Kafka timestamp → applied to the index). Scraping every worker before and after a paced feed
and subtracting gives the feed's own distribution; the merged buckets give p50/p99 by linear
interpolation inside a bucket, as Prometheus' ``histogram_quantile`` does.

The external probe is the cross-check that needs nothing from the workers: for a sample of
events it polls ``POST /search`` with the event's own vector (or text) until the event's id is
among the top 10, and takes the time since the event was stamped and sent.
"""

from __future__ import annotations

import asyncio
import math
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiohttp
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from app.cli.producer import Line
from benchmarks.feed import paced_feed

METRIC = "streamvec_searchable_latency_seconds"
PROBES = 50
PROBE_INTERVAL = 0.01
PROBE_TIMEOUT = 30.0

Buckets = dict[float, float]  # upper bound -> cumulative count


@dataclass
class Freshness:
    kind: str
    rate: float
    events: int
    metric_p50: float | None  # seconds; None when the workers do not export the histogram
    metric_p99: float | None
    metric_buckets: dict[str, tuple[float, float]]  # "p50"/"p99" -> the histogram bucket it lies in
    probe_p50: float | None
    probe_p99: float | None
    probes_found: int
    probes_sent: int


def scrape(urls: Sequence[str], kind: str | None, metric: str = METRIC) -> Buckets | None:
    """A histogram's cumulative buckets for ``kind`` (None: a histogram without that label),
    summed over workers and any other labels."""
    merged: Buckets = {}
    for url in urls:
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
            text = response.read().decode()
        for family in text_string_to_metric_families(text):
            if family.name != metric:
                continue
            for sample in family.samples:
                if sample.name == f"{metric}_bucket" and sample.labels.get("kind") == kind:
                    le = float(sample.labels["le"])
                    merged[le] = merged.get(le, 0.0) + sample.value
    return merged or None


def quantile(before: Buckets, after: Buckets, q: float) -> tuple[float, float, float] | None:
    """The q-quantile of the observations made between two scrapes (linear within a bucket),
    with the bounds of its bucket: within a wide bucket the interpolation is only a guess."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return None
    rank = q * counts[-1]
    lower, below = 0.0, 0.0
    for bound, cumulative in zip(bounds, counts, strict=True):
        if cumulative >= rank:
            if math.isinf(bound):
                return lower, lower, bound  # beyond the last finite bucket: its bound is all that is known
            return lower + (bound - lower) * (rank - below) / max(cumulative - below, 1e-12), lower, bound
        lower, below = bound, cumulative
    return lower, lower, math.inf


async def _probe(session: aiohttp.ClientSession, url: str, doc_id: str, body: dict, sent_at: float) -> float | None:
    """Seconds from ``sent_at`` until ``doc_id`` is found by searching for its own content."""
    while time.time() - sent_at < PROBE_TIMEOUT:
        async with session.post(f"{url}/search", json={**body, "k": 10}) as response:
            answer = await response.json()
        if response.status == 200 and any(hit["id"] == doc_id for hit in answer["results"]):
            return time.time() - sent_at
        await asyncio.sleep(PROBE_INTERVAL)
    return None


async def _feed_and_probe(broker: str, topic: str, urls: Sequence[str], events: list[Line],
                          probe_bodies: list[dict], rate: float) -> tuple[float, list[float | None]]:
    every = max(1, len(events) // PROBES)
    tasks: list[asyncio.Task] = []
    async with aiohttp.ClientSession() as session:
        def on_sent(i: int, sent_at: float) -> None:
            if i % every == 0:
                url = urls[(i // every) % len(urls)]
                tasks.append(asyncio.create_task(
                    _probe(session, url, events[i].key.decode(), probe_bodies[i], sent_at)))
        achieved = await paced_feed(broker, topic, events, rate, on_sent)
        return achieved, list(await asyncio.gather(*tasks))


def measure(kind: str, broker: str, topic: str, urls: Sequence[str], events: list[Line],
            probe_bodies: list[dict], rate: float, wait_indexed: Callable[[], None]) -> Freshness:
    """Feed ``events`` at ``rate``, wait until all are indexed, and read both latency measures."""
    before = scrape(urls, kind)
    achieved, probed = asyncio.run(_feed_and_probe(broker, topic, urls, events, probe_bodies, rate))
    wait_indexed()
    after = scrape(urls, kind)
    found = np.asarray([p for p in probed if p is not None])
    p50, p99 = (quantile(before or {}, after, q) if after else None for q in (0.5, 0.99))
    return Freshness(
        kind=kind, rate=achieved, events=len(events),
        metric_p50=p50[0] if p50 else None, metric_p99=p99[0] if p99 else None,
        metric_buckets={name: (e[1], e[2]) for name, e in (("p50", p50), ("p99", p99)) if e},
        probe_p50=float(np.percentile(found, 50)) if len(found) else None,
        probe_p99=float(np.percentile(found, 99)) if len(found) else None,
        probes_found=len(found), probes_sent=len(probed))
