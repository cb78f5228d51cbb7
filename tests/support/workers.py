"""Real worker processes for the integration and fault suites: start, wait, query, kill.

Workers run as ``python -m app.cli worker`` subprocesses (the same entry point users
run), each with its own port and data dir, against a real broker.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from app.brokers.process import free_port, stop_process_group

REPO = Path(__file__).resolve().parents[2]
FAUST_WORKER = (str(Path(sys.executable).with_name("faust")), "-A", "app", "worker", "-l", "info")
T = TypeVar("T")


def http(method: str, url: str, body: Any = None, timeout: float = 30.0) -> tuple[int, Any]:
    """One HTTP call; returns (status, decoded JSON) for any status, raises only if unreachable."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.5) -> T:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = probe()
            if result:
                return result
        except (OSError, ValueError) as exc:
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last error: {last_error})")


@dataclass
class Worker:
    """One ``streamvec worker`` process."""

    name: str
    env: dict[str, str]
    datadir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    # The worker command; Faust's own CLI (`faust -A app worker`) must work as well as ours.
    command: tuple[str, ...] = (sys.executable, "-m", "app.cli", "worker")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.datadir.parent / f"{self.name}.log"

    def start(self) -> Worker:
        self.datadir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env, "STREAMVEC_WEB_PORT": str(self.port),
               "STREAMVEC_DATADIR": str(self.datadir)}
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(list(self.command), cwd=REPO, env=env,
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        if self.alive():
            assert self.process is not None
            os.killpg(self.process.pid, sig)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None:
            stop_process_group(self.process, grace=20)

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def get(self, path: str) -> tuple[int, Any]:
        return http("GET", self.url + path)

    def search(self, **body: Any) -> dict[str, Any]:
        status, answer = http("POST", self.url + "/search", body)
        assert status == 200, f"{self.name}: /search answered {status}: {answer}"
        return answer  # type: ignore[no-any-return]

    def stats(self) -> dict[str, Any]:
        status, answer = self.get("/stats")
        assert status == 200, f"{self.name}: /stats answered {status}: {answer}"
        return answer  # type: ignore[no-any-return]

    def wait_ready(self, timeout: float = 90.0) -> None:
        def ready() -> bool:
            if not self.alive():
                raise AssertionError(f"worker {self.name} exited:\n{self.log_tail()}")
            return self.get("/ready")[0] == 200
        try:
            wait_for(f"worker {self.name} to be ready", ready, timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- {self.name} log ---\n{self.log_tail()}") from None


def wait_for_documents(worker: Worker, expected: int, timeout: float, interval: float = 0.5) -> dict[str, Any]:
    """Wait until ``worker`` reports ``expected`` documents over all partitions, none missing, and
    every standby copy holds what its active copy holds (a standby answers queries too)."""
    def complete() -> dict[str, Any] | None:
        if not worker.alive():
            raise AssertionError(f"worker {worker.name} exited:\n{worker.log_tail()}")
        stats = worker.stats()
        return stats if stats["documents"] == expected and not stats["partial"] and copies_agree(stats) else None
    try:
        return wait_for(f"{expected} documents through {worker.name}", complete, timeout, interval)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- {worker.name} log ---\n{worker.log_tail()}") from None


def copies_agree(stats: dict[str, Any]) -> bool:
    """Whether every standby copy in ``stats`` holds as many documents as its partition's active copy."""
    actives = {p: counts["documents"] for p, counts in stats["per_partition"].items()}
    return all(copy["documents"] == actives.get(p) for body in stats["workers"].values() if "standbys" in body
               for p, copy in body["standbys"].items())


def stop_all(workers: Iterable[Worker]) -> None:
    for worker in workers:
        worker.stop()
