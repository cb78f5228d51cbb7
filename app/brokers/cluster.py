"""A Kafka cluster of several KRaft nodes on loopback, from the same jars as :func:`start_kafka`.

Every node is broker and controller, so the quorum survives the loss of any one node (a
majority of three voters remains): the fault suite kills the leader of a partition, whichever
node that is. Each node has its own ports and data dir (``node-<id>``), and is started again
with both, so it comes back as the same member of the same cluster.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from app.brokers.kafka import HOST, ClusterMember, new_cluster_id, start_kafka
from app.brokers.process import BrokerError, BrokerHandle, free_port, prepare_data_dir


@dataclass
class KafkaCluster:
    """Running KRaft nodes by node id (which is also each one's broker id in metadata)."""

    root: Path
    members: dict[int, ClusterMember]
    ports: dict[int, int]
    handles: dict[int, BrokerHandle] = field(default_factory=dict)
    remove_root: bool = False

    @property
    def url(self) -> str:
        """Every node's ``host:port``, separated by ``;`` as ``STREAMVEC_BROKER`` takes them."""
        return ";".join(f"{HOST}:{self.ports[node]}" for node in sorted(self.ports))

    def start_node(self, node: int, timeout: float = 60.0) -> BrokerHandle:
        """Start (or start again) one node on its own ports and data dir."""
        self.handles[node] = start_kafka(port=self.ports[node], data_dir=self.root / f"node-{node}",
                                         timeout=timeout, member=self.members[node])
        return self.handles[node]

    def kill(self, node: int) -> None:
        """``kill -9`` one node."""
        self.handles[node].kill()

    def stop(self) -> None:
        """Stop every node at once: one by one, the last ones would wait out their grace period
        for a controlled shutdown that needs the quorum the others took with them."""
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(self.members) or 1) as pool:
            list(pool.map(BrokerHandle.stop, self.handles.values()))
        if self.remove_root:
            shutil.rmtree(self.root, ignore_errors=True)


def start_kafka_cluster(size: int = 3, data_dir: Path | None = None, timeout: float = 90.0) -> KafkaCluster:
    """Start ``size`` nodes at once and return when the metadata lists every broker.

    At once, because no node serves until a majority of the voters is up to elect a controller.
    A node that cannot start stops the others and raises :class:`BrokerError`.
    """
    root, created = prepare_data_dir(data_dir, "kafka-cluster")
    ports = {node: free_port(HOST) for node in range(1, size + 1)}
    controllers = {node: free_port(HOST) for node in ports}
    voters = ",".join(f"{node}@{HOST}:{port}" for node, port in controllers.items())
    cluster_id = new_cluster_id()
    members = {node: ClusterMember(node, controllers[node], voters, cluster_id, size) for node in ports}
    cluster = KafkaCluster(root, members, ports, remove_root=created)
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=size, thread_name_prefix="kafka-node") as pool:
            for started in [pool.submit(cluster.start_node, node, timeout) for node in ports]:
                started.result()
        wait_for_brokers(cluster.url, size, time.monotonic() + timeout)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def wait_for_brokers(url: str, count: int, deadline: float) -> None:
    """Wait until the cluster's metadata lists ``count`` brokers: a topic of ``count`` replicas
    cannot be created before (Kafka counts the brokers that registered)."""
    seen = 0
    while time.monotonic() < deadline:
        seen = asyncio.run(_broker_count(url))
        if seen >= count:
            return
        time.sleep(0.2)
    raise BrokerError(f"the cluster at {url} listed {seen} of {count} brokers at the deadline")


async def _broker_count(url: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=url.replace(";", ","))
    try:
        await admin.start()
        return len((await admin.describe_cluster())["brokers"])
    finally:
        await admin.close()
