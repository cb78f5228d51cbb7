"""Apache Kafka 4.x (KRaft) nodes for tests and CI, run from the Maven Central jars: one node
alone, or one node of the clusters :mod:`app.brokers.cluster` starts.

The Apache download site is not reachable from our machines, so instead of the tarball's
``bin/kafka-server-start.sh`` we do by hand what it does: put ``kafka_2.13`` and its runtime
dependencies (``make install`` copies them into ``.kafka/lib`` with ``app/brokers/pom.xml``)
on the classpath, format the log dir once with ``kafka.tools.StorageTool --standalone``, and
run ``kafka.Kafka server.properties`` as one combined broker+controller node.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from app.brokers.process import BrokerError, BrokerHandle, free_port, launch, prepare_data_dir

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_LIB_DIR = REPO_ROOT / ".kafka" / "lib"
"""Where ``make install`` puts the broker jars."""

LOG4J2_CONFIG = Path(__file__).with_name("log4j2.yaml")
"""Keeps the broker log to warnings; Kafka at INFO writes megabytes per test run."""

DEFAULT_JVM_OPTIONS: tuple[str, ...] = (
    "-Xms256m",
    "-Xmx1g",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:TieredStopAtLevel=1",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)
"""Heap sized for a 2-core/24 GiB machine that also runs the workers and ONNX models.

