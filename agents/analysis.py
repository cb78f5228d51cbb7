"""Everything a new document is checked for, in the ingest pass that indexed it.

:class:`BatchAnalysis` is the ingest agent's batch observer (agents/observers.py): for each
batch of newly indexed documents it

* matches them with the watchlist (exact, every pattern: ``watchlist`` alerts);
* measures novelty, with ``STREAMVEC_NOVELTY_THRESHOLD`` set: each document's best
  similarity to the documents indexed before it in the partitions this worker holds
  (``novel`` alerts below the threshold; see :mod:`index.uses.novelty`);
* feeds embedding health (:mod:`index.uses.health`; ``drift`` alerts);

then produces the batch's alerts and waits for the broker's acks, before the ingest agent sends
the batch's progress record (after which a redelivery skips its events): an alert is produced
at least once. A batch that is retried (an alert send failed) is counted twice by health; its
alerts are produced again, which at least once allows. Matching and novelty's searches run in a thread pool, not on the loop;
health's few additions per document run on the loop, so ``/stats`` reads a consistent state.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from agents.ingest import Sender
from agents.observers import DeletedDocument, IndexedDocument
from index.uses.alerts import KINDS, Alert, drift_alert, novelty_alert, watchlist_alert
from index.exceptions import StreamvecError
from index.uses.health import HealthMonitor, Observation, WindowClosed
from index.uses.novelty import Nearest, Recent, nearest_before
from index.uses.watchlist import Match, Watchlist
from agents.producer import Outgoing
from tables.vectors import VectorTable

# (kind, seconds from each alert's event time until the broker acknowledged it)
OnDetected = Callable[[str, Sequence[float]], None]
_NOVELTY_K = 8  # index hits per document; more only when all of them belong to the batches (index.uses.novelty)
_BUILD_POLL = 0.05  # seconds between looks at a partition index being built
_WATCHLIST_WAIT = 5.0
_BUILD_WAIT = 5.0
"""Longest wait inside a batch for the active partitions' indexes (novelty compares with them).
The wait once had no bound: a batch waiting through a rebalance kept Faust's ``wait_empty``
from ending, so the member missed the rebalance timeout and was evicted (review finding SP-16).
Past it the batch fails, ingest retries it, and leaves it to the next owner on a rebalance."""


class WatchlistNotRead(StreamvecError):
    """The worker has not read the whole watchlist yet: the batch must wait."""


class IndexNotBuilt(StreamvecError):
    """An active partition's index is still being built: novelty cannot be measured yet."""


class AlertCounts:
    """Alerts this worker produced, by kind, and by kind and label (no label counts under "")."""

    def __init__(self) -> None:
        self.by_kind: Counter[str] = Counter(dict.fromkeys(KINDS, 0))
        self.by_kind_label: Counter[tuple[str, str]] = Counter()

    def add(self, alert: Alert) -> None:
        self.by_kind[alert.kind] += 1
        for label in alert.labels or ("",):
            self.by_kind_label[(alert.kind, label)] += 1

    def snapshot(self) -> dict[str, Any]:
        """``{"by_kind": {kind: n}, "by_label": {label: n}}`` (every kind present; labelled alerts only)."""
        by_label: Counter[str] = Counter()
        for (_, label), count in self.by_kind_label.items():
            if label:
                by_label[label] += count
        return {"by_kind": dict(self.by_kind), "by_label": dict(by_label)}


class Novelty:
    """Finds each new document's nearest earlier document in this worker's partitions."""

    def __init__(self, table: VectorTable, threshold: float, pool: ThreadPoolExecutor) -> None:
        self.table = table
        self.threshold = threshold
        self._pool = pool
        self._recent: Recent | None = None

    async def nearest(self, ids: list[str], vectors: np.ndarray) -> list[Nearest]:
        deadline = time.monotonic() + _BUILD_WAIT
        while not self.table.actives_built():  # an index is still being built after a rebalance
            if time.monotonic() >= deadline:
                raise IndexNotBuilt(f"the index of an active partition is still being built after {_BUILD_WAIT:.0f} s; "
                                    "novelty is measured once it is whole (the batch is retried)")
            await asyncio.sleep(_BUILD_POLL)
        actives = self.table.actives()
        recent = self._recent or Recent.empty(vectors.shape[1])
        loop = asyncio.get_running_loop()
        k = _NOVELTY_K
        while True:
            every = k >= sum(self.table.counts(actives).values())  # then the hits are all the index holds
            hits = await loop.run_in_executor(self._pool, self.table.search, vectors, k, None, None, actives)
            answers = await loop.run_in_executor(self._pool, nearest_before, ids, vectors, hits,
                                                 None if every else k, recent)
            if all(answer is not None for answer in answers):
                return [answer for answer in answers if answer is not None]
            k *= 8

    def remember(self, ids: list[str], vectors: np.ndarray) -> None:
        """The batch just done: the next batch compares with it exactly (the index may not hold it yet)."""
        self._recent = Recent(tuple(ids), vectors)


