"""Debezium change events (Kafka Connect JSON converter) as streamvec events.

A CDC topic carries one table's row changes, written by a Debezium connector: the key is
the row's primary key as a JSON object, the value Debezium's envelope (``before``,
``after``, ``source``, ``op``, ``ts_ms``). With ``schemas.enable=true`` each of them is
wrapped as ``{"schema": …, "payload": …}``; both forms are accepted, so switching the
converter setting needs no streamvec change. Which columns make the document id, the text,
the metadata and an optional ready vector is a :class:`CdcMapping`.

``parse_debezium`` returns the same :class:`~index.records.events.Event` as ``parse_event`` or
raises :class:`~index.records.events.EventError`, so the ingest agent counts, logs and
dead-letters CDC records exactly like native events. ``version`` stays ``None``: Debezium
sends every change of a row with the same key, hence to the same partition in commit
order, and the partition's offset order is what decides.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from index.records.events import Event, EventError
from index.exceptions import VectorError
from index.ann.vectors import unit_vector

ID_SEPARATOR = ":"
TEXT_SEPARATOR = "\n"
_UPSERTS = frozenset({"c", "u", "r"})  # create, update, snapshot read
_UNSUPPORTED = {"t": "truncate", "m": "logical decoding message"}

Row = Mapping[str, Any]


@dataclass(frozen=True)
class CdcMapping:
    """Which row columns become the event: ``id_columns`` empty means the key's columns."""

    text_columns: tuple[str, ...] = ()
    id_columns: tuple[str, ...] = ()
    metadata_columns: tuple[str, ...] = ()
    vector_column: str | None = None


def parse_debezium(key: bytes | None, value: bytes | None, dim: int, mapping: CdcMapping) -> Event:
    """One Debezium record as an upsert or a delete; see the module docstring."""
    key_row = _key_row(key)
    envelope = None if value is None else _unwrap(_decode_json(value, "value", "bad_json"))
    if envelope is None:  # the tombstone Debezium sends after a delete (or an old-style null envelope)
        if key_row is None:
            raise EventError("missing_key", "a tombstone (null value) needs the row key as its key")
        return Event(id=_document_id([key_row], key_row, mapping), op="delete")
    op = _op(envelope)
    ts = _timestamp(envelope)
    if op == "d":
        before = _row(envelope, "before", required=False)
        return Event(id=_document_id([before, key_row], key_row, mapping), op="delete", ts=ts)
    after = _row(envelope, "after", required=True)
    text = _text(after, mapping.text_columns)
    vector = _vector(after, mapping.vector_column, dim)
    if text is None and vector is None:
        raise EventError("no_content", f"columns {list(mapping.text_columns)} are all null or blank and there is "
                                       "no vector: nothing to index (the document keeps its previous version)")
    metadata = {name: _column(after, name) for name in mapping.metadata_columns}
    return Event(id=_document_id([after, key_row], key_row, mapping), op="upsert", text=text, vector=vector,
                 metadata=metadata, ts=ts)


def _decode_json(data: bytes, what: str, reason: str) -> Any:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise EventError(reason, f"the {what} is not UTF-8 JSON ({exc}); use Kafka Connect's JsonConverter "
                                 f"for the connector's {what}.converter") from None
    except RecursionError:
        raise EventError(reason, f"the {what} is nested too deeply to parse") from None


def _unwrap(body: Any) -> Any:
    """The payload of ``{"schema": …, "payload": …}`` (``schemas.enable=true``), else the body itself."""
    if isinstance(body, dict) and body.keys() == {"schema", "payload"}:
        return body["payload"]
    return body


def _key_row(key: bytes | None) -> Row | None:
    if key is None:
        return None
    row = _unwrap(_decode_json(key, "key", "cdc_bad_key"))
    if row is None:  # a table without a primary key
        return None
    if not isinstance(row, dict) or not row:
        raise EventError("cdc_bad_key", f"the key must be Debezium's key struct (a JSON object of the key "
                                        f"columns), got {json.dumps(row)[:80]}")
    return row


