"""The event contract: what a producer may put on ``<app id>-events``.

``parse_event`` turns a Kafka key/value pair into an :class:`Event` or raises
:class:`EventError` with a stable ``reason`` code, so the ingest agent can count and
report bad input instead of crashing on it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from index.exceptions import StreamvecError, VectorError
from index.vectors import unit_vector

Op = Literal["upsert", "delete"]
_FIELDS = frozenset({"id", "text", "vector", "metadata", "version", "op", "ts"})


class EventError(StreamvecError, ValueError):
    """An event breaks the contract; ``reason`` is a stable code for counters and dead letters."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Event:
    """A validated event; ``vector`` is set when the producer brought its own."""

    id: str
    op: Op
    text: str | None = None
    vector: np.ndarray | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    version: int | None = None
    ts: float | None = None

    @property
    def text_hash(self) -> str | None:
        return None if self.text is None else hashlib.blake2b(self.text.encode(), digest_size=16).hexdigest()


def parse_event(key: bytes | None, value: bytes | None, dim: int) -> Event:
    """Validate one Kafka record against the event contract (DESIGN.md, Contracts)."""
    key_id = _decode_key(key)
    if value is None:
        if key_id is None:
            raise EventError("missing_key", "a tombstone (null value) needs the document id as its key")
        return Event(id=key_id, op="delete")
    body = _decode_json(value)
    unknown = set(body) - _FIELDS
    if unknown:
        raise EventError("unknown_field", f"unknown field(s) {sorted(unknown)}; allowed: {sorted(_FIELDS)}")
    doc_id = _check_id(body.get("id", key_id), key_id)
    op = body.get("op", "upsert")
    if op not in ("upsert", "delete"):
        raise EventError("bad_op", f'"op" must be "upsert" or "delete", got {op!r}')
    version = _optional(body, "version", int, "an integer")
    ts = _optional(body, "ts", (int, float), "a number")
    if op == "delete":
        return Event(id=doc_id, op="delete", version=version, ts=ts)
    metadata = body.get("metadata", {})
    if not isinstance(metadata, dict):
        raise EventError("bad_metadata", f'"metadata" must be a JSON object, got {type(metadata).__name__}')
    text = _optional(body, "text", str, "a string")
    vector = _parse_vector(body.get("vector"), dim)
    if text is None and vector is None:
        raise EventError("no_content", 'an upsert needs "text", "vector", or both')
    return Event(id=doc_id, op="upsert", text=text, vector=vector, metadata=metadata, version=version, ts=ts)


def _decode_key(key: bytes | None) -> str | None:
    if key is None:
        return None
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError:
        raise EventError("bad_key", "the key is not valid UTF-8; use the document id as the key") from None


def _decode_json(value: bytes) -> dict[str, Any]:
    try:
        body = json.loads(value)
    except (UnicodeDecodeError, ValueError) as exc:
        raise EventError("bad_json", f"the value is not UTF-8 JSON: {exc}") from None
    if not isinstance(body, dict):
        raise EventError("bad_json", f"the value must be a JSON object, got {type(body).__name__}")
    return body


def _check_id(doc_id: Any, key_id: str | None) -> str:
    if not isinstance(doc_id, str) or not doc_id:
        raise EventError("bad_id", f'"id" must be a non-empty string, got {doc_id!r}')
    if key_id is not None and key_id != doc_id:
        raise EventError("key_mismatch", f'key {key_id!r} differs from "id" {doc_id!r}; produce with key = id')
    return doc_id


def _optional(body: Mapping[str, Any], name: str, types: type | tuple[type, ...], what: str) -> Any:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, types):
        raise EventError(f"bad_{name}", f'"{name}" must be {what}, got {json.dumps(value)[:80]}')
    return value


def _parse_vector(raw: Any, dim: int) -> np.ndarray | None:
    if raw is None:
        return None
    try:
        return unit_vector(raw, dim)
    except VectorError as exc:
        raise EventError("bad_vector", str(exc)) from None
