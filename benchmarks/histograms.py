"""Quantiles from the workers' own Prometheus histograms (event → searchable, alert and profile
latency): scraping every worker before and after a feed and subtracting gives the feed's own
distribution; the merged buckets give p50/p99 by linear interpolation inside a bucket, as
Prometheus' ``histogram_quantile`` does.
"""

from __future__ import annotations

import math
import urllib.request
from collections.abc import Sequence

from prometheus_client.parser import text_string_to_metric_families

METRIC = "streamvec_searchable_latency_seconds"

Buckets = dict[float, float]  # upper bound -> cumulative count


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
