"""Replication on the suite's one-broker Kafka: a worker creates its topics with as many replicas
as there are brokers and says that is fewer than asked, and it warns about an existing topic
whose settings would lose or refuse writes. (Three brokers: tests/faults/test_broker_leader_kill.py.)"""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.support.fixtures import GroupFactory
from tests.support.kafka import topic_replication

pytestmark = pytest.mark.integration


def test_a_worker_caps_the_factor_to_one_broker_and_warns_about_unsafe_topics(kafka_broker: str,
                                                                               group_factory: GroupFactory) -> None:
    group = group_factory("repl")
    alerts = group.topic_of("alerts")
    asyncio.run(_create(kafka_broker, NewTopic(alerts, num_partitions=group.partitions, replication_factor=1,
                                               topic_configs={"min.insync.replicas": "2",
                                                              "unclean.leader.election.enable": "true"})))
    worker = group.start("a")
    worker.wait_ready()

    log = worker.log_path.read_text()
    warnings = [line for line in log.splitlines() if "[WARNING]" in line]
    assert any("replication factor 3 wanted (STREAMVEC_REPLICATION_FACTOR) but the cluster has 1 broker" in line
               for line in warnings), log[-3000:]
    assert any(f"topic {alerts} has min.insync.replicas=2 but only 1 replica" in line and
               "--add-config min.insync.replicas=1" in line for line in warnings), log[-3000:]
    assert any(f"topic {alerts} has unclean.leader.election.enable=true" in line for line in warnings), log[-3000:]
    assert "topics created by this worker get replication factor 1 and min.insync.replicas=1" in log
    for suffix in ("events", "vectors-changelog", "profiles-changelog", "dead-letters", "cluster-secret",
                   "__assignor-__leader"):
        assert topic_replication(kafka_broker, group.topic_of(suffix)) == (1, "1"), suffix


async def _create(broker: str, topic: NewTopic) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        await admin.create_topics([topic])
    finally:
        await admin.close()
