"""HTTP API of every worker (DESIGN.md, Contracts): search, documents, health, stats.

Public endpoints answer for the whole group: they fan out to every member's
``/internal/*`` endpoint (or call this worker's own handler directly) and merge.
Search traffic between workers uses the binary frames of :mod:`app.http.wire`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
from aiohttp import web

from app.http import wire
from app.http.auth import ClusterSecret, auth_middleware
from app.http.fanout import Answer, FanOut
from app.http.openapi import build_openapi
from app.http.requests import (RequestError, SearchRequest, parse_batch, parse_filter, parse_ids, parse_search,
                               parse_watchlist_check, query_params, recommendation_params)
from index import health
from index.partition import Hit
from index.profiles import decode_profile
from index.progress import OUTCOMES
from tables.vectors import LocalResult, merge_hits

if TYPE_CHECKING:
    from app.factory import Streamvec

logger = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_STARTED = time.time()


def register_views(parts: Streamvec) -> None:
    settings = parts.settings
    secret = ClusterSecret(settings.cluster_secret, settings.broker_url, settings.cluster_secret_topic)
    api = Api(parts, secret)
    # Fetched at start, not on the first query: the first fan-out should not wait for Kafka.
    parts.app.task(secret.get)
    web_app = parts.app.web.web_app
    web_app.middlewares.extend([json_errors, auth_middleware(settings.api_key, secret)])
    routes = web_app.router
    routes.add_post("/search", api.search_post)
    routes.add_get("/search", api.search_get)
    routes.add_post("/search/batch", api.search_batch)
    routes.add_get("/documents/{id}", api.document)
    routes.add_post("/documents/batch", api.documents)
    routes.add_get("/health", api.health)
    routes.add_get("/ready", api.ready)
    routes.add_get("/stats", api.stats)
    routes.add_get("/metrics", api.metrics_view)
    routes.add_get("/openapi.json", api.openapi)
    routes.add_post("/watchlist/check", api.watchlist_check)
    routes.add_get("/recommendations/{user:.+}", api.recommendations)
    routes.add_post("/internal/search", api.internal_search)
    routes.add_post("/internal/profile", api.internal_profile)
    routes.add_post("/internal/document", api.internal_document)
    routes.add_post("/internal/stats", api.internal_stats)
    web_app.on_cleanup.append(api.on_cleanup)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error is JSON ``{"error": …}``: a client mistake is a 4xx that says what to fix."""
    try:
        return await handler(request)
    except RequestError as exc:
        return web.json_response({"error": str(exc)}, status=exc.status)
    except wire.FrameError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return web.json_response({"error": exc.reason}, status=exc.status, headers=_allow(exc))
    except Exception:
        logger.exception("%s %s failed", request.method, request.path)
        return web.json_response({"error": "internal error; the worker log has the details"}, status=500)


