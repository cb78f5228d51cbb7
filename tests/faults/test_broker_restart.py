"""The Kafka broker stopped for 10 s and started again during ingest: the workers stay up, retry,
and resume where the changelog says they are."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.brokers.kafka import start_kafka
from app.brokers.process import BrokerHandle, free_port
from tests.faults import harness

pytestmark = pytest.mark.faults

DOWN_SECONDS = 10


class RestartableKafka:
    """A Kafka of its own, on a fixed port and data dir, so that it comes back as the same cluster."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port("127.0.0.1")
        self.data_dir = data_dir
        self.handle: BrokerHandle = start_kafka(port=self.port, data_dir=data_dir)
        self.url = self.handle.url

    def restart(self, down_seconds: float) -> None:
        self.handle.stop()
        time.sleep(down_seconds)
        self.handle = start_kafka(port=self.port, data_dir=self.data_dir)


@pytest.fixture
def own_kafka(tmp_path: Path) -> Iterator[RestartableKafka]:
    kafka = RestartableKafka(tmp_path / "kafka")
    try:
        yield kafka
    finally:
        kafka.handle.stop()


def test_a_broker_restart_during_ingest_loses_nothing(own_kafka: RestartableKafka,
                                                       group_factory: harness.GroupFactory) -> None:
    group = group_factory("restart", broker=own_kafka.url)
    ledger = harness.Ledger(seed=400)
    records = ledger.vector_events([f"doc-{n}" for n in range(1500)], 5000)
    workers = [group.start("a"), group.start("b")]
    group.wait_ready()

    feed = harness.Feed(own_kafka.url, group.topic, records, rate=100).start()
    time.sleep(8)
    own_kafka.restart(DOWN_SECONDS)
    back = time.monotonic()
    assert all(worker.alive() for worker in workers), "a worker died while the broker was down"
    group.recovered(since=back)
    feed.wait(timeout=300)

    harness.settle_and_report(group, ledger, own_kafka.url, f"broker stopped {DOWN_SECONDS} s, restarted", 1)
