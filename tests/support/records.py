"""Table records and progress records as the unit tests of the vectors table's store write them."""

from __future__ import annotations

import numpy as np

from index.records import codec
from index.records.progress import Progress


def record(x: float, y: float) -> bytes:
    """A stored document of a 2-dimensional index at ``[x, y]``."""
    return codec.encode(codec.Record(vector=np.asarray([x, y], dtype=np.float32)))


def done_upto(offset: int) -> Progress:
    """A progress record: the events topic's partition done up to ``offset`` (its next is ``offset``)."""
    done = Progress()
    done.begin("events", offset)
    return done
