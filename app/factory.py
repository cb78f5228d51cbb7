"""Composition root: one call builds a worker's Faust app and everything it serves."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import faust
from aiokafka.errors import KafkaError

from agents.ingest import ConsumerPositions, IngestProcessor, Options, register_ingest
from agents.status import IngestStatus
from app.cdc import cdc_parsers
from app.embedding import EmbeddingService, embedder_from_settings
from app.search.secret import ClusterSecret
from app.search.fanout import FanOut
from app.metrics import Metrics, consumer_lag
from app.pools import WorkerPools
from app.http.latest import LatestRecords
from app.http.openapi import build_openapi
from app.logs import lower_transient_errors, server_log
from app.search.service import SearchService
from app.http.uses import UseCaseViews
from app.http.views import WorkerFacts, register_views
from app.settings import Settings
from app.replication import Replication
from app.topics import bootstrap, check_replication, run_before_faust
from app.transport import read_committed
from app.usecases import UseCases, register_use_cases
from index.records.events import parse_event
from index.ann.hnsw import VectorIndex
from tables.changelog_reader import ChangelogReader
from agents.producer import MAX_REQUEST_BYTES, DurableProducer
from tables.index_snapshots import Snapshots
from tables.profiles import TABLE_NAME as PROFILES_TABLE
from tables.vectors import TABLE_NAME as VECTORS_TABLE
from tables.vectors import VectorTable, forget_moved_partitions, keep_snapshots, keep_standbys_fresh, raw_bytes

logger = logging.getLogger(__name__)

STANDBY_FLUSH_SECONDS = 0.02
"""How often buffered standby changelog records are applied (a warm standby answers queries)."""
MOVED_CHECK_SECONDS = 10.0
"""How often partitions that moved away are checked for having been kept long enough."""
BROKER_WAIT_SECONDS = 60.0
"""How long a starting worker waits for the broker to answer before it gives up."""
FAUST_LEADER_TOPIC = "__assignor-__leader"
"""The one-partition topic Faust's assignor creates as ``<app id>-__assignor-__leader``."""
SNAPSHOT_DIR = "vectors-index.ann.snapshot"
"""The index snapshot's directory, beside the worker's table stores (see tables/indexed_store.py)."""


@dataclass
class Streamvec:
    """A worker's parts, for the CLI and the tests to reach."""

    settings: Settings
    app: faust.App
    table: VectorTable
    embedding: EmbeddingService
    status: IngestStatus
    metrics: Metrics
    service: SearchService
    uses: UseCases


