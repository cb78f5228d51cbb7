"""Composition root: one call builds a worker's Faust app and everything it serves."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial

import faust

from agents.deadletters import DeadLetterSink
from agents.ingest import IngestProcessor, register_ingest
from agents.outcomes import Outcomes
from app.cdc import cdc_parsers
from app.embedding import EmbeddingService, embedder_from_settings
from app.http.metrics import Metrics
from app.settings import Settings
from app.usecases import UseCases, register_use_cases
from index.events import parse_event
from index.partition import PartitionIndex
from tables.vectors import VectorTable, raw_bytes

logger = logging.getLogger(__name__)


@dataclass
class Streamvec:
    """A worker's parts, for the web views and the CLI to reach."""

    settings: Settings
    app: faust.App
    table: VectorTable
    embedding: EmbeddingService
    outcomes: Outcomes
    metrics: Metrics
    uses: UseCases


def create_app(settings: Settings) -> Streamvec:
    """Build the Faust app, the vectors table, the ingest agent, the use cases' agents and tables
    (alerts, recommendations, embedding health) and the HTTP views."""
    from app.http.views import register_views

    app = faust.App(
        settings.app_id,
        broker=settings.broker_url,
        store="rocksdb://",
        datadir=str(settings.datadir),
        autodiscover=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        table_standby_replicas=settings.standby_replicas,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_bind,
        web_tables_enabled=False,
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=settings.heartbeat_interval,
        broker_rebalance_timeout=settings.rebalance_timeout,
        consumer_auto_offset_reset="earliest",
        # stream_wait_empty stays on (Faust's default): a revoked worker finishes the events
        # it holds before the rebalance goes on. Without it, events fetched before a
        # rebalance were skipped as "old generation", acked, and never processed (seen
        # with two workers joining while 2,000 events were queued).
        #
        # A topic created moments before the group formed can be missing from the first
        # assignment ("Ignoring missing topic"); aiokafka only rejoins once its metadata
        # shows the topic, which by default takes up to 5 minutes.
        consumer_metadata_max_age_ms=int(settings.metadata_max_age * 1000),
    )
    embedder = embedder_from_settings(settings)
    logger.info("model %s loaded: %d dimensions, %s", embedder.model_id, embedder.dim, embedder.describe())
    embedding = EmbeddingService(embedder, query_cache_size=settings.query_cache_size)
    dim = embedder.dim

    def new_index() -> PartitionIndex:
        return PartitionIndex(dim, m=settings.hnsw_m, ef_construction=settings.hnsw_ef_construction,
                              ef_search=settings.ef_search)

    table = app.tables.add(VectorTable(app, index_factory=new_index, partitions=settings.partitions,
                                         options=settings.rocksdb_options))
    parsers = {settings.events_topic: partial(parse_event, dim=dim), **cdc_parsers(settings, dim)}
    # internal=True: Faust creates the events topic (with our partition count) before it
    # subscribes, so a worker started before the first producer still consumes it. A CDC
    # topic already exists with that count: cdc_parsers checked it.
    topic = app.topic(*parsers, schema=raw_bytes(), partitions=settings.partitions, internal=True)
    outcomes = Outcomes()
    metrics = Metrics(table, outcomes, app)
    dead_letters = DeadLetterSink(app.topic(settings.dead_letter_topic, schema=raw_bytes(), internal=True))
    uses = register_use_cases(app, settings, table, embedding, metrics, dead_letters)
    metrics.watch_use_cases(uses.analysis.counts, uses.watchlist, uses.health, table)
    processor = IngestProcessor(table, embedding, outcomes, parsers=parsers,
                                limits=settings.event_limits, dead_letters=dead_letters,
                                on_searchable=metrics.observe_searchable, observers=[uses.analysis])
    register_ingest(app, topic, processor, settings.ingest_batch_size, settings.ingest_batch_wait)
    parts = Streamvec(settings, app, table, embedding, outcomes, metrics, uses)
    register_views(parts)
    return parts