def _op(envelope: Any) -> str:
    if not isinstance(envelope, dict) or "op" not in envelope or "source" not in envelope:
        shown = sorted(envelope)[:8] if isinstance(envelope, dict) else type(envelope).__name__
        raise EventError("cdc_not_envelope", f"the value is not a Debezium change event (no \"op\" and \"source\"; "
                                             f"got {shown}); streamvec reads the full envelope, so remove an "
                                             "ExtractNewRecordState (unwrap) transform from the connector")
    op = envelope["op"]
    if op in _UNSUPPORTED:
        raise EventError("cdc_unsupported_op", f"a {_UNSUPPORTED[op]} event (op {op!r}) changes no single row, so "
                                               "streamvec cannot apply it; skip it in the connector "
                                               "(skipped.operations=t, the default) and delete rows instead")
    if op not in _UPSERTS and op != "d":
        raise EventError("bad_op", f'Debezium "op" must be one of c, u, r, d, got {json.dumps(op)[:40]}')
    return str(op)


def _timestamp(envelope: Mapping[str, Any]) -> float | None:
    """When the connector processed the change; the source's commit time if that is absent."""
    source = envelope.get("source")
    ts_ms = envelope.get("ts_ms")
    if ts_ms is None and isinstance(source, dict):
        ts_ms = source.get("ts_ms")
    if ts_ms is None:
        return None
    if isinstance(ts_ms, bool) or not isinstance(ts_ms, (int, float)):
        raise EventError("bad_ts", f'"ts_ms" must be a number of milliseconds, got {json.dumps(ts_ms)[:40]}')
    return ts_ms / 1000.0


def _row(envelope: Mapping[str, Any], name: str, *, required: bool) -> Row | None:
    row = envelope.get(name)
    if row is None and not required:
        return None
    if not isinstance(row, dict):
        raise EventError("cdc_not_envelope", f'a Debezium {envelope["op"]!r} event needs a "{name}" row object, '
                                             f"got {json.dumps(row)[:80]}")
    return row


def _document_id(rows: Sequence[Row | None], key_row: Row | None, mapping: CdcMapping) -> str:
    """The id columns' values joined by ``:``, each from the first row that has the column."""
    columns = mapping.id_columns or (tuple(key_row) if key_row is not None else ())
    if not columns:
        raise EventError("missing_key", "the record has no key (a table without a primary key?); set "
                                        "STREAMVEC_CDC_ID_COLUMNS to the columns that identify a row")
    parts = []
    for name in columns:
        holder = next((row for row in rows if row is not None and name in row), None)
        if holder is None:
            raise EventError("cdc_missing_column", f"id column {name!r} is in neither the row nor the key "
                                                   f"(columns: {sorted(set().union(*(r for r in rows if r)))})")
        part = holder[name]
        if isinstance(part, bool) or not isinstance(part, (str, int, float)) or part == "":
            raise EventError("cdc_bad_column", f"id column {name!r} must be a non-empty string or a number, "
                                               f"got {json.dumps(part)[:80]}")
        parts.append(str(part))
    return ID_SEPARATOR.join(parts)


def _column(row: Row, name: str) -> Any:
    if name not in row:
        raise EventError("cdc_missing_column", f"column {name!r} is not in the row; its columns are {sorted(row)} "
                                               "(check the STREAMVEC_CDC_* column settings)")
    return row[name]


def _text(row: Row, columns: Sequence[str]) -> str | None:
    """The text columns joined by newlines, skipping null and blank ones; ``None`` when all are."""
    parts = []
    for name in columns:
        part = _column(row, name)
        if part is None or (isinstance(part, str) and not part.strip()):
            continue
        if isinstance(part, bool) or not isinstance(part, (str, int, float)):
            raise EventError("cdc_bad_column", f"text column {name!r} must hold a string or a number, "
                                               f"got {json.dumps(part)[:80]}")
        parts.append(str(part))
    return TEXT_SEPARATOR.join(parts) if parts else None


def _vector(row: Row, column: str | None, dim: int) -> np.ndarray | None:
    """A JSON array, or pgvector's text form ``"[1,2,3]"`` when the connector passes it as a string."""
    raw = None if column is None else _column(row, column)
    if raw is None:
        return None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise EventError("bad_vector", f"vector column {column!r} is neither a JSON array nor pgvector "
                                           f"text like \"[0.1,0.2]\": {raw[:80]!r}") from None
    try:
        return unit_vector(raw, dim)
    except VectorError as exc:
        raise EventError("bad_vector", f"vector column {column!r}: {exc}") from None
