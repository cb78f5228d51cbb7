"""Index snapshots: what is saved comes back exactly, and a snapshot that must not be served
(torn, damaged, of another model or format) is refused with the reason."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from index.ann import snapshot
from index.ann.hnsw import VectorIndex
from index.ann.snapshot import Covered, SnapshotError
from tests.unit.index.test_hnsw import DIM, by_partition, ids_of, queries

MODEL = "all-MiniLM-L6-v2@test"


def covering(partitions: dict[int, int]) -> dict[int, Covered]:
    return {p: Covered(offset, b'{"n":{}}') for p, offset in partitions.items()}


def saved(tmp_path: Path) -> tuple[VectorIndex, np.ndarray, Path]:
    index, vectors, _ = by_partition(1200, 3)
    index.delete("doc-4", partition=1)
    directory = tmp_path / "snap"
    assert snapshot.save(directory, index, lambda: covering({0: 10, 1: 20, 2: 30}), MODEL) > 0
    return index, vectors, directory


def test_a_snapshot_answers_like_the_index_it_was_taken_of(tmp_path: Path) -> None:
    index, vectors, directory = saved(tmp_path)
    found = snapshot.load(directory, model_id=MODEL, dim=DIM, ef_search=64)
    assert found.partitions == covering({0: 10, 1: 20, 2: 30})
    assert len(found.index) == 1199 and found.index.partitions() == [0, 1, 2]
    for query in queries(10, seed=3):
        assert ids_of(found.index.search(query, 10)) == ids_of(index.search(query, 10))
    assert found.index.search(vectors[5], 1)[0].metadata == {"p": 2, "i": 5}
    found.index.upsert("doc-4", vectors[4], {}, partition=1)
    assert found.index.search(vectors[4], 1)[0].id == "doc-4" and (found.index.allocated, found.index.garbage) == (1201, 1)


def test_partitions_left_out_of_a_snapshot_are_not_in_it(tmp_path: Path) -> None:
    index, vectors, _ = by_partition(900, 3)
    directory = tmp_path / "snap"
    snapshot.save(directory, index, lambda: covering({0: 5, 2: 7}), MODEL)
    found = snapshot.load(directory, model_id=MODEL, dim=DIM, ef_search=64)
    assert set(found.partitions) == {0, 2} and found.index.partitions() == [0, 2]
    assert len(found.index) == 600 and "doc-1" not in found.index
    assert all(hit.partition != 1 for query in queries(20) for hit in found.index.search(query, 10))
    assert found.index.garbage == 300  # the left-out partition's nodes, until a compaction


def test_adopt_takes_a_loaded_snapshot_and_keeps_only_the_partitions_asked(tmp_path: Path) -> None:
    _, _, directory = saved(tmp_path)
    worker = VectorIndex(DIM, ef_search=33)
    worker.adopt(snapshot.load(directory, model_id=MODEL, dim=DIM, ef_search=64).index, {1, 2})
    assert worker.partitions() == [1, 2] and worker.ef_search == 33 and len(worker) == 799
    with pytest.raises(ValueError, match="empty"):
        worker.adopt(snapshot.load(directory, model_id=MODEL, dim=DIM, ef_search=64).index, {0})


def test_a_snapshot_of_another_model_or_dimension_is_refused(tmp_path: Path) -> None:
    _, _, directory = saved(tmp_path)
    with pytest.raises(SnapshotError, match="snapshot of model 'all-MiniLM-L6-v2@test'.*the worker runs 'other'"):
        snapshot.load(directory, model_id="other", dim=DIM, ef_search=64)
    with pytest.raises(SnapshotError, match="384 dimensions"):
        snapshot.load(directory, model_id=MODEL, dim=768, ef_search=64)


@pytest.mark.parametrize("damage", ["truncate graph", "flip a byte of the ids", "drop the metadata file",
                                    "no manifest", "manifest not JSON", "another format"])
def test_a_damaged_or_torn_snapshot_is_refused(tmp_path: Path, damage: str) -> None:
    _, _, directory = saved(tmp_path)
    if damage == "truncate graph":
        graph = directory / "graph.hnsw"
        graph.write_bytes(graph.read_bytes()[:1000])
    elif damage == "flip a byte of the ids":
        ids = directory / "ids.bin"
        data = bytearray(ids.read_bytes())
        data[-1] ^= 0xFF
        ids.write_bytes(bytes(data))
    elif damage == "drop the metadata file":
        (directory / "metadata.bin").unlink()
    elif damage == "no manifest":
        (directory / snapshot.MANIFEST).unlink()
    elif damage == "manifest not JSON":
        (directory / snapshot.MANIFEST).write_text('{"format": 1, "files": ')
    else:
        manifest = json.loads((directory / snapshot.MANIFEST).read_text())
        (directory / snapshot.MANIFEST).write_text(json.dumps({**manifest, "format": 99}))
    with pytest.raises(SnapshotError):
        snapshot.load(directory, model_id=MODEL, dim=DIM, ef_search=64)


def test_a_save_replaces_the_last_one_and_clears_what_a_crashed_save_left(tmp_path: Path) -> None:
    index, vectors, directory = saved(tmp_path)
    crashed = tmp_path / ".writing-snap-123-456"
    crashed.mkdir()
    (crashed / "graph.hnsw").write_bytes(b"half a graph")
    index.upsert("late", vectors[0], {}, partition=0)
    snapshot.save(directory, index, lambda: covering({0: 11, 1: 20, 2: 30}), MODEL)
    assert not crashed.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["snap"]
    found = snapshot.load(directory, model_id=MODEL, dim=DIM, ef_search=64)
    assert found.partitions[0].offset == 11 and "late" in found.index


def test_nothing_to_cover_writes_nothing(tmp_path: Path) -> None:
    index, _, _ = by_partition(30, 1)
    assert snapshot.save(tmp_path / "snap", index, dict, MODEL) == 0
    assert list(tmp_path.iterdir()) == []
