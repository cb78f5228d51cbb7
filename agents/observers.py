"""What other stream processors see of an ingest batch: the documents it just indexed.

Watchlist alerts, novelty and embedding health need each new document's vector in the
same pass that embedded it (docs/architecture.md "Where this is going"), not a second read of the
table. The ingest processor calls every :class:`BatchObserver` once per batch, before the
batch's changelog records and progress record are sent: the progress record makes a redelivery
skip the batch's events, so whatever an observer produces (and has acknowledged by the broker
when ``on_batch`` returns) is produced at least once per event, and again if the batch is redone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class IndexedDocument:
    """One upsert of the batch as it now stands in the table.

    ``vector`` is unit length (float32, the model's dimension); ``embedded`` says the model
    made it in this batch (not brought by the producer, not reused from the stored record);
    ``event_ts`` is the event's ``ts`` when it has one, else its Kafka timestamp (seconds);
    ``norm`` (the vector's length before normalising) and ``truncated`` (the text had more
    tokens than the model reads) are known for texts the model embedded in this batch.
    """

    id: str
    partition: int
    offset: int
    version: int | None
    vector: np.ndarray
    text: str | None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    event_ts: float | None = None
    embedded: bool = False
    norm: float | None = None
    truncated: bool | None = None


@dataclass(frozen=True)
class DeletedDocument:
    """One delete of the batch."""

    id: str
    partition: int
    offset: int
    version: int | None


class BatchObserver(Protocol):
    """Sees every ingest batch once its writes are durable, before it is acknowledged.

    It awaits what it sends itself (acks from the broker). An exception means something
    outside the events failed (a topic refuses writes): the batch is not acknowledged and
    is processed again, observers included, so observers must tolerate a batch twice.
    """

    async def on_batch(self, indexed: Sequence[IndexedDocument], deleted: Sequence[DeletedDocument]) -> None: ...
