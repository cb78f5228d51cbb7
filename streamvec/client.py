"""The client: searches over HTTP (any worker answers for the group), writes through Kafka.

:class:`AsyncClient` does the work; :class:`Client` runs one on a private event loop in a
background thread, so blocking code (scripts, notebooks, web frameworks without asyncio)
gets the same behaviour with plain calls.
"""

from __future__ import annotations

import asyncio
import functools
import json
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import quote

from streamvec._http import Transport
from streamvec._kafka import EventWriter, Record, encode
from streamvec.errors import NotVisible, Unavailable, WriteError
from streamvec.models import BatchResult, Coverage, Document, Documents, Query, SearchResult, Stats, WriteResult

DEFAULT_URL = "http://127.0.0.1:6066"
MAX_IDS = 1000  # ids per POST /documents/batch
EVENT_FIELDS = frozenset({"id", "text", "vector", "metadata", "version", "ts"})
P = ParamSpec("P")
R = TypeVar("R")
Check = Callable[[Document | None], bool]


class AsyncClient:
    """Search, read and write a streamvec group from asyncio code.

    Args:
        url: one worker's URL, or several: a request that finds one unreachable or
            answering 503 goes to the next.
        api_key: the workers' ``STREAMVEC_API_KEY``, when they have one.
        broker: Kafka bootstrap server(s) of the group (``host:port[,host:port]``); needed
            only to write (:meth:`upsert`, :meth:`delete`).
        app_id: the group's ``STREAMVEC_APP_ID``: events go to ``<app_id>-events``.
        timeout: seconds per HTTP request.
        retries: further tries after an unreachable worker or a 503.
        backoff: first pause between tries in seconds; it doubles each try (at most 2 s).
    """

    def __init__(self, url: str | Sequence[str] = DEFAULT_URL, *, api_key: str | None = None,
                 broker: str | None = None, app_id: str = "streamvec", timeout: float = 30.0,
                 retries: int = 4, backoff: float = 0.1) -> None:
        self._http = Transport([url] if isinstance(url, str) else list(url), api_key, timeout, retries, backoff)
        self._writer = EventWriter(broker, f"{app_id}-events") if broker else None
        self.events_topic = f"{app_id}-events"

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session and the Kafka producer."""
        await self._http.close()
        if self._writer is not None:
            await self._writer.close()

    # ---- reads (HTTP) ----------------------------------------------------------------

    async def search(self, text: str | None = None, *, vector: Sequence[float] | None = None, id: str | None = None,
                     k: int = 10, filter: Mapping[str, Any] | None = None, ef: int | None = None,
                     after: WriteResult | Mapping[int, int] | None = None,
                     wait_timeout: float = 10.0) -> SearchResult:
        """The ``k`` documents most similar to ``text``, a ``vector``, or a stored document ``id``
        (which is left out of its own results), best first; ``filter`` is a metadata filter
        (docs/http-api.md). Check ``result.partial``: true when some partitions did not answer.

        ``after``: what an :meth:`upsert` or :meth:`delete` returned (or its ``offsets``): the
        workers answer once they have applied those events (read-your-writes). A partition that no
        copy had caught up on within the workers' read wait is asked for again until
        ``wait_timeout`` seconds have passed; then :class:`NotVisible` names it. An answer never
        leaves out the caller's own writes as if it were complete."""
        query = Query(text=text, vector=vector, id=id, k=k, filter=filter, ef=ef)
        body = query.body()
        if after is None:
            return SearchResult.from_json(await self._http.request("POST", "/search", body))
        offsets = after.offsets if isinstance(after, WriteResult) else after
        body["after"] = {str(partition): offset for partition, offset in offsets.items()}
        deadline = time.monotonic() + wait_timeout
        while True:
            result = SearchResult.from_json(await self._http.request("POST", "/search", body))
            if not result.coverage.behind:
                return result
            if time.monotonic() > deadline:
                raise NotVisible(f"partitions {list(result.coverage.behind)} had not applied the writes this search "
                                 f"waits for after {wait_timeout:.0f} s; are workers consuming {self.events_topic}?")
            await asyncio.sleep(0.1)

    async def search_batch(self, queries: Sequence[Query]) -> BatchResult:
        """Several queries (1–100) answered with one fan-out; one hit list per query, in order."""
        answer = await self._http.request("POST", "/search/batch", {"queries": [q.body() for q in queries]})
        return BatchResult.from_json(answer)

    async def get(self, id: str) -> Document | None:
        """The stored document ``id`` (metadata, version, time, text when stored), or None."""
        answer = await self._http.request("GET", f"/documents/{quote(id, safe='')}", missing_ok=True)
        return None if answer is None else Document.from_json(answer)

    async def get_many(self, ids: Sequence[str]) -> Documents:
        """Documents by id with one fan-out per 1,000 ids; in order, None for an id not stored."""
        found: list[Document | None] = []
        partial: set[int] = set()
        answered: set[int] = set()
        for start in range(0, len(ids), MAX_IDS):
            answer = await self._http.request("POST", "/documents/batch", {"ids": list(ids[start:start + MAX_IDS])})
            found += [None if raw is None else Document.from_json(raw) for raw in answer["documents"]]
            coverage = Coverage.from_json(answer)
            partial.update(coverage.missing)
            answered.update(coverage.answered)
        return Documents(found, Coverage(bool(partial), tuple(sorted(answered - partial)), tuple(sorted(partial))))

    async def stats(self) -> Stats:
        """Documents and event outcomes for the whole group."""
        return Stats.from_json(await self._http.request("GET", "/stats"))

    # ---- writes (Kafka) ----------------------------------------------------------------

    async def upsert(self, documents: Iterable[Mapping[str, Any]], *, wait: bool = False,
                     wait_timeout: float = 30.0) -> WriteResult:
        """Write documents as events (``{"id", "text"?, "vector"?, "metadata"?, "version"?, "ts"?}``,
        docs/events.md "Events"), keyed by id; returns once Kafka acknowledged every one.

        With ``wait``, returns only when every document reads back as written from the
        workers (:meth:`get_many`: same metadata, and text when they return it), so a search
        right after sees it; raises :class:`NotVisible` after ``wait_timeout`` seconds (a
        refused event is in the dead-letter topic).
        """
        events = [_event(document) for document in documents]
        result = await self._send([(e["id"].encode(), encode(e)) for e in events])
        if wait:
            await self._visible({e["id"]: _shows(e) for e in events}, wait_timeout)
        return result

    async def delete(self, ids: str | Iterable[str], *, version: int | None = None, wait: bool = False,
                     wait_timeout: float = 30.0) -> WriteResult:
        """Delete documents by id (a tombstone each; with ``version``, a versioned delete that an
        older upsert replayed later cannot undo). ``wait`` as for :meth:`upsert`."""
        chosen = [ids] if isinstance(ids, str) else list(ids)
        records: list[Record] = [
            (doc_id.encode(), None if version is None else encode({"id": doc_id, "op": "delete", "version": version}))
            for doc_id in chosen]
        result = await self._send(records)
        if wait:
            await self._visible({doc_id: _gone for doc_id in chosen}, wait_timeout)
        return result

    async def _send(self, records: list[Record]) -> WriteResult:
        if self._writer is None:
            raise WriteError("writes go through Kafka: pass broker= (the workers' STREAMVEC_BROKER) to the client")
        if not records:
            return WriteResult(count=0, topic=self.events_topic, offsets={})
        return await self._writer.send(records)

    async def _visible(self, checks: dict[str, Check], timeout: float) -> None:
        """Read the ids back until each passes its check, or raise :class:`NotVisible`. An id
        missing while partitions did not answer is not taken as deleted."""
        deadline = time.monotonic() + timeout
        pending = dict(checks)
        pause = 0.02
        while True:
            try:
                answer = await self.get_many(list(pending))
            except Unavailable:
                answer = None
            if answer is not None:
                pending = {doc_id: check for (doc_id, check), document in zip(pending.items(), answer, strict=True)
                           if not (check(document) and (document is not None or not answer.coverage.partial))}
            if not pending:
                return
            if time.monotonic() > deadline:
                shown = ", ".join(sorted(pending)[:10])
                raise NotVisible(f"{len(pending)} written documents not visible after {timeout:.0f} s ({shown}); "
                                 f"are workers consuming {self.events_topic}? Refused events are listed by "
                                 "`streamvec dead-letters list`")
            await asyncio.sleep(pause)
            pause = min(0.5, pause * 2)


