"""The client's HTTP layer against a scripted server: retries, failover, the API key, errors,
typed results. The client against live workers and Kafka: tests/integration/test_client.py."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from app.brokers.process import free_port
from streamvec import (AsyncClient, AuthenticationError, Client, NotVisible, Query, RequestError, ServerError,
                       Unavailable, WriteError)

HIT = {"id": "a", "score": 0.9, "metadata": {"lang": "en"}}
COVERAGE = {"partial": False, "partitions": {"answered": [0, 1], "missing": []}}


@dataclass
class FakeWorker:
    """Answers each path from a script: a list of (status, body) used in turn, the last one repeated."""

    port: int = field(default_factory=free_port)
    script: dict[str, list[tuple[int, Any]]] = field(default_factory=dict)
    seen: list[web.Request] = field(default_factory=list)
    bodies: list[Any] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append(request)
        self.bodies.append(await request.json() if request.can_read_body else None)
        answers = self.script[request.raw_path]
        status, body = answers.pop(0) if len(answers) > 1 else answers[0]
        return web.json_response(body, status=status)


@pytest.fixture
def workers() -> Iterator[list[FakeWorker]]:
    """Two scripted workers served from one background event loop."""
    fakes = [FakeWorker(), FakeWorker()]
    loop = asyncio.new_event_loop()
    runners: list[web.AppRunner] = []

    async def start() -> None:
        for fake in fakes:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", fake.handle)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", fake.port).start()
            runners.append(runner)

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield fakes
    finally:
        for runner in runners:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_search_sends_the_key_and_the_query_and_returns_typed_hits(workers: list[FakeWorker]) -> None:
    worker = workers[0]
    worker.script["/search"] = [(200, {"results": [{**HIT, "text": "hello"}], **COVERAGE, "took_ms": 1.5})]
    with Client(worker.url, api_key="sekrit") as client:
        result = client.search("hello", k=3, filter={"lang": "en"})
    assert worker.seen[0].headers["X-API-Key"] == "sekrit"
    assert worker.bodies[0] == {"text": "hello", "k": 3, "filter": {"lang": "en"}}
    (hit,) = result
    assert (hit.id, hit.score, hit.metadata, hit.text) == ("a", 0.9, {"lang": "en"}, "hello")
    assert not result.partial and result.coverage.answered == (0, 1) and result.took_ms == 1.5


def test_a_hit_without_text_reads_as_none(workers: list[FakeWorker]) -> None:
    workers[0].script["/search"] = [(200, {"results": [HIT], **COVERAGE, "took_ms": 1})]
    with Client(workers[0].url) as client:
        assert client.search(vector=[1.0, 0.0]).hits[0].text is None
    assert workers[0].bodies[0] == {"vector": [1.0, 0.0], "k": 10}


def test_503_is_retried_with_backoff_until_an_answer(workers: list[FakeWorker]) -> None:
    worker = workers[0]
    worker.script["/stats"] = [(503, {"error": "rebalancing"}), (503, {"error": "rebalancing"}),
                               (200, {"documents": 7, "outcomes": {"indexed": 7}, "dead_letter_reasons": {},
                                      **COVERAGE, "workers": {}})]
    with Client(worker.url, retries=3, backoff=0.01) as client:
        assert client.stats().documents == 7
    assert len(worker.seen) == 3


def test_an_unreachable_worker_fails_over_to_the_next_url(workers: list[FakeWorker]) -> None:
    workers[1].script["/documents/a%2Fb"] = [(200, {"id": "a/b", "metadata": {}, "version": 2, "ts": 1.0, **COVERAGE})]
    dead = f"http://127.0.0.1:{free_port()}"
    with Client([dead, workers[1].url], backoff=0.01) as client:
        document = client.get("a/b")
    assert document is not None and document.id == "a/b" and document.version == 2


def test_persistent_503_raises_unavailable_naming_the_workers(workers: list[FakeWorker]) -> None:
    workers[0].script["/documents/x"] = [(503, {"error": "partitions [3] did not answer", **COVERAGE})]
    with Client(workers[0].url, retries=2, backoff=0.01) as client, pytest.raises(Unavailable) as caught:
        client.get("x")
    assert "3 tries" in str(caught.value) and workers[0].url in str(caught.value)
    assert "partitions [3] did not answer" in str(caught.value)


def test_a_missing_document_is_none(workers: list[FakeWorker]) -> None:
    workers[0].script["/documents/nope"] = [(404, {"error": "document 'nope' not found", **COVERAGE})]
    with Client(workers[0].url) as client:
        assert client.get("nope") is None


@pytest.mark.parametrize(("status", "error", "hint"), [
    (400, RequestError, '"k": Input should be less than or equal to 1000'),
    (401, AuthenticationError, "api_key="),
    (500, ServerError, "log"),
])
def test_errors_are_raised_at_once_with_the_workers_message(workers: list[FakeWorker], status: int,
                                                           error: type[Exception], hint: str) -> None:
    workers[0].script["/search"] = [(status, {"error": '"k": Input should be less than or equal to 1000'})]
    with Client(workers[0].url, retries=3) as client, pytest.raises(error, match=hint.replace("(", r"\(")):
        client.search("x", k=5000)
    assert len(workers[0].seen) == 1


def test_a_batch_sends_each_query_and_returns_one_list_each(workers: list[FakeWorker]) -> None:
    workers[0].script["/search/batch"] = [(200, {"results": [[HIT], []], **COVERAGE, "took_ms": 2})]

    async def run() -> None:
        async with AsyncClient(workers[0].url) as client:
            batch = await client.search_batch([Query(text="a", k=1), Query(id="b", filter={"x": 1}, ef=50)])
        assert [len(hits) for hits in batch.results] == [1, 0]
    asyncio.run(run())
    assert workers[0].bodies[0] == {"queries": [{"text": "a", "k": 1}, {"id": "b", "k": 10, "filter": {"x": 1},
                                                                        "ef": 50}]}


def test_writes_need_a_broker_and_well_formed_documents() -> None:
    with Client("http://127.0.0.1:1") as client:
        with pytest.raises(WriteError, match="broker="):
            client.upsert([{"id": "a", "text": "x"}])
        with pytest.raises(ValueError, match="unknown document fields"):
            client.upsert([{"id": "a", "txt": "x"}])
        with pytest.raises(ValueError, match='"id"'):
            client.upsert([{"text": "x"}])


def test_the_blocking_client_works_inside_a_running_event_loop(workers: list[FakeWorker]) -> None:
    """Notebooks run a loop already; the blocking client has its own in a thread."""
    workers[0].script["/search"] = [(200, {"results": [HIT], **COVERAGE, "took_ms": 1})]

    async def inside() -> int:
        with Client(workers[0].url) as client:
            return len(client.search("x"))
    assert asyncio.run(inside()) == 1


def test_get_many_keeps_the_order_and_says_when_partitions_were_missing(workers: list[FakeWorker]) -> None:
    partial = {"partial": True, "partitions": {"answered": [0], "missing": [1]}}
    workers[0].script["/documents/batch"] = [(200, {"documents": [None, {"id": "b", "metadata": {"x": 1}}], **partial})]
    with Client(workers[0].url) as client:
        found = client.get_many(["a", "b"])
    assert workers[0].bodies[0] == {"ids": ["a", "b"]}
    assert [d and d.id for d in found] == [None, "b"] and found.coverage.missing == (1,)


def test_a_search_after_writes_asks_again_while_partitions_are_behind(workers: list[FakeWorker]) -> None:
    worker = workers[0]
    behind = {"results": [], "partial": True, "partitions": {"answered": [0], "missing": [1], "behind": [1]},
              "took_ms": 1000.0}
    worker.script["/search"] = [(200, behind), (200, behind), (200, {"results": [HIT], **COVERAGE, "took_ms": 2.0})]
    with Client(worker.url) as client:
        result = client.search("hello", after={1: 41})
    assert [hit.id for hit in result] == ["a"] and not result.partial
    assert [body["after"] for body in worker.bodies] == [{"1": 41}] * 3


def test_a_search_after_writes_never_seen_raises_not_visible_naming_the_partitions(workers: list[FakeWorker]) -> None:
    worker = workers[0]
    worker.script["/search"] = [(200, {"results": [HIT], "partial": True, "took_ms": 1.0,
                                       "partitions": {"answered": [0], "missing": [1, 2], "behind": [1, 2]}})]
    with Client(worker.url) as client, pytest.raises(NotVisible, match=r"partitions \[1, 2\] had not applied"):
        client.search("hello", after={1: 41, 2: 7}, wait_timeout=0.3)
    assert len(worker.seen) >= 2
