"""The public HTTP API as pydantic models: they validate requests and they are the OpenAPI schema.

One definition serves both, so ``/openapi.json`` cannot drift from what the views accept.
Requests are strict (no "5" for 5) and closed (an unknown field is an error, not ignored):
a typo in ``"filtr"`` must not silently return unfiltered results.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_K = 1000
MAX_EF = 10_000
MAX_BATCH = 100  # 100 full-size vectors as JSON stay under aiohttp's 1 MiB body limit
MAX_QUERY_TEXT = 10_000
# A GET request line must fit aiohttp's 8,190 bytes even when every character is
# percent-encoded UTF-8 (up to 12 bytes each); longer queries go by POST.
MAX_QUERY_PARAM = 500
MAX_ID = 512
MAX_IDS = 1000
MAX_JSON_DEPTH = 64  # levels of objects and lists in a request body (orjson writes about 255 at most)


AFTER = ('Read your writes: {"<partition>": <offset>, …} of the events topic, as the producer returned them; '
         "each partition is answered only by a copy that has applied that offset, waiting up to "
         "STREAMVEC_READ_WAIT, else it is listed in partitions.behind.")


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class SearchBody(_Request):
    """One similarity query: exactly one of ``text``, ``vector`` and ``id``."""

    model_config = ConfigDict(json_schema_extra={
        "oneOf": [{"required": ["text"]}, {"required": ["vector"]}, {"required": ["id"]}]})

    text: str = Field(None, min_length=1, max_length=MAX_QUERY_TEXT,
                      description="Query text, embedded by the worker's model.")
    vector: list[float] = Field(None, description="Query vector of the model's dimension; normalised by the worker.")
    id: str = Field(None, min_length=1, max_length=MAX_ID,
                    description="Find the neighbours of this stored document (it is left out of its own results).")
    k: int = Field(10, ge=1, le=MAX_K, description="How many results.")
    ef: int = Field(None, ge=1, le=MAX_EF,
                    description="HNSW search breadth per partition (default: STREAMVEC_HNSW_EF_SEARCH); higher = better recall, slower.")
    filter: dict[str, Any] = Field(None, description=(
        'Metadata filter, e.g. {"category": "animal", "year": {"$gte": 2020}}; operators $eq $ne $in $nin '
        "$gt $gte $lt $lte $exists $and $or; dotted names reach nested fields."))
    include: list[Literal["metadata", "text"]] = Field(
        None, max_length=2, description='What each result carries besides id and score (default: both).')
    after: dict[str, int] = Field(None, description=AFTER)

    @model_validator(mode="after")
    def _one_query(self) -> SearchBody:
        given = [name for name in ("text", "vector", "id") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f'give exactly one of "text", "vector" or "id" (got {given or "none"})')
        return self


class WatchlistCheckBody(_Request):
    """Which watchlist patterns a text or vector matches now: exactly one of ``text`` and ``vector``."""

    model_config = ConfigDict(json_schema_extra={"oneOf": [{"required": ["text"]}, {"required": ["vector"]}]})

    text: str = Field(None, min_length=1, max_length=MAX_QUERY_TEXT, description="Text, embedded by the worker's model.")
    vector: list[float] = Field(None, description="Vector of the model's dimension; normalised by the worker.")

    @model_validator(mode="after")
    def _one_input(self) -> WatchlistCheckBody:
        given = [name for name in ("text", "vector") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f'give exactly one of "text" or "vector" (got {given or "none"})')
        return self


class BatchSearchBody(_Request):
    """Several queries answered with one fan-out to the workers."""

    queries: list[SearchBody] = Field(min_length=1, max_length=MAX_BATCH)
    after: dict[str, int] = Field(None, description=AFTER)


class DocumentsBody(_Request):
    """Several documents by id, looked up with one fan-out to the workers."""

    ids: list[str] = Field(min_length=1, max_length=MAX_IDS, description="Document ids, each 1–512 characters.")


class Hit(BaseModel):
    id: str
    score: float = Field(description="Cosine similarity, 1 = same direction.")
    metadata: dict[str, Any] = Field(None, description='Unless "include" leaves it out.')
    text: str = Field(None, description='The indexed text, when it is stored and "include" asks for it.')


class Partitions(BaseModel):
    answered: list[int]
    missing: list[int]
    behind: list[int] = Field(None, description='Held, but not yet caught up with "after" when the read wait ended.')


class Coverage(BaseModel):
    partial: bool = Field(description="true when some partitions did not answer: results may be missing.")
    partitions: Partitions


class SearchResponse(Coverage):
    results: list[Hit]
    took_ms: float


class BatchSearchResponse(Coverage):
    results: list[list[Hit]] = Field(description="One result list per query, in request order.")
    took_ms: float


class PatternMatch(BaseModel):
    pattern: str = Field(description="The pattern's id on the watchlist topic.")
    score: float = Field(description="Cosine similarity to the pattern.")
    threshold: float = Field(description="The pattern's threshold: it matches at or above it.")
    labels: list[str]


class WatchlistCheckResponse(BaseModel):
    matches: list[PatternMatch] = Field(description="Patterns matched now, best first.")
    patterns: int = Field(description="Patterns this worker holds (every worker holds the whole watchlist).")
    loaded: bool = Field(description="false while the worker is still reading the watchlist at start.")


class TopicPosition(BaseModel):
    partition: int
    offset: int


class AlertItem(BaseModel):
    """One record of ``<app id>-alerts``; fields beyond these depend on ``kind`` (docs/use-cases.md "Alerts: watchlists, novelty, drift")."""

    model_config = ConfigDict(extra="allow")

    kind: str = Field(description="watchlist, novel or drift.")
    id: str = Field(description="The document's id (drift: `drift/<partition>`).")
    detected_ts: float = Field(description="When it was detected, seconds since the epoch.")
    at: TopicPosition = Field(description="Where it is in the alerts topic.")


class Alerts(BaseModel):
    alerts: list[AlertItem] = Field(description="Newest first.")


class Recommendations(Coverage):
    user: str
    results: list[Hit] = Field(description="Documents nearest the user's profile, best first; the user's recent "
                                           "items left out.")
    profile_events: int = Field(description="Activity events folded into the profile.")
    took_ms: float


class StoredDocument(BaseModel):
    id: str
    metadata: dict[str, Any]
    version: int | None
    ts: float | None
    text: str | None = Field(None, description="The indexed text, when it is stored (STREAMVEC_STORE_TEXT).")


class Document(StoredDocument, Coverage):
    pass


class Documents(Coverage):
    documents: list[StoredDocument | None] = Field(description="In request order; null for an id not stored.")


class Error(BaseModel):
    error: str = Field(description="What is wrong and what to do about it.")
    partial: bool | None = None
    partitions: Partitions | None = None


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    ready: bool
    recovered: bool
    indexes_built: bool
    rebalancing: bool
    ingest: dict[str, Any] = Field(description='{"flowing": true}, or while a batch is retried after a failure '
                                   'no event caused: {"flowing": false, "cause": "model"|"broker"|"store"|'
                                   '"observer"|"internal", "error", "since", "attempts"}.')
    watchlist_loaded: bool


class AlertCounts(BaseModel):
    by_kind: dict[str, int] = Field(description="watchlist, novel, drift.")
    by_label: dict[str, int] = Field(description="Watchlist alerts by pattern label.")


class WatchlistStats(BaseModel):
    patterns: int
    loaded: bool


class HealthWindow(BaseModel):
    documents: int
    drift: float | None = Field(description="1 − cosine of this window's mean vector and the reference window's.")
    norm_mean: float | None = Field(description="Mean vector norm before normalising (texts the model embedded).")
    truncated_share: float | None = Field(description="Share of texts longer than the model reads.")
    text_chars_mean: float | None
    best_similarity_mean: float | None = Field(description="Mean similarity to the nearest earlier document "
                                                           "(with novelty on).")


class PartitionHealth(BaseModel):
    documents: int
    window: int = Field(description="Documents per window (STREAMVEC_HEALTH_WINDOW).")
    windows_closed: int
    reference: bool = Field(description="The reference window (the first full one) is set.")
    current: HealthWindow = Field(description="The window being filled: the rolling figures.")
    last: HealthWindow | None = Field(description="The last full window.")


class GroupHealth(BaseModel):
    partitions: int
    documents: int
    drift: float | None
    drift_max: float | None
    norm_mean: float | None
    truncated_share: float | None
    text_chars_mean: float | None
    best_similarity_mean: float | None


class HealthStats(BaseModel):
    partitions: dict[str, PartitionHealth]
    last: GroupHealth = Field(description="The group: the partitions' last full windows, weighted by documents.")
    current: GroupHealth = Field(description="The group: the windows being filled.")


class Stats(Coverage):
    documents: int = Field(description="Live documents over all answering partitions.")
    outcomes: dict[str, int] = Field(description="What happened to consumed events, summed over workers: "
                                     "indexed, deleted, stale, unchanged, dead_lettered.")
    dead_letter_reasons: dict[str, int]
    lag: int = Field(description="Events in the input topics not yet read, summed over the answering workers.")
    alerts: AlertCounts = Field(description="Alerts produced, summed over workers.")
    watchlist: WatchlistStats = Field(description="The watchlist as the workers hold it (the smallest count).")
    health: HealthStats = Field(description="Embedding health per partition and for the group.")
    per_partition: dict[str, dict[str, Any]] = Field(description="documents and outcome counts by partition.")
    workers: dict[str, Any] = Field(description="Each worker's own report, by URL (or why it did not answer).")


class DeadLetterSource(BaseModel):
    topic: str
    partition: int
    offset: int


class DeadLetterItem(BaseModel):
    partition: int = Field(description="Where it is in the dead-letter topic.")
    offset: int
    timestamp: float = Field(description="When it was dead-lettered, seconds since the epoch.")
    reason: str = Field(description="The reason code (docs/events.md, Dead letters).")
    error: str = Field(description="What is wrong with the event.")
    source: DeadLetterSource = Field(description="Where the event was read.")
    key: str | None = Field(description="The event's key as text (cut at 500 characters).")
    value: str | None = Field(description="The event's value as text (cut at 500 characters).")


class DeadLetters(BaseModel):
    dead_letters: list[DeadLetterItem] = Field(description="Newest first.")
