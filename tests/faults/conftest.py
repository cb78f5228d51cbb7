"""Fixtures of the fault suite; the table of results is printed at the end of the run."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults import harness

_COUNTER = itertools.count()


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One converted model for every worker of the suite."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture
def group_factory(kafka_broker: str, model_cache: Path, tmp_path: Path) -> Iterator[harness.GroupFactory]:
    groups: list[harness.Group] = []

    def make(name: str, broker: str | None = None, **env: str) -> harness.Group:
        app_id = f"{name}{int(time.time())}{next(_COUNTER)}"
        group = harness.Group(broker or kafka_broker, app_id, tmp_path / app_id, model_cache, dict(env))
        harness.create_events_topic(group.broker, app_id)
        groups.append(group)
        return group
    yield make
    for group in groups:
        group.stop_all()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if harness.ROWS:
        terminalreporter.section("faults: what each fault did to the group")
        for line in harness.table():
            terminalreporter.write_line(line)
        terminalreporter.write_line("lost: ids whose last version is missing (records or index); resurr.: deleted ids "
                                    "that show; → complete / ready: longest time after a fault until a search "
                                    "answered for every partition / every worker was ready; fresh ready: a worker "
                                    "with an empty data dir, rebuilt from the changelog alone")
