"""Wiring of the real-time uses beside search: watchlist alerts, novelty, embedding health,
recommendations from activity (docs/use-cases.md).

Declares their topics (created at worker start with the partition counts below), tables,
agents and the ingest observer, and hands back what the views and metrics read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import faust

from agents.activity import ActivityJoin, ActivityRepartition, ProfileUpdater, Route
from agents.analysis import BatchAnalysis, Novelty
from agents.batches import register_batch_agent
from agents.ingest import Sender
from agents.watchlist import PatternReader, WatchlistProcessor
from app.embedding import EmbeddingService
from app.metrics import Metrics
from app.settings import WATCHLIST_PARTITIONS, Settings
from app.topics import bootstrap, partitions_of
from index.uses.health import HealthMonitor
from index.uses.watchlist import Watchlist
from tables.profiles import ProfileTable
from tables.vectors import VectorTable, raw_bytes

logger = logging.getLogger(__name__)

WATCHLIST_BATCH = 256
# Activity hops are cheap per event; a short wait keeps the three hops' latency low.
ACTIVITY_BATCH = 512
ACTIVITY_WAIT = 0.01


@dataclass
class UseCases:
    """What the views, metrics and the ingest agent need of the use cases."""

    watchlist: Watchlist
    reader: PatternReader
    analysis: BatchAnalysis
    health: HealthMonitor
    profiles: ProfileTable


def register_use_cases(app: faust.App, settings: Settings, table: VectorTable, embedding: EmbeddingService,
                       metrics: Metrics, sender: Sender, may_retry: Callable[[], bool],
                       pool: ThreadPoolExecutor) -> UseCases:
    """Declare the use cases' topics, tables and agents on ``app``; returns the ingest observer and state.

    ``sender`` produces everything (alerts, patterns, repartitioned activity, dead letters) and
    waits for the acks; ``may_retry`` says whether a failed batch may be tried again now; matching and
    novelty search on ``pool`` (its owner, :class:`app.pools.WorkerPools`, shuts it down)."""
    watchlist = Watchlist(embedding.dim)
    reader = PatternReader(bootstrap(settings.broker), settings.patterns_topic, watchlist, settings.alert_threshold)
    _register_watchlist(app, settings, reader, sender, embedding, may_retry)
    analysis, health = _analysis(app, settings, table, watchlist, reader, sender, metrics, pool)
    profiles = _register_activity(app, settings, table, sender, metrics, may_retry)
    return UseCases(watchlist, reader, analysis, health, profiles)


def _register_watchlist(app: faust.App, settings: Settings, reader: PatternReader, sender: Sender,
                        embedding: EmbeddingService, may_retry: Callable[[], bool]) -> None:
    source = app.topic(settings.watchlist_topic, schema=raw_bytes(), partitions=WATCHLIST_PARTITIONS, internal=True)
    patterns = app.topic(settings.patterns_topic, schema=raw_bytes(), partitions=WATCHLIST_PARTITIONS, internal=True,
                         compacting=True)
    processor = WatchlistProcessor(reader, sender, settings.dead_letter_topic, embedding, settings.event_limits)
    register_batch_agent(app, source, "watchlist", processor.process, WATCHLIST_BATCH, settings.ingest_batch_wait,
                         may_retry)

    @app.task
    async def read_watchlist() -> None:
        await reader.run(await _partitions_of_patterns(settings, patterns))


async def _partitions_of_patterns(settings: Settings, patterns: faust.TopicT) -> list[int]:
    """The patterns topic's partitions, once it exists (created here if missing: the reader
    reads it from the start); retried while the broker is away."""
    while True:
        try:
            await patterns.maybe_declare()
            found = await partitions_of(settings.broker, settings.patterns_topic)
        except Exception as exc:  # noqa: BLE001 — the broker may be away at start: keep trying, say why
            logger.warning("cannot reach the topic %s yet (%s: %s); retrying", settings.patterns_topic,
                           type(exc).__name__, exc)
            found = []
        if found:
            return [tp.partition for tp in found]
        await asyncio.sleep(0.5)  # created, but not in the cluster's metadata yet


def _analysis(app: faust.App, settings: Settings, table: VectorTable, watchlist: Watchlist, reader: PatternReader,
              sender: Sender, metrics: Metrics, pool: ThreadPoolExecutor) -> tuple[BatchAnalysis, HealthMonitor]:
    alerts = app.topic(settings.alerts_topic, schema=raw_bytes(), partitions=settings.partitions, internal=True)
    novelty = Novelty(table, settings.novelty_threshold, pool) if settings.novelty_threshold > 0 else None
    health = HealthMonitor(watchlist.dim, settings.health_window, settings.drift_threshold)
    analysis = BatchAnalysis(watchlist=watchlist, watchlist_loaded=reader.loaded, patterns_topic=reader.topic,
                             sender=sender,
                             alerts_topic=settings.alerts_topic, health=health, novelty=novelty, pool=pool,
                             on_detected=metrics.observe_detected)

    @app.task
    async def declare_alerts_topic() -> None:
        await alerts.maybe_declare()

    return analysis, health


def _register_activity(app: faust.App, settings: Settings, table: VectorTable, sender: Sender, metrics: Metrics,
                       may_retry: Callable[[], bool]) -> ProfileTable:
    def topic(name: str) -> faust.TopicT:
        return app.topic(name, schema=raw_bytes(), partitions=settings.partitions, internal=True)

    activity, by_item, by_user = (topic(name) for name in (settings.activity_topic, settings.activity_by_item_topic,
                                                           settings.activity_by_user_topic))
    profiles = app.tables.add(ProfileTable(app, reader=table.reader, partitions=settings.partitions,
                                           options=settings.rocksdb_options))
    route = Route(sender, settings.activity_by_item_topic, settings.activity_by_user_topic, settings.dead_letter_topic)
    weights = settings.action_weight_map
    stages = (
        ("activity", activity, ActivityRepartition(route, weights).process),
        ("activity-join", by_item, ActivityJoin(table, route, weights, settings.activity_item_wait).process),
        ("profile-updates", by_user, ProfileUpdater(profiles, route, settings.profile_half_life,
                                                    settings.profile_recent, metrics.observe_profiled).process),
    )
    for name, source, process in stages:
        register_batch_agent(app, source, name, process, ACTIVITY_BATCH, ACTIVITY_WAIT, may_retry)
    return profiles
