"""HTTP API of every worker (docs/architecture.md "Contracts"): search, documents, health, stats.

Thin aiohttp views: each parses its request (:mod:`app.http.requests`), asks the
:class:`~app.search.service.SearchService`, and renders the frozen result. The service decides
which workers answer for which partitions; ``/internal/*`` is what one worker answers for
another, in the binary frames of :mod:`app.search.wire`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from app.http import page
from app.search import wire
from app.http.auth import OPEN_PATHS, auth_middleware
from app.search.secret import ClusterSecret
from app.http.latest import LatestRecords, parse_limit
from app.metrics import Metrics
from app.search.query import RequestError, Row
from app.http.requests import parse_batch, parse_ids, parse_search, query_params
from app.http.responses import json_response, rendered
from app.search.service import SearchService, encode_answer, encode_documents, not_found_message
from app.http.uses import UseCaseViews

logger = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_STARTED = time.time()


@dataclass(frozen=True)
class WorkerFacts:
    """What the views report about this worker besides the service's answers."""

    dim: int
    latest: LatestRecords
    dead_letter_topic: str
    readiness: Callable[[], dict[str, Any]]
    report: Callable[[], dict[str, Any]]  # what this worker adds to its stats (see SearchService.stats)
    openapi: dict[str, Any]


def register_views(web_app: web.Application, service: SearchService, facts: WorkerFacts, metrics: Metrics,
                   api_key: str, secret: ClusterSecret, uses: UseCaseViews) -> None:
    api = Api(service, facts, metrics, uses)
    web_app.middlewares.extend([json_errors, auth_middleware(api_key, secret, OPEN_PATHS | page.PATHS)])
    routes = web_app.router
    # Before Faust's own routes (added when its web server starts): ours answer "/".
    page.register_page(routes)
    routes.add_post("/search", api.search_post)
    routes.add_get("/search", api.search_get)
    routes.add_post("/search/batch", api.search_batch)
    routes.add_get("/documents/{id}", api.document)
    routes.add_post("/documents/batch", api.documents)
    routes.add_get("/health", api.health)
    routes.add_get("/ready", api.ready)
    routes.add_get("/stats", api.stats)
    routes.add_get("/dead-letters", api.dead_letters)
    routes.add_get("/metrics", api.metrics_view)
    routes.add_get("/openapi.json", api.openapi)
    routes.add_get("/alerts", uses.alerts)
    routes.add_post("/watchlist/check", uses.watchlist_check)
    routes.add_get("/recommendations/{user:.+}", uses.recommendations)
    routes.add_post("/internal/search", api.internal_search)
    routes.add_post("/internal/profile", uses.internal_profile)
    routes.add_post("/internal/document", api.internal_document)
    routes.add_post("/internal/stats", api.internal_stats)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error is JSON ``{"error": …}``: a client mistake is a 4xx that says what to fix."""
    try:
        return await handler(request)
    except RequestError as exc:
        return json_response({"error": str(exc)}, status=exc.status)
    except wire.FrameError as exc:
        return json_response({"error": str(exc)}, status=400)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return json_response({"error": exc.reason}, status=exc.status, headers=_allow(exc))
    except Exception:
        logger.exception("%s %s failed", request.method, request.path)
        return json_response({"error": "internal error; the worker log has the details"}, status=500)


class Api:
    """The views."""

    def __init__(self, service: SearchService, facts: WorkerFacts, metrics: Metrics, uses: UseCaseViews) -> None:
        self.service = service
        self.facts = facts
        self.metrics = metrics
        self.uses = uses

    # ---- public ---------------------------------------------------------------------

    async def search_post(self, request: web.Request) -> web.Response:
        query, after = parse_search(await request.read(), self.facts.dim)
        return json_response(rendered(await self.service.search([query], after), single=True))

    async def search_get(self, request: web.Request) -> web.Response:
        query, after = parse_search(query_params(request.query), self.facts.dim)
        return json_response(rendered(await self.service.search([query], after), single=True))

    async def search_batch(self, request: web.Request) -> web.Response:
        queries, after = parse_batch(await request.read(), self.facts.dim)
        return json_response(rendered(await self.service.search(queries, after, endpoint="batch"), single=False))

    async def document(self, request: web.Request) -> web.Response:
        doc_id = request.match_info["id"]
        found = await self.service.documents([doc_id])
        if doc_id not in found.documents:
            return json_response({"error": not_found_message(doc_id, found.coverage), **found.coverage.json()},
                         status=503 if found.coverage.partial else 404)
        return json_response({**found.documents[doc_id], **found.coverage.json()})

    async def documents(self, request: web.Request) -> web.Response:
        ids = parse_ids(await request.read())
        found = await self.service.documents(ids)
        return json_response({"documents": [found.documents.get(doc_id) for doc_id in ids], **found.coverage.json()})

    async def health(self, request: web.Request) -> web.Response:
        return json_response({"status": "alive"})

    async def ready(self, request: web.Request) -> web.Response:
        state = self.facts.readiness()
        return json_response(state, status=200 if state["ready"] else 503)

    async def stats(self, request: web.Request) -> web.Response:
        stats = await self.service.stats(self._report)
        reports = [body for body in stats["workers"].values() if "error" not in body]
        return json_response({**stats, **self.uses.merge_reports(reports)})

    async def dead_letters(self, request: web.Request) -> web.Response:
        letters = await self.facts.latest.dead_letters(self.facts.dead_letter_topic, parse_limit(request.query))
        return json_response({"dead_letters": letters})

    async def metrics_view(self, request: web.Request) -> web.Response:
        body, content_type = self.metrics.render()
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def openapi(self, request: web.Request) -> web.Response:
        return json_response(self.facts.openapi)

    # ---- internal: what this worker answers for another -----------------------------------

    async def internal_search(self, request: web.Request) -> web.Response:
        header, vectors = wire.unpack(await request.read())
        rows = [Row.from_json(row) for row in header["rows"]]
        after = {int(p): int(o) for p, o in header["after"].items()}
        result = await self.service.answer(vectors, rows, set(header["partitions"]), after)
        return web.Response(body=encode_answer(result), content_type=wire.CONTENT_TYPE)

    async def internal_document(self, request: web.Request) -> web.Response:
        header, _ = wire.unpack(await request.read())
        found = self.service.local_documents([str(i) for i in header["ids"]], set(header["partitions"]),
                                             bool(header["vectors"]))
        return web.Response(body=encode_documents(found), content_type=wire.CONTENT_TYPE)

    async def internal_stats(self, request: web.Request) -> web.Response:
        return json_response(self.service.local_stats(self._report()))

    def _report(self) -> dict[str, Any]:
        return {**self.facts.report(), **self.facts.readiness(), "pid": os.getpid(), "started": _STARTED}


def _allow(exc: web.HTTPException) -> dict[str, str]:
    """405 answers keep their ``Allow`` header: clients and schema checkers rely on it."""
    return {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {}
