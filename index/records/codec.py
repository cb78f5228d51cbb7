"""Binary encoding of a table record: what the vectors table stores per document id.

A record travels through RocksDB and the compacted changelog topic, and is decoded on
every changelog replay, so it is compact and cheap to read: a small JSON header for the
fields a user set and the vector as raw little-endian float32 bytes.

Layout: ``FORMAT (1 byte) | header length (uint32 LE) | header JSON | float32 vector``.
A record without a vector is a tombstone: the document is deleted, and its version is kept
so that an older upsert replayed later cannot bring it back. Deletes always write one (never
Kafka's null tombstone), so compaction cannot drop a delete a snapshot or standby still needs.

The header names the event that wrote the record (its topic and offset: without versions,
offset order decides, also when a consumer hands over an older event after a newer one) and
the model that made the vector (``None``: the producer brought it), so a
text re-sent after a model change is embedded again rather than matched by its hash, and it
may hold the text itself (``STREAMVEC_STORE_TEXT``), which the index never keeps in memory.
Format 1 records (no model, no text) are still read: their vectors count as from an unknown
model.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from index.exceptions import StreamvecError

FORMAT = 2
_READABLE = (1, 2)
_HEADER = struct.Struct("<BI")


class CodecError(StreamvecError, ValueError):
    """Bytes in the table are not a record this version of streamvec can read."""


@dataclass(frozen=True)
class Record:
    """The stored state of one document id."""

    vector: np.ndarray | None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    version: int | None = None
    text_hash: str | None = None
    ts: float | None = None
    model: str | None = None
    text: str | None = None
    source: tuple[str, int] | None = None  # (topic, offset) of the event that wrote it

    @property
    def deleted(self) -> bool:
        return self.vector is None


def encode(record: Record) -> bytes:
    header = _header(record)
    vector = b"" if record.vector is None else np.ascontiguousarray(record.vector, dtype="<f4").tobytes()
    return _HEADER.pack(FORMAT, len(header)) + header + vector


def encoded_size(record: Record, dim: int) -> int:
    """Bytes :func:`encode` will make of ``record`` once it holds a ``dim``-float vector (known
    before the model has run, so an oversized record is refused before anything is embedded)."""
    return _HEADER.size + len(_header(record)) + 4 * dim


def _header(record: Record) -> bytes:
    fields = {"m": record.metadata, "v": record.version, "h": record.text_hash, "t": record.ts,
              "e": record.model, "x": record.text, "s": record.source}
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()


def decode(data: bytes) -> Record:
    if len(data) < _HEADER.size:
        raise CodecError(f"record of {len(data)} bytes is too short to be a streamvec record")
    fmt, header_len = _HEADER.unpack_from(data)
    if fmt not in _READABLE:
        raise CodecError(
            f"record format {fmt} is not one of {_READABLE}; this data was written by another streamvec "
            "version: upgrade the worker, or reset the app id's topics and data dir"
        )
    start = _HEADER.size + header_len
    try:
        header = json.loads(data[_HEADER.size:start])
    except ValueError as exc:
        raise CodecError(f"record header is not JSON: {exc}") from None
    body = data[start:]
    vector = np.frombuffer(body, dtype="<f4") if body else None
    return Record(vector=vector, metadata=header["m"], version=header["v"], text_hash=header["h"], ts=header["t"],
                  model=header.get("e"), text=header.get("x"),
                  source=None if header.get("s") is None else (str(header["s"][0]), int(header["s"][1])))

