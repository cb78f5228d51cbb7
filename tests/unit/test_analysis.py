"""The ingest observer that raises alerts, on fakes of its topic (no broker, no model, no novelty)."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from agents.acked import AckedTopic
from agents.analysis import BatchAnalysis
from agents.observers import IndexedDocument
from index.health import HealthMonitor
from index.watchlist import Pattern, Watchlist

DIM = 3


class Topic:
    """An alerts topic whose acks succeed, or fail when ``fail`` is set."""

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[bytes, dict[str, Any]]] = []
        self.fail = fail

    async def send(self, *, key: Any = None, value: Any = None, headers: Any = None) -> asyncio.Future[None]:
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.fail:
            ack.set_exception(ConnectionError("broker gone"))
        else:
            self.sent.append((key, json.loads(value)))
            ack.set_result(None)
        return ack

    async def maybe_declare(self) -> None:
        pass


def doc(doc_id: str, *vector: float, partition: int = 0) -> IndexedDocument:
    unit = np.asarray(vector, dtype=np.float32) / np.linalg.norm(vector)
    return IndexedDocument(doc_id, partition, 0, 1, unit, "some text", event_ts=100.0, embedded=True, norm=4.0)


def analysis(topic: Topic, window: int = 100) -> tuple[BatchAnalysis, list[tuple[str, list[float]]]]:
    watchlist = Watchlist(DIM)
    watchlist.apply([Pattern("x-axis", np.array([1, 0, 0], np.float32), 0.9, ("fraud",))])
    loaded = asyncio.Event()
    loaded.set()
    detected: list[tuple[str, list[float]]] = []
    observer = BatchAnalysis(watchlist=watchlist, watchlist_loaded=loaded, alerts=AckedTopic(topic),
                             health=HealthMonitor(DIM, window, drift_threshold=0.5), novelty=None,
                             pool=ThreadPoolExecutor(1), on_detected=lambda kind, s: detected.append((kind, list(s))))
    return observer, detected


def test_matches_are_sent_and_acknowledged_before_the_batch_returns() -> None:
    topic = Topic()
    observer, detected = analysis(topic)
    asyncio.run(observer.on_batch([doc("near", 1, 0.1, 0), doc("far", 0, 1, 0)], []))
    [(key, alert)] = topic.sent
    assert key == b"near" and (alert["kind"], alert["pattern"], alert["labels"], alert["version"]) == \
        ("watchlist", "x-axis", ["fraud"], 1)
    assert observer.counts.snapshot() == {"by_kind": {"watchlist": 1, "novel": 0, "drift": 0},
                                          "by_label": {"fraud": 1}}
    assert [kind for kind, _ in detected] == ["watchlist"] and detected[0][1][0] > 0


def test_a_refused_alert_fails_the_batch_and_counts_nothing() -> None:
    observer, detected = analysis(Topic(fail=True))
    with pytest.raises(ConnectionError):
        asyncio.run(observer.on_batch([doc("near", 1, 0, 0)], []))
    assert observer.counts.snapshot()["by_kind"]["watchlist"] == 0 and detected == []


def test_a_window_far_from_the_reference_raises_one_drift_alert() -> None:
    topic = Topic()
    observer, _ = analysis(topic, window=2)
    asyncio.run(observer.on_batch([doc(f"a{n}", 0, 1, 0, partition=3) for n in range(2)], []))  # the reference
    asyncio.run(observer.on_batch([doc(f"b{n}", 0, 0, 1, partition=3) for n in range(3)], []))
    drift = [alert for _, alert in topic.sent if alert["kind"] == "drift"]
    assert [(a["id"], a["partition"], a["window"], a["documents"]) for a in drift] == [("drift/3", 3, 1, 2)]
    assert drift[0]["score"] == pytest.approx(1.0)
    health = observer.health.snapshot([3])["3"]
    assert health["last"]["norm_mean"] == 4.0 and health["current"]["documents"] == 1
