"""Binary encoding of a table record: what the vectors table stores per document id.

A record travels through RocksDB and the compacted changelog topic, and is decoded on
every changelog replay, so it is compact and cheap to read: a small JSON header for the
fields a user set and the vector as raw little-endian float32 bytes.

Layout: ``FORMAT (1 byte) | header length (uint32 LE) | header JSON | float32 vector``.
A record without a vector is a versioned tombstone: the document is deleted, and its
version is kept so that an older upsert replayed later cannot bring it back.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from index.exceptions import StreamvecError

FORMAT = 1
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

    @property
    def deleted(self) -> bool:
        return self.vector is None


def encode(record: Record) -> bytes:
    header = json.dumps(
        {"m": record.metadata, "v": record.version, "h": record.text_hash, "t": record.ts},
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    vector = b"" if record.vector is None else np.ascontiguousarray(record.vector, dtype="<f4").tobytes()
    return _HEADER.pack(FORMAT, len(header)) + header + vector


def decode(data: bytes) -> Record:
    if len(data) < _HEADER.size:
        raise CodecError(f"record of {len(data)} bytes is too short to be a streamvec record")
    fmt, header_len = _HEADER.unpack_from(data)
    if fmt != FORMAT:
        raise CodecError(
            f"record format {fmt} is not {FORMAT}; this data was written by another streamvec "
            "version: upgrade the worker, or reset the app id's topics and data dir"
        )
    start = _HEADER.size + header_len
    try:
        header = json.loads(data[_HEADER.size:start])
    except ValueError as exc:
        raise CodecError(f"record header is not JSON: {exc}") from None
    body = data[start:]
    vector = np.frombuffer(body, dtype="<f4") if body else None
    return Record(vector=vector, metadata=header["m"], version=header["v"], text_hash=header["h"], ts=header["t"])

