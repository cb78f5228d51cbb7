"""The event contract: what a producer may put on ``<app id>-events``.

``parse_event`` turns a Kafka key/value pair into an :class:`Event` or raises
:class:`EventError` with a stable ``reason`` code, so the ingest agent can dead-letter
bad input instead of crashing on it or retrying it forever.

Size limits are not part of parsing: :func:`apply_limits` applies them to the event of
any parser (native events, Debezium records), so every input path has the same limits.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from index.exceptions import StreamvecError, VectorError
from index.ann.vectors import NUMBER_TYPES, unit_vector

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


@dataclass(frozen=True)
class Limits:
    """How large an event may be: bounds on what one bad producer can cost every worker."""

    max_key_bytes: int = 512
    max_metadata_bytes: int = 16384
    max_metadata_depth: int = 32
    max_text_chars: int = 100_000


def apply_limits(event: Event, limits: Limits) -> Event:
    """Refuse an event that is too large to store, and cut a text too long to embed.

    A long text is cut, not refused: the model reads only its first 256 tokens anyway,
    and the cut keeps the tokenizer from spending time and memory on megabytes it drops.
    """
    _check_unicode("id", event.id)
    if len(event.id.encode()) > limits.max_key_bytes:
        raise EventError("key_too_long", f"the document id has {len(event.id.encode())} bytes (UTF-8), more than "
                                         f"{limits.max_key_bytes}; use shorter ids or raise STREAMVEC_MAX_KEY_BYTES")
    if event.op == "delete":
        return event
    if event.text is not None:
        _check_unicode("text", event.text)
    _check_metadata(event.metadata, limits)
    if event.text is not None and len(event.text) > limits.max_text_chars:
        return dataclasses.replace(event, text=event.text[:limits.max_text_chars])
    return event


def _check_metadata(metadata: Mapping[str, Any], limits: Limits) -> None:
    if _depth(metadata, limits.max_metadata_depth) > limits.max_metadata_depth:
        raise EventError("metadata_too_deep", f'"metadata" is nested more than {limits.max_metadata_depth} levels '
                                              "deep; flatten it or raise STREAMVEC_MAX_METADATA_DEPTH")
    try:
        size = len(json.dumps(metadata, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode())
    except UnicodeEncodeError:
        raise EventError("bad_text", _NOT_UNICODE.format(field='a key or value of "metadata"')) from None
    except (TypeError, ValueError) as exc:
        raise EventError("bad_metadata", f'"metadata" cannot be stored as JSON: {exc}') from None
    if size > limits.max_metadata_bytes:
        raise EventError("metadata_too_large", f'"metadata" takes {size} bytes as JSON, more than '
                                               f"{limits.max_metadata_bytes}; keep large fields out of the index "
                                               "or raise STREAMVEC_MAX_METADATA_BYTES")


_NOT_UNICODE = ("{field} is not valid Unicode: it holds a lone surrogate (such as \\ud800, valid in JSON but "
                "not encodable as UTF-8); send the text the surrogate pair stood for")


def _check_unicode(name: str, text: str) -> None:
    """Refuse a string JSON allowed but UTF-8 cannot hold, before anything hashes, stores or embeds it."""
    try:
        text.encode()
    except UnicodeEncodeError:
        raise EventError("bad_text", _NOT_UNICODE.format(field=f'"{name}"')) from None


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of a JSON value (a scalar is 0), counted no further than ``limit + 1``."""
    children = value.values() if isinstance(value, Mapping) else value if isinstance(value, list) else None
    if children is None:
        return 0
    if limit < 0:
        return 1
    return 1 + max((_depth(child, limit - 1) for child in children), default=0)


def parse_event(key: bytes | None, value: bytes | None, dim: int) -> Event:
    """Validate one Kafka record against the event contract (docs/architecture.md "Contracts")."""
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
    if text is not None and not text.strip():
        raise EventError("empty_text", '"text" is empty or blank: send words to embed, or leave "text" out '
                                       'and send a "vector"')
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
        body = json.loads(value, parse_constant=_not_a_number)
    except (UnicodeDecodeError, ValueError) as exc:
        raise EventError("bad_json", f"the value is not UTF-8 JSON: {exc}") from None
    except RecursionError:
        raise EventError("bad_json", "the value is nested too deeply to parse") from None
    if not isinstance(body, dict):
        raise EventError("bad_json", f"the value must be a JSON object, got {type(body).__name__}")
    if _overflows(body):
        raise EventError("bad_json", "the value is not UTF-8 JSON: a number is too large for a 64-bit float")
    return body


def _not_a_number(name: str) -> float:
    """NaN and Infinity are not JSON (RFC 8259); stored, they would break every reader of the record."""
    raise ValueError(f"{name} is not a JSON number")


def _overflows(value: Any) -> bool:
    """Whether a number overflowed to infinity (``1e999``): NaN and Infinity tokens are refused
    while parsing, so an infinite float can only come from there. Checked after parsing,
    with numpy for lists: a ``parse_float`` hook would cost a Python call per number (384 per
    vector event, ~5 % of a bulk load)."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_overflows(item) for item in value.values())
    if isinstance(value, list):
        if set(map(type, value)) <= NUMBER_TYPES:  # a vector: one numpy pass, no Python loop
            try:
                return not bool(np.isfinite(np.asarray(value, dtype=np.float64)).all())
            except OverflowError:  # an integer beyond float64: not a float overflow
                return False
        return any(_overflows(item) for item in value if isinstance(item, (float, list, dict)))
    return False


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
