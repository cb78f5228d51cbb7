"""Session fixtures for every suite (loaded by tests/conftest.py through ``pytest_plugins``):
a real Kafka broker, the model prepared once, and groups of real workers.

The broker is started by the suite (or taken from ``STREAMVEC_TEST_BROKER``). If it cannot
start, every test that needs it fails and says why: a skipped integration suite must never
look green.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from index.model.models import DEFAULT_MODEL
from tests.support.group import Group, new_app_id
from tests.support.kafka import REPO, running_broker

GroupFactory = Callable[..., Group]


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[str]:
    """``host:port`` of a running Apache Kafka (KRaft, one node), or ``STREAMVEC_TEST_BROKER``."""
    given = os.environ.get("STREAMVEC_TEST_BROKER")
    if given:
        yield given
        return
    from app.brokers.kafka import start_kafka

    yield from running_broker(start_kafka, "Kafka")


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model cache of every worker and model test of the session, the default model prepared in
    it once (``python -m index.model.prepare``, a child process, as a worker would), so a clean
    machine converts the model once per session instead of once per module. Tests of conversion
    and caching themselves (tests/unit/index/test_model_cache.py) use caches of their own."""
    cache = tmp_path_factory.mktemp("models")
    done = subprocess.run([sys.executable, "-m", "index.model.prepare", DEFAULT_MODEL, "--cache", str(cache)],
                          cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        pytest.fail(f"preparing {DEFAULT_MODEL} failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
    return cache


@pytest.fixture
def group_factory(kafka_broker: str, model_cache: Path, tmp_path: Path) -> Iterator[GroupFactory]:
    """Groups of a test's own (a new app id each, data dirs under ``tmp_path``), stopped after it.

    ``make(name, broker=None, partitions=8, events_topic=True, **env)``: ``events_topic`` creates
    the events topic first (with ``partitions``), so nothing depends on which worker creates it."""
    groups: list[Group] = []

    def make(name: str, broker: str | None = None, partitions: int = 8, events_topic: bool = True,
             **env: str) -> Group:
        app_id = new_app_id(name)
        group = Group(broker or kafka_broker, app_id, tmp_path / app_id, model_cache, partitions, dict(env))
        if events_topic:
            group.create_events_topic()
        groups.append(group)
        return group
    yield make
    for group in groups:
        group.stop_all()
