"""Composition root: one call builds a worker's Faust app and everything it serves."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import faust

from agents.ingest import IngestProcessor, register_ingest
from agents.outcomes import Outcomes
from app.embedding import EmbeddingService
from app.settings import Settings
from index.embedder import load_embedder
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


def create_app(settings: Settings) -> Streamvec:
    """Build the Faust app, the vectors table, the ingest agent and the HTTP views."""
    from app.web import register_views

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
        stream_wait_empty=False,
    )
    embedder = load_embedder(settings.model, settings.model_cache_dir,
                             threads=settings.embed_threads or None, batch_size=settings.embed_batch_size)
    logger.info("model %s loaded: %d dimensions", embedder.model_id, embedder.dim)
    embedding = EmbeddingService(embedder)
    dim = embedder.dim

    def new_index() -> PartitionIndex:
        return PartitionIndex(dim, m=settings.hnsw_m, ef_construction=settings.hnsw_ef_construction,
                              ef_search=settings.hnsw_ef_search)

    table = app.tables.add(VectorTable(app, index_factory=new_index, partitions=settings.partitions))
    # internal=True: Faust creates the topic (with our partition count) before it subscribes,
    # so a worker started before the first producer still consumes it.
    topic = app.topic(settings.events_topic, schema=raw_bytes(), partitions=settings.partitions, internal=True)
    outcomes = Outcomes()
    register_ingest(app, topic, IngestProcessor(table, embedding, outcomes),
                    settings.ingest_batch_size, settings.ingest_batch_wait)
    parts = Streamvec(settings, app, table, embedding, outcomes)
    register_views(parts)
    return parts
