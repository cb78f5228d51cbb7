"""Requests cannot hurt a worker (review findings SP-3, SP-13, SP-22).

One worker holds 10,000 documents while a poller asks ``/health`` and ``/ready`` every 100 ms.
Meanwhile it is sent what used to stall or bloat it: a ``$or`` as large as the body limit lets
through (55,000 branches), a batch of filters at the limits that match nothing (so the exact scan
visits every document, in Python, once per query), a batch of 100 queries × k 1,000 with texts,
and a body nested 300 levels. Each gets a clear 4xx or its answer; every poll answers within a
second and the worker never leaves its group.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import numpy as np
import pytest

from index.ann.filters import MAX_CONDITIONS
from tests.support.fixtures import GroupFactory
from tests.support.workers import Worker, http, wait_for_documents

pytestmark = pytest.mark.integration

DOCS = 10_000
DIM = 384
TEXT = "lorem ipsum " * 100  # 1.2 kB a document: 100 × 1,000 hits carry about 120 MB of text


class Poller:
    """Asks a worker's ``/health`` and ``/ready`` every 100 ms from a thread of its own."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.slowest = 0.0
        self.polls = 0
        self.not_ready: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="health-poller", daemon=True)

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            started = time.monotonic()
            try:
                status, _ = http("GET", self.worker.url + "/health", timeout=5.0)
                ready_status, ready = http("GET", self.worker.url + "/ready", timeout=5.0)
            except OSError as exc:  # no answer within 5 s counts against the worker, never silently
                status, ready_status, ready = 0, 0, {"error": repr(exc)}
            self.slowest = max(self.slowest, time.monotonic() - started)
            self.polls += 1
            if status != 200 or ready_status != 200:
                self.not_ready.append(ready)


def _post(worker: Worker, path: str, body: bytes) -> tuple[int, dict[str, Any], float]:
    request = urllib.request.Request(worker.url + path, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read()), time.monotonic() - started
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), time.monotonic() - started


def test_hostile_requests_get_clear_answers_and_the_worker_keeps_answering(group_factory: GroupFactory) -> None:
    group = group_factory("hostile", STREAMVEC_MAX_RESPONSE_BYTES=str(8 << 20))
    worker = group.start("a")
    vectors = np.random.default_rng(7).standard_normal((DOCS, DIM)).astype(np.float32)
    group.send([{"id": f"d{i}", "vector": vectors[i].tolist(), "text": TEXT,
                 "metadata": {"tag": f"t{i % 100}", "n": i}} for i in range(DOCS)])
    wait_for_documents(worker, DOCS, 300)
    worker.wait_ready(60)
    query = vectors[0].tolist()

    with Poller(worker) as poller:
        huge = json.dumps({"vector": query, "filter": {"$or": [{"tag": f"x{i}"} for i in range(55_000)]}}).encode()
        status, body, took = _post(worker, "/search", huge)
        assert status == 400 and f"more than {MAX_CONDITIONS} conditions" in body["error"], body
        assert took < 2.0, f"refusing a 55,000-branch filter took {took:.1f} s"

        at_limit = {"$or": [{"tag": f"x{i}"} for i in range(MAX_CONDITIONS // 2)]}  # matches nothing
        status, body, scanned = _post(worker, "/search/batch", json.dumps(
            {"queries": [{"vector": query, "k": 10, "filter": at_limit} for _ in range(10)]}).encode())
        assert status == 200 and all(rows == [] for rows in body["results"]) and not body["partial"], body

        status, body, _ = _post(worker, "/search/batch", json.dumps(
            {"queries": [{"vector": vectors[i].tolist(), "k": 1000} for i in range(100)]}).encode())
        assert status == 413 and "STREAMVEC_MAX_RESPONSE_BYTES" in body["error"], body
        status, body, _ = _post(worker, "/search/batch", json.dumps(
            {"queries": [{"vector": vectors[i].tolist(), "k": 1000, "include": ["metadata"]}
                         for i in range(20)]}).encode())
        assert status == 200 and [len(rows) for rows in body["results"]] == [1000] * 20, body.get("error")

        deep = b'{"vector": ' + json.dumps(query).encode() + b', "x": ' + b"[" * 300 + b"]" * 300 + b"}"
        status, body, _ = _post(worker, "/search", deep)
        assert status == 400 and "nested more than 64 levels" in body["error"], body

    print(f"\nhostile requests: 55,000-branch $or refused in {took * 1000:.0f} ms; 10 exact scans at the limits "
          f"{scanned:.1f} s; {poller.polls} polls of /health + /ready, slowest {poller.slowest * 1000:.0f} ms")
    assert poller.polls >= 10
    assert poller.slowest < 1.0, f"a /health + /ready poll took {poller.slowest:.2f} s"
    assert not poller.not_ready, f"the worker stopped being ready (left its group?): {poller.not_ready[:3]}"
    assert not group.crashes()
