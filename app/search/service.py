"""The group's answers: which copy answers for which partition, asking other workers, merging.

A worker holds some partitions as the active owner and others as warm standbys (their index
fed by the changelog). A query is answered by the fewest workers that cover every partition:
first this worker, for every partition whose copy here may answer (the active copy, or a
standby no more than ``STREAMVEC_MAX_STANDBY_LAG`` changelog records behind); then, for the
rest, the active owners the group's assignment names. With two workers and one standby
replica that is this worker alone: no hop, and a dead peer costs nothing.

A query may name offsets it must see (``after``: events-topic offsets per partition, as the
producer returned them). A copy answers such a partition only once its index has applied
them; an active copy waits up to ``STREAMVEC_READ_WAIT`` for that, and a partition no copy
caught up on is reported as ``behind`` instead of answered. Whatever no worker answered is
``missing``: the answer is ``partial``, never silently smaller.

An answer carries at most ``STREAMVEC_MAX_RESPONSE_BYTES`` of stored text and metadata, counted
by each worker as it reads them: a batch of 100 queries × k 1,000 over long texts would otherwise
build gigabytes on the event loop (review finding SP-13). A worker over it stops reading and
refuses the search with a 413, and the worker that asked it passes that 413 on.

The views (``app/http/views.py``) only parse requests and render these results.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from app.search import wire
from app.search.fanout import Answer, FanOut
from app.metrics import Metrics
from app.search.query import RequestError, Row, SearchRequest
from index.ann.hnsw import Hit
from index.ann.merge import LocalResult, merge_hits
from index.records.progress import OUTCOMES
from tables.indexed_store import Copy
from tables.vectors import VectorTable

_POLL = 0.005  # seconds between checks while waiting for a copy to catch up


@dataclass(frozen=True)
class Coverage:
    """Which partitions an answer covers; any missing one makes it partial."""

    answered: tuple[int, ...]
    missing: tuple[int, ...]
    behind: tuple[int, ...] = ()

    @property
    def partial(self) -> bool:
        return bool(self.missing)

    def json(self) -> dict[str, Any]:
        partitions: dict[str, Any] = {"answered": list(self.answered), "missing": list(self.missing)}
        if self.behind:
            partitions["behind"] = list(self.behind)
        return {"partial": self.partial, "partitions": partitions}


@dataclass(frozen=True)
class Found:
    """One result as the caller asked for it (metadata and text only if included)."""

    id: str
    score: float
    partition: int
    metadata: Mapping[str, Any] | None
    text: str | None

    def json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"id": self.id, "score": self.score}
        if self.metadata is not None:
            body["metadata"] = dict(self.metadata)
        if self.text is not None:
            body["text"] = self.text
        return body


@dataclass(frozen=True)
class SearchResult:
    results: tuple[tuple[Found, ...], ...]
    coverage: Coverage
    took_ms: float


@dataclass(frozen=True)
class DocumentsResult:
    documents: Mapping[str, Mapping[str, Any]]  # by id; only stored documents
    coverage: Coverage
    vectors: Mapping[str, np.ndarray] = field(default_factory=dict)


class SearchService:
    """Answers searches, document lookups and stats for the whole group."""

    def __init__(self, *, table: VectorTable, embed_query: Callable[[str], Awaitable[np.ndarray]],
                 fanout: FanOut, partitions: int, events_topic: str, max_standby_lag: int, read_wait: float,
                 metrics: Metrics, pool: Executor, threads: int, max_response_bytes: int) -> None:
        self.table = table
        self.embed_query = embed_query
        self.fanout = fanout
        self.partitions = partitions
        self.events_topic = events_topic
        self.max_standby_lag = max_standby_lag
        self.read_wait = read_wait
        self.metrics = metrics
        self.pool = pool
        self.threads = threads
        self.max_response_bytes = max_response_bytes

    # ---- search -------------------------------------------------------------------------

    async def search(self, queries: Sequence[SearchRequest], after: Mapping[int, int] | None = None,
                     endpoint: str = "search") -> SearchResult:
        started = time.perf_counter()
        after = after or {}
        with self.metrics.stage("embed"):
            vectors = np.stack(await asyncio.gather(*(self._query_vector(q) for q in queries)))
        # An `id` query asks for one more: the document itself is dropped from its own results.
        rows = [Row.of(q, extra=int(q.id is not None)) for q in queries]
        with self.metrics.stage("fanout"):
            answers = await self._gather(
                "/internal/search", after,
                local=lambda parts: self.answer(vectors, rows, parts, after),
                remote=lambda parts: wire.pack({"rows": [row.json() for row in rows], "partitions": sorted(parts),
                                                "after": {str(p): o for p, o in after.items() if p in parts}},
                                               vectors),
                decode=decode_answer)
        with self.metrics.stage("merge"):
            results = []
            for position, query in enumerate(queries):
                hits = merge_hits([answer.hits[position] for answer in answers], rows[position].k)
                results.append(tuple(_found(hit) for hit in hits if hit.id != query.id)[:query.k])
        took = time.perf_counter() - started
        self.metrics.observe_query(endpoint, took)
        return SearchResult(tuple(results), _coverage(answers, self.partitions), round(took * 1000, 3))

    async def answer(self, vectors: np.ndarray, rows: Sequence[Row], partitions: set[int],
                     after: Mapping[int, int]) -> LocalResult:
        """What this worker answers for ``partitions``: copies that may answer, caught up with
        ``after`` (waiting up to the read wait for active copies)."""
        with self.metrics.stage("local_search"):
            answering, behind = await self._caught_up(partitions, after)
            hits: list[list[Hit]] = [[] for _ in rows]
            budget = ResponseBudget(self.max_response_bytes)
            if answering:
                groups: dict[Row, list[int]] = defaultdict(list)
                for position, row in enumerate(rows):
                    groups[row].append(position)
                for row, positions in groups.items():
                    found = await self._search(vectors[positions], row, answering)
                    for position, row_hits in zip(positions, found, strict=True):
                        hits[position] = self._with_fields(row_hits, row, budget)
            return LocalResult(hits=hits, partitions=sorted(answering), behind=sorted(behind))

    async def _search(self, vectors: np.ndarray, row: Row, partitions: set[int]) -> list[list[Hit]]:
        """One unfiltered query inline (it takes ~0.2 ms and a thread hand-off costs as much) unless
        the index is being written, which would block the event loop (during a rebuild, writes
        queue back to back); else on the pool, a batch's rows split over the threads (hnswlib
        releases the GIL). A filtered query always goes to the pool: its predicate runs in Python
        once per candidate, and a selective filter visits every document of the index (SP-3)."""
        predicate = row.predicate
        if len(vectors) == 1 and predicate is None and not self.table.index.writing:
            return self.table.search(vectors, row.k, row.ef, predicate, partitions)
        loop = asyncio.get_running_loop()
        shares = [vectors[i::self.threads] for i in range(min(self.threads, len(vectors)))]
        answers = await asyncio.gather(*(loop.run_in_executor(
            self.pool, self.table.search, share, row.k, row.ef, predicate, partitions) for share in shares))
        found: list[list[Hit]] = [[] for _ in vectors]
        for i, share_hits in enumerate(answers):
            found[i::self.threads] = share_hits
        return found

    def _with_fields(self, hits: list[Hit], row: Row, budget: ResponseBudget) -> list[Hit]:
        """Hits carrying what ``row`` includes: metadata (from the index) and text (from the records),
        each paid for from ``budget``."""
        found = []
        for hit in hits:
            metadata = hit.metadata if "metadata" in row.include else None
            text = self._text(hit) if "text" in row.include else None
            budget.spend(metadata, text)
            found.append(Hit(hit.id, hit.score, hit.partition, metadata, text))
        return found

    def _text(self, hit: Hit) -> str | None:
        record = self.table.stored(hit.partition, hit.id)
        return None if record is None else record.text

    async def _query_vector(self, query: SearchRequest) -> np.ndarray:
        if query.vector is not None:
            return query.vector
        if query.text is not None:
            return await self.embed_query(query.text)
        assert query.id is not None
        found = await self.documents([query.id], with_vectors=True)
        if query.id not in found.vectors:
            raise RequestError(not_found_message(query.id, found.coverage),
                               status=503 if found.coverage.partial else 404)
        return found.vectors[query.id]

    # ---- documents ----------------------------------------------------------------------

    async def documents(self, ids: Sequence[str], with_vectors: bool = False) -> DocumentsResult:
        """The stored documents among ``ids``, from whichever copies may answer."""
        answers = await self._gather(
            "/internal/document", {},
            local=lambda parts: self._local_documents_async(ids, parts, with_vectors),
            remote=lambda parts: wire.pack({"ids": list(ids), "partitions": sorted(parts), "vectors": with_vectors},
                                           np.zeros((0,), dtype=np.float32)),
            decode=decode_documents)
        documents: dict[str, Mapping[str, Any]] = {}
        vectors: dict[str, np.ndarray] = {}
        for answer in answers:
            documents.update(answer.documents)
            vectors.update(answer.vectors)
        return DocumentsResult(documents, _coverage(answers, self.partitions), vectors)

    async def _local_documents_async(self, ids: Sequence[str], partitions: set[int],
                                     with_vectors: bool) -> LocalDocuments:
        return self.local_documents(ids, partitions, with_vectors)

    def local_documents(self, ids: Sequence[str], partitions: set[int], with_vectors: bool) -> LocalDocuments:
        answering = partitions & self._answerable()
        found = self.table.documents(ids, answering)
        documents = {doc_id: {"id": doc_id, "metadata": record.metadata, "version": record.version,
                              "ts": record.ts, "text": record.text} for doc_id, (_, record) in found.items()}
        vectors = {doc_id: record.vector for doc_id, (_, record) in found.items()} if with_vectors else {}
        return LocalDocuments(documents, vectors, sorted(answering))

    # ---- stats and readiness --------------------------------------------------------------

    async def stats(self, extras: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The group's stats; ``extras()`` is what a worker adds about itself (its identity,
        readiness, consumer lag, query cache, ``embeddings_reused``)."""
        async def local() -> dict[str, Any]:
            return self.local_stats(extras())
        answers = await self.fanout.ask("/internal/stats", b"{}", "application/json", local, orjson.loads)
        return self._merge_stats(answers)

    def local_stats(self, extras: dict[str, Any]) -> dict[str, Any]:
        """This worker's report: for its active partitions documents and outcomes; the same for the
        standby copies that may answer (the group's stats use them for a partition no active owner
        reported, as while a dead worker's partitions move)."""
        copies = self.table.copies()
        actives = {p for p, c in copies.items() if c.active and c.built}
        standbys = {p for p, c in copies.items() if not c.active and _may_answer(c, self.max_standby_lag)}
        outcomes = {p: self.table.progress(p).counts() for p in sorted(actives)}
        reused = extras.pop("embeddings_reused", 0)
        return {"partitions": sorted(actives), "documents": {str(p): n for p, n in self.table.counts(actives).items()},
                "standbys": {str(p): {"built": c.built, "lag": c.lag, "documents": self.table.index.count(p)}
                             for p, c in sorted(copies.items()) if not c.active},
                "standby_outcomes": {str(p): self.table.progress(p).counts() for p in sorted(standbys)},
                "outcomes": _outcome_report(outcomes, reused), **extras}

    def _merge_stats(self, answers: list[Answer[dict[str, Any]]]) -> dict[str, Any]:
        """Each partition's outcomes (kept in the changelog, counted since the app id's first event)
        and documents come from the worker owning it, or else from a standby copy that may answer;
        a partition two report while it moves counts once."""
        per_partition: dict[str, dict[str, Any]] = {}
        bodies = [answer.body for answer in answers if answer.body]
        for body in bodies:
            for partition, counts in body["outcomes"]["partitions"].items():
                per_partition.setdefault(partition, {**counts, "documents": body["documents"].get(partition, 0)})
        for body in bodies:
            for partition, counts in body.get("standby_outcomes", {}).items():
                per_partition.setdefault(partition, {**counts, "documents": body["standbys"][partition]["documents"]})
        totals: dict[str, Any] = {name: 0 for name in OUTCOMES}
        reasons: dict[str, Any] = {}
        for counts in per_partition.values():
            _add_counts(totals, {name: counts[name] for name in OUTCOMES})
            _add_counts(reasons, counts["dead_letter_reasons"])
        answered = sorted(int(p) for p in per_partition)
        coverage = Coverage(tuple(answered), tuple(sorted(set(range(self.partitions)) - set(answered))))
        return {"documents": sum(p["documents"] for p in per_partition.values()), "outcomes": totals,
                "dead_letter_reasons": reasons, "lag": sum(body.get("lag", 0) for body in bodies),
                "per_partition": dict(sorted(per_partition.items(), key=lambda item: int(item[0]))),
                **coverage.json(),
                "workers": {a.url: a.body if a.body else {"error": a.error} for a in answers}}

    def group_holds_everything(self) -> bool:
        """Whether the group's latest assignment gives every partition an active owner."""
        owned = {p for parts in self.fanout.owners().values() for p in parts}
        return owned >= set(range(self.partitions))

    # ---- planning -------------------------------------------------------------------------

    def _answerable(self) -> set[int]:
        """Partitions whose copy here may answer: active, or a standby close enough to the changelog."""
        return {p for p, c in self.table.copies().items() if _may_answer(c, self.max_standby_lag)}

    def _plan(self, after: Mapping[int, int]) -> tuple[set[int], dict[str, set[int]]]:
        """Partitions answered here, and those asked of each other worker (their active owners)."""
        copies = self.table.copies()
        local = {p for p, c in copies.items() if _may_answer(c, self.max_standby_lag)
                 and (c.active or p not in after or self._caught_up_with(c, after[p]))}
        remaining = set(range(self.partitions)) - local
        remote: dict[str, set[int]] = {}
        for url, owned in sorted(self.fanout.owners(exclude_self=True).items(), key=lambda item: -len(item[1])):
            asked = owned & remaining
            if asked:
                remote[url] = asked
                remaining -= asked
        # A partition no other worker owns (the group is rebalancing) is still answered by a
        # standby here that has caught up enough.
        local |= {p for p in remaining if p in copies and _may_answer(copies[p], self.max_standby_lag)}
        return local, remote

    async def _gather(self, path: str, after: Mapping[int, int], *,
                      local: Callable[[set[int]], Awaitable[Any]], remote: Callable[[set[int]], bytes],
                      decode: Callable[[bytes], Any]) -> list[Any]:
        """Ask this worker and the workers the plan names; the answers that came back."""
        here, there = self._plan(after)
        requests = {url: remote(parts) for url, parts in there.items()}
        answers = await self.fanout.ask_each(path, requests, wire.CONTENT_TYPE, decode,
                                             local=lambda: local(here) if here else _nothing())
        for answer in answers:
            if answer.status == ResponseTooLarge.status:  # the caller must ask for less, not get a partial answer
                raise ResponseTooLarge(f"worker {answer.url}: {answer.error}")
        return [answer.body for answer in answers if answer.body is not None]

    async def _caught_up(self, partitions: set[int], after: Mapping[int, int]) -> tuple[set[int], set[int]]:
        """Which of ``partitions`` this worker answers now, and which it holds but are still
        behind ``after`` once the read wait is over."""
        deadline = time.monotonic() + self.read_wait
        while True:
            copies = self.table.copies()
            answering = {p for p in partitions if p in copies and _may_answer(copies[p], self.max_standby_lag)}
            behind = {p for p in answering if p in after and not self._caught_up_with(copies[p], after[p])}
            if not behind or time.monotonic() >= deadline:
                return answering - behind, behind
            await asyncio.sleep(_POLL)

    def _caught_up_with(self, copy: Copy, offset: int) -> bool:
        return copy.applied.done(self.events_topic, offset)


