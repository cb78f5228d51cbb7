"""What the query engine is asked: one validated query, and a row of work for one worker.

:mod:`app.http.requests` builds these from HTTP bodies; :mod:`app.search.wire` carries rows
between workers. They live here, beside the engine, so the engine imports nothing of HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from index.ann.filters import FilterError, Predicate, compile_filter
from index.exceptions import StreamvecError


class RequestError(StreamvecError, ValueError):
    """A request the client must fix; answered with ``status`` and the message."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


INCLUDE_ALL = ("metadata", "text")


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
    include: tuple[str, ...] = INCLUDE_ALL


@dataclass(frozen=True)
class Row:
    """What a worker needs to answer one query row: rows alike share one search. The filter is
    kept as canonical JSON (rows compare by it); its compiled predicate travels along locally,
    so a filter is compiled once per worker that answers."""

    k: int
    ef: int | None
    filter: str | None
    include: tuple[str, ...]
    predicate: Predicate | None = field(default=None, compare=False, hash=False)

    @classmethod
    def of(cls, query: SearchRequest, extra: int = 0) -> Row:
        spec = None if query.filter is None else orjson.dumps(query.filter, option=orjson.OPT_SORT_KEYS).decode()
        return cls(query.k + extra, query.ef, spec, query.include, query.predicate)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Row:
        spec = body["filter"]
        return cls(int(body["k"]), body["ef"], spec, tuple(body["include"]),
                   None if spec is None else parse_filter(orjson.loads(spec)))

    def json(self) -> dict[str, Any]:
        return {"k": self.k, "ef": self.ef, "filter": self.filter, "include": list(self.include)}


def parse_filter(spec: Mapping[str, Any] | None) -> Predicate | None:
    try:
        return None if spec is None else compile_filter(spec)
    except FilterError as exc:
        raise RequestError(str(exc)) from None
