"""aiokafka's ERROR lines for states it recovers from alone are written at WARNING; its other
ERROR lines, and other loggers' ERRORs of the same text, are left as they are."""

from __future__ import annotations

import logging

import pytest

from app.logs import TRANSIENT, lower_transient_errors


def test_only_the_transient_lines_of_aiokafka_are_lowered(caplog: pytest.LogCaptureFixture) -> None:
    lower_transient_errors()
    lower_transient_errors()  # a second app in the same process: one filter per logger still
    assert all(len(logging.getLogger(name).filters) == 1 for name in TRANSIENT)
    cluster = logging.getLogger("aiokafka.cluster")
    coordinator = logging.getLogger("aiokafka.consumer.group_coordinator")
    with caplog.at_level(logging.INFO):
        cluster.error("Topic %s not found in cluster metadata", "app-watchlist")
        coordinator.error("OffsetCommit failed for group %s due to group error (%s), will rejoin", "app", "gen")
        coordinator.error("Group Coordinator Request failed: %s", "[Error 15]")
        cluster.error("Topic %s is not authorized for this client", "app-events")  # a real error
        logging.getLogger("streamvec.test").error("Topic %s not found in cluster metadata", "x")  # not aiokafka's
    levels = [(record.name, record.levelname) for record in caplog.records]
    assert levels == [("aiokafka.cluster", "WARNING"), ("aiokafka.consumer.group_coordinator", "WARNING"),
                      ("aiokafka.consumer.group_coordinator", "WARNING"), ("aiokafka.cluster", "ERROR"),
                      ("streamvec.test", "ERROR")]
