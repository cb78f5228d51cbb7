"""Debezium PostgreSQL connector records, byte for byte as Kafka Connect's JsonConverter writes them.

Shapes follow Debezium's documentation of PostgreSQL change events (Debezium 2.7, pgoutput):
the key is the primary key struct, the value the envelope with ``before``, ``after``,
``source`` (version, connector, name, ts_ms, snapshot, db, sequence, ts_us, ts_ns, schema,
table, txId, lsn, xmin), ``op``, ``ts_ms``/``ts_us``/``ts_ns`` and ``transaction``. With
``schemas.enable=true`` key and value are each ``{"schema": …, "payload": …}``; a delete is
followed by a tombstone (same key, null value); a truncate has a null key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

DEBEZIUM_VERSION = "2.7.3.Final"
TOPIC_PREFIX = "dbserver1"
DATABASE = "inventory"
BASE_TS_MS = 1_764_000_000_000

Row = dict[str, Any]


def _field(field_name: str, connect_type: str, optional: bool, **extra: Any) -> dict[str, Any]:
    """A struct member in JsonConverter's schema form; ``extra`` holds a logical type's name etc."""
    return {"type": connect_type, "optional": optional, **extra, "field": field_name}


_SOURCE_SCHEMA = {
    "type": "struct",
    "fields": [
        _field("version", "string", False),
        _field("connector", "string", False),
        _field("name", "string", False),
        _field("ts_ms", "int64", False),
        _field("snapshot", "string", True, name="io.debezium.data.Enum", version=1,
               parameters={"allowed": "true,first,first_in_data_collection,last_in_data_collection,last,false,"
                                      "incremental"},
               default="false"),
        _field("db", "string", False),
        _field("sequence", "string", True),
        _field("ts_us", "int64", True),
        _field("ts_ns", "int64", True),
        _field("schema", "string", False),
        _field("table", "string", False),
        _field("txId", "int64", True),
        _field("lsn", "int64", True),
        _field("xmin", "int64", True),
    ],
    "optional": False,
    "name": "io.debezium.connector.postgresql.Source",
    "field": "source",
}
_TRANSACTION_SCHEMA = {
    "type": "struct",
    "fields": [_field("id", "string", False), _field("total_order", "int64", False),
               _field("data_collection_order", "int64", False)],
    "optional": True,
    "name": "event.block",
    "version": 1,
    "field": "transaction",
}


@dataclass(frozen=True)
class Column:
    name: str
    connect_type: str  # int32, int64, string, double, array, …
    optional: bool = True
    extra: dict[str, Any] = field(default_factory=dict)  # logical type name, items, …

    def schema(self) -> dict[str, Any]:
        return _field(self.name, self.connect_type, self.optional, **self.extra)


@dataclass
class Table:
    """One captured table; ``lsn`` advances with every change like the WAL position."""

    schema: str
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    lsn: int = 24_023_128
    tx_id: int = 555

    @property
    def topic(self) -> str:
        """Debezium's default topic name: ``<topic.prefix>.<schema>.<table>``."""
        return f"{TOPIC_PREFIX}.{self.schema}.{self.name}"

    def key_bytes(self, row: Row, *, schemas: bool) -> bytes:
        payload = {name: row[name] for name in self.key}
        schema = {"type": "struct", "fields": [c.schema() for c in self.columns if c.name in self.key],
                  "optional": False, "name": f"{self.topic}.Key"}
        return _json(schema, payload, schemas)

    def snapshot_read(self, row: Row, *, schemas: bool, last: bool = False) -> tuple[bytes, bytes]:
        return self._change("r", None, row, row, schemas=schemas, snapshot="last" if last else "true")

    def insert(self, row: Row, *, schemas: bool) -> tuple[bytes, bytes]:
        return self._change("c", None, row, row, schemas=schemas)

    def update(self, row: Row, *, schemas: bool) -> tuple[bytes, bytes]:
        """REPLICA IDENTITY DEFAULT: an update that keeps the primary key has no ``before``."""
        return self._change("u", None, row, row, schemas=schemas)

    def delete(self, row: Row, *, schemas: bool) -> list[tuple[bytes, bytes | None]]:
        """The delete event and its tombstone; with REPLICA IDENTITY DEFAULT ``before`` holds
        only the primary key columns (as in Debezium's documented example)."""
        before = {name: row[name] for name in self.key}
        key, value = self._change("d", before, None, row, schemas=schemas)
        return [(key, value), (key, None)]

    def truncate(self, *, schemas: bool) -> tuple[None, bytes]:
        envelope = self._envelope("t", None, None, "false")
        for name in ("before", "after"):
            del envelope[name]
        return None, _json(self._envelope_schema(), envelope, schemas)

    def _change(self, op: str, before: Row | None, after: Row | None, row: Row, *, schemas: bool,
                snapshot: str = "false") -> tuple[bytes, bytes]:
        value = _json(self._envelope_schema(), self._envelope(op, before, after, snapshot), schemas)
        return self.key_bytes(row, schemas=schemas), value

    def _envelope(self, op: str, before: Row | None, after: Row | None, snapshot: str) -> dict[str, Any]:
        self.lsn += 152
        self.tx_id += 1
        commit_ms = BASE_TS_MS + self.tx_id
        source = {"version": DEBEZIUM_VERSION, "connector": "postgresql", "name": TOPIC_PREFIX,
                  "ts_ms": commit_ms, "snapshot": snapshot, "db": DATABASE,
                  "sequence": json.dumps([str(self.lsn - 152), str(self.lsn)], separators=(",", ":")),
                  "ts_us": commit_ms * 1000, "ts_ns": commit_ms * 1_000_000,
                  "schema": self.schema, "table": self.name, "txId": self.tx_id, "lsn": self.lsn, "xmin": None}
        processed_ms = commit_ms + 40
        return {"before": before, "after": after, "source": source, "transaction": None, "op": op,
                "ts_ms": processed_ms, "ts_us": processed_ms * 1000, "ts_ns": processed_ms * 1_000_000}

    def _envelope_schema(self) -> dict[str, Any]:
        row_schema = {"type": "struct", "fields": [c.schema() for c in self.columns], "optional": True,
                      "name": f"{self.topic}.Value"}
        return {
            "type": "struct",
            "fields": [{**row_schema, "field": "before"}, {**row_schema, "field": "after"}, _SOURCE_SCHEMA,
                       _TRANSACTION_SCHEMA, _field("op", "string", False), _field("ts_ms", "int64", True),
                       _field("ts_us", "int64", True), _field("ts_ns", "int64", True)],
            "optional": False,
            "name": f"{self.topic}.Envelope",
            "version": 2,
        }


def _json(schema: dict[str, Any], payload: Any, schemas: bool) -> bytes:
    body = {"schema": schema, "payload": payload} if schemas else payload
    return json.dumps(body, separators=(",", ":")).encode()


def articles_table() -> Table:
    """``CREATE TABLE public.articles (id int PRIMARY KEY, title varchar NOT NULL, body text,
    category varchar, year int, embedding vector(4))`` — pgvector columns arrive as
    ``io.debezium.data.DoubleVector`` (a JSON array of doubles)."""
    return Table("public", "articles", (
        Column("id", "int32", optional=False),
        Column("title", "string", optional=False),
        Column("body", "string"),
        Column("category", "string"),
        Column("year", "int32"),
        Column("embedding", "array", extra={"items": {"type": "double", "optional": False},
                                            "name": "io.debezium.data.DoubleVector", "version": 1}),
    ), key=("id",))
