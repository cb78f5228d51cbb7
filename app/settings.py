"""One settings object for a streamvec worker.

Every knob lives here and is read from ``STREAMVEC_*`` environment variables by
:meth:`Settings.from_env` only; CLI flags override with :meth:`Settings.replace`.
Components receive the fields they need as constructor arguments, so nothing
below ``app/`` reads the environment.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.replication import DEFAULT_REPLICATION_FACTOR
from index.records.debezium import CdcMapping
from index.records.events import Limits
from index.exceptions import StreamvecError

ENV_PREFIX = "STREAMVEC_"
# The watchlist (and its patterns topic) is small and ordered per pattern: one partition, written by one worker.
WATCHLIST_PARTITIONS = 1
DEFAULT_EF_SEARCH = 40
"""What ``STREAMVEC_HNSW_EF_SEARCH=0`` means (see the field's doc for the measurements behind it)."""


class SettingsError(StreamvecError, ValueError):
    """A setting has a value streamvec cannot use; the message names the variable and what it takes."""


@dataclass(frozen=True)
class Settings:
    """Worker configuration; each field maps to ``STREAMVEC_<FIELD NAME IN CAPITALS>``."""

    broker: str = field(default="kafka://127.0.0.1:9092", metadata={"doc": "Kafka bootstrap server(s), `kafka://host:port[;host:port]`."})
    app_id: str = field(default="streamvec", metadata={"doc": "Faust app id; prefixes the topics `<id>-events` and `<id>-vectors-changelog`."})
    partitions: int = field(default=8, metadata={"doc": "Partitions of the events topic and the changelog (fixed once topics exist)."})
    replication_factor: int = field(default=DEFAULT_REPLICATION_FACTOR, metadata={"doc": "Replicas of every topic streamvec creates, each with `min.insync.replicas` one less (at least 1). On a cluster of fewer brokers, the broker count, with a warning. A worker warns at start about existing topics with fewer replicas or unsafe settings (see [Replication](operations.md#replication))."})
    datadir: Path = field(default=Path("streamvec-data"), metadata={"doc": "Local state (RocksDB tables). One per worker."})
    model: str = field(default="all-MiniLM-L6-v2", metadata={"doc": "`all-MiniLM-L6-v2`, a sentence-transformers directory, or an `.onnx` file with `tokenizer.json` beside it."})
    model_cache: Path | None = field(default=None, metadata={"doc": "Where prepared ONNX models are cached, shared by every worker of the machine (default `~/.cache/streamvec/models`)."})
    embed_threads: int = field(default=0, metadata={"doc": "onnxruntime intra-op threads (0 = one per core this process may use: CPU affinity and cgroup quota)."})
    embed_batch_size: int = field(default=32, metadata={"doc": "Texts per ONNX run (at most; runs are cut where padding would cost most)."})
    embed_provider: str = field(default="cpu", metadata={"doc": "`cpu`, or `cuda` to embed on a GPU (needs `onnxruntime-gpu` and a CUDA device)."})
    quantize: str = field(default="none", metadata={"doc": "`none` (fp32, exact) or `int8` (faster, approximate: must pass the int8 quality gate below)."})
    int8_min_cosine: float = field(default=0.99, metadata={"doc": "int8 gate: least mean cosine between int8 and fp32 vectors of the held-out texts."})
    int8_min_recall: float = field(default=0.88, metadata={"doc": "int8 gate: least recall@10 of int8 queries against an fp32 index of the held-out texts."})
    query_cache_size: int = field(default=1024, metadata={"doc": "Query texts whose vectors are kept (LRU) for repeated searches; 0 turns the cache off."})
    ingest_batch_size: int = field(default=512, metadata={"doc": "Events the ingest agent takes at most per batch (one model call per batch)."})
    ingest_batch_wait: float = field(default=0.05, metadata={"doc": "Seconds the agent waits to fill a batch."})
    max_key_bytes: int = field(default=512, metadata={"doc": "Longest document id (the event key), in UTF-8 bytes; a longer one is dead-lettered (`key_too_long`)."})
    max_metadata_bytes: int = field(default=16384, metadata={"doc": "Largest `metadata` of an event, in bytes of its JSON; a larger one is dead-lettered (`metadata_too_large`)."})
    max_metadata_depth: int = field(default=32, metadata={"doc": "Deepest nesting of `metadata` (the object itself is level 1); a deeper one is dead-lettered (`metadata_too_deep`)."})
    max_text_chars: int = field(default=100000, metadata={"doc": "Characters of an event's `text` kept for the model; the rest is cut off (not refused) before tokenizing."})
    max_record_bytes: int = field(default=1000000, metadata={"doc": "Largest stored record (metadata, text and vector, as the changelog gets it); a larger one is dead-lettered (`record_too_large`). Keep it below the changelog topic's `max.message.bytes` (Kafka's default: 1 MB)."})
    store_text: bool = field(default=True, metadata={"doc": "Keep each document's text in its record (RocksDB and the changelog, never in the index's memory), so results can return it."})
    read_committed: bool = field(default=True, metadata={"doc": "Read the input topics (events, CDC) with `isolation_level=read_committed`: records of aborted upstream transactions are never indexed, and those of open ones wait for their commit. The changelog is read the same way (one consumer); streamvec writes it without transactions, so that changes nothing there."})
    idempotent_producer: bool = field(default=True, metadata={"doc": "Write changelog records and dead letters with Kafka's idempotent producer (`acks=all` either way). Tansu does not support it: `make demo` turns it off there."})
    cdc_topic: str = field(default="", metadata={"doc": "A Debezium topic to index as well (JSON converter, with or without schemas); empty = off. Needs `STREAMVEC_PARTITIONS` partitions."})
    cdc_id_columns: str = field(default="", metadata={"doc": "Comma-separated columns whose values, joined by `:`, are the document id (default: the key's columns)."})
    cdc_text_columns: str = field(default="", metadata={"doc": "Comma-separated columns embedded as the text, joined by newlines; null or blank ones are skipped."})
    cdc_metadata_columns: str = field(default="", metadata={"doc": "Comma-separated columns kept as the document's metadata (empty = none)."})
    cdc_vector_column: str = field(default="", metadata={"doc": "A column holding a ready vector (JSON array or pgvector text `[1,2,3]`); rows with it skip the model."})
    alert_threshold: float = field(default=0.8, metadata={"doc": "Cosine similarity at or above which a document matches a watchlist pattern whose metadata sets no `threshold`."})
    novelty_threshold: float = field(default=0.0, metadata={"doc": "Above 0: a new document whose best similarity to the documents already indexed in this worker's partitions is below it produces a `novel` alert; 0 = off."})
    drift_threshold: float = field(default=0.1, metadata={"doc": "Drift (1 − cosine between a health window's mean vector and the partition's reference window's) above which a `drift` alert is produced, once per window."})
    health_window: int = field(default=1000, metadata={"doc": "Documents per partition in one embedding-health window; a partition's first full window on a worker is its reference."})
    profile_half_life: float = field(default=604800.0, metadata={"doc": "Seconds after which an activity counts half in a user's profile (default 7 days)."})
    activity_item_wait: float = field(default=30.0, metadata={"doc": "Seconds an activity whose item is not indexed yet holds its batch back (retried with a growing pause, up to 5 s) before it is dead-lettered `unknown_item`: activity on a fresh item waits out ingest lag. Meanwhile that `<app id>-activity-by-item` partition waits too; 0 dead-letters at once."})
    profile_recent: int = field(default=20, metadata={"doc": "A user's last items kept in their profile and left out of their recommendations; also how many origins of their latest activities a profile remembers to skip one an earlier agent sent again."})
    action_weights: str = field(default="view:1,click:2,cart:3,purchase:5", metadata={"doc": "Weight of each activity `action` when the event gives no `weight` (`action:weight,…`; negative allowed); other actions need a `weight`."})
    hnsw_m: int = field(default=16, metadata={"doc": "HNSW graph degree M."})
    hnsw_ef_construction: int = field(default=200, metadata={"doc": "HNSW ef at build time."})
    hnsw_ef_search: int = field(default=0, metadata={"doc": "Default HNSW ef at query time, for the one index a worker keeps over all its partitions (a query may pass `ef`); 0 = 40, chosen with `make bench-query`: on 100k documents one index first reached recall@10 ≥ 0.95 at ef 24 (WordNet) and 32 (Debian descriptions), and 40 keeps a margin (0.977 and 0.960). Larger indexes need more."})
    snapshot_interval: float = field(default=60.0, metadata={"doc": "Seconds between snapshots of the worker's index into its data dir (only when the index moved on; also at a clean stop), so a restart loads it and replays only the changelog after it instead of building; 0 turns snapshots off."})
    keep_moved: float = field(default=600.0, metadata={"doc": "Seconds a partition that moved to another worker stays in this worker's index, hidden from queries, so that when it comes back (a worker that joined leaves again, a rolling restart) only the changelog written meanwhile is replayed instead of a rebuild; 0 drops it at once. Its index memory is held that long (Kafka Streams keeps a moved task's state 10 minutes too)."})
    rocksdb_write_buffer_mb: int = field(default=4, metadata={"doc": "RocksDB memtable size per table partition (Faust's default, 64, holds ~40k records per partition in memory)."})
    rocksdb_block_cache_mb: int = field(default=8, metadata={"doc": "RocksDB block cache per table partition (reads are rare: the index answers queries)."})
    web_host: str = field(default="127.0.0.1", metadata={"doc": "Host other workers use to reach this one (must be unique with the port)."})
    web_port: int = field(default=6066, metadata={"doc": "HTTP port of this worker."})
    web_bind: str = field(default="0.0.0.0", metadata={"doc": "Interface the HTTP server listens on."})
    fanout_timeout: float = field(default=2.0, metadata={"doc": "Seconds a query waits for another worker before reporting its partitions missing."})
    max_standby_lag: int = field(default=0, metadata={"doc": "A standby copy answers queries for its partition while its index is at most this many changelog records behind the end its consumer last saw; else the active owner is asked. Raise it to keep answers local while ingest runs, at the cost of that much staleness (`after` still holds)."})
    max_response_bytes: int = field(default=16 << 20, metadata={"doc": "Most bytes of stored text and metadata one search answer may carry (a batch of 100 queries × k 1000 with long texts could be gigabytes); over it the search is refused with a 413 that says how to ask for less."})
    read_wait: float = field(default=1.0, metadata={"doc": "Seconds a search with `after` waits for a copy to apply those offsets before it reports the partition as `behind`."})
    standby_replicas: int = field(default=1, metadata={"doc": "Standby copies of each table partition kept by other workers."})
    session_timeout: float = field(default=10.0, metadata={"doc": "Kafka consumer session timeout: how fast a dead worker's partitions move."})
    heartbeat_interval: float = field(default=1.0, metadata={"doc": "Kafka consumer heartbeat interval."})
    rebalance_timeout: float = field(default=20.0, metadata={"doc": "Kafka consumer rebalance timeout."})
    metadata_max_age: float = field(default=5.0, metadata={"doc": "Seconds between consumer metadata refreshes: how soon a topic that appeared after a worker started is consumed."})
    api_key: str = field(default="", repr=False, metadata={"doc": "When set, every endpoint but `/health` and the search page (`/`, `/ui/*`) needs it (`X-API-Key: <key>` or `Authorization: Bearer <key>`)."})
    cluster_secret: str = field(default="", repr=False, metadata={"doc": "Shared by all workers for the worker-to-worker endpoints; when empty the group draws one and keeps it in the topic `<id>-cluster-secret`."})
    event_loop: str = field(default="uvloop", metadata={"doc": "`uvloop` or `asyncio`: the worker's event loop (`streamvec worker`; with `faust -A app worker` pass `--loop uvloop`)."})
    log_level: str = field(default="info", metadata={"doc": "Worker log level."})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``STREAMVEC_*`` variables; unknown ones are an error, not ignored."""
        environ = os.environ if environ is None else environ
        known = {f.name for f in dataclasses.fields(cls)}
        values: dict[str, str] = {}
        for name, raw in environ.items():
            if not name.startswith(ENV_PREFIX):
                continue
            key = name[len(ENV_PREFIX):].lower()
            if key in known:
                values[key] = raw
            elif key not in _NOT_SETTINGS:
                raise SettingsError(f"unknown setting {name}; known ones: {', '.join(sorted(ENV_PREFIX + k.upper() for k in known))}")
        return cls().replace(**values)

    def replace(self, **changes: Any) -> Settings:
        """Return a copy with ``changes`` applied; strings are converted to each field's type."""
        types = {f.name: f.type for f in dataclasses.fields(self)}
        converted = {}
        for name, value in changes.items():
            if value is None:
                continue
            if name not in types:
                raise SettingsError(f"unknown setting {name!r}")
            converted[name] = _convert(name, types[name], value)
        result = dataclasses.replace(self, **converted)
        result._validate()
        return result

    @property
    def events_topic(self) -> str:
        return f"{self.app_id}-events"

    @property
    def input_topics(self) -> tuple[str, ...]:
        """The topics the ingest agent reads: the events topic, and the CDC topic when set."""
        return (self.events_topic, *([self.cdc_topic] if self.cdc_topic else []))

    @property
    def dead_letter_topic(self) -> str:
        return f"{self.app_id}-dead-letters"

    @property
    def watchlist_topic(self) -> str:
        return f"{self.app_id}-watchlist"

    @property
    def patterns_topic(self) -> str:
        """The watchlist as the workers hold it: validated, embedded, compacted (internal)."""
        return f"{self.app_id}-watchlist-patterns"

    @property
    def alerts_topic(self) -> str:
        return f"{self.app_id}-alerts"

    @property
    def activity_topic(self) -> str:
        return f"{self.app_id}-activity"

    @property
    def activity_by_item_topic(self) -> str:
        """Activity repartitioned by item, co-partitioned with the vectors table (internal)."""
        return f"{self.app_id}-activity-by-item"

    @property
    def activity_by_user_topic(self) -> str:
        """Activity with the item's vector, repartitioned by user, co-partitioned with the profiles (internal)."""
        return f"{self.app_id}-activity-by-user"

    @property
    def own_topics(self) -> tuple[str, ...]:
        return (self.events_topic, self.dead_letter_topic, self.watchlist_topic, self.patterns_topic,
                self.alerts_topic, self.activity_topic, self.activity_by_item_topic, self.activity_by_user_topic)

    @property
    def action_weight_map(self) -> dict[str, float]:
        """``STREAMVEC_ACTION_WEIGHTS`` as ``{action: weight}``."""
        weights: dict[str, float] = {}
        for item in filter(None, (part.strip() for part in self.action_weights.split(","))):
            action, _, weight = item.partition(":")
            try:
                weights[action.strip()] = float(weight)
            except ValueError:
                raise SettingsError(f"{ENV_PREFIX}ACTION_WEIGHTS: {item!r} is not `action:number`; "
                                    "e.g. view:1,purchase:5,dislike:-2") from None
            if not action.strip() or not math.isfinite(weights[action.strip()]):
                raise SettingsError(f"{ENV_PREFIX}ACTION_WEIGHTS: {item!r} needs an action name and a finite weight")
        return weights

    @property
    def event_limits(self) -> Limits:
        return Limits(max_key_bytes=self.max_key_bytes, max_metadata_bytes=self.max_metadata_bytes,
                      max_metadata_depth=self.max_metadata_depth, max_text_chars=self.max_text_chars)

    @property
    def ef_search(self) -> int:
        """The default query ``ef``; see the field's doc for where the automatic value comes from.
        It no longer depends on the partition count: a worker searches one graph, not one per partition."""
        return self.hnsw_ef_search or DEFAULT_EF_SEARCH

    @property
    def rocksdb_options(self) -> dict[str, int]:
        """Faust's per-partition RocksDB options (its defaults would hold 64 MB memtables and a 2 GB cache each)."""
        mb = 1 << 20
        return {"write_buffer_size": self.rocksdb_write_buffer_mb * mb, "max_write_buffer_number": 2,
                "target_file_size_base": 16 * mb, "block_cache_size": self.rocksdb_block_cache_mb * mb}

    @property
    def cluster_secret_topic(self) -> str:
        return f"{self.app_id}-cluster-secret"

    @property
    def cdc_mapping(self) -> CdcMapping:
        """How rows of the CDC topic become events (the ``STREAMVEC_CDC_*_COLUMNS`` settings)."""
        return CdcMapping(text_columns=self._columns("cdc_text_columns"), id_columns=self._columns("cdc_id_columns"),
                          metadata_columns=self._columns("cdc_metadata_columns"),
                          vector_column=self.cdc_vector_column.strip() or None)

    def _columns(self, name: str) -> tuple[str, ...]:
        text = getattr(self, name).strip()
        columns = tuple(column.strip() for column in text.split(",")) if text else ()
        if "" in columns:
            raise SettingsError(f"{ENV_PREFIX}{name.upper()}={text!r} has an empty column name; "
                                "list columns separated by single commas")
        return columns

    @property
    def model_cache_dir(self) -> Path:
        """The model cache: one per machine by default, so workers convert a model once between them."""
        return self.model_cache if self.model_cache is not None else Path.home() / ".cache" / "streamvec" / "models"

    @property
    def broker_url(self) -> str:
        """Broker URL in Faust's form: a bare ``host:port`` gets the ``kafka://`` scheme."""
        return self.broker if "://" in self.broker else f"kafka://{self.broker}"

    def _validate(self) -> None:
        positive = ("partitions", "replication_factor", "embed_batch_size", "ingest_batch_size", "hnsw_m", "hnsw_ef_construction",
                    "rocksdb_write_buffer_mb", "rocksdb_block_cache_mb",
                    "max_key_bytes", "max_metadata_bytes", "max_metadata_depth", "max_text_chars", "max_record_bytes")
        for name in positive:
            if getattr(self, name) < 1:
                raise SettingsError(f"{ENV_PREFIX}{name.upper()} must be at least 1, got {getattr(self, name)}")
        if not 0 < self.web_port < 65536:
            raise SettingsError(f"{ENV_PREFIX}WEB_PORT must be a TCP port, got {self.web_port}")
        if self.fanout_timeout <= 0 or self.session_timeout <= 0 or self.read_wait < 0:
            raise SettingsError("timeouts must be positive")
        if self.max_response_bytes < 1024:
            raise SettingsError(f"{ENV_PREFIX}MAX_RESPONSE_BYTES must be at least 1024, got {self.max_response_bytes}")
        if self.max_standby_lag < 0:
            raise SettingsError(f"{ENV_PREFIX}MAX_STANDBY_LAG cannot be negative")
        if self.keep_moved < 0:
            raise SettingsError(f"{ENV_PREFIX}KEEP_MOVED cannot be negative (0 drops a moved partition at once)")
        if self.snapshot_interval < 0:
            raise SettingsError(f"{ENV_PREFIX}SNAPSHOT_INTERVAL cannot be negative (0 turns snapshots off)")
        choices = {"quantize": ("none", "int8"), "embed_provider": ("cpu", "cuda"), "event_loop": ("uvloop", "asyncio")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise SettingsError(f"{ENV_PREFIX}{name.upper()} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.embed_threads < 0 or self.query_cache_size < 0 or self.hnsw_ef_search < 0:
            raise SettingsError(f"{ENV_PREFIX}EMBED_THREADS, {ENV_PREFIX}QUERY_CACHE_SIZE and "
                                f"{ENV_PREFIX}HNSW_EF_SEARCH cannot be negative")
        if not (0 <= self.int8_min_cosine <= 1 and 0 <= self.int8_min_recall <= 1):
            raise SettingsError(f"{ENV_PREFIX}INT8_MIN_COSINE and {ENV_PREFIX}INT8_MIN_RECALL are between 0 and 1")
        self._validate_use_cases()
        self._validate_cdc()

    def _validate_use_cases(self) -> None:
        if not -1 <= self.alert_threshold <= 1 or not 0 <= self.novelty_threshold <= 1:
            raise SettingsError(f"{ENV_PREFIX}ALERT_THRESHOLD is a cosine similarity (-1 to 1) and "
                                f"{ENV_PREFIX}NOVELTY_THRESHOLD one from 0 (off) to 1")
        if not 0 < self.drift_threshold <= 2:
            raise SettingsError(f"{ENV_PREFIX}DRIFT_THRESHOLD is 1 − cosine: above 0, at most 2")
        if self.health_window < 2 or self.profile_recent < 0 or not self.profile_half_life > 0:
            raise SettingsError(f"{ENV_PREFIX}HEALTH_WINDOW must be at least 2, {ENV_PREFIX}PROFILE_RECENT "
                                f"at least 0 and {ENV_PREFIX}PROFILE_HALF_LIFE positive")
        if not 0 <= self.activity_item_wait < float("inf"):
            raise SettingsError(f"{ENV_PREFIX}ACTIVITY_ITEM_WAIT must be a number of seconds, at least 0 "
                                f"(0 dead-letters activity on an unknown item at once), got {self.activity_item_wait}")
        self.action_weight_map  # noqa: B018 — parses, raising SettingsError if malformed

    def _validate_cdc(self) -> None:
        mapping = self.cdc_mapping
        if not self.cdc_topic:
            if mapping.text_columns or mapping.id_columns or mapping.metadata_columns or mapping.vector_column:
                raise SettingsError(f"{ENV_PREFIX}CDC_* columns are set but {ENV_PREFIX}CDC_TOPIC is empty; "
                                    "set it to the Debezium topic to index")
            return
        if self.cdc_topic in self.own_topics:
            raise SettingsError(f"{ENV_PREFIX}CDC_TOPIC must be the Debezium topic, not streamvec's own "
                                f"{self.cdc_topic!r}")
        if not mapping.text_columns and mapping.vector_column is None:
            raise SettingsError(f"{ENV_PREFIX}CDC_TOPIC needs {ENV_PREFIX}CDC_TEXT_COLUMNS (columns to embed), "
                                f"{ENV_PREFIX}CDC_VECTOR_COLUMN (a column with ready vectors), or both")


# Variables with our prefix that configure tools, not the worker.
_NOT_SETTINGS = frozenset({"test_broker"})


def _convert(name: str, type_name: Any, value: Any) -> Any:
    if not isinstance(value, str):
        return Path(value) if "Path" in str(type_name) and not isinstance(value, Path) else value
    text = str(type_name)
    if text == "bool":
        if value.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if value.strip().lower() in ("0", "false", "no", "off", ""):
            return False
        raise SettingsError(f"{ENV_PREFIX}{name.upper()}={value!r} is not a boolean: use true or false")
    try:
        if text.startswith("int"):
            return int(value)
        if text.startswith("float"):
            return float(value)
        if "Path" in text:
            return Path(value) if value else None
    except ValueError:
        raise SettingsError(f"{ENV_PREFIX}{name.upper()}={value!r} is not a valid {text.split(' ')[0]}") from None
    return value


def _shown(default: Any) -> str:
    """A default as its variable would be written (``true``, not ``True``)."""
    if default is None:
        return ""
    return str(default).lower() if isinstance(default, bool) else str(default)


def describe() -> list[tuple[str, str, str]]:
    """``(variable, default, meaning)`` rows, for docs/configuration.md and ``streamvec --help``."""
    return [
        (ENV_PREFIX + f.name.upper(), _shown(f.default), f.metadata["doc"])
        for f in dataclasses.fields(Settings)
    ]
