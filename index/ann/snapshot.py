"""Snapshots of a worker's index: saved atomically, checked before use, never served torn.

A snapshot is a directory holding hnswlib's own file, the index's side arrays (ids, each
label's partition, metadata, free labels) and a manifest written last: the format, the
model id and dimension, per partition the changelog offset its documents reflect (and the
ingest progress the index had taken, for read-your-writes), and a SHA-256 of every file.

It is written into a fresh temporary directory, each file fsynced, then renamed over the
previous snapshot (a rename of a directory is atomic on POSIX filesystems), so a crash at any
moment leaves either the old snapshot or the new one, plus at worst a temporary directory the
next save removes. :func:`load` refuses a snapshot whose manifest is missing or unreadable,
whose format, model or dimension differ from the worker's, or whose files do not match their
checksums: the caller rebuilds from the local store instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import hnswlib
import numpy as np

from index.exceptions import StreamvecError
from index.ann.hnsw import VectorIndex

logger = logging.getLogger(__name__)

FORMAT = 1
MANIFEST = "manifest.json"
_GRAPH = "graph.hnsw"
_PARTITIONS = "partitions.npy"
_FREE = "free.npy"
_IDS = "ids.bin"
_METADATA = "metadata.bin"
_TEMPORARY_PREFIX = ".writing-"
_HASH_CHUNK = 1 << 20


class SnapshotError(StreamvecError):
    """A snapshot that must not be used (the caller rebuilds from the local store)."""


@dataclass(frozen=True)
class Covered:
    """What one partition's documents in a snapshot reflect."""

    offset: int  # the last changelog offset applied
    progress: bytes  # the partition's progress record as the index had taken it (index.records.progress)


@dataclass(frozen=True)
class Snapshot:
    index: VectorIndex
    partitions: dict[int, Covered]
    taken: float  # seconds since the epoch


