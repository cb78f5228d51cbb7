"""Alert records: what the workers write on ``<app id>-alerts`` (docs/architecture.md "Topics of an app id").

Every alert is JSON with ``kind`` (``watchlist``, ``novel`` or ``drift``), the document
``id`` and ``version`` it is about, ``score``, ``event_ts`` (the document's event time)
and ``detected_ts`` (when the worker found it). Alerts are produced at least once: a
watchlist alert is identified by its key (the document id), ``version`` and ``pattern``;
a novelty alert by key and ``version``; a drift alert by ``partition`` and ``window``.
Keep the field names stable: consumers of the topic rely on them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

KINDS = ("watchlist", "novel", "drift")


@dataclass(frozen=True)
class Alert:
    """One alert: its Kafka key and its JSON body."""

    key: str
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.body["kind"])

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.body.get("labels") or ())

    @property
    def event_ts(self) -> float | None:
        return self.body.get("event_ts")

    def encode(self) -> bytes:
        return json.dumps(self.body, separators=(",", ":"), ensure_ascii=False).encode()


def watchlist_alert(doc_id: str, version: int | None, pattern: str, score: float, labels: tuple[str, ...],
                    event_ts: float | None, detected_ts: float) -> Alert:
    return Alert(doc_id, {"kind": "watchlist", "id": doc_id, "version": version, "pattern": pattern,
                          "score": round(score, 6), "labels": list(labels), "event_ts": event_ts,
                          "detected_ts": detected_ts})


def novelty_alert(doc_id: str, version: int | None, nearest: str | None, score: float, threshold: float,
                  event_ts: float | None, detected_ts: float) -> Alert:
    """``nearest`` is the most similar document already indexed and ``score`` its similarity."""
    return Alert(doc_id, {"kind": "novel", "id": doc_id, "version": version, "nearest": nearest,
                          "score": round(score, 6), "threshold": threshold, "event_ts": event_ts,
                          "detected_ts": detected_ts})


def drift_alert(partition: int, window: int, drift: float, threshold: float, documents: int,
                event_ts: float | None, detected_ts: float) -> Alert:
    """A partition's health window whose mean vector drifted from the reference window's.

    ``score`` is the drift (1 − cosine of the two mean vectors); ``id`` names the partition
    (the key is the same), since a drift is about no single document.
    """
    key = f"drift/{partition}"
    return Alert(key, {"kind": "drift", "id": key, "version": None, "partition": partition, "window": window,
                       "score": round(drift, 6), "threshold": threshold, "documents": documents,
                       "event_ts": event_ts, "detected_ts": detected_ts})