def create_app(settings: Settings) -> Streamvec:
    """Build the Faust app, the vectors table, the ingest agent, the use cases' agents and tables
    (alerts, recommendations, embedding health) and the HTTP views."""
    lower_transient_errors()
    replication, warnings = _replication(settings)
    app = faust.App(
        settings.app_id,
        broker=settings.broker_url,
        store="rocksdb://",
        datadir=str(settings.datadir),
        autodiscover=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=replication.factor,
        Topic=_topic_class(replication),
        table_standby_replicas=settings.standby_replicas,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_bind,
        web_tables_enabled=False,
        web_application_options={"handler_args": {"logger": server_log()}},
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
    if settings.read_committed:
        read_committed(app)

    @app.task
    async def log_replication() -> None:
        """Logged once the worker runs: the app is built before Faust sets up the worker's log."""
        _log_replication(replication, warnings)

    embedder = embedder_from_settings(settings)
    logger.info("model %s loaded: %d dimensions, %s", embedder.model_id, embedder.dim, embedder.describe())
    pools = WorkerPools()
    embedding = EmbeddingService(embedder, query_cache_size=settings.query_cache_size)
    pools.on_close("embedding", embedding.close)
    index = VectorIndex(embedder.dim, m=settings.hnsw_m, ef_construction=settings.hnsw_ef_construction,
                        ef_search=settings.ef_search)
    snapshots = Snapshots(Path(app.conf.tabledir) / SNAPSHOT_DIR, embedder.model_id) \
        if settings.snapshot_interval > 0 else None
    table = app.tables.add(VectorTable(app, index=index, reader=ChangelogReader(bootstrap(settings.broker)),
                                         snapshots=snapshots, keep_moved=settings.keep_moved,
                                         partitions=settings.partitions,
                                         options=settings.rocksdb_options))
    keep_standbys_fresh(app, STANDBY_FLUSH_SECONDS)
    if settings.keep_moved > 0:
        forget_moved_partitions(app, table, min(settings.keep_moved, MOVED_CHECK_SECONDS))
    if snapshots is not None:
        keep_snapshots(app, table, settings.snapshot_interval)
    status = IngestStatus()
    metrics = Metrics(table, status, app)
    uses = _register_ingest(app, settings, table, embedding, status, metrics, pools)
    service = _register_http(app, settings, table, embedding, status, metrics, uses, pools, replication)
    return Streamvec(settings, app, table, embedding, status, metrics, service, uses)


def _replication(settings: Settings) -> tuple[Replication, list[str]]:
    """The replication of the topics this worker creates, decided from the setting and the
    cluster's broker count, and what is unsafe about those that exist already (Kafka never
    changes an existing topic's replicas or settings for us). A broker that is not up yet (or a
    node that just died and is still listed) is asked again, for up to ``BROKER_WAIT_SECONDS``,
    as Faust would."""
    changelogs = [f"{settings.app_id}-{name}-changelog" for name in (VECTORS_TABLE, PROFILES_TABLE)]
    topics = [*settings.own_topics, settings.cluster_secret_topic, *changelogs,
              f"{settings.app_id}-{FAUST_LEADER_TOPIC}"]
    deadline = time.monotonic() + BROKER_WAIT_SECONDS
    while True:
        try:
            return run_before_faust(check_replication(settings.broker, settings.replication_factor, topics))
        except KafkaError as exc:
            if not exc.retriable or time.monotonic() > deadline:
                raise
            logger.warning("broker %s did not answer (%r); asking again in 2 s", settings.broker, exc)
            time.sleep(2.0)


def _log_replication(replication: Replication, warnings: list[str]) -> None:
    """Log what :func:`_replication` found, each unsafe finding at WARNING with its fix."""
    for warning in filter(None, (replication.warning, *warnings)):
        logger.warning("%s", warning)
    logger.info("topics created by this worker get replication factor %d and min.insync.replicas=%d",
                replication.factor, replication.min_insync)


def _topic_class(replication: Replication) -> type[faust.Topic]:
    """Faust's topic class with our ``min.insync.replicas``, so every topic the app declares
    (table changelogs, the internal topics, Faust's own leader topic) is created with it; a
    topic's own ``config`` wins. Faust passes a topic's config to the broker only at creation."""
    class ReplicatedTopic(faust.Topic):
        def __init__(self, app: Any, *, config: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
            super().__init__(app, config={**replication.topic_configs, **(config or {})}, **kwargs)
    return ReplicatedTopic


def _register_ingest(app: faust.App, settings: Settings, table: VectorTable, embedding: EmbeddingService,
                     status: IngestStatus, metrics: Metrics, pools: WorkerPools) -> UseCases:
    parsers = {settings.events_topic: partial(parse_event, dim=embedding.dim), **cdc_parsers(settings, embedding.dim)}
    # internal=True: Faust creates the events topic (with our partition count) before it
    # subscribes, so a worker started before the first producer still consumes it. A CDC
    # topic already exists with that count: cdc_parsers checked it.
    topic = app.topic(*parsers, schema=raw_bytes(), partitions=settings.partitions, internal=True)
    # Sized for any dead letter of a record an input topic accepted (its default limit is 1 MB).
    dead_letters = app.topic(settings.dead_letter_topic, schema=raw_bytes(), internal=True,
                             config={"max.message.bytes": str(MAX_REQUEST_BYTES)})
    producer = DurableProducer(bootstrap(settings.broker), idempotent=settings.idempotent_producer)
    options = Options(limits=settings.event_limits, store_text=settings.store_text,
                      max_record_bytes=settings.max_record_bytes)

    def may_retry() -> bool:
        return not (app.rebalancing or app.should_stop)

    uses = register_use_cases(app, settings, table, embedding, metrics, producer, may_retry,
                              pools.pool("analysis", min(2, pools.cores)))
    metrics.watch_use_cases(uses.analysis.counts, uses.watchlist, uses.health, table)
    positions = ConsumerPositions(app, ChangelogReader(bootstrap(settings.broker), read_committed=settings.read_committed))
    processor = IngestProcessor(table, embedding, producer, positions, status, parsers=parsers,
                                dead_letter_topic=settings.dead_letter_topic, options=options,
                                observers=[uses.analysis], on_searchable=metrics.observe_searchable,
                                may_retry=may_retry)
    register_ingest(app, topic, processor, dead_letters, settings.ingest_batch_size, settings.ingest_batch_wait)

    @app.on_before_shutdown.connect
    async def stop_producer(sender: faust.App, **kwargs: object) -> None:
        await producer.stop()

    return uses


def _register_http(app: faust.App, settings: Settings, table: VectorTable, embedding: EmbeddingService,
                   status: IngestStatus, metrics: Metrics, uses: UseCases, pools: WorkerPools,
                   replication: Replication) -> SearchService:
    secret = ClusterSecret(settings.cluster_secret, settings.broker_url, settings.cluster_secret_topic,
                           replication.factor)
    app.task(secret.get)  # fetched at start: the first fan-out should not wait for Kafka
    fanout = FanOut(app, settings.fanout_timeout, secret, table.changelog_topic_name)
    threads = pools.cores
    pool = pools.pool("search", threads)
    service = SearchService(table=table, embed_query=embedding.embed_query, fanout=fanout,
                            partitions=settings.partitions, events_topic=settings.events_topic,
                            max_standby_lag=settings.max_standby_lag, read_wait=settings.read_wait,
                            metrics=metrics, pool=pool, threads=threads,
                            max_response_bytes=settings.max_response_bytes)

    def readiness() -> dict[str, Any]:
        """Ready: recovered, not rebalancing, every held partition built, ingest flowing, and the
        group's assignment covering every partition of every input topic."""
        recovered = app.tables.recovery.completed.is_set()
        indexes_built = table.store.ready
        covered = service.group_holds_everything() and _inputs_assigned(app, table, set(settings.input_topics))
        ingest = status.report()
        watchlist_loaded = uses.reader.loaded.is_set()
        return {"ready": recovered and indexes_built and covered and watchlist_loaded and not app.rebalancing
                and ingest["flowing"], "recovered": recovered, "indexes_built": indexes_built,
                "partitions_covered": covered, "watchlist_loaded": watchlist_loaded,
                "rebalancing": app.rebalancing, "ingest": ingest}

    latest = LatestRecords(settings.broker)
    use_views = UseCaseViews(uses, service, embedding, fanout, latest, settings.alerts_topic)

    def report() -> dict[str, Any]:
        return {"embeddings_reused": status.embeddings_reused, "query_cache": embedding.cache_stats(),
                "lag": sum(consumer_lag(app, table.changelog_topic_name).values()), **use_views.report()}

    facts = WorkerFacts(dim=embedding.dim, latest=latest, dead_letter_topic=settings.dead_letter_topic,
                        readiness=readiness, report=report,
                        openapi=build_openapi(embedding.dim, protected=bool(settings.api_key)))
    register_views(app.web.web_app, service, facts, metrics, settings.api_key, secret, use_views)

    async def close(web_app: Any) -> None:
        await fanout.close()
        await latest.close()
        pools.close()
    app.web.web_app.on_cleanup.append(close)
    return service


def _inputs_assigned(app: faust.App, table: VectorTable, topics: set[str]) -> bool:
    """Each partition this worker owns is assigned to it on every input topic too (a topic created
    after the group formed can be missing from an assignment until the next rebalance)."""
    actives = {(tp.topic, tp.partition) for tp in app.assignor.assigned_actives()}
    owned = {p for topic, p in actives if topic == table.changelog_topic_name}
    return all((topic, p) in actives for p in owned for topic in topics)
