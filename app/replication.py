"""How many copies of each topic streamvec asks Kafka for, and what makes an existing topic unsafe.

Pure rules, no Kafka client: :mod:`app.topics` asks the broker for its broker count and the
topics' settings, and these functions decide. Every topic a worker creates (Faust's changelogs
and internal topics, and those :func:`app.topics.ensure_topic` creates) gets
:attr:`Replication.factor` replicas and ``min.insync.replicas`` of :attr:`Replication.min_insync`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_REPLICATION_FACTOR = 3
"""Kafka's usual production factor: one broker can be down for maintenance while another fails."""

MIN_INSYNC = "min.insync.replicas"
UNCLEAN_ELECTION = "unclean.leader.election.enable"


@dataclass(frozen=True)
class Replication:
    """The replication a worker asks for, decided once at start from the setting and the cluster."""

    factor: int
    min_insync: int
    warning: str | None = None
    """Why ``factor`` is below the setting, when it is (for the worker's log)."""

    @property
    def topic_configs(self) -> dict[str, str]:
        """The topic settings every topic streamvec creates carries."""
        return {MIN_INSYNC: str(self.min_insync)}


def min_insync_for(factor: int) -> int:
    """``min.insync.replicas`` for a topic of ``factor`` replicas: one less than the factor, at least 1.

    Our producers write with ``acks=all``, which waits for every replica *in sync*, and a
    replica that falls behind leaves the in-sync set. With Kafka's default of 1, a leader
    whose followers have dropped out acknowledges alone, and losing its disk then loses
    acknowledged changelog records. Requiring all but one means an acknowledged record is on
    at least two brokers (with 3 replicas), while one broker can be down without stopping
    writes; requiring all would stop ingest at the first broker restart. With one or two
    replicas, 1 keeps the only (or the surviving) copy writable.
    """
    return max(1, factor - 1)


def plan_replication(wanted: int, brokers: int) -> Replication:
    """The replication for ``wanted`` copies (``STREAMVEC_REPLICATION_FACTOR``) on ``brokers`` brokers.

    Kafka refuses to create a topic with more replicas than brokers, so a factor above the
    broker count is capped to it, with a warning naming both numbers: a development cluster
    of one broker still works, and the log says its topics have fewer copies than asked for.
    """
    if wanted < 1 or brokers < 1:
        raise ValueError(f"a replication factor and a broker count are at least 1, got {wanted} and {brokers}")
    factor = min(wanted, brokers)
    warning = None
    if factor < wanted:
        warning = (f"replication factor {wanted} wanted (STREAMVEC_REPLICATION_FACTOR) but the cluster has "
                   f"{brokers} broker{'s' if brokers > 1 else ''}: topics created now get {factor} "
                   f"replica{'s' if factor > 1 else ''}, and losing a broker's disk can lose their data")
    return Replication(factor, min_insync_for(factor), warning)


def topic_warnings(topic: str, replicas: int, configs: Mapping[str, str], wanted: Replication,
                   broker: str) -> list[str]:
    """What is unsafe about an existing ``topic`` of ``replicas`` replicas with ``configs``
    (its effective settings, as ``kafka-configs --describe`` shows them); one line per finding,
    each with the command that fixes it. Empty when the topic is as safe as ``wanted``.

    A topic someone created before the first worker (or an older streamvec, which asked for 1
    replica) keeps its settings: Kafka never changes them for us, so the worker says so at start.
    """
    found: list[str] = []
    alter = (f"kafka-configs.sh --bootstrap-server {broker} --alter --entity-type topics "
             f"--entity-name {topic} --add-config")
    if replicas < wanted.factor:
        found.append(f"topic {topic} has {replicas} replica{'s' if replicas > 1 else ''}, {wanted.factor} wanted: "
                     f"add replicas with kafka-reassign-partitions.sh, or delete and recreate it (data topics lose "
                     f"their records; a changelog is written again only by re-ingesting)")
    min_insync = int(configs.get(MIN_INSYNC, "1"))
    if replicas >= 3 and min_insync < 2:
        found.append(f"topic {topic} has {MIN_INSYNC}={min_insync} with {replicas} replicas: an acknowledged "
                     f"write may be on one broker only; {alter} {MIN_INSYNC}={min_insync_for(replicas)}")
    if min_insync > replicas:
        found.append(f"topic {topic} has {MIN_INSYNC}={min_insync} but only {replicas} replica"
                     f"{'s' if replicas > 1 else ''}: every acks=all write to it fails; "
                     f"{alter} {MIN_INSYNC}={min_insync_for(replicas)}")
    if configs.get(UNCLEAN_ELECTION, "false").lower() == "true":
        found.append(f"topic {topic} has {UNCLEAN_ELECTION}=true: a replica that is behind can become leader "
                     f"and acknowledged records are lost; {alter} {UNCLEAN_ELECTION}=false")
    return found
