"""The ingest observer that raises alerts, on a fake of its producer (no broker, no model, no novelty)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

import agents.analysis
from agents.analysis import BatchAnalysis, WatchlistNotRead
from agents.observers import IndexedDocument
from index.uses.health import HealthMonitor
from index.uses.watchlist import Pattern, Watchlist
from agents.producer import BrokerUnavailable, Outgoing

DIM = 3


class Sender:
    """A producer whose sends are acknowledged, or refused when ``fail`` is set."""

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[bytes | None, dict[str, Any]]] = []
        self.fail = fail

    async def send_all(self, records: Sequence[Outgoing]) -> list[Any]:
        if self.fail and records:
            raise BrokerUnavailable("broker gone")
        assert all(record.topic == "app-alerts" for record in records)
        self.sent += [(record.key, json.loads(record.value or b"")) for record in records]
        return [None] * len(records)


def doc(doc_id: str, *vector: float, partition: int = 0) -> IndexedDocument:
    unit = np.asarray(vector, dtype=np.float32) / np.linalg.norm(vector)
    return IndexedDocument(doc_id, partition, 0, 1, unit, "some text", event_ts=100.0, embedded=True, norm=4.0)


def analysis(sender: Sender, window: int = 100, loaded: bool = True) -> tuple[BatchAnalysis, list[tuple[str, list[float]]]]:
    watchlist = Watchlist(DIM)
    watchlist.apply([Pattern("x-axis", np.array([1, 0, 0], np.float32), 0.9, ("fraud",))])
    read = asyncio.Event()
    if loaded:
        read.set()
    detected: list[tuple[str, list[float]]] = []
    observer = BatchAnalysis(watchlist=watchlist, watchlist_loaded=read, patterns_topic="app-watchlist-patterns",
                             sender=sender, alerts_topic="app-alerts",
                             health=HealthMonitor(DIM, window, drift_threshold=0.5), novelty=None,
                             pool=ThreadPoolExecutor(1), on_detected=lambda kind, s: detected.append((kind, list(s))))
    return observer, detected


def test_matches_are_sent_and_acknowledged_before_the_batch_returns() -> None:
    sender = Sender()
    observer, detected = analysis(sender)
    asyncio.run(observer.on_batch([doc("near", 1, 0.1, 0), doc("far", 0, 1, 0)], []))
    [(key, alert)] = sender.sent
    assert key == b"near" and (alert["kind"], alert["pattern"], alert["labels"], alert["version"]) == \
        ("watchlist", "x-axis", ["fraud"], 1)
    assert observer.counts.snapshot() == {"by_kind": {"watchlist": 1, "novel": 0, "drift": 0},
                                          "by_label": {"fraud": 1}}
    assert [kind for kind, _ in detected] == ["watchlist"] and detected[0][1][0] > 0


def test_a_refused_alert_fails_the_batch_and_counts_nothing() -> None:
    observer, detected = analysis(Sender(fail=True))
    with pytest.raises(BrokerUnavailable):
        asyncio.run(observer.on_batch([doc("near", 1, 0, 0)], []))
    assert observer.counts.snapshot()["by_kind"]["watchlist"] == 0 and detected == []


def test_a_window_far_from_the_reference_raises_one_drift_alert() -> None:
    sender = Sender()
    observer, _ = analysis(sender, window=2)
    asyncio.run(observer.on_batch([doc(f"a{n}", 0, 1, 0, partition=3) for n in range(2)], []))  # the reference
    asyncio.run(observer.on_batch([doc(f"b{n}", 0, 0, 1, partition=3) for n in range(3)], []))
    drift = [alert for _, alert in sender.sent if alert["kind"] == "drift"]
    assert [(a["id"], a["partition"], a["window"], a["documents"]) for a in drift] == [("drift/3", 3, 1, 2)]
    assert drift[0]["score"] == pytest.approx(1.0)
    health = observer.health.snapshot([3])["3"]
    assert health["last"]["norm_mean"] == 4.0 and health["current"]["documents"] == 1


def test_a_batch_fails_while_the_watchlist_is_still_being_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agents.analysis, "_WATCHLIST_WAIT", 0.05)
    sender = Sender()
    observer, _ = analysis(sender, loaded=False)
    with pytest.raises(WatchlistNotRead, match="app-watchlist-patterns"):
        asyncio.run(observer.on_batch([doc("near", 1, 0, 0)], []))
    assert sender.sent == []  # ingest retries the batch: nothing of it is produced meanwhile
