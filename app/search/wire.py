"""The compact encoding of worker-to-worker search traffic.

A frame is a little JSON header and one float32 array: query vectors travel as raw
bytes (a 384-d vector is 1.5 kB instead of ~8 kB of JSON digits, and needs no parsing),
and result scores come back the same way. Ids and metadata stay JSON: they are strings
and objects, and only k of them per partition travel.

Layout: ``uint32 header length (little endian) | header JSON | float32 array bytes``.
The header names the array's shape, so a frame is self-describing.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

from index.exceptions import StreamvecError

CONTENT_TYPE = "application/x-streamvec-frame"
_LENGTH = struct.Struct("<I")


class FrameError(StreamvecError, ValueError):
    """A frame is truncated or inconsistent: the sender is not a streamvec worker of this version."""


def pack(header: dict[str, Any], array: np.ndarray) -> bytes:
    data = np.ascontiguousarray(array, dtype="<f4")
    head = json.dumps({**header, "shape": list(data.shape)}, separators=(",", ":")).encode()
    return b"".join((_LENGTH.pack(len(head)), head, data.tobytes()))


def unpack(frame: bytes) -> tuple[dict[str, Any], np.ndarray]:
    try:
        (length,) = _LENGTH.unpack_from(frame)
        header = json.loads(frame[_LENGTH.size:_LENGTH.size + length])
        shape = tuple(int(n) for n in header.pop("shape"))
        array = np.frombuffer(frame, dtype="<f4", offset=_LENGTH.size + length)
        return header, array.reshape(shape)
    except (struct.error, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise FrameError(f"not a streamvec search frame: {exc}") from None
