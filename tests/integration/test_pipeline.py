"""The core pipeline end to end: real Kafka, two worker processes, 8 partitions, 2,000 documents.

The tests run in order on one cluster (module scope): ingest, search through either
worker, update, delete, stale version, kill -9 failover, rebuild on a fresh worker.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.group import Group, new_app_id
from tests.support.kafka import sample_texts
from tests.support.workers import Worker, wait_for, wait_for_documents

pytestmark = pytest.mark.integration

DOCS = 2000
PARTITIONS = 8


class Cluster:
    """The module's group, and the documents the tests expect it to hold."""

    def __init__(self, group: Group) -> None:
        self.group = group
        self.docs = {d["id"]: d for d in sample_texts(DOCS)}


@pytest.fixture(scope="module")
def cluster(kafka_broker: str, model_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    group = Group(kafka_broker, new_app_id("pipe"), tmp_path_factory.mktemp("cluster"), model_cache, PARTITIONS)
    group.create_events_topic()  # as group_factory does: nothing depends on which worker creates it
    try:
        yield Cluster(group)
    finally:
        group.stop_all()


def top1(worker: Worker, text: str) -> str | None:
    results = worker.search(text=text, k=1)["results"]
    return results[0]["id"] if results else None


def test_every_document_is_found_by_its_own_text_through_either_worker(cluster: Cluster) -> None:
    a, b = cluster.group.start("a"), cluster.group.start("b")
    cluster.group.send(list(cluster.docs.values()))
    started = time.monotonic()
    wait_for_documents(a, DOCS, timeout=300)
    wait_for_documents(b, DOCS, timeout=60)
    print(f"2000 documents searchable {time.monotonic() - started:.1f} s after produce")

    docs = list(cluster.docs.values())
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda i: top1((a, b)[i % 2], docs[i]["text"]), range(len(docs))))
    misses = [(d["id"], got) for d, got in zip(docs, answers) if got != d["id"]]
    assert not misses, f"{len(misses)} documents not found top-1 by their own text, e.g. {misses[:5]}"


def test_an_update_changes_the_answer(cluster: Cluster) -> None:
    a, b = cluster.group.workers["a"], cluster.group.workers["b"]
    doc = next(iter(cluster.docs.values()))
    new_text = "a submarine cable carrying internet traffic between continents"
    cluster.group.send([{"id": doc["id"], "text": new_text, "metadata": {"edited": True}}])
    wait_for("the update to be searchable", lambda: top1(b, new_text) == doc["id"], timeout=30)
    assert top1(a, doc["text"]) != doc["id"]
    status, document = a.get(f"/documents/{doc['id']}")
    assert status == 200 and document["metadata"] == {"edited": True}
    doc["text"] = new_text


def test_a_delete_removes_the_document(cluster: Cluster) -> None:
    a, b = cluster.group.workers["a"], cluster.group.workers["b"]
    by_tombstone, by_op = list(cluster.docs.values())[1:3]
    cluster.group.send([{"id": by_op["id"], "op": "delete"}], tombstones=(by_tombstone["id"],))
    for doc in (by_tombstone, by_op):
        wait_for(f"{doc['id']} to disappear", lambda d=doc: a.get(f"/documents/{d['id']}")[0] == 404, timeout=30)
        assert doc["id"] not in {hit["id"] for hit in b.search(text=doc["text"], k=10)["results"]}
        del cluster.docs[doc["id"]]
    wait_for_documents(a, DOCS - 2, timeout=30)


def test_a_stale_version_is_ignored(cluster: Cluster) -> None:
    a = cluster.group.workers["a"]
    doc = list(cluster.docs.values())[3]
    stale_before = a.stats()["outcomes"]["stale"]
    cluster.group.send([{"id": doc["id"], "text": doc["text"], "metadata": {"v": 5}, "version": 5}])
    wait_for("version 5", lambda: a.get(f"/documents/{doc['id']}")[1].get("version") == 5, timeout=30)
    cluster.group.send([{"id": doc["id"], "text": "completely different old text", "metadata": {"v": 3}, "version": 3}])
    wait_for("the stale event to be counted", lambda: a.stats()["outcomes"]["stale"] == stale_before + 1, timeout=30)
    status, document = a.get(f"/documents/{doc['id']}")
    assert status == 200 and document["version"] == 5 and document["metadata"] == {"v": 5}
    assert top1(a, doc["text"]) == doc["id"]


def test_after_kill_9_the_survivor_answers_everything_within_a_second(cluster: Cluster) -> None:
    """Each worker keeps a warm standby of the other's partitions (one standby replica), so the
    survivor answers for every partition from its own index: no rebuild, no wait."""
    a, b = cluster.group.workers["a"], cluster.group.workers["b"]
    expected = len(cluster.docs)
    b.kill()
    killed = time.monotonic()

    def complete() -> bool:
        answer = a.search(text="a domestic animal", k=5)
        return not answer["partial"] and a.stats()["documents"] == expected
    wait_for("the survivor to answer for every partition", complete, timeout=60, interval=0.05)
    took = time.monotonic() - killed
    print(f"failover: survivor complete {took:.2f} s after kill -9")
    assert took <= 1.0, f"the survivor needed {took:.2f} s to answer for every partition"
    sample = list(cluster.docs.values())[::50]
    assert [top1(a, d["text"]) for d in sample] == [d["id"] for d in sample]
    wait_for("the group to settle without b", lambda: a.get("/ready")[0] == 200, timeout=60)


def test_a_restarted_worker_replays_what_it_missed_and_deleted_documents_stay_deleted(cluster: Cluster) -> None:
    a, b = cluster.group.workers["a"], cluster.group.workers["b"]
    assert not b.alive()
    gone = list(cluster.docs.values())[10:13]
    cluster.group.send([{"id": doc["id"], "op": "delete"} for doc in gone])  # while b is down
    for doc in gone:
        del cluster.docs[doc["id"]]
    wait_for_documents(a, len(cluster.docs), timeout=30)
    b.start()  # same data dir: its RocksDB still holds the deleted documents
    b.wait_ready(timeout=120)
    wait_for("b to own partitions again", lambda: b.stats()["workers"].get(b.url, {}).get("partitions"), timeout=60)
    wait_for_documents(b, len(cluster.docs), timeout=60)

    def each_partition_served_once() -> bool:
        workers = b.stats()["workers"].values()
        return sum(sum(w.get("documents", {}).values()) for w in workers) == len(cluster.docs)
    wait_for("every partition to be served by exactly one worker", each_partition_served_once, timeout=60)
    for doc in gone:
        assert doc["id"] not in {hit["id"] for hit in b.search(text=doc["text"], k=10)["results"]}
        assert b.get(f"/documents/{doc['id']}")[0] == 404


def test_a_new_worker_with_an_empty_data_dir_rebuilds_from_the_changelog(cluster: Cluster) -> None:
    c = cluster.group.start("c")
    c.wait_ready(timeout=120)
    expected = len(cluster.docs)
    wait_for("c to own partitions", lambda: c.stats()["workers"].get(c.url, {}).get("partitions"), timeout=60)
    cluster.group.workers["a"].kill()
    cluster.group.workers["b"].kill()
    killed = time.monotonic()
    wait_for_documents(c, expected, timeout=90)
    print(f"recovery: fresh worker complete {time.monotonic() - killed:.1f} s after the last old worker died")
    sample = list(cluster.docs.values())[::40]
    assert [top1(c, d["text"]) for d in sample] == [d["id"] for d in sample]
