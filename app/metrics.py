"""Prometheus metrics of one worker, in a registry of its own (no process globals).

Counts that already live elsewhere (documents per partition, event outcomes, consumer
lag) are read at scrape time instead of being mirrored; latencies are histograms fed
by the query path (per stage) and the ingest agent (event → searchable).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import faust
from faust.exceptions import ConsumerNotStarted
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from agents.analysis import AlertCounts
from agents.status import CAUSES, IngestStatus
from index.uses.alerts import KINDS
from index.uses.health import HealthMonitor
from index.uses.watchlist import Watchlist
from tables.vectors import VectorTable

# Query stages: embed (query text → vector, or the stored vector of an `id` query), fanout
# (until every worker answered, the local search included), local_search (this worker's
# partitions, also when serving another worker), merge (top-k of the answers).
STAGES = ("embed", "local_search", "fanout", "merge")
_QUERY_BUCKETS = (.0002, .0005, .001, .0015, .002, .003, .004, .006, .008, .012, .02, .05, .1, .25, 1.0)
# Health figures of a window summary (index/uses/health.py) exposed as gauges, with their help text.
_HEALTH_GAUGES = {
    "drift": "1 - cosine between the window's mean vector and the partition's reference window's",
    "norm_mean": "Mean vector norm before normalising (embedded texts)",
    "truncated_share": "Share of embedded texts longer than the model reads",
    "text_chars_mean": "Mean text length in characters",
    "best_similarity_mean": "Mean similarity of new documents to their nearest earlier document (novelty pass)",
}
_FRESHNESS_BUCKETS = (.01, .025, .05, .075, .1, .15, .2, .3, .5, .75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)


class _StateCollector(Collector):
    def __init__(self, table: VectorTable, status: IngestStatus, app: faust.App) -> None:
        self._table = table
        self._status = status
        self._app = app

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        copies = self._table.copies()
        documents = GaugeMetricFamily("streamvec_documents", "Live documents per partition this worker holds",
                                      labels=["partition", "role"])
        lag = GaugeMetricFamily("streamvec_standby_lag", "Changelog records a standby copy's index has not applied",
                                labels=["partition"])
        for partition, copy in copies.items():
            documents.add_metric([str(partition), "active" if copy.active else "standby"],
                                 self._table.index.count(partition))
            if not copy.active:
                lag.add_metric([str(partition)], copy.lag)
        yield documents
        yield lag
        index = self._table.index
        nodes = GaugeMetricFamily("streamvec_index_nodes", "Nodes in this worker's HNSW graph by state",
                                  labels=["state"])
        documents_held, deleted = len(index), index.garbage
        for state, count in (("document", documents_held), ("deleted", deleted),
                             ("suspended", index.allocated - documents_held - deleted)):
            nodes.add_metric([state], count)
        yield nodes
        events = CounterMetricFamily("streamvec_events", "Consumed events by outcome, since the app id's first "
                                     "event (kept in the changelog)", labels=["partition", "outcome"])
        dead = CounterMetricFamily("streamvec_dead_letters", "Dead-lettered events by reason", labels=["partition", "reason"])
        for partition in sorted(p for p, c in copies.items() if c.active and c.built):
            counts = self._table.progress(partition).counts()
            for outcome, count in counts.items():
                if isinstance(count, int):
                    events.add_metric([str(partition), outcome], count)
            for reason, count in counts["dead_letter_reasons"].items():
                dead.add_metric([str(partition), reason], count)
        yield events
        yield dead
        yield from self._ingest()
        yield self._lag()

    def _ingest(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        stall = self._status.stall
        stalled = GaugeMetricFamily("streamvec_ingest_stalled", "1 while ingest retries a batch that failed for "
                                    "this cause (nothing is acknowledged meanwhile)", labels=["cause"])
        retries = CounterMetricFamily("streamvec_ingest_retries", "Batches retried, by the cause of the failure",
                                      labels=["cause"])
        for cause in CAUSES:
            stalled.add_metric([cause], int(stall is not None and stall.cause == cause))
            retries.add_metric([cause], self._status.retries[cause])
        yield stalled
        yield retries

    def _lag(self) -> GaugeMetricFamily:
        lag = GaugeMetricFamily("streamvec_consumer_lag", "Events in the input topic not yet read by this worker",
                                labels=["topic", "partition"])
        for (topic, partition), behind in consumer_lag(self._app, self._table.changelog_topic_name).items():
            lag.add_metric([topic, str(partition)], behind)
        return lag


def consumer_lag(app: faust.App, changelog: str) -> dict[tuple[str, int], int]:
    """Events not yet read, per assigned input partition (Kafka high watermark − next offset); none
    before the consumer has started (``GET /stats`` in a worker's first second was a 500)."""
    consumer = app.consumer
    behind: dict[tuple[str, int], int] = {}
    try:
        assignment = consumer.assignment()
    except ConsumerNotStarted:
        return behind
    for tp in sorted(assignment):
        if tp.topic == changelog:
            continue
        try:
            highwater = consumer.highwater(tp)
        except (AssertionError, KeyError, RuntimeError):  # not fetched yet / consumer stopping
            continue
        read = consumer._read_offset.get(tp)  # noqa: SLF001 — Faust keeps the last offset read there
        if highwater is not None:
            behind[(tp.topic, tp.partition)] = max(0, highwater - (read + 1 if read is not None else 0))
    return behind


class _UseCaseCollector(Collector):
    """Alerts, the watchlist and embedding health, read at scrape time."""

    def __init__(self, counts: AlertCounts, watchlist: Watchlist, health: HealthMonitor, table: VectorTable) -> None:
        self._counts = counts
        self._watchlist = watchlist
        self._health = health
        self._table = table

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        alerts = CounterMetricFamily("streamvec_alerts", "Alerts produced by this worker, by kind and label "
                                     '(once per label; an alert without labels under label="")', labels=["kind", "label"])
        for (kind, label), count in sorted(self._counts.by_kind_label.items()):
            alerts.add_metric([kind, label], count)
        yield alerts
        yield GaugeMetricFamily("streamvec_watchlist_patterns", "Patterns in this worker's watchlist",
                                value=len(self._watchlist))
        snapshot = self._health.snapshot(self._table.actives())
        documents = GaugeMetricFamily("streamvec_embedding_documents", "Documents embedding health has seen "
                                      "per partition on this worker", labels=["partition"])
        gauges = {name: GaugeMetricFamily(f"streamvec_embedding_{name}", text, labels=["partition", "window"])
                  for name, text in _HEALTH_GAUGES.items()}
        for partition, health in snapshot.items():
            documents.add_metric([partition], health["documents"])
            for window in ("current", "last"):
                for name, gauge in gauges.items():
                    value = (health[window] or {}).get(name)
                    if value is not None:
                        gauge.add_metric([partition, window], value)
        yield documents
        yield from gauges.values()


class Metrics:
    """The worker's metrics; one instance per worker."""

    def __init__(self, table: VectorTable, status: IngestStatus, app: faust.App) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_StateCollector(table, status, app))
        self._query_seconds = Histogram("streamvec_query_seconds", "Search latency at the coordinating worker",
                                        ["endpoint"], buckets=_QUERY_BUCKETS, registry=self.registry)
        self._stage_seconds = Histogram("streamvec_query_stage_seconds", "Search latency by stage",
                                        ["stage"], buckets=_QUERY_BUCKETS, registry=self.registry)
        self._searchable = Histogram(
            "streamvec_searchable_latency_seconds",
            "Event → searchable: from the event's Kafka timestamp to its write being in the index",
            ["kind"], buckets=_FRESHNESS_BUCKETS, registry=self.registry)
        self._detection = Histogram(
            "streamvec_alert_latency_seconds",
            "Detection latency: from the document's event time to its alert acknowledged by the broker",
            ["kind"], buckets=_FRESHNESS_BUCKETS, registry=self.registry)
        self._profiled = Histogram(
            "streamvec_profile_latency_seconds",
            "Activity → profile: from the activity's timestamp to the profile write acknowledged by the broker",
            buckets=_FRESHNESS_BUCKETS, registry=self.registry)
        for stage in STAGES:
            self._stage_seconds.labels(stage)
        for kind in ("text", "vector"):
            self._searchable.labels(kind)
        for kind in KINDS:
            self._detection.labels(kind)

    def watch_use_cases(self, counts: AlertCounts, watchlist: Watchlist, health: HealthMonitor,
                        table: VectorTable) -> None:
        """Expose alerts, the watchlist and embedding health (built after the metrics)."""
        self.registry.register(_UseCaseCollector(counts, watchlist, health, table))

    def observe_detected(self, kind: str, latencies: Sequence[float]) -> None:
        histogram = self._detection.labels(kind)
        for seconds in latencies:
            histogram.observe(max(0.0, seconds))

    def observe_profiled(self, latencies: Sequence[float]) -> None:
        for seconds in latencies:
            self._profiled.observe(max(0.0, seconds))

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self._stage_seconds.labels(name).observe(time.perf_counter() - started)

    def observe_query(self, endpoint: str, seconds: float) -> None:
        self._query_seconds.labels(endpoint).observe(seconds)

    def observe_searchable(self, kind: str, latencies: Sequence[float]) -> None:
        histogram = self._searchable.labels(kind)
        for seconds in latencies:
            histogram.observe(max(0.0, seconds))

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
