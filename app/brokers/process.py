"""Run a local broker as a child process: start it, wait until Kafka clients can use it, stop it.

Shared by :mod:`app.brokers.kafka` and :mod:`app.brokers.tansu`, which differ only in the
command line they build. A broker counts as up when a real Kafka client gets cluster
metadata listing at least one broker from it, not when its port merely accepts TCP:
Kafka opens the port a moment before it can serve, and tests that race that window flake.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from aiokafka import AIOKafkaClient

from index.exceptions import StreamvecError

logger = logging.getLogger(__name__)

LOG_FILE_NAME = "broker.log"
"""Name of the file in the data dir that receives the broker's stdout and stderr."""

LOG_TAIL_LINES = 40
"""How much of the broker log a :class:`BrokerError` quotes."""

STOP_GRACE_SECONDS = 10.0
"""How long :meth:`BrokerHandle.stop` waits after SIGTERM before SIGKILL (Kafka shuts down in ~1 s)."""

_PROBE_INTERVAL = 0.1


class BrokerError(StreamvecError, RuntimeError):
    """A local broker could not be found, started or reached; the message says what to do."""


@dataclass(frozen=True)
class BrokerHandle:
    """A running local broker; :meth:`stop` it (or use it as a context manager).

    Attributes:
        url: ``host:port`` bootstrap address for Kafka clients (prefix ``kafka://`` for Faust).
        kind: ``"kafka"`` or ``"tansu"``.
        data_dir: The broker's directory (log dirs, config, ``broker.log``).
        pid: Process id of the broker, which leads its own process group.
        startup_seconds: Time from spawning the process until clients could fetch metadata.
    """

    url: str
    kind: str
    data_dir: Path
    pid: int
    startup_seconds: float
    _process: subprocess.Popen[bytes] = field(repr=False, compare=False)
    _remove_data_dir: bool = field(repr=False, compare=False, default=False)

    @property
    def log_path(self) -> Path:
        """The file holding the broker's stdout and stderr."""
        return self.data_dir / LOG_FILE_NAME

    def running(self) -> bool:
        """Tell whether the broker process is still alive."""
        return self._process.poll() is None

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Stop the broker (SIGTERM, SIGKILL after ``grace`` s) and remove a data dir we created.

        Safe to call more than once; the whole process group is signalled so nothing the
        broker spawned outlives it.
        """
        stop_process_group(self._process, grace)
        _live_handles.discard(self)
        if self._remove_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL the broker's process group and reap it, as a crash would: no controlled
        shutdown, so its partitions move only when the controller notices (the fault suite)."""
        _signal_group(self._process.pid, signal.SIGKILL)
        self._process.wait()
        _live_handles.discard(self)

    def detach(self) -> None:
        """Leave the broker running after this process exits (``streamvec broker start``)."""
        _live_handles.discard(self)

    def __enter__(self) -> BrokerHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


_live_handles: set[BrokerHandle] = set()


