"""The replication rules of app/replication.py: the factor and min.insync.replicas a worker
creates topics with, and what it reports about existing topics."""

from __future__ import annotations

import pytest

from app.replication import Replication, min_insync_for, plan_replication, topic_warnings
from app.settings import Settings, SettingsError

BROKER = "k1:9092,k2:9092,k3:9092"
WANTED = plan_replication(3, 3)


@pytest.mark.parametrize(("factor", "min_insync"), [(1, 1), (2, 1), (3, 2), (5, 4)])
def test_min_insync_is_one_less_than_the_factor_and_at_least_one(factor: int, min_insync: int) -> None:
    assert min_insync_for(factor) == min_insync


def test_a_cluster_as_large_as_the_setting_gets_the_setting_without_a_warning() -> None:
    assert plan_replication(3, 3) == Replication(3, 2, None)
    assert plan_replication(3, 5) == Replication(3, 2, None)
    assert plan_replication(3, 5).topic_configs == {"min.insync.replicas": "2"}


def test_a_smaller_cluster_caps_the_factor_and_the_warning_names_both_numbers() -> None:
    replication = plan_replication(3, 1)
    assert (replication.factor, replication.min_insync) == (1, 1)
    assert replication.warning is not None
    assert "replication factor 3 wanted" in replication.warning and "1 broker:" in replication.warning
    assert "get 1 replica," in replication.warning
    assert plan_replication(3, 2).factor == 2 and "2 brokers" in str(plan_replication(3, 2).warning)


def test_nonsense_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        plan_replication(0, 3)
    with pytest.raises(ValueError, match="at least 1"):
        plan_replication(3, 0)


def test_a_safe_topic_draws_no_warning() -> None:
    safe = {"min.insync.replicas": "2", "unclean.leader.election.enable": "false"}
    assert topic_warnings("a-events", 3, safe, WANTED, BROKER) == []
    assert topic_warnings("a-events", 1, {"min.insync.replicas": "1"}, plan_replication(3, 1), BROKER) == []


def test_fewer_replicas_than_wanted_is_reported_with_how_to_add_them() -> None:
    (warning,) = topic_warnings("a-vectors-changelog", 1, {"min.insync.replicas": "1"}, WANTED, BROKER)
    assert "a-vectors-changelog has 1 replica, 3 wanted" in warning
    assert "kafka-reassign-partitions.sh" in warning and "recreate" in warning


def test_min_insync_below_two_on_three_replicas_is_reported_with_the_command_that_fixes_it() -> None:
    (warning,) = topic_warnings("a-events", 3, {"min.insync.replicas": "1"}, WANTED, BROKER)
    assert "min.insync.replicas=1 with 3 replicas" in warning
    assert (f"kafka-configs.sh --bootstrap-server {BROKER} --alter --entity-type topics --entity-name a-events "
            "--add-config min.insync.replicas=2") in warning


def test_a_missing_min_insync_counts_as_kafkas_default_of_one() -> None:
    assert len(topic_warnings("a-events", 3, {}, WANTED, BROKER)) == 1


def test_min_insync_above_the_replica_count_is_reported_since_every_write_would_fail() -> None:
    (warning,) = topic_warnings("a-alerts", 1, {"min.insync.replicas": "2"}, plan_replication(3, 1), BROKER)
    assert "every acks=all write to it fails" in warning and "min.insync.replicas=1" in warning


def test_unclean_leader_election_is_reported() -> None:
    configs = {"min.insync.replicas": "2", "unclean.leader.election.enable": "true"}
    (warning,) = topic_warnings("a-events", 3, configs, WANTED, BROKER)
    assert "unclean.leader.election.enable=true" in warning and "unclean.leader.election.enable=false" in warning


def test_every_finding_of_one_topic_is_reported() -> None:
    configs = {"min.insync.replicas": "1", "unclean.leader.election.enable": "true"}
    assert len(topic_warnings("a-events", 2, configs, WANTED, BROKER)) == 2
    assert len(topic_warnings("a-events", 3, configs, plan_replication(5, 5), BROKER)) == 3


def test_the_setting_defaults_to_three_and_must_be_positive() -> None:
    assert Settings().replication_factor == 3
    assert Settings.from_env({"STREAMVEC_REPLICATION_FACTOR": "1"}).replication_factor == 1
    with pytest.raises(SettingsError, match="REPLICATION_FACTOR must be at least 1"):
        Settings.from_env({"STREAMVEC_REPLICATION_FACTOR": "0"})