``TieredStopAtLevel=1`` (C1 JIT only) cuts format + start from ~5 s to ~2.5-3.5 s on such a
machine; test traffic is far too small for C2's peak speed to matter.
"""

HOST = "127.0.0.1"
NODE_ID = 1
LOG_DIR_NAME = "kafka-logs"
FORMAT_TIMEOUT_SECONDS = 60.0

# Settings that make a one-node broker start fast and behave in tests: replication factors
# of 1 (there is one node), no initial rebalance delay (Kafka's default 3 s delay would be
# added to every consumer group's first join), and single-partition internal topics so the
# first consumer group does not wait for 50 __consumer_offsets partitions to be created.
# Auto-creation is off, as Faust advises for production: a Faust consumer's metadata request
# for its not-yet-declared source topic would otherwise create it with num.partitions (1),
# and the worker then crashes with PartitionsMismatch against its 4- or 8-partition
# changelog. Topics are created explicitly (app.topics.ensure_topic, Faust's declare).
_TEST_SETTINGS: dict[str, str] = {
    "num.partitions": "1",
    "auto.create.topics.enable": "false",
    "delete.topic.enable": "true",
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "transaction.state.log.num.partitions": "1",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "share.coordinator.state.topic.num.partitions": "1",
    "group.initial.rebalance.delay.ms": "0",
    "num.network.threads": "2",
    "num.io.threads": "4",
    "num.recovery.threads.per.data.dir": "1",
    "log.cleaner.threads": "1",
    # The cleaner looks for dirty logs every second, not every 15 s: a test of a compacted
    # topic waits for a real clean (tests/integration/test_offset_gaps.py).
    "log.cleaner.backoff.ms": "1000",
}


def start_kafka(
    port: int | None = None,
    data_dir: Path | None = None,
    lib_dir: Path = DEFAULT_LIB_DIR,
    timeout: float = 60.0,
    *,
    jvm_options: Sequence[str] = DEFAULT_JVM_OPTIONS,
    extra_config: Mapping[str, str] | None = None,
    member: ClusterMember | None = None,
) -> BrokerHandle:
    """Start a one-node KRaft Kafka on loopback (or one node of a cluster) and return once
    clients can use it.

    Args:
        port: Client (PLAINTEXT) port; a free one is picked if omitted. The controller
            listener always gets another free port.
        data_dir: Keeps config, ``broker.log`` and the log dirs. Reusing a dir restarts the
            same cluster with its topics (the format step is skipped). If omitted, a temp
            dir is created and :meth:`BrokerHandle.stop` deletes it.
        lib_dir: The jars copied by ``make install``.
        timeout: Seconds allowed for the broker to serve metadata.
        jvm_options: JVM flags (heap size etc.).
        extra_config: ``server.properties`` entries that override ours (e.g. retention).
        member: This node's place in a cluster of several (:mod:`app.brokers.cluster`); without
            it the node is a cluster of its own.

    Raises:
        BrokerError: Java or the jars are missing, formatting failed, or the broker did not
            come up; the message says what to do and quotes the broker log.
    """
    java = _find_java()
    classpath = _classpath(lib_dir)
    client_port = port if port is not None else free_port(HOST)
    data_dir, created = prepare_data_dir(data_dir, "kafka")
    try:
        if member is None:
            controller_port = free_port(HOST)
            while controller_port == client_port:
                controller_port = free_port(HOST)
            quorum = {"node.id": str(NODE_ID), "controller.quorum.bootstrap.servers": f"{HOST}:{controller_port}"}
        else:
            controller_port, quorum = member.controller_port, member.settings
        properties = _server_properties(client_port, controller_port, data_dir / LOG_DIR_NAME,
                                        {**quorum, **(extra_config or {})})
        config_path = data_dir / "server.properties"
        config_path.write_text(properties)
        base = [java, *jvm_options, f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}", "-cp", classpath]
        if not (data_dir / LOG_DIR_NAME / "meta.properties").exists():
            _format(base, config_path, data_dir, member)
    except BaseException:
        if created:
            shutil.rmtree(data_dir, ignore_errors=True)
        raise
    return launch(
        [*base, "kafka.Kafka", str(config_path)],
        kind="kafka",
        host=HOST,
        port=client_port,
        data_dir=data_dir,
        remove_data_dir=created,
        timeout=timeout,
    )


def new_cluster_id() -> str:
    """Return a new KRaft cluster id: a random UUID in URL-safe base64 without padding.

    Same format as ``kafka-storage.sh random-uuid``, without starting a JVM for it.
    """
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")


@dataclass(frozen=True)
class ClusterMember:
    """One node of a KRaft cluster of several combined broker+controller nodes: its id, its
    controller port, every voter and the cluster id all nodes are formatted with."""

    node_id: int
    controller_port: int
    voters: str
    """``controller.quorum.voters``: ``id@host:port`` of every node, comma-separated."""
    cluster_id: str
    size: int

    @property
    def settings(self) -> dict[str, str]:
        """This node's quorum, and Kafka's own topics replicated as a production cluster would
        (``_TEST_SETTINGS`` gives them one copy): otherwise the group coordinator, on one node,
        would stop every consumer group when that node is killed."""
        replicas, min_insync = str(min(3, self.size)), str(min(2, self.size))
        return {"node.id": str(self.node_id), "controller.quorum.voters": self.voters,
                "offsets.topic.replication.factor": replicas, "transaction.state.log.replication.factor": replicas,
                "transaction.state.log.min.isr": min_insync,
                "share.coordinator.state.topic.replication.factor": replicas,
                "share.coordinator.state.topic.min.isr": min_insync}


def _server_properties(client_port: int, controller_port: int, log_dir: Path, extra: Mapping[str, str]) -> str:
    """Render ``server.properties`` for one combined broker+controller node; ``extra`` names
    the node and its quorum.

    Alone, a node names itself in ``controller.quorum.bootstrap.servers`` (rather than the
    static ``quorum.voters``), which is what Kafka 4.x pairs with ``format --standalone``: the
    node is its own single voter. In a cluster, every node lists the same static voters.
    """
    settings: dict[str, str] = {
        "process.roles": "broker,controller",
        "listeners": f"PLAINTEXT://{HOST}:{client_port},CONTROLLER://{HOST}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{client_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(log_dir),
        **_TEST_SETTINGS,
        **extra,
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def _format(base: Sequence[str], config_path: Path, data_dir: Path, member: ClusterMember | None) -> None:
    """Run ``StorageTool format`` once for a fresh data dir: ``--standalone`` for a node alone, the
    cluster's id for a member (its voters are in the config)."""
    cluster_id = new_cluster_id() if member is None else member.cluster_id
    # "--cluster-id=<id>", not "-t <id>": one id in 64 starts with "-", which the tool's argument
    # parser then takes for an option ("expected one argument").
    command = [*base, "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
               *(["--standalone"] if member is None else []), "-c", str(config_path)]
    logger.info("formatting Kafka log dir in %s", data_dir)
    try:
        result = subprocess.run(
            command,
            cwd=data_dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=FORMAT_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        limit = f"{FORMAT_TIMEOUT_SECONDS:.0f} s"
        raise BrokerError(f"formatting the Kafka log dir in {data_dir} took over {limit}") from exc
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()
        hint = " Kafka 4.x needs Java 17 or newer." if "UnsupportedClassVersionError" in output else ""
        raise BrokerError(
            f"Kafka StorageTool format failed (exit {result.returncode}) in {data_dir}.{hint} Output:\n"
            + "\n".join(output.splitlines()[-20:])
        )


def _find_java() -> str:
    """Return the ``java`` launcher from ``$JAVA_HOME`` or ``PATH``."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("java")
    if found is None:
        raise BrokerError(
            "no `java` on PATH (or in $JAVA_HOME/bin): the Kafka broker needs Java 17 or newer; "
            "install one, e.g. `apt-get install openjdk-17-jre-headless`"
        )
    return found


def _classpath(lib_dir: Path) -> str:
    """Return the classpath ``lib_dir/*`` after checking the broker jar is there."""
    if not any(lib_dir.glob("kafka_2.13-*.jar")):
        raise BrokerError(
            f"the Kafka jars are not in {lib_dir}: run `make install` (it runs "
            "`mvn -q -f app/brokers/pom.xml dependency:copy-dependencies "
            "-DoutputDirectory=.kafka/lib -DincludeScope=runtime`)"
        )
    return str(lib_dir / "*")