@atexit.register
def _stop_leftovers() -> None:
    """Stop brokers the caller forgot, so an interrupted test run leaves no JVM behind.

    The broker runs in its own session (Ctrl-C does not reach it), so without this an
    aborted pytest would leave it holding memory and ports.
    """
    for handle in list(_live_handles):
        handle.stop(grace=3.0)


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def prepare_data_dir(data_dir: Path | None, kind: str) -> tuple[Path, bool]:
    """Return ``(dir, created_here)``: the given dir (created if absent) or a new temp dir.

    ``created_here`` tells :meth:`BrokerHandle.stop` that the dir is ours to delete.
    """
    if data_dir is None:
        return Path(tempfile.mkdtemp(prefix=f"streamvec-{kind}-")), True
    data_dir.mkdir(parents=True, exist_ok=True)
    return data_dir, False


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """Return the last ``lines`` lines of a log file, or a note that there is none."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    tail = text.splitlines()[-lines:]
    return "\n".join(tail) if tail else f"(log {path} is empty)"


def launch(
    command: Sequence[str],
    *,
    kind: str,
    host: str,
    port: int,
    data_dir: Path,
    remove_data_dir: bool,
    timeout: float,
    env: Mapping[str, str] | None = None,
) -> BrokerHandle:
    """Spawn ``command`` and return once a Kafka client can fetch metadata from ``host:port``.

    The process gets its own session (so signals go to its whole group and a terminal's
    Ctrl-C does not kill it behind our back) and writes stdout/stderr to
    ``data_dir/broker.log``. If it exits or is not usable within ``timeout`` seconds it is
    killed, a dir we created is removed, and :class:`BrokerError` quotes the log tail.
    """
    log_path = data_dir / LOG_FILE_NAME
    url = f"{host}:{port}"
    if _accepts_tcp(host, port):
        # Otherwise the readiness probe would talk to whatever holds the port and report
        # success while our broker dies on "address already in use".
        if remove_data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)
        raise BrokerError(f"cannot start {kind} on {url}: something already listens there; pick another port")
    started = time.monotonic()
    with open(log_path, "ab") as log_file:
        try:
            process = subprocess.Popen(
                list(command),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=data_dir,
                env=None if env is None else dict(env),
                start_new_session=True,
            )
        except OSError as exc:
            if remove_data_dir:
                shutil.rmtree(data_dir, ignore_errors=True)
            raise BrokerError(f"cannot run {command[0]!r} to start {kind}: {exc}") from exc
    logger.info("started %s broker pid %d on %s (data dir %s)", kind, process.pid, url, data_dir)
    try:
        _wait_until_serving(process, host, port, started + timeout)
    except BrokerError as exc:
        stop_process_group(process, grace=3.0)
        tail = log_tail(log_path)
        if remove_data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)
        raise BrokerError(f"{kind} broker on {url} {exc}; last lines of {log_path}:\n{tail}") from None
    except BaseException:
        stop_process_group(process, grace=3.0)
        if remove_data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)
        raise
    handle = BrokerHandle(
        url=url,
        kind=kind,
        data_dir=data_dir,
        pid=process.pid,
        startup_seconds=time.monotonic() - started,
        _process=process,
        _remove_data_dir=remove_data_dir,
    )
    _live_handles.add(handle)
    logger.info("%s broker on %s ready in %.1f s", kind, url, handle.startup_seconds)
    return handle


def _wait_until_serving(process: subprocess.Popen[bytes], host: str, port: int, deadline: float) -> None:
    """Poll until the port accepts TCP and then a client's metadata request lists a broker.

    The cheap TCP check comes first so the client (which logs every failed connect at
    ERROR) is only used once something listens. Raises :class:`BrokerError` if the process
    exits or the deadline passes.
    """
    # The client runs in its own thread and event loop, so this works both from plain code
    # and from inside a running loop (e.g. an async pytest fixture).
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="broker-probe") as pool:
        last_error = "never accepted a connection"
        while True:
            code = process.poll()
            if code is not None:
                raise BrokerError(f"exited with code {code} during startup")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrokerError(f"was not usable within the timeout ({last_error})")
            if _accepts_tcp(host, port):
                try:
                    if pool.submit(asyncio.run, _has_metadata(f"{host}:{port}", remaining)).result():
                        return
                    last_error = "metadata listed no brokers"
                except Exception as exc:  # noqa: BLE001 - any client failure just means "not yet"
                    last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(_PROBE_INTERVAL)


def _accepts_tcp(host: str, port: int) -> bool:
    """Tell whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


async def _has_metadata(url: str, timeout: float) -> bool:
    """Bootstrap a real Kafka client against ``url`` and report whether it saw a broker."""
    client = AIOKafkaClient(bootstrap_servers=url, request_timeout_ms=max(1000, int(min(timeout, 5.0) * 1000)))
    try:
        await asyncio.wait_for(client.bootstrap(), timeout=min(timeout, 10.0))
        return bool(client.cluster.brokers())
    finally:
        await client.close()


def stop_process_group(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the process group, SIGKILL it after ``grace`` seconds, and reap the process.

    Brokers, demo workers and test workers all run in their own session; this is how each
    of them is stopped.
    """
    if process.poll() is not None:
        return
    _signal_group(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        logger.warning("pid %d ignored SIGTERM for %.0f s; killing it", process.pid, grace)
        _signal_group(process.pid, signal.SIGKILL)
        process.wait()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the process group led by ``pid``; it may already be gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
