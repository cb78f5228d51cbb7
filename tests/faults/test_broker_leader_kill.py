"""kill -9 of the Kafka broker that leads a changelog partition and an events partition, on a
cluster of three, while two workers ingest: the partitions' other replicas take over, ingest
goes on while that broker is down, and after it comes back nothing is lost (review SP-5).

The topics are the workers' own, created with STREAMVEC_REPLICATION_FACTOR=3: three replicas and
``min.insync.replicas=2``, so every acknowledged record is on a surviving broker.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.errors import KafkaError

from app.brokers.cluster import KafkaCluster, start_kafka_cluster
from app.brokers.process import BrokerError
from tests.faults import harness
from tests.support.kafka import end_offsets, partition_leaders, topic_replication
from tests.support.workers import wait_for

pytestmark = pytest.mark.faults

DOWN_SECONDS = 20
"""At least this long down: past the controller's 9 s broker session timeout, which is when the
partitions it led get new leaders."""
GROWN_WHILE_DOWN = 300
"""Outcomes the group must count while the broker is down (3 s of the feed)."""


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[KafkaCluster]:
    try:
        cluster = start_kafka_cluster(3, tmp_path / "kafka")
    except BrokerError as exc:
        pytest.fail(f"the test's 3-node Kafka cluster did not start: {exc}")
    try:
        yield cluster
    finally:
        cluster.stop()


def test_killing_the_leader_broker_during_ingest_loses_nothing(cluster: KafkaCluster,
                                                                group_factory: harness.GroupFactory) -> None:
    group = group_factory("leader", broker=cluster.url, STREAMVEC_REPLICATION_FACTOR="3")
    ledger = harness.Ledger(seed=500)
    records = ledger.vector_events([f"doc-{n}" for n in range(1500)], 4000)
    group.start("a"), group.start("b")
    group.wait_ready()
    changelog = group.topic_of("vectors-changelog")
    for topic in (group.topic, changelog, group.topic_of("dead-letters")):
        assert topic_replication(cluster.url, topic) == (3, "2"), f"{topic} is not replicated as asked"

    feed = harness.Feed(cluster.url, group.topic, records, rate=100).start()
    time.sleep(8)
    changelog_leaders, events_leaders = partition_leaders(cluster.url, changelog), partition_leaders(cluster.url,
                                                                                                  group.topic)
    victim = next(node for _, node in sorted(changelog_leaders.items()) if node in events_leaders.values())
    led = {changelog: [p for p, node in changelog_leaders.items() if node == victim],
           group.topic: [p for p, node in events_leaders.items() if node == victim]}
    before = {topic: end_offsets(cluster.url, topic, harness.PARTITIONS) for topic in led}
    counted = sum(group.any().stats()["outcomes"].values())
    cluster.kill(victim)
    killed = time.monotonic()
    group.recovered(since=killed)  # every partition answers, and every worker is ready: ingest flows

    def grown() -> bool:
        """Ingest went on without the victim: more outcomes, and every partition it led, of the
        events and of the changelog, written on its new leader."""
        if sum(group.any().stats()["outcomes"].values()) < counted + GROWN_WHILE_DOWN:
            return False
        try:
            now = {topic: end_offsets(cluster.url, topic, harness.PARTITIONS) for topic in led}
        except KafkaError:
            return False
        return all(now[topic][p] > before[topic][p] for topic, partitions in led.items() for p in partitions)
    wait_for(f"ingest to go on without broker {victim} (it led {led})", grown, timeout=90, interval=1.0)
    flowing = time.monotonic() - killed
    assert not cluster.handles[victim].running(), "the victim came back by itself"
    time.sleep(max(0.0, DOWN_SECONDS - flowing))
    cluster.start_node(victim)
    group.recovered(since=time.monotonic())
    feed.wait(timeout=300)

    harness.settle_and_report(group, ledger, cluster.url,
                              f"leader broker kill -9, 3 brokers, {DOWN_SECONDS} s", 1)
    print(f"broker {victim} led {led}; ingest wrote to all of them again {flowing:.1f} s after the kill")
