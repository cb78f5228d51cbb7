"""Composition root: one call builds a worker's Faust app and everything it serves."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial

import faust

from agents.ingest import ConsumerPositions, IngestProcessor, Options, register_ingest
from agents.status import IngestStatus
from app.cdc import cdc_parsers
from app.embedding import EmbeddingService, embedder_from_settings
from app.http.metrics import Metrics
from app.settings import Settings
from app.topics import bootstrap
from app.usecases import UseCases, register_use_cases
from index.events import parse_event
from index.partition import PartitionIndex
from tables.producer import MAX_REQUEST_BYTES, DurableProducer
from tables.vectors import VectorTable, raw_bytes

logger = logging.getLogger(__name__)


@dataclass
class Streamvec:
    """A worker's parts, for the web views and the CLI to reach."""

    settings: Settings
    app: faust.App
    table: VectorTable
    embedding: EmbeddingService
    status: IngestStatus
    metrics: Metrics
    uses: UseCases
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
    status = IngestStatus()
    metrics = Metrics(table, status, app)
    # Sized for any dead letter of a record an input topic accepted (its default limit is 1 MB).
    dead_letters = app.topic(settings.dead_letter_topic, schema=raw_bytes(), internal=True,
                             config={"max.message.bytes": str(MAX_REQUEST_BYTES)})
    producer = DurableProducer(bootstrap(settings.broker), idempotent=settings.idempotent_producer)
    options = Options(limits=settings.event_limits, store_text=settings.store_text,
                      max_record_bytes=settings.max_record_bytes)

    def may_retry() -> bool:
        return not (app.rebalancing or app.should_stop)

    uses = register_use_cases(app, settings, table, embedding, metrics, producer, may_retry)
    metrics.watch_use_cases(uses.analysis.counts, uses.watchlist, uses.health, table)
    processor = IngestProcessor(table, embedding, producer, ConsumerPositions(app), status, parsers=parsers,
                                dead_letter_topic=settings.dead_letter_topic, options=options,
                                observers=[uses.analysis], on_searchable=metrics.observe_searchable,
                                may_retry=may_retry)
    register_ingest(app, topic, processor, dead_letters, settings.ingest_batch_size, settings.ingest_batch_wait)

    @app.on_before_shutdown.connect
    async def stop_producer(sender: faust.App, **kwargs: object) -> None:
        await producer.stop()

    parts = Streamvec(settings, app, table, embedding, status, metrics, uses)
    register_views(parts)
    return parts
