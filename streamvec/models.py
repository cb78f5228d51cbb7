"""Typed values: what a caller sends (:class:`Query`) and what the workers answer.

Results are frozen dataclasses built from the HTTP API's JSON (docs/http-api.md). Fields
the workers may not send yet (``text``, before text storage) are optional, so the client
works against older and newer workers alike.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Query:
    """One similarity query: exactly one of ``text``, ``vector`` and ``id`` (the worker checks)."""

    text: str | None = None
    vector: Sequence[float] | None = None
    id: str | None = None
    k: int = 10
    filter: Mapping[str, Any] | None = None
    ef: int | None = None

    def body(self) -> dict[str, Any]:
        """The JSON body of ``POST /search`` (unset fields are left out, never sent as null)."""
        body: dict[str, Any] = {"k": self.k}
        if self.text is not None:
            body["text"] = self.text
        if self.vector is not None:
            body["vector"] = [float(x) for x in self.vector]
        if self.id is not None:
            body["id"] = self.id
        if self.filter is not None:
            body["filter"] = dict(self.filter)
        if self.ef is not None:
            body["ef"] = self.ef
        return body


@dataclass(frozen=True)
class Hit:
    """One result: ``score`` is cosine similarity (1 = same direction)."""

    id: str
    score: float
    metadata: Mapping[str, Any]
    text: str | None = None

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Hit:
        return cls(id=raw["id"], score=float(raw["score"]), metadata=raw.get("metadata") or {}, text=raw.get("text"))


@dataclass(frozen=True)
class Coverage:
    """Which partitions answered. ``partial``: some did not, so results may be missing.
    ``behind``: partitions left out because no copy had applied a search's ``after`` offsets
    within the workers' read wait (they count as missing too)."""

    partial: bool
    answered: tuple[int, ...]
    missing: tuple[int, ...]
    behind: tuple[int, ...] = ()

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Coverage:
        partitions = raw.get("partitions") or {}
        return cls(partial=bool(raw.get("partial")), answered=tuple(partitions.get("answered", ())),
                   missing=tuple(partitions.get("missing", ())), behind=tuple(partitions.get("behind", ())))


@dataclass(frozen=True)
class SearchResult:
    """The hits of one query, best first; iterate over it for the hits. ``raw``: the worker's JSON."""

    hits: list[Hit]
    coverage: Coverage
    took_ms: float
    raw: Mapping[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @property
    def partial(self) -> bool:
        return self.coverage.partial

    def __iter__(self) -> Iterator[Hit]:
        return iter(self.hits)

    def __len__(self) -> int:
        return len(self.hits)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> SearchResult:
        return cls(hits=[Hit.from_json(h) for h in raw["results"]], coverage=Coverage.from_json(raw),
                   took_ms=float(raw.get("took_ms", 0.0)), raw=raw)


@dataclass(frozen=True)
class BatchResult:
    """One hit list per query of a batch, in request order; one coverage for all of them."""

    results: list[list[Hit]]
    coverage: Coverage
    took_ms: float

    @property
    def partial(self) -> bool:
        return self.coverage.partial

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> BatchResult:
        return cls(results=[[Hit.from_json(h) for h in hits] for hits in raw["results"]],
                   coverage=Coverage.from_json(raw), took_ms=float(raw.get("took_ms", 0.0)))


@dataclass(frozen=True)
class Document:
    """A stored document as ``GET /documents/{id}`` returns it (without its vector)."""

    id: str
    metadata: Mapping[str, Any]
    version: int | None = None
    ts: float | None = None
    text: str | None = None

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Document:
        return cls(id=raw["id"], metadata=raw.get("metadata") or {}, version=raw.get("version"), ts=raw.get("ts"),
                   text=raw.get("text"))


@dataclass(frozen=True)
class Documents:
    """Documents looked up by id, in request order; None for an id not stored. When
    ``coverage.partial``, a None may be a document in a partition that did not answer."""

    documents: list[Document | None]
    coverage: Coverage

    def __iter__(self) -> Iterator[Document | None]:
        return iter(self.documents)

    def __len__(self) -> int:
        return len(self.documents)


@dataclass(frozen=True)
class Stats:
    """The group's counts (``GET /stats``); ``raw`` keeps the whole answer, per worker included."""

    documents: int
    outcomes: Mapping[str, int]
    dead_letter_reasons: Mapping[str, int]
    coverage: Coverage
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Stats:
        return cls(documents=int(raw["documents"]), outcomes=raw.get("outcomes") or {},
                   dead_letter_reasons=raw.get("dead_letter_reasons") or {}, coverage=Coverage.from_json(raw),
                   raw=raw)


@dataclass(frozen=True)
class WriteResult:
    """Events acknowledged by Kafka: how many, and the highest offset written per partition
    of the events topic (what a search will be able to wait for, for read-your-writes)."""

    count: int
    topic: str
    offsets: Mapping[int, int]
