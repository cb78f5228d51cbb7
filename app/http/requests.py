"""Validation of HTTP requests: bad input becomes a 4xx whose message says what is wrong.

The shapes come from :mod:`app.http.models`; this module adds what a schema cannot say (the
vector dimension of the loaded model, the filter language) and turns pydantic's errors
into one readable sentence.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ValidationError

from app.http.models import (MAX_EF, MAX_ID, MAX_K, MAX_QUERY_PARAM, BatchSearchBody, DocumentsBody, SearchBody,
                             WatchlistCheckBody)
from index.exceptions import StreamvecError, VectorError
from index.filters import FilterError, Predicate, compile_filter
from index.vectors import unit_vector


class RequestError(StreamvecError, ValueError):
    """A request the client must fix; answered with ``status`` and the message."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class SearchRequest:
    """One validated query; exactly one of ``text``, ``vector`` and ``id`` is set."""

    k: int
    text: str | None = None
    vector: np.ndarray | None = None
    id: str | None = None
    ef: int | None = None
    filter: Mapping[str, Any] | None = None
    predicate: Predicate | None = None


def parse_search(body: bytes | Mapping[str, Any], dim: int) -> SearchRequest:
    """A ``POST /search`` body (raw JSON) or ``GET /search`` parameters, validated."""
    return _checked(_validated(SearchBody, body), dim)


def parse_batch(body: bytes, dim: int) -> list[SearchRequest]:
    """A ``POST /search/batch`` body; the first bad query names its position."""
    batch = _validated(BatchSearchBody, body)
    requests = []
    for position, query in enumerate(batch.queries):
        try:
            requests.append(_checked(query, dim))
        except RequestError as exc:
            raise RequestError(f"queries[{position}]: {exc}") from None
    return requests


def parse_ids(body: bytes) -> list[str]:
    """A ``POST /documents/batch`` body: the ids, in request order."""
    return list(_validated(DocumentsBody, body).ids)


def parse_watchlist_check(body: bytes, dim: int) -> tuple[str | None, np.ndarray | None]:
    """A ``POST /watchlist/check`` body: ``(text, None)`` or ``(None, unit vector)``."""
    check = _validated(WatchlistCheckBody, body)
    return check.text, None if check.vector is None else parse_vector(check.vector, dim)


def recommendation_params(user: str, query: Mapping[str, str]) -> SearchRequest:
    """``GET /recommendations/{user}?k=…&ef=…&filter=…`` as a search request still without its
    vector: the view sets the user's profile vector."""
    if len(user) > MAX_ID:
        raise RequestError(f"the user id is longer than {MAX_ID} characters")
    unknown = set(query) - {"k", "ef", "filter"}
    if unknown:
        raise RequestError(f"unknown parameter(s) {sorted(unknown)}; allowed: k, ef, filter")
    if len(query.get("filter", "")) > MAX_QUERY_PARAM:
        raise RequestError(f'parameter "filter" is longer than {MAX_QUERY_PARAM} characters')
    numbers = {"k": 10}
    for name, most in (("k", MAX_K), ("ef", MAX_EF)):
        if name in query:
            try:
                numbers[name] = int(query[name])
            except ValueError:
                raise RequestError(f'parameter "{name}" must be an integer, got {query[name]!r}') from None
            if not 1 <= numbers[name] <= most:
                raise RequestError(f'parameter "{name}" must be from 1 to {most}, got {numbers[name]}')
    spec = None
    if "filter" in query:
        try:
            spec = json.loads(query["filter"])
        except ValueError:
            raise RequestError('parameter "filter" must be a JSON object, e.g. {"category": "food"}') from None
        if not isinstance(spec, dict):
            raise RequestError('parameter "filter" must be a JSON object, e.g. {"category": "food"}')
    return SearchRequest(k=numbers["k"], ef=numbers.get("ef"), filter=spec, predicate=parse_filter(spec))


def parse_vector(raw: Any, dim: int) -> np.ndarray:
    try:
        return unit_vector(raw, dim)
    except VectorError as exc:
        raise RequestError(str(exc)) from None


def parse_filter(spec: Mapping[str, Any] | None) -> Predicate | None:
    try:
        return None if spec is None else compile_filter(spec)
    except FilterError as exc:
        raise RequestError(str(exc)) from None


def query_params(query: Mapping[str, str]) -> dict[str, Any]:
    """``GET /search?q=…&k=…&ef=…`` as a search body."""
    unknown = set(query) - {"q", "k", "ef"}
    if unknown:
        raise RequestError(f"unknown parameter(s) {sorted(unknown)}; allowed: q, k, ef")
    if "q" not in query:
        raise RequestError('parameter "q" (the query text) is required')
    if len(query["q"]) > MAX_QUERY_PARAM:
        raise RequestError(f'parameter "q" is longer than {MAX_QUERY_PARAM} characters; send long queries with POST /search')
    body: dict[str, Any] = {"text": query["q"]}
    for name in ("k", "ef"):
        if name in query:
            try:
                body[name] = int(query[name])
            except ValueError:
                raise RequestError(f'parameter "{name}" must be an integer, got {query[name]!r}') from None
    return body


def _validated(model: type[BaseModel], body: bytes | Mapping[str, Any]) -> Any:
    try:
        if isinstance(body, bytes):
            return model.model_validate_json(body or b"null")
        return model.model_validate(body)
    except ValidationError as exc:
        raise RequestError(_describe(exc)) from None


def _checked(query: SearchBody, dim: int) -> SearchRequest:
    vector = None if query.vector is None else parse_vector(query.vector, dim)
    return SearchRequest(k=query.k, text=query.text, vector=vector, id=query.id, ef=query.ef,
                         filter=query.filter, predicate=parse_filter(query.filter))


def _describe(exc: ValidationError) -> str:
    """pydantic's errors as one line: ``"k": Input should be …; "extra": …``."""
    parts = []
    for error in exc.errors(include_url=False)[:5]:
        where = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        elif error["type"] == "json_invalid":
            message = "the request body is not valid JSON"
        elif error["type"] == "model_type" and not where:
            message = "the request body must be a JSON object"
        parts.append(f'"{where}": {message}' if where else message)
    more = exc.error_count() - 5
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")
