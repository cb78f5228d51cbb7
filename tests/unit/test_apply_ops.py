"""Table writes reach a partition index in order (the store's writer thread calls this)."""

from __future__ import annotations

import numpy as np

from index import codec
from index.partition import PartitionIndex
from tables.indexed_store import apply_ops


def _record(vector: list[float], **fields: object) -> bytes:
    return codec.encode(codec.Record(vector=np.asarray(vector, dtype=np.float32), **fields))  # type: ignore[arg-type]


def test_upserts_deletes_and_tombstones_apply_in_order() -> None:
    index = PartitionIndex(2)
    apply_ops(index, [
        (b"a", _record([1, 0])),
        (b"b", _record([0, 1])),
        (b"a", None),                                   # deleted ...
        (b"a", _record([1, 1], metadata={"v": 2})),     # ... and back with a new vector
        (b"b", codec.encode(codec.Record(vector=None, version=3))),  # versioned tombstone
        (b"c", b"\x09garbage"),                         # unreadable: skipped, logged
    ])
    assert len(index) == 1 and "b" not in index and "c" not in index
    hit = index.search(np.array([1, 1], dtype=np.float32), k=5)[0]
    assert (hit.id, dict(hit.metadata)) == ("a", {"v": 2}) and hit.score > 0.99