@dataclass(frozen=True)
class LocalDocuments:
    documents: Mapping[str, Mapping[str, Any]]
    vectors: Mapping[str, np.ndarray]
    partitions: list[int]


class ResponseTooLarge(RequestError):
    """The answer would carry more than ``STREAMVEC_MAX_RESPONSE_BYTES``."""

    status = 413

    def __init__(self, message: str) -> None:
        super().__init__(message, status=self.status)


class ResponseBudget:
    """The bytes of text and metadata an answer may still carry."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.left = limit

    def spend(self, metadata: Mapping[str, Any] | None, text: str | None) -> None:
        if metadata:
            self.left -= len(orjson.dumps(metadata, default=dict))  # the index hands out read-only views
        if text:
            self.left -= len(text.encode())
        if self.left < 0:
            raise ResponseTooLarge(f"the answer would carry more than STREAMVEC_MAX_RESPONSE_BYTES ({self.limit:,} "
                                   'bytes) of text and metadata; ask for fewer results (k) or queries, or leave '
                                   'text out with "include": ["metadata"]')


async def _nothing() -> None:
    return None


def _may_answer(copy: Copy, max_lag: int) -> bool:
    return copy.built and (copy.active or copy.lag <= max_lag)


def _found(hit: Hit) -> Found:
    return Found(hit.id, hit.score, hit.partition, hit.metadata, hit.text)


def _coverage(answers: Sequence[LocalResult | LocalDocuments], partitions: int) -> Coverage:
    answered = sorted({p for answer in answers for p in answer.partitions})
    behind = sorted({p for answer in answers if isinstance(answer, LocalResult) for p in answer.behind}
                    - set(answered))
    return Coverage(tuple(answered), tuple(sorted(set(range(partitions)) - set(answered))), tuple(behind))


def _outcome_report(per_partition: Mapping[int, dict[str, Any]], embeddings_reused: int) -> dict[str, Any]:
    """A worker's outcome counts: per active partition, in total, and dead letters by reason."""
    total: dict[str, Any] = {name: 0 for name in OUTCOMES}
    reasons: dict[str, Any] = {}
    for counts in per_partition.values():
        _add_counts(total, {name: counts[name] for name in OUTCOMES})
        _add_counts(reasons, counts["dead_letter_reasons"])
    return {"total": total, "dead_letter_reasons": reasons, "embeddings_reused": embeddings_reused,
            "partitions": {str(p): counts for p, counts in per_partition.items()}}