def save(directory: Path, index: VectorIndex, covering: Callable[[], dict[int, Covered]], model_id: str) -> int:
    """Write a snapshot of ``index``; returns its size in bytes (0: nothing to cover).

    ``covering()`` is called while the index is frozen and names the partitions to keep, with
    the offsets their documents reflect (the index's other partitions are left out). An
    offset is recorded after its records reached the index, so documents may be ahead of it,
    never behind: a restore replays the changelog after the offset, and replaying records the
    index already has ends in the same state."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    _remove_temporaries(directory)
    temporary = directory.parent / f"{_TEMPORARY_PREFIX}{directory.name}-{os.getpid()}-{time.monotonic_ns()}"
    temporary.mkdir()
    with index.frozen() as graph:
        partitions = covering()
        if not partitions:
            shutil.rmtree(temporary)
            return 0
        graph.save_index(str(temporary / _GRAPH))
        ids, labels_partition, metadata, deleted = index.state()
    kept = np.isin(labels_partition, list(partitions))
    ids = [doc_id if keep else None for doc_id, keep in zip(ids, kept.tolist(), strict=True)]
    np.save(temporary / _PARTITIONS, labels_partition)
    np.save(temporary / _FREE, np.asarray(deleted, dtype=np.int64))
    _write_blobs(temporary / _IDS, [None if doc_id is None else doc_id.encode() for doc_id in ids])
    _write_blobs(temporary / _METADATA, [m if keep else None for m, keep in zip(metadata, kept.tolist(), strict=True)])
    files = {path.name: _sha256(path) for path in sorted(temporary.iterdir())}
    manifest = {"format": FORMAT, "model": model_id, "dim": index.dim, "taken": time.time(), "files": files,
                "partitions": {str(p): {"offset": c.offset, "progress": c.progress.decode()}
                               for p, c in sorted(partitions.items())}}
    (temporary / MANIFEST).write_text(json.dumps(manifest, indent=1))
    for path in temporary.iterdir():
        _fsync(path)
    _fsync(temporary)
    previous = directory.parent / f"{_TEMPORARY_PREFIX}old-{directory.name}-{time.monotonic_ns()}"
    if directory.exists():
        directory.rename(previous)  # the rename below must not land inside an existing directory
    temporary.rename(directory)
    _fsync(directory.parent)
    shutil.rmtree(previous, ignore_errors=True)
    return sum(path.stat().st_size for path in directory.iterdir())


def load(directory: Path, *, model_id: str, dim: int, ef_search: int) -> Snapshot:
    """The snapshot in ``directory``, checked; only the partitions its manifest lists are in it.

    Raises:
        SnapshotError: none there, or one that must not be served (the message says why).
    """
    manifest_path = directory / MANIFEST
    if not manifest_path.exists():
        raise SnapshotError(f"no snapshot in {directory}")
    try:
        manifest = json.loads(manifest_path.read_text())
        files: dict[str, str] = manifest["files"]
        covered = {int(p): Covered(int(c["offset"]), c["progress"].encode())
                   for p, c in manifest["partitions"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SnapshotError(f"snapshot manifest {manifest_path} is unreadable: {exc}") from None
    if manifest.get("format") != FORMAT:
        raise SnapshotError(f"snapshot format {manifest.get('format')!r}, this version reads {FORMAT}")
    if manifest.get("model") != model_id or manifest.get("dim") != dim:
        raise SnapshotError(f"snapshot of model {manifest.get('model')!r} ({manifest.get('dim')} dimensions); "
                            f"the worker runs {model_id!r} ({dim})")
    for name in (_GRAPH, _PARTITIONS, _FREE, _IDS, _METADATA):
        path = directory / name
        if name not in files or not path.exists() or _sha256(path) != files[name]:
            raise SnapshotError(f"snapshot file {path} is missing or does not match its checksum (torn or damaged)")
    try:
        partitions = np.load(directory / _PARTITIONS)
        graph = hnswlib.Index(space="cosine", dim=dim)
        graph.load_index(str(directory / _GRAPH), max_elements=max(len(partitions), 1))
        ids = [None if blob is None else blob.decode() for blob in _read_blobs(directory / _IDS)]
        metadata = _read_blobs(directory / _METADATA)
        deleted = np.load(directory / _FREE).tolist()
    except (OSError, ValueError, RuntimeError, UnicodeDecodeError) as exc:
        raise SnapshotError(f"snapshot in {directory} could not be read: {exc}") from None
    index = VectorIndex.restore(graph, ids, partitions, metadata, deleted, ef_search=ef_search)
    return Snapshot(index, covered, float(manifest.get("taken", 0.0)))


def _write_blobs(path: Path, blobs: list[bytes | None]) -> None:
    """Byte strings (or None) as one file: an int64 count, offsets (−1 for None), then the bytes."""
    lengths = np.array([-1 if blob is None else len(blob) for blob in blobs], dtype=np.int64)
    with path.open("wb") as handle:
        handle.write(np.int64(len(blobs)).tobytes())
        handle.write(lengths.tobytes())
        for blob in blobs:
            if blob:
                handle.write(blob)


def _read_blobs(path: Path) -> list[bytes | None]:
    data = path.read_bytes()
    count = int(np.frombuffer(data, dtype=np.int64, count=1)[0])
    lengths = np.frombuffer(data, dtype=np.int64, count=count, offset=8)
    position = 8 + 8 * count
    blobs: list[bytes | None] = []
    for length in lengths.tolist():
        if length < 0:
            blobs.append(None)
        else:
            blobs.append(data[position:position + length])
            position += length
    if position != len(data):
        raise ValueError(f"{path.name}: {len(data) - position} bytes more than its lengths say")
    return blobs


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _remove_temporaries(directory: Path) -> None:
    """What a save that crashed left behind."""
    for leftover in directory.parent.glob(f"{_TEMPORARY_PREFIX}*"):
        logger.info("removing %s, left by a snapshot that did not finish", leftover)
        shutil.rmtree(leftover, ignore_errors=True)
