"""The Python client and ``streamvec search`` against the live user group (two workers, an API
key, real Kafka): typed reads through either worker, writes through Kafka with offsets and a
wait until visible, errors a caller can act on."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.brokers.process import free_port
from streamvec import AsyncClient, AuthenticationError, Client, NotVisible, Query, WriteError
from tests.support.users import PARTITIONS, Users
from tests.support.workers import REPO

pytestmark = pytest.mark.integration

LION = "big wild cat with a mane"


@pytest.fixture(scope="module")
def client(user_group: Users) -> Iterator[Client]:
    with Client(user_group.urls, api_key=user_group.api_key, broker=user_group.broker,
                app_id=user_group.app_id) as made:
        yield made


def test_search_through_either_worker_returns_typed_hits(user_group: Users, client: Client) -> None:
    per_worker = [Client(url, api_key=user_group.api_key) for url in user_group.urls]
    try:
        results = [c.search(LION, k=3, filter={"category": "animal"}) for c in per_worker]
    finally:
        for c in per_worker:
            c.close()
    assert [h.id for h in results[0]] == [h.id for h in results[1]]
    lion = next(hit for hit in results[0] if hit.id == "wn30-n-02129165")  # lion, king of beasts
    assert lion.metadata["word"] == "lion" and 0.3 < lion.score <= 1.0
    assert [h.score for h in results[0]] == sorted((h.score for h in results[0]), reverse=True)
    assert all(hit.metadata["category"] == "animal" for hit in results[0])
    assert not results[0].partial and sorted(results[0].coverage.answered) == list(range(PARTITIONS))


def test_a_batch_answers_like_single_searches(client: Client) -> None:
    queries = [Query(text=LION, k=5), Query(text="hot spicy sauce", k=5, filter={"category": "food"}),
               Query(id="wn30-n-02129165", k=3)]
    batch = client.search_batch(queries)
    assert len(batch.results) == 3 and not batch.partial
    for query, hits in zip(queries, batch.results, strict=True):
        single = client.search(query.text, id=query.id, k=query.k, filter=query.filter)
        assert [h.id for h in hits] == [h.id for h in single]
    assert "wn30-n-02129165" not in [h.id for h in batch.results[2]]  # "more like this" leaves itself out


def test_get_and_stats(user_group: Users, client: Client) -> None:
    lion = client.get("wn30-n-02129165")
    assert lion is not None and lion.metadata == {"pos": "noun", "category": "animal", "word": "lion"}
    assert client.get("no-such-document") is None
    stats = client.stats()
    assert stats.documents >= len(user_group.documents) and not stats.coverage.partial
    assert stats.dead_letter_reasons == user_group.refused


def test_writes_return_offsets_and_are_visible_when_wait_returns(client: Client) -> None:
    doc_id = f"client/red shoe ü {time.time_ns()}"
    try:
        first = client.upsert([{"id": doc_id, "text": "a red running shoe with a white sole",
                                "metadata": {"brand": "acme", "size": 42}}], wait=True)
        assert first.count == 1 and first.topic.endswith("-events")
        ((partition, offset),) = first.offsets.items()
        assert 0 <= partition < PARTITIONS and offset >= 0
        hits = client.search("red running shoe", k=3, filter={"brand": "acme"}).hits
        assert [h.id for h in hits] == [doc_id]
        second = client.upsert([{"id": doc_id, "text": "a red running shoe with a white sole",
                                 "metadata": {"brand": "acme", "size": 43}}], wait=True)
        assert second.offsets[partition] > offset  # same key, same partition, later offset
        stored = client.get(doc_id)
        assert stored is not None and stored.metadata == {"brand": "acme", "size": 43}
    finally:
        client.delete([doc_id], wait=True)
    assert client.get(doc_id) is None
    assert client.search("red running shoe", k=3, filter={"brand": "acme"}).hits == []


def test_a_search_after_a_write_sees_it_at_once(client: Client) -> None:
    doc_id = f"client/violet umbrella {time.time_ns()}"
    text = "a violet umbrella shaped like a jellyfish"
    try:
        written = client.upsert([{"id": doc_id, "text": text, "metadata": {"kind": "ryw"}}])  # no waiting here
        result = client.search(text, k=1, filter={"kind": "ryw"}, after=written)
        assert [hit.id for hit in result.hits] == [doc_id], result.raw
        assert not result.partial and result.coverage.behind == ()
    finally:
        client.delete([doc_id], wait=True)


def test_a_search_after_offsets_no_worker_has_raises_not_visible_naming_them(client: Client) -> None:
    started = time.monotonic()
    with pytest.raises(NotVisible, match=r"partitions \[1\] had not applied the writes this search waits for"):
        client.search(LION, k=3, after={1: 10**12}, wait_timeout=2.0)
    assert time.monotonic() - started >= 2.0  # it asked again until its own timeout before saying so


def test_streamvec_produce_prints_the_offsets_a_search_can_wait_for(user_group: Users, tmp_path: Path) -> None:
    doc_id = f"cli-ryw-{time.time_ns()}"
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps({"id": doc_id, "text": "a teapot made of blue glass", "metadata": {"kind": "cli-ryw"}})
                      + "\n")
    env = {**os.environ, "STREAMVEC_BROKER": user_group.broker, "STREAMVEC_APP_ID": user_group.app_id,
           "STREAMVEC_PARTITIONS": str(PARTITIONS)}
    done = subprocess.run([sys.executable, "-m", "app.cli", "produce", str(events), "--print-offsets", "--quiet"],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=60, check=True)
    after = json.loads(done.stdout)["after"]
    assert len(after) == 1 and "1 records acknowledged" in done.stderr, (done.stdout, done.stderr)
    with Client(user_group.urls, api_key=user_group.api_key, broker=user_group.broker,
                app_id=user_group.app_id) as client:
        try:
            result = client.search("blue glass teapot", k=1, filter={"kind": "cli-ryw"},
                                   after={int(p): offset for p, offset in after.items()})
            assert [hit.id for hit in result.hits] == [doc_id] and not result.partial, result.raw
        finally:
            client.delete([doc_id], wait=True)


def test_the_async_client_writes_and_reads(user_group: Users) -> None:
    doc_ids = [f"async-{n}-{time.time_ns()}" for n in range(3)]

    async def run() -> list[str]:
        async with AsyncClient(user_group.urls, api_key=user_group.api_key, broker=user_group.broker,
                               app_id=user_group.app_id) as client:
            written = await client.upsert(
                [{"id": d, "text": f"violin sonata number {n}", "metadata": {"kind": "music"}}
                 for n, d in enumerate(doc_ids)], wait=True)
            assert written.count == 3
            found = await client.search("violin music", k=10, filter={"kind": "music"})
            await client.delete(doc_ids, wait=True)
            assert (await client.search("violin music", k=10, filter={"kind": "music"})).hits == []
            return [hit.id for hit in found]
    assert sorted(asyncio.run(run())) == sorted(doc_ids)


def test_a_wrong_or_missing_key_is_an_authentication_error(user_group: Users) -> None:
    for key in (None, "wrong"):
        with Client(user_group.urls[0], api_key=key) as client, pytest.raises(AuthenticationError, match="api_key="):
            client.search("x")


def test_an_unreachable_worker_is_skipped(user_group: Users) -> None:
    with Client([f"http://127.0.0.1:{free_port()}", user_group.urls[1]], api_key=user_group.api_key,
                backoff=0.01) as client:
        assert [len(client.search(LION, k=2)) for _ in range(3)] == [2, 2, 2]


def test_writing_to_an_app_id_without_workers_says_so(user_group: Users) -> None:
    with Client(user_group.urls[0], broker=user_group.broker, app_id="nobody-runs-this") as client, \
            pytest.raises(WriteError, match="nobody-runs-this-events does not exist"):
        client.upsert([{"id": "a", "text": "b"}])


def test_the_cli_prints_a_table_by_default_and_json_on_request(user_group: Users) -> None:
    env = {**os.environ, "STREAMVEC_API_KEY": user_group.api_key}
    command = [sys.executable, "-m", "app.cli", "search", LION, "-k", "3", "--filter", '{"category": "animal"}',
               "--url", user_group.urls[0]]
    table = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env={**env, "COLUMNS": "100"},
                           timeout=60, check=True)
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["#", "SCORE", "ID", "TEXT", "METADATA"] and len(lines) == 4, table.stdout
    assert lines[1].split()[0] == "1" and '{"pos": "noun"' in lines[1]
    assert "wn30-n-02129165" in table.stdout and "lion, king of beasts" in table.stdout
    assert all(len(line) <= 100 for line in lines), table.stdout
    wide = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env={**env, "COLUMNS": "400"},
                          timeout=60, check=True).stdout
    assert '"category": "animal"' in wide and '"word": "lion"' in wide and "…" not in wide.splitlines()[1], wide
    assert "3 results" in table.stderr
    answer = json.loads(subprocess.run(command + ["--json"], capture_output=True, text=True, cwd=REPO, env=env,
                                       timeout=60, check=True).stdout)
    assert "wn30-n-02129165" in [hit["id"] for hit in answer["results"]] and answer["partial"] is False
