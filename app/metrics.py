"""Prometheus metrics of one worker, in a registry of its own (no process globals)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from agents.outcomes import Outcomes
from tables.vectors import VectorTable


class _StateCollector(Collector):
    """Reads document counts and outcomes at scrape time instead of mirroring them."""

    def __init__(self, table: VectorTable, outcomes: Outcomes) -> None:
        self._table = table
        self._outcomes = outcomes

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        documents = GaugeMetricFamily("streamvec_documents", "Live documents per owned partition", labels=["partition"])
        for partition, count in self._table.counts().items():
            documents.add_metric([str(partition)], count)
        yield documents
        events = CounterMetricFamily("streamvec_events", "Consumed events by outcome", labels=["partition", "outcome"])
        for partition, counts in self._outcomes.snapshot()["partitions"].items():
            for outcome, count in counts.items():
                events.add_metric([partition, outcome], count)
        yield events


class Metrics:
    def __init__(self, table: VectorTable, outcomes: Outcomes) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_StateCollector(table, outcomes))
        self._query_seconds = Histogram("streamvec_query_seconds", "Search latency at the coordinating worker",
                                        registry=self.registry)

    def observe_query(self, seconds: float) -> None:
        self._query_seconds.observe(seconds)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