def _add_counts(into: dict[str, Any], counts: Mapping[str, Any]) -> None:
    """``into += counts`` for nested dicts of integers."""
    for name, value in counts.items():
        if isinstance(value, Mapping):
            _add_counts(into.setdefault(name, {}), value)
        elif isinstance(value, int):
            into[name] = into.get(name, 0) + value


def not_found_message(doc_id: str, coverage: Coverage) -> str:
    if coverage.partial:
        return (f"document {doc_id!r} not found, but partitions {list(coverage.missing)} "
                "did not answer; retry when the group has settled")
    return f"document {doc_id!r} not found"


# ---- the frames between workers ----------------------------------------------------------

def encode_answer(result: LocalResult) -> bytes:
    hits = [[[h.id, h.partition, None if h.metadata is None else dict(h.metadata), h.text] for h in row]
            for row in result.hits]
    scores = np.array([h.score for row in result.hits for h in row], dtype=np.float32)
    return wire.pack({"partitions": result.partitions, "behind": result.behind, "hits": hits}, scores)


def decode_answer(frame: bytes) -> LocalResult:
    header, scores = wire.unpack(frame)
    flat = iter(scores.tolist())
    return LocalResult(hits=[[Hit(doc_id, next(flat), partition, metadata, text)
                              for doc_id, partition, metadata, text in row] for row in header["hits"]],
                       partitions=header["partitions"], behind=header["behind"])


def encode_documents(found: LocalDocuments) -> bytes:
    ids = list(found.vectors)
    vectors = np.stack([found.vectors[i] for i in ids]) if ids else np.zeros((0,), dtype=np.float32)
    return wire.pack({"documents": found.documents, "vector_ids": ids, "partitions": found.partitions}, vectors)


def decode_documents(frame: bytes) -> LocalDocuments:
    header, vectors = wire.unpack(frame)
    return LocalDocuments(header["documents"], dict(zip(header["vector_ids"], vectors, strict=False)),
                          header["partitions"])
