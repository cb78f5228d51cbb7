"""Every endpoint, asked over and over from a worker's first second to its exit: it answers with
what it knows or a 503, never another 5xx, and never a body that is not what it says it is.

A worker's life has three awkward moments for its HTTP layer: the start (the web server is up
before the consumer, the index, the model's warm-up and the cluster secret), a rebalance (a
second worker joins and takes partitions) and the stop (Faust tears services down while the web
server still answers). The review of 2026-12-07 found a 500 from ``/stats`` in a worker's first
second (a consumer not started yet); this test walks the whole life instead of one moment.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from typing import Any

import pytest

from tests.support.fixtures import GroupFactory
from tests.support.kafka import sample_texts
from tests.support.workers import wait_for, wait_for_documents

pytestmark = pytest.mark.integration

DOCS = 300
DOC_ID = sample_texts(1)[0]["id"]
REQUESTS: list[tuple[str, str, Any]] = [
    ("GET", "/health", None), ("GET", "/ready", None), ("GET", "/stats", None), ("GET", "/metrics", None),
    ("GET", "/openapi.json", None), ("GET", "/", None),
    ("GET", "/search?q=a+small+animal&k=3", None), ("POST", "/search", {"text": "a small animal", "k": 3}),
    ("POST", "/search", {"id": DOC_ID, "k": 3}), ("POST", "/search/batch", {"queries": [{"text": "weather"}]}),
    ("GET", f"/documents/{DOC_ID}", None), ("POST", "/documents/batch", {"ids": [DOC_ID, "no-such-doc"]}),
    ("GET", "/dead-letters?limit=5", None), ("GET", "/alerts?limit=5", None),
    ("GET", "/recommendations/someone", None), ("POST", "/watchlist/check", {"text": "a small animal"}),
]


class Hammer(threading.Thread):
    """Sends :data:`REQUESTS` round and round to ``url`` until stopped; counts (method path, status)
    and keeps every answer that breaks the rule. A refused connection is no answer (not up yet,
    or gone)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.answers: Counter[tuple[str, int]] = Counter()
        self.broken: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            for method, path, body in REQUESTS:
                self._ask(method, path, body)

    def _ask(self, method: str, path: str, body: Any) -> None:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, content_type, raw = response.status, response.headers.get("Content-Type", ""), response.read()
        except urllib.error.HTTPError as exc:
            status, content_type, raw = exc.code, exc.headers.get("Content-Type", ""), exc.read()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.05)  # not listening yet, or gone
            return
        self.answers[(f"{method} {path.split('?')[0]}", status)] += 1
        if status >= 500 and status != 503:
            self.broken.append(f"{method} {path}: {status} {raw[:300]!r}")
        elif content_type.startswith("application/json"):
            try:
                json.loads(raw)
            except ValueError:
                self.broken.append(f"{method} {path}: {status} says JSON but is not: {raw[:300]!r}")


def test_every_endpoint_answers_or_says_503_from_the_first_second_through_a_rebalance_to_exit(
        group_factory: GroupFactory) -> None:
    group = group_factory("life")
    first = group.worker("a")
    hammer = Hammer(first.url)
    hammer.start()
    try:
        first.start()
        group.send(sample_texts(DOCS))
        wait_for_documents(first, DOCS, timeout=180)
        second = group.start("b")  # a rebalance while the hammer goes on
        wait_for("the second worker to take partitions",
                 lambda: second.stats()["workers"].get(second.url, {}).get("partitions"), timeout=180, interval=0.3)
        time.sleep(2)
        stopping = time.monotonic()
        first.stop()  # SIGTERM; the hammer goes on until the process is gone
        stopped = time.monotonic() - stopping
        assert not first.alive()
    finally:
        hammer.halt.set()
        hammer.join(timeout=60)
    by_status = Counter(status for (_, status), count in hammer.answers.items() for _ in range(count))
    print(f"\n{sum(hammer.answers.values())} answers over the worker's life: {dict(sorted(by_status.items()))}; "
          f"SIGTERM to exit {stopped:.1f} s")
    assert hammer.broken == [], "\n".join(hammer.broken[:20])
    asked = {where for where, _ in hammer.answers}
    assert asked == {f"{method} {path.split('?')[0]}" for method, path, _ in REQUESTS}, "an endpoint never answered"
    assert by_status[200] > 0 and by_status[503] > 0, by_status  # it was asked while recovering, too