def _event(document: Mapping[str, Any]) -> dict[str, Any]:
    """A document as an event; an unknown field is an error here rather than a dead letter later."""
    unknown = set(document) - EVENT_FIELDS
    if unknown:
        raise ValueError(f"unknown document fields {sorted(unknown)}; an event has {sorted(EVENT_FIELDS)}")
    if not isinstance(document.get("id"), str) or not document["id"]:
        raise ValueError(f'every document needs a non-empty string "id", got {document.get("id")!r}')
    event = {name: value for name, value in document.items() if value is not None}
    if "vector" in event:
        event["vector"] = [float(x) for x in event["vector"]]
    return event


def _shows(event: Mapping[str, Any]) -> Check:
    """Whether a read-back document is this event's write (text is compared once workers return it)."""
    metadata = json.loads(encode(event.get("metadata") or {}))

    def check(document: Document | None) -> bool:
        return (document is not None and dict(document.metadata) == metadata
                and (document.text is None or "text" not in event or document.text == event["text"])
                and ("version" not in event or (document.version or 0) >= event["version"]))
    return check


def _gone(document: Document | None) -> bool:
    return document is None


class _LoopThread:
    """An event loop running in a daemon thread; coroutines are submitted from any thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="streamvec-client", daemon=True)
        self._thread.start()

    def submit(self, coroutine: Coroutine[Any, Any, R]) -> Future[R]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


def _blocking(method: Callable[Concatenate[AsyncClient, P], Awaitable[R]]) -> Callable[Concatenate[Client, P], R]:
    """The blocking twin of an :class:`AsyncClient` method: same arguments, same docs."""

    @functools.wraps(method)
    def call(self: Client, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._run(method(self._client, *args, **kwargs))  # type: ignore[arg-type]
    return call


class Client:
    """The same as :class:`AsyncClient` with blocking calls; takes the same arguments.

    Use it as a context manager, or call :meth:`close`, to stop its background thread.
    """

    def __init__(self, url: str | Sequence[str] = DEFAULT_URL, **options: Any) -> None:
        self._loop = _LoopThread()
        self._client = AsyncClient(url, **options)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _run(self, coroutine: Coroutine[Any, Any, R]) -> R:
        return self._loop.submit(coroutine).result()

    def close(self) -> None:
        """Close connections and stop the background thread; the client cannot be used after."""
        if self._loop.loop.is_running():
            self._run(self._client.close())
            self._loop.stop()

    search = _blocking(AsyncClient.search)
    search_batch = _blocking(AsyncClient.search_batch)
    get = _blocking(AsyncClient.get)
    get_many = _blocking(AsyncClient.get_many)
    stats = _blocking(AsyncClient.stats)
    upsert = _blocking(AsyncClient.upsert)
    delete = _blocking(AsyncClient.delete)
