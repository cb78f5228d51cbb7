"""``streamvec broker start|stop``: a local broker that outlives the command that started it.

``start`` records the broker's pid and URL in ``<data dir>/broker.json``; ``stop`` reads
it back, so the two commands need nothing but the data dir in common.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from app.brokers.process import BrokerError, BrokerHandle

STATE_FILE = "broker.json"
DEFAULT_ROOT = Path(".streamvec")


def default_data_dir(kind: str) -> Path:
    return DEFAULT_ROOT / f"broker-{kind}"


def start_detached(kind: str, port: int | None, data_dir: Path) -> BrokerHandle:
    state = data_dir / STATE_FILE
    if state.exists() and _alive(json.loads(state.read_text())["pid"]):
        raise BrokerError(f"a broker already runs from {data_dir} ({json.loads(state.read_text())['url']}); "
                          f"stop it with `streamvec broker stop --kind {kind}`")
    data_dir.mkdir(parents=True, exist_ok=True)
    if kind == "kafka":
        from app.brokers.kafka import start_kafka

        handle = start_kafka(port=port, data_dir=data_dir)
    else:
        from app.brokers.tansu import start_tansu

        handle = start_tansu(port=port, data_dir=data_dir)
    handle.detach()
    state.write_text(json.dumps({"kind": kind, "pid": handle.pid, "url": handle.url}))
    return handle


def stop_detached(data_dir: Path, grace: float = 15.0) -> str:
    """Stop the broker recorded in ``data_dir``; returns its URL."""
    state = data_dir / STATE_FILE
    if not state.exists():
        raise BrokerError(f"no broker recorded in {data_dir}; nothing to stop")
    record = json.loads(state.read_text())
    pid = record["pid"]
    if _alive(pid):
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
    state.unlink()
    return str(record["url"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers signal 0; its state in /proc tells.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True