class Api:
    """The views; each public one merges the members' answers."""

    def __init__(self, parts: Streamvec, secret: ClusterSecret) -> None:
        self.parts = parts
        self.fanout = FanOut(parts.app, parts.settings.fanout_timeout, secret)
        self.metrics = parts.metrics
        self._search_threads = os.cpu_count() or 2
        self._search_pool = ThreadPoolExecutor(max_workers=self._search_threads, thread_name_prefix="search")
        self._openapi = build_openapi(parts.embedding.dim, protected=bool(parts.settings.api_key))

    async def on_cleanup(self, web_app: web.Application) -> None:
        await self.fanout.close()
        self._search_pool.shutdown(wait=False)

    # ---- public ---------------------------------------------------------------------

    async def search_post(self, request: web.Request) -> web.Response:
        query = parse_search(await request.read(), self.parts.embedding.dim)
        return web.json_response(await self._answer("search", [query], single=True))

    async def search_get(self, request: web.Request) -> web.Response:
        query = parse_search(query_params(request.query), self.parts.embedding.dim)
        return web.json_response(await self._answer("search", [query], single=True))

    async def search_batch(self, request: web.Request) -> web.Response:
        queries = parse_batch(await request.read(), self.parts.embedding.dim)
        return web.json_response(await self._answer("batch", queries, single=False))

    async def document(self, request: web.Request) -> web.Response:
        doc_id = request.match_info["id"]
        found, coverage = await self._find_documents([doc_id], vectors=False)
        if doc_id not in found:
            return _not_found(doc_id, coverage)
        return web.json_response({**found[doc_id], **coverage})

    async def documents(self, request: web.Request) -> web.Response:
        ids = parse_ids(await request.read())
        found, coverage = await self._find_documents(ids, vectors=False)
        return web.json_response({"documents": [found.get(doc_id) for doc_id in ids], **coverage})

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def ready(self, request: web.Request) -> web.Response:
        state = self._readiness()
        return web.json_response(state, status=200 if state["ready"] else 503)

    async def stats(self, request: web.Request) -> web.Response:
        answers = await self.fanout.ask("/internal/stats", b"{}", "application/json", self._local_stats, json.loads)
        return web.json_response(self._merge_stats(answers))

    async def metrics_view(self, request: web.Request) -> web.Response:
        body, content_type = self.metrics.render()
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(self._openapi)

    async def watchlist_check(self, request: web.Request) -> web.Response:
        """Every worker holds the whole watchlist: this one answers alone."""
        text, vector = parse_watchlist_check(await request.read(), self.parts.embedding.dim)
        if vector is None:
            assert text is not None
            vector = await self.parts.embedding.embed_query(text)
        uses = self.parts.uses
        matches = [m for m in uses.watchlist.scores(vector) if m.score >= m.threshold]
        return web.json_response({
            "matches": [{"pattern": m.pattern, "score": m.score, "threshold": m.threshold, "labels": list(m.labels)}
                        for m in matches],
            "patterns": len(uses.watchlist), "loaded": uses.reader.loaded.is_set()})

    async def recommendations(self, request: web.Request) -> web.Response:
        """Search with the user's profile vector, leaving out the user's recent items."""
        user = request.match_info["user"]
        query = recommendation_params(user, request.query)
        answers = await self.fanout.ask("/internal/profile", json.dumps({"user": user}).encode(), "application/json",
                                        lambda: self._local_profile(user), json.loads)
        profile = next((a.body["profile"] for a in answers if a.body and a.body["profile"]), None)
        if profile is None:
            coverage = self._coverage(answers)
            message = f"user {user!r} has no profile to search with (no activity on an indexed item yet)"
            if coverage["partial"]:
                message += (f", but partitions {coverage['partitions']['missing']} did not answer; "
                            "retry when the group has settled")
            return web.json_response({"error": message, **coverage}, status=503 if coverage["partial"] else 404)
        recent = set(profile["recent"])
        search = dataclasses.replace(query, k=query.k + len(recent),
                                     vector=np.asarray(profile["vector"], dtype=np.float32))
        answer = await self._answer("recommendations", [search], single=True)
        answer["results"] = [hit for hit in answer["results"] if hit["id"] not in recent][:query.k]
        return web.json_response({"user": user, **answer, "profile_events": profile["events"]})

    # ---- internal: what one worker answers for its own partitions ---------------------

    async def internal_search(self, request: web.Request) -> web.Response:
        header, vectors = wire.unpack(await request.read())
        result = await self._local_search(vectors, header["rows"])
        return web.Response(body=_encode_local(result), content_type=wire.CONTENT_TYPE)

    async def internal_document(self, request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response(self._local_documents([str(doc_id) for doc_id in body["ids"]], bool(body["vectors"])))

    async def internal_stats(self, request: web.Request) -> web.Response:
        return web.json_response(await self._local_stats())

    async def internal_profile(self, request: web.Request) -> web.Response:
        return web.json_response(await self._local_profile(str((await request.json())["user"])))

    # ---- search ---------------------------------------------------------------------

    async def _answer(self, endpoint: str, queries: list[SearchRequest], single: bool) -> dict[str, Any]:
        started = time.perf_counter()
        with self.metrics.stage("embed"):
            vectors = np.stack(await asyncio.gather(*(self._query_vector(q) for q in queries)))
        # An `id` query asks for one more: the document itself is dropped from its own results.
        rows = [{"k": q.k + (q.id is not None), "ef": q.ef, "filter": q.filter} for q in queries]
        with self.metrics.stage("fanout"):
            answers = await self.fanout.ask("/internal/search", wire.pack({"rows": rows}, vectors), wire.CONTENT_TYPE,
                                            lambda: self._local_search(vectors, rows), _decode_local)
        with self.metrics.stage("merge"):
            results = []
            for position, query in enumerate(queries):
                hits = merge_hits([a.body.hits[position] for a in answers if a.body], rows[position]["k"])
                results.append([_hit_json(h) for h in hits if h.id != query.id][:query.k])
        took = time.perf_counter() - started
        self.metrics.observe_query(endpoint, took)
        return {"results": results[0] if single else results, **self._coverage(answers),
                "took_ms": round(took * 1000, 3)}

    async def _local_search(self, vectors: np.ndarray, rows: list[dict[str, Any]]) -> LocalResult:
        """Search this worker's partitions; rows with the same k, ef and filter share one call."""
        with self.metrics.stage("local_search"):
            groups: dict[str, list[int]] = defaultdict(list)
            for position, row in enumerate(rows):
                groups[json.dumps(row, sort_keys=True)].append(position)
            table = self.parts.table
            results = await asyncio.gather(*(
                table.search_local(vectors[positions], rows[positions[0]]["k"], rows[positions[0]]["ef"],
                                   parse_filter(rows[positions[0]]["filter"]), self._search_pool, self._search_threads)
                for positions in groups.values()))
            hits: list[list[Hit]] = [[] for _ in rows]
            for positions, result in zip(groups.values(), results, strict=True):
                for position, found in zip(positions, result.hits, strict=True):
                    hits[position] = found
            # Partitions searched by every group: a partition that moved mid-request is not claimed.
            searched = set.intersection(*(set(r.partitions) for r in results)) if results else set()
            return LocalResult(hits=hits, partitions=sorted(searched))

    async def _query_vector(self, query: SearchRequest) -> np.ndarray:
        if query.vector is not None:
            return query.vector
        if query.text is not None:
            return await self.parts.embedding.embed_query(query.text)
        assert query.id is not None
        found, coverage = await self._find_documents([query.id], vectors=True)
        if query.id not in found:
            raise RequestError(_not_found_message(query.id, coverage), status=503 if coverage["partial"] else 404)
        return np.asarray(found[query.id]["vector"], dtype=np.float32)

    # ---- documents and stats --------------------------------------------------------

    async def _find_documents(self, ids: list[str], vectors: bool) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
        """The stored documents among ``ids``, by id (with their vectors if asked), and the coverage."""
        async def local() -> dict[str, Any]:
            return self._local_documents(ids, vectors)
        answers = await self.fanout.ask("/internal/document", json.dumps({"ids": ids, "vectors": vectors}).encode(),
                                        "application/json", local, json.loads)
        found: dict[str, dict[str, Any]] = {}
        for answer in answers:
            if answer.body:
                found.update(answer.body["documents"])
        return found, self._coverage(answers)

    def _local_documents(self, ids: list[str], vectors: bool) -> dict[str, Any]:
        """The stored documents among ``ids`` in the partitions this worker serves."""
        documents = {}
        for doc_id in dict.fromkeys(ids):
            record = self.parts.table.record(doc_id)
            if record is not None:
                documents[doc_id] = {"id": doc_id, "metadata": record.metadata, "version": record.version,
                                     "ts": record.ts, "text": record.text}
                if vectors:
                    documents[doc_id]["vector"] = record.vector.tolist()
        return {"documents": documents, "partitions": sorted(self.parts.table.counts())}

    async def _local_profile(self, user: str) -> dict[str, Any]:
        """The user's profile if a partition this worker serves holds it; ``partitions``: the
        profile partitions it serves."""
        profiles = self.parts.uses.profiles
        stored = profiles.read(user)
        profile = None if stored is None else decode_profile(stored)
        vector = None if profile is None else profile.vector
        return {"profile": None if profile is None or vector is None else {
                    "vector": vector.tolist(), "events": profile.events, "recent": list(profile.recent)},
                "partitions": profiles.serving()}

    async def _local_stats(self) -> dict[str, Any]:
        counts = self.parts.table.counts()
        uses = self.parts.uses
        return {"partitions": sorted(counts), "documents": {str(p): n for p, n in counts.items()},
                "outcomes": _outcome_report(self.parts.table.outcomes(), self.parts.status.embeddings_reused),
                "query_cache": self.parts.embedding.cache_stats(),
                "alerts": uses.analysis.counts.snapshot(),
                "watchlist": {"patterns": len(uses.watchlist), "loaded": uses.reader.loaded.is_set()},
                "health": uses.health.snapshot(counts),
                "pid": os.getpid(), "started": _STARTED, **self._readiness()}

    def _merge_stats(self, answers: list[Answer[dict[str, Any]]]) -> dict[str, Any]:
        """Put the workers' reports together: each partition's outcomes (kept in the changelog,
        counted since the app id's first event) and documents from the worker serving it; a
        partition two workers report while it moves counts once."""
        per_partition: dict[str, dict[str, Any]] = {}
        for answer in answers:
            if not answer.body:
                continue
            for partition, counts in answer.body["outcomes"]["partitions"].items():
                per_partition.setdefault(partition, {**counts, "documents": answer.body["documents"].get(partition, 0)})
        totals: dict[str, Any] = {}
        reasons: dict[str, Any] = {}
        for counts in per_partition.values():
            _add_counts(totals, {name: n for name, n in counts.items() if name in OUTCOMES})
            _add_counts(reasons, counts["dead_letter_reasons"])
        return {**self._merge_use_cases([a.body for a in answers if a.body]),
            "documents": sum(p.get("documents", 0) for p in per_partition.values()),
            "outcomes": totals, "dead_letter_reasons": reasons,
            "per_partition": dict(sorted(per_partition.items(), key=lambda item: int(item[0]))),
            **self._coverage(answers),
            "workers": {a.url: a.body if a.body else {"error": a.error} for a in answers},
        }

    @staticmethod
    def _merge_use_cases(reports: list[dict[str, Any]]) -> dict[str, Any]:
        """Alerts summed; the watchlist as the worker that holds least of it; health per partition
        from the worker reporting it (the one serving it), and for the group."""
        alerts: dict[str, Any] = {"by_kind": {}, "by_label": {}}
        partition_health: dict[str, Any] = {}
        for report in reports:
            _add_counts(alerts, report["alerts"])
            partition_health.update(report["health"])
        watchlists = [report["watchlist"] for report in reports]
        return {"alerts": alerts,
                "watchlist": {"patterns": min((w["patterns"] for w in watchlists), default=0),
                              "loaded": bool(watchlists) and all(w["loaded"] for w in watchlists)},
                "health": {"partitions": dict(sorted(partition_health.items(), key=lambda item: int(item[0]))),
                           "last": health.combine(partition_health, "last"),
                           "current": health.combine(partition_health, "current")}}

    def _coverage(self, answers: list[Answer[Any]]) -> dict[str, Any]:
        """Which partitions answered; any missing one makes the answer partial."""
        answered = sorted({p for a in answers if a.body for p in _partitions(a.body)})
        missing = sorted(set(range(self.parts.settings.partitions)) - set(answered))
        return {"partial": bool(missing), "partitions": {"answered": answered, "missing": missing}}

    def _readiness(self) -> dict[str, Any]:
        app = self.parts.app
        recovered = app.tables.recovery.completed.is_set()
        indexes_built = self.parts.table.store.ready
        ingest = self.parts.status.report()
        watchlist_loaded = self.parts.uses.reader.loaded.is_set()
        return {"ready": recovered and indexes_built and watchlist_loaded and not app.rebalancing and ingest["flowing"],
                "recovered": recovered, "indexes_built": indexes_built, "rebalancing": app.rebalancing,
                "ingest": ingest, "watchlist_loaded": watchlist_loaded}


def _outcome_report(per_partition: Mapping[int, dict[str, Any]], embeddings_reused: int) -> dict[str, Any]:
    """A worker's outcome counts: per partition it serves, in total, and dead letters by reason."""
    total: dict[str, Any] = {name: 0 for name in OUTCOMES}
    reasons: dict[str, Any] = {}
    for counts in per_partition.values():
        _add_counts(total, {name: counts[name] for name in OUTCOMES})
        _add_counts(reasons, counts["dead_letter_reasons"])
    return {"total": total, "dead_letter_reasons": reasons, "embeddings_reused": embeddings_reused,
            "partitions": {str(p): counts for p, counts in per_partition.items()}}


def _partitions(body: LocalResult | Mapping[str, Any]) -> list[int]:
    return body.partitions if isinstance(body, LocalResult) else body["partitions"]


def _add_counts(into: dict[str, Any], counts: Mapping[str, Any]) -> None:
    """``into += counts`` for nested dicts of integers."""
    for name, value in counts.items():
        if isinstance(value, Mapping):
            _add_counts(into.setdefault(name, {}), value)
        elif isinstance(value, int):
            into[name] = into.get(name, 0) + value


def _hit_json(hit: Hit) -> dict[str, Any]:
    return {"id": hit.id, "score": hit.score, "metadata": dict(hit.metadata)}


def _encode_local(result: LocalResult) -> bytes:
    hits = [[[h.id, dict(h.metadata)] for h in row] for row in result.hits]
    scores = np.array([h.score for row in result.hits for h in row], dtype=np.float32)
    return wire.pack({"partitions": result.partitions, "hits": hits}, scores)


def _decode_local(frame: bytes) -> LocalResult:
    header, scores = wire.unpack(frame)
    flat = iter(scores.tolist())
    return LocalResult(hits=[[Hit(doc_id, next(flat), metadata) for doc_id, metadata in row] for row in header["hits"]],
                       partitions=header["partitions"])


def _allow(exc: web.HTTPException) -> dict[str, str]:
    """405 answers keep their ``Allow`` header: clients and schema checkers rely on it."""
    return {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {}


def _not_found_message(doc_id: str, coverage: dict[str, Any]) -> str:
    if coverage["partial"]:
        return (f"document {doc_id!r} not found, but partitions {coverage['partitions']['missing']} "
                "did not answer; retry when the group has settled")
    return f"document {doc_id!r} not found"


def _not_found(doc_id: str, coverage: dict[str, Any]) -> web.Response:
    status = 503 if coverage["partial"] else 404
    return web.json_response({"error": _not_found_message(doc_id, coverage), **coverage}, status=status)
