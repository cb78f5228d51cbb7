"""The one way the suites start workers: a group of real worker processes of one app id.

Every integration module and every fault case starts its workers through :class:`Group`, with
the session's model cache (prepared once, ``tests/support/fixtures.py``); what a test does with
its group (a shop, a CDC table, a ledger) stays in the test.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.kafka import create_topic, read_topic, send_events, send_records
from tests.support.workers import Worker, stop_all, wait_for

DIM = 384
QUICK_REBALANCE = {"STREAMVEC_SESSION_TIMEOUT": "6", "STREAMVEC_REBALANCE_TIMEOUT": "10"}
"""A worker that leaves is noticed in seconds, not Faust's default minute: the suites move partitions on purpose."""

_COUNTER = itertools.count()


def new_app_id(prefix: str) -> str:
    """An app id no other group of any run on this broker has used."""
    return f"{prefix}{int(time.time() * 1000)}{next(_COUNTER)}"


@dataclass
class Recovery:
    """Seconds from a fault's end until a search answered ``partial: false`` and every worker was ready."""

    to_complete: float
    to_ready: float


@dataclass
class Group:
    """Real worker processes of one app id, each with its own data dir under ``root``.

    ``env`` holds the group's settings (``STREAMVEC_*`` names, as users write them); ``start``
    may add a worker's own. Without ``quick_rebalance`` the group keeps Faust's session and
    rebalance timeouts (single-worker tests that never move partitions)."""

    broker: str
    app_id: str
    root: Path
    models: Path
    partitions: int = 8
    env: Mapping[str, str] = field(default_factory=dict)
    quick_rebalance: bool = True
    workers: dict[str, Worker] = field(default_factory=dict)
    recoveries: list[Recovery] = field(default_factory=list)

    @property
    def worker_env(self) -> dict[str, str]:
        return {"STREAMVEC_BROKER": self.broker, "STREAMVEC_APP_ID": self.app_id,
                "STREAMVEC_PARTITIONS": str(self.partitions), "STREAMVEC_MODEL_CACHE": str(self.models),
                **(QUICK_REBALANCE if self.quick_rebalance else {}), **self.env}

    @property
    def topic(self) -> str:
        """The events topic."""
        return self.topic_of("events")

    def topic_of(self, suffix: str) -> str:
        return f"{self.app_id}-{suffix}"

    # ---- workers --------------------------------------------------------------------------

    def worker(self, name: str, command: tuple[str, ...] | None = None, datadir: Path | None = None,
               **env: str) -> Worker:
        """A worker of the group, not started yet (``start`` starts one)."""
        worker = Worker(name, {**self.worker_env, **env}, datadir or self.root / name)
        if command is not None:
            worker.command = command
        self.workers[name] = worker
        return worker

    def start(self, name: str, command: tuple[str, ...] | None = None, datadir: Path | None = None,
              **env: str) -> Worker:
        return self.worker(name, command, datadir, **env).start()

    def live(self) -> list[Worker]:
        return [worker for worker in self.workers.values() if worker.alive()]

    def any(self) -> Worker:
        return self.live()[0]

    def stop_all(self) -> None:
        stop_all(self.workers.values())

    def wait_ready(self, timeout: float = 120.0) -> None:
        for worker in self.live():
            worker.wait_ready(timeout)

    def crashes(self) -> list[str]:
        """Log lines where Faust restarted a crashed agent (it never should)."""
        lines = []
        for worker in self.workers.values():
            if worker.log_path.exists():
                lines += [f"{worker.name}: {line}" for line in worker.log_path.read_text(errors="replace").splitlines()
                          if "Crashed" in line]
        return lines

    # ---- topics ---------------------------------------------------------------------------

    def create_events_topic(self) -> None:
        create_topic(self.broker, self.topic, self.partitions)

    def send(self, events: list[dict[str, Any]], tombstones: tuple[str, ...] = ()) -> None:
        """Events (and null-value deletes) to the events topic, encoded as ``streamvec produce`` does."""
        send_events(self.broker, self.app_id, events, self.partitions, tombstones)

    def send_json(self, suffix: str, records: list[tuple[str, dict[str, Any]]]) -> None:
        send_records(self.broker, self.topic_of(suffix), [(key.encode(), json.dumps(value).encode())
                                                          for key, value in records])

    def read_json(self, suffix: str) -> list[dict[str, Any]]:
        return [json.loads(record.value) for record in read_topic(self.broker, self.topic_of(suffix))]

    # ---- waiting for the group ----------------------------------------------------------------

    def recovered(self, since: float, timeout: float = 180.0) -> Recovery:
        """Wait until a search through any live worker answers for every partition, and until every
        live worker is ready; record how long each took from ``since``."""
        def complete() -> bool:
            return all(not worker.search(vector=[1.0] * DIM, k=1)["partial"] for worker in self.live())
        wait_for("a search to answer for every partition", complete, timeout, interval=0.1)
        to_complete = time.monotonic() - since
        wait_for("every worker to be ready", lambda: all(w.get("/ready")[0] == 200 for w in self.live()),
                 timeout, interval=0.1)
        recovery = Recovery(to_complete, time.monotonic() - since)
        self.recoveries.append(recovery)
        return recovery

    def wait_consumed(self, produced: int, timeout: float) -> dict[str, Any]:
        """Wait until the group has an outcome for every produced event (and answers for all partitions)."""
        worker = self.any()

        def counted() -> dict[str, Any] | None:
            stats = worker.stats()
            return stats if sum(stats["outcomes"].values()) >= produced and not stats["partial"] else None
        try:
            return wait_for(f"outcomes for all {produced} events", counted, timeout, interval=1.0)
        except AssertionError as exc:
            stats = worker.stats()
            raise AssertionError(f"{exc}; counted {stats['outcomes']}, partial {stats['partial']}\n"
                                 f"{worker.log_tail(40)}") from None


class OnGroup:
    """What a test's own state over a group (the users' group, a reconciliation cluster) reads
    through to its :class:`Group`: the broker, the app id, the workers in start order."""

    group: Group

    @property
    def broker(self) -> str:
        return self.group.broker

    @property
    def app_id(self) -> str:
        return self.group.app_id

    @property
    def workers(self) -> list[Worker]:
        return list(self.group.workers.values())
