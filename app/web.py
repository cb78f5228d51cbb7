"""HTTP API of every worker (DESIGN.md, Contracts): search, documents, health, stats.

Public endpoints answer for the whole group: they fan out to every member's
``/internal/*`` endpoint (or call this worker's own handler directly) and merge.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
from aiohttp import web

from app.fanout import Answer, FanOut
from app.metrics import Metrics
from app.openapi import OPENAPI
from app.requests import RequestError, SearchRequest, parse_search, parse_vector, query_params
from index.filters import FilterError, compile_filter
from index.partition import Hit
from tables.vectors import merge_hits

if TYPE_CHECKING:
    from app.factory import Streamvec

logger = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def register_views(parts: Streamvec) -> None:
    api = Api(parts)
    web_app = parts.app.web.web_app
    web_app.middlewares.append(json_errors)
    routes = web_app.router
    routes.add_post("/search", api.search_post)
    routes.add_get("/search", api.search_get)
    routes.add_get("/documents/{id}", api.document)
    routes.add_get("/health", api.health)
    routes.add_get("/ready", api.ready)
    routes.add_get("/stats", api.stats)
    routes.add_get("/metrics", api.metrics_view)
    routes.add_get("/openapi.json", api.openapi)
    routes.add_post("/internal/search", api.internal_search)
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
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return web.json_response({"error": exc.reason}, status=exc.status)
    except Exception:
        logger.exception("%s %s failed", request.method, request.path)
        return web.json_response({"error": "internal error; the worker log has the details"}, status=500)


class Api:
    """The views; each public one merges the members' answers."""

    def __init__(self, parts: Streamvec) -> None:
        self.parts = parts
        self.fanout = FanOut(parts.app, parts.settings.fanout_timeout)
        self.metrics = Metrics(parts.table, parts.outcomes)
        self._search_pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="search")

    async def on_cleanup(self, web_app: web.Application) -> None:
        await self.fanout.close()
        self._search_pool.shutdown(wait=False)

    # ---- public ---------------------------------------------------------------------

    async def search_post(self, request: web.Request) -> web.Response:
        return web.json_response(await self.search(await _json_body(request)))

    async def search_get(self, request: web.Request) -> web.Response:
        return web.json_response(await self.search(query_params(request.query)))

    async def search(self, body: Any) -> dict[str, Any]:
        started = time.perf_counter()
        query = parse_search(body, self.parts.embedding.dim)
        vector = await self._query_vector(query)
        k = query.k + (1 if query.id is not None else 0)  # the document itself is not its own neighbour
        payload = {"vector": vector.tolist(), "k": k, "ef": query.ef, "filter": query.filter}
        answers = await self.fanout.ask("/internal/search", payload,
                                        lambda: self._local_search(vector, k, query.ef, query.predicate))
        hits = merge_hits([[Hit(**hit) for hit in a.body["hits"]] for a in answers if a.body], k)
        hits = [hit for hit in hits if hit.id != query.id][:query.k]
        self.metrics.observe_query(time.perf_counter() - started)
        return {
            "results": [{"id": h.id, "score": h.score, "metadata": h.metadata} for h in hits],
            **self._coverage(answers),
            "took_ms": round((time.perf_counter() - started) * 1000, 3),
        }

    async def document(self, request: web.Request) -> web.Response:
        doc_id = request.match_info["id"]
        document, coverage = await self._find_document(doc_id)
        if document is None:
            return _not_found(doc_id, coverage)
        document.pop("vector")
        return web.json_response({**document, **coverage})

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def ready(self, request: web.Request) -> web.Response:
        state = self._readiness()
        return web.json_response(state, status=200 if state["ready"] else 503)

    async def stats(self, request: web.Request) -> web.Response:
        answers = await self.fanout.ask("/internal/stats", {}, self._local_stats)
        partitions: dict[str, int] = {}
        outcomes: dict[str, int] = {}
        for answer in answers:
            if answer.body:
                partitions.update(answer.body["documents"])
                for name, count in answer.body["outcomes"]["total"].items():
                    outcomes[name] = outcomes.get(name, 0) + count
        return web.json_response({
            "documents": sum(partitions.values()),
            "partitions": dict(sorted(partitions.items(), key=lambda item: int(item[0]))),
            "outcomes": outcomes,
            **self._coverage(answers),
            "workers": {a.url: a.body if a.body else {"error": a.error} for a in answers},
        })

    async def metrics_view(self, request: web.Request) -> web.Response:
        body, content_type = self.metrics.render()
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(OPENAPI)

    # ---- internal: what one worker answers for its own partitions ---------------------

    async def internal_search(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        try:
            vector = parse_vector(body.get("vector"), self.parts.embedding.dim)
            predicate = None if body.get("filter") is None else compile_filter(body["filter"])
        except FilterError as exc:
            raise RequestError(str(exc)) from None
        return web.json_response(await self._local_search(vector, int(body["k"]), body.get("ef"), predicate))

    async def internal_document(self, request: web.Request) -> web.Response:
        return web.json_response(self._local_document(str((await _json_body(request))["id"])))

    async def internal_stats(self, request: web.Request) -> web.Response:
        return web.json_response(await self._local_stats())

    async def _local_search(self, vector: np.ndarray, k: int, ef: int | None, predicate: Any) -> dict[str, Any]:
        result = await asyncio.get_running_loop().run_in_executor(
            self._search_pool, self.parts.table.search_local, vector, k, ef, predicate)
        return {"hits": [{"id": h.id, "score": h.score, "metadata": dict(h.metadata)} for h in result.hits],
                "partitions": result.partitions}

    def _local_document(self, doc_id: str) -> dict[str, Any]:
        record = self.parts.table.record(doc_id)
        document = None if record is None else {
            "id": doc_id, "metadata": record.metadata, "version": record.version, "ts": record.ts,
            "vector": record.vector.tolist(),
        }
        return {"document": document, "partitions": sorted(self.parts.table.counts())}

    async def _local_stats(self) -> dict[str, Any]:
        counts = self.parts.table.counts()
        return {"partitions": sorted(counts), "documents": {str(p): n for p, n in counts.items()},
                "outcomes": self.parts.outcomes.snapshot(), "query_cache": self.parts.embedding.cache_stats(),
                **self._readiness()}

    # ---- helpers ----------------------------------------------------------------------

    async def _query_vector(self, query: SearchRequest) -> np.ndarray:
        if query.vector is not None:
            return query.vector
        if query.text is not None:
            return await self.parts.embedding.embed_query(query.text)
        assert query.id is not None
        document, coverage = await self._find_document(query.id)
        if document is None:
            raise RequestError(_not_found_message(query.id, coverage), status=404 if not coverage["partial"] else 503)
        return np.asarray(document["vector"], dtype=np.float32)

    async def _find_document(self, doc_id: str) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        answers = await self.fanout.ask("/internal/document", {"id": doc_id},
                                        lambda: _as_awaitable(self._local_document(doc_id)))
        found = next((a.body["document"] for a in answers if a.body and a.body["document"]), None)
        return found, self._coverage(answers)

    def _coverage(self, answers: list[Answer]) -> dict[str, Any]:
        """Which partitions answered; any missing one makes the answer partial."""
        answered = sorted({p for a in answers if a.body for p in a.body["partitions"]})
        missing = sorted(set(range(self.parts.settings.partitions)) - set(answered))
        return {"partial": bool(missing), "partitions": {"answered": answered, "missing": missing}}

    def _readiness(self) -> dict[str, Any]:
        app = self.parts.app
        recovered = app.tables.recovery.completed.is_set()
        indexes_built = self.parts.table.store.ready
        return {"ready": recovered and indexes_built and not app.rebalancing,
                "recovered": recovered, "indexes_built": indexes_built, "rebalancing": app.rebalancing}


async def _json_body(request: web.Request) -> Any:
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RequestError("the request body is not valid JSON") from None


async def _as_awaitable(value: dict[str, Any]) -> dict[str, Any]:
    return value


def _not_found_message(doc_id: str, coverage: dict[str, Any]) -> str:
    if coverage["partial"]:
        return (f"document {doc_id!r} not found, but partitions {coverage['partitions']['missing']} "
                "did not answer; retry when the group has settled")
    return f"document {doc_id!r} not found"


def _not_found(doc_id: str, coverage: dict[str, Any]) -> web.Response:
    status = 503 if coverage["partial"] else 404
    return web.json_response({"error": _not_found_message(doc_id, coverage), **coverage}, status=status)
