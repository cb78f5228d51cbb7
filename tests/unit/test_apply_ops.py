"""Table writes reach the worker's index in order, in their partition (the store's lanes call this)."""

from __future__ import annotations

import numpy as np

from index.records import codec, progress
from index.ann.hnsw import VectorIndex
from index.records.progress import Progress
from tables.index_feed import apply_ops


def _record(vector: list[float], **fields: object) -> bytes:
    return codec.encode(codec.Record(vector=np.asarray(vector, dtype=np.float32), **fields))  # type: ignore[arg-type]


def test_upserts_deletes_and_tombstones_apply_in_order_and_the_progress_record_is_returned() -> None:
    index = VectorIndex(2)
    done = Progress()
    done.begin("events", 0)
    done.record("events", 0, "indexed")
    applied = apply_ops(index, 3, [
        (b"a", _record([1, 0])),
        (b"b", _record([0, 1])),
        (b"a", None),                                   # deleted ...
        (b"a", _record([1, 1], metadata={"v": 2})),     # ... and back with a new vector
        (b"b", codec.encode(codec.Record(vector=None, version=3))),  # versioned tombstone
        (b"c", b"\x09garbage"),                         # unreadable: skipped, logged
        (progress.KEY, progress.encode(done)),          # not a document
    ])
    assert len(index) == 1 and "b" not in index and "c" not in index
    hit = index.search(np.array([1, 1], dtype=np.float32), k=5)[0]
    assert (hit.id, hit.partition, dict(hit.metadata or {})) == ("a", 3, {"v": 2}) and hit.score > 0.99
    assert applied is not None and applied.next == {"events": 1}
    assert apply_ops(index, 3, [(b"d", _record([0, 1]))]) is None
