"""Validation of HTTP search requests: bad input becomes a 400 that says what is wrong."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from index.exceptions import StreamvecError, VectorError
from index.filters import FilterError, Predicate, compile_filter
from index.vectors import unit_vector

MAX_K = 1000
MAX_EF = 10_000
_SEARCH_FIELDS = frozenset({"text", "vector", "id", "k", "filter", "ef"})


class RequestError(StreamvecError, ValueError):
    """A request the client must fix; answered with ``status`` and the message."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class SearchRequest:
    """One similarity query; exactly one of ``text``, ``vector`` and ``id`` is set."""

    k: int
    text: str | None = None
    vector: np.ndarray | None = None
    id: str | None = None
    ef: int | None = None
    filter: Mapping[str, Any] | None = None
    predicate: Predicate | None = None


def parse_search(body: Any, dim: int) -> SearchRequest:
    """Validate a ``POST /search`` body (also used for ``GET /search`` parameters)."""
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    unknown = set(body) - _SEARCH_FIELDS
    if unknown:
        raise RequestError(f"unknown field(s) {sorted(unknown)}; allowed: {sorted(_SEARCH_FIELDS)}")
    given = [name for name in ("text", "vector", "id") if body.get(name) is not None]
    if len(given) != 1:
        raise RequestError('give exactly one of "text", "vector" or "id"')
    k = _int_in(body, "k", 10, 1, MAX_K)
    ef = _int_in(body, "ef", None, 1, MAX_EF)
    spec = body.get("filter")
    try:
        predicate = None if spec is None else compile_filter(spec)
    except FilterError as exc:
        raise RequestError(str(exc)) from None
    text, doc_id = body.get("text"), body.get("id")
    if text is not None and not isinstance(text, str):
        raise RequestError('"text" must be a string')
    if doc_id is not None and (not isinstance(doc_id, str) or not doc_id):
        raise RequestError('"id" must be a non-empty string')
    vector = None if body.get("vector") is None else parse_vector(body["vector"], dim)
    return SearchRequest(k=k, text=text, vector=vector, id=doc_id, ef=ef, filter=spec, predicate=predicate)


def parse_vector(raw: Any, dim: int) -> np.ndarray:
    try:
        return unit_vector(raw, dim)
    except VectorError as exc:
        raise RequestError(str(exc)) from None


def query_params(query: Mapping[str, str]) -> dict[str, Any]:
    """``GET /search?q=…&k=…&ef=…`` as a search body."""
    unknown = set(query) - {"q", "k", "ef"}
    if unknown:
        raise RequestError(f"unknown parameter(s) {sorted(unknown)}; allowed: q, k, ef")
    if "q" not in query:
        raise RequestError('parameter "q" (the query text) is required')
    body: dict[str, Any] = {"text": query["q"]}
    for name in ("k", "ef"):
        if name in query:
            try:
                body[name] = int(query[name])
            except ValueError:
                raise RequestError(f'parameter "{name}" must be an integer, got {query[name]!r}') from None
    return body


def _int_in(body: Mapping[str, Any], name: str, default: int | None, low: int, high: int) -> Any:
    value = body.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RequestError(f'"{name}" must be an integer from {low} to {high}, got {value!r}')
    return value