class BatchAnalysis:
    """The ingest observer; see the module docstring."""

    def __init__(self, *, watchlist: Watchlist, watchlist_loaded: asyncio.Event, patterns_topic: str, sender: Sender,
                 alerts_topic: str, health: HealthMonitor, novelty: Novelty | None, pool: ThreadPoolExecutor,
                 on_detected: OnDetected | None = None) -> None:
        self.watchlist = watchlist
        self.watchlist_loaded = watchlist_loaded
        self.patterns_topic = patterns_topic
        self.sender = sender
        self.alerts_topic = alerts_topic
        self.health = health
        self.novelty = novelty
        self.counts = AlertCounts()
        self._pool = pool
        self._on_detected = on_detected

    async def on_batch(self, indexed: Sequence[IndexedDocument], deleted: Sequence[DeletedDocument]) -> None:
        if not indexed:
            return
        await self._watchlist_read()
        ids = [doc.id for doc in indexed]
        vectors = np.stack([doc.vector for doc in indexed]).astype(np.float32)
        matches = await asyncio.get_running_loop().run_in_executor(self._pool, self.watchlist.match, vectors)
        nearest = await self.novelty.nearest(ids, vectors) if self.novelty is not None else None
        detected = time.time()
        alerts = self._watchlist_alerts(indexed, matches, detected)
        if self.novelty is not None and nearest is not None:
            alerts += self._novelty_alerts(indexed, nearest, self.novelty.threshold, detected)
        alerts += self._health(indexed, nearest, detected)
        await self.sender.send_all([Outgoing(self.alerts_topic, alert.key.encode(), alert.encode()) for alert in alerts])
        self._acknowledged(alerts)
        if self.novelty is not None:
            self.novelty.remember(ids, vectors)

    async def _watchlist_read(self) -> None:
        """A worker that just started must not miss a pattern: until its watchlist is read, the
        batch fails (ingest retries it and reports why) rather than waiting without a word."""
        try:
            await asyncio.wait_for(asyncio.shield(self.watchlist_loaded.wait()), _WATCHLIST_WAIT)
        except asyncio.TimeoutError:
            raise WatchlistNotRead(f"the watchlist is still being read from the topic {self.patterns_topic}; "
                                   "documents are checked against it once it is whole (see the worker log if "
                                   "this lasts)") from None

    @staticmethod
    def _watchlist_alerts(docs: Sequence[IndexedDocument], matches: list[list[Match]], now: float) -> list[Alert]:
        return [watchlist_alert(doc.id, doc.version, match.pattern, match.score, match.labels, doc.event_ts, now)
                for doc, found in zip(docs, matches, strict=True) for match in found]

    @staticmethod
    def _novelty_alerts(docs: Sequence[IndexedDocument], nearest: list[Nearest], threshold: float,
                        now: float) -> list[Alert]:
        return [novelty_alert(doc.id, doc.version, near.id, near.score, threshold, doc.event_ts, now)
                for doc, near in zip(docs, nearest, strict=True)
                if near.id is not None and near.score is not None and near.score < threshold]

    def _health(self, docs: Sequence[IndexedDocument], nearest: list[Nearest] | None, now: float) -> list[Alert]:
        alerts = []
        for position, doc in enumerate(docs):
            best = None if nearest is None else nearest[position].score
            closed = self.health.observe(doc.partition, Observation(
                doc.vector, norm=doc.norm, truncated=doc.truncated,
                text_chars=None if doc.text is None else len(doc.text), best_similarity=best))
            if closed is not None and self.health.drifted(closed):
                alerts.append(self._drift(closed, doc, now))
        return alerts

    def _drift(self, closed: WindowClosed, doc: IndexedDocument, now: float) -> Alert:
        assert closed.drift is not None
        return drift_alert(closed.partition, closed.window, closed.drift, self.health.drift_threshold,
                           closed.documents, doc.event_ts, now)

    def _acknowledged(self, alerts: list[Alert]) -> None:
        acked = time.time()
        latencies: dict[str, list[float]] = {}
        for alert in alerts:
            self.counts.add(alert)
            if alert.event_ts is not None:
                latencies.setdefault(alert.kind, []).append(acked - alert.event_ts)
        if self._on_detected is not None:
            for kind, seconds in latencies.items():
                self._on_detected(kind, seconds)
