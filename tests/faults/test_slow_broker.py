"""A slow broker: 300 ms on every byte between the workers and Kafka, then a 10 s stall, with a
kill -9 right after an offset commit. Acknowledged must mean durable: the worker that restarts
finds every committed event's records in the changelog."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from app.brokers.kafka import start_kafka
from app.brokers.process import free_port
from tests.faults import harness
from tests.faults.proxy import HOST, SlowProxy
from tests.support.workers import wait_for

pytestmark = pytest.mark.faults


@pytest.fixture
def slow_kafka() -> Iterator[tuple[str, SlowProxy]]:
    """A Kafka of its own that advertises the proxy's port, so every client goes through it."""
    port = free_port(HOST)
    proxy = SlowProxy(port).start()
    broker = start_kafka(port=port, extra_config={"advertised.listeners": f"PLAINTEXT://{HOST}:{proxy.port}"})
    try:
        yield f"{HOST}:{proxy.port}", proxy
    finally:
        broker.stop()
        proxy.stop()


def test_a_slow_then_stalled_broker_and_a_kill_after_a_commit_lose_nothing(
        slow_kafka: tuple[str, SlowProxy], group_factory: harness.GroupFactory) -> None:
    url, proxy = slow_kafka
    group = group_factory("slow", broker=url)
    ledger = harness.Ledger(seed=300)
    records = ledger.vector_events([f"doc-{n}" for n in range(1500)], 5000)
    group.start("a"), group.start("b")
    group.wait_ready()

    feed = harness.Feed(url, group.topic, records, rate=100).start()
    time.sleep(5)
    proxy.delay = 0.3
    committed = harness.committed_offsets(url, group.app_id)
    wait_for("an offset commit while the broker is slow",
             lambda: harness.committed_offsets(url, group.app_id) > committed, timeout=60, interval=0.2)
    group.workers["a"].kill()  # right after a commit
    proxy.stall(10)
    time.sleep(10)
    proxy.delay = 0.0
    healed = time.monotonic()
    group.start("a")
    group.recovered(since=healed)
    feed.wait(timeout=300)

    harness.settle_and_report(group, ledger, url, "broker +300 ms, stall 10 s, kill -9", 1)
