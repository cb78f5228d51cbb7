"""Ask every worker of the group the same question, locally or over HTTP, with a deadline.

The group's members come from Faust's assignor metadata, which every member receives
at each rebalance (docs/faust.md §3). A member that does not answer in time
is reported, never waited for: the caller turns its silence into ``partial: true``.
Connections to the other members are kept alive between queries: a new TCP connection
per query would cost more than the search itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import aiohttp
import faust
import orjson
from yarl import URL

from app.search.secret import SECRET_HEADER, ClusterSecret

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Answer(Generic[T]):
    """One member's reply, decoded, or why there is none."""

    url: str
    body: T | None
    error: str | None = None
    status: int | None = None  # the member's HTTP status when it answered with an error


class FanOut:
    """Sends one internal request to every member; calls this worker's own handler directly."""

    def __init__(self, app: faust.App, timeout: float, secret: ClusterSecret, changelog_topic: str) -> None:
        self._app = app
        self._changelog = changelog_topic
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._secret = secret
        self._session: aiohttp.ClientSession | None = None

    def members(self) -> list[str]:
        """Canonical URLs of the group's members, this worker included."""
        own = str(self._app.conf.canonical_url)
        urls = {str(url) for url in self._app.router.tables_metadata()}
        if not any(_ident(url) == _ident(own) for url in urls):
            urls.add(own)
        return sorted(urls)

    async def ask(self, path: str, request: bytes, content_type: str,
                  local: Callable[[], Awaitable[T]], decode: Callable[[bytes], T]) -> list[Answer[T]]:
        """``request`` to every other member's ``path``, ``local()`` for this one."""
        # Read at call time: `faust worker --web-port` changes it after the app is built.
        own = _ident(str(self._app.conf.canonical_url))
        members = self.members()
        if len(members) == 1:  # no task, no gather: the common single-worker case stays cheap
            return [Answer(members[0], await local())]
        headers = {"Content-Type": content_type, SECRET_HEADER: await self._secret.get()}
        return list(await asyncio.gather(*(
            self._ask_local(url, local) if _ident(url) == own else self._ask_remote(url, path, request, headers, decode)
            for url in members
        )))

    def owners(self, exclude_self: bool = False) -> dict[str, set[int]]:
        """The active owner of each partition of the vectors table, as ``{member url: partitions}``."""
        own = _ident(str(self._app.conf.canonical_url))
        found: dict[str, set[int]] = {}
        for url, tables in self._app.router.tables_metadata().items():
            if exclude_self and _ident(str(url)) == own:
                continue
            found[str(url)] = {p for topic, parts in tables.items() if topic == self._changelog for p in parts}
        return found

    async def ask_each(self, path: str, requests: dict[str, bytes], content_type: str,
                       decode: Callable[[bytes], T], local: Callable[[], Awaitable[T | None]]) -> list[Answer[T]]:
        """A request of its own to each member in ``requests`` and ``local()`` for this one, at once."""
        own = str(self._app.conf.canonical_url)
        if not requests:  # the common case: this worker answers alone, no task, no gather
            return [Answer(own, await local())]
        headers = {"Content-Type": content_type, SECRET_HEADER: await self._secret.get()}
        return list(await asyncio.gather(self._ask_local(own, local), *(
            self._ask_remote(url, path, body, headers, decode) for url, body in requests.items())))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _ask_local(self, url: str, local: Callable[[], Awaitable[T | None]]) -> Answer[T]:
        return Answer(url, await local())

    async def _ask_remote(self, url: str, path: str, request: bytes, headers: dict[str, str],
                          decode: Callable[[bytes], T]) -> Answer[T]:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, connector=aiohttp.TCPConnector(limit_per_host=64, keepalive_timeout=60))
        try:
            async with self._session.post(str(URL(url).with_path(path)), data=request, headers=headers) as response:
                body = await response.read()
                if response.status != 200:
                    return Answer(url, None, f"HTTP {response.status}: {_error_of(body)}", response.status)
                return Answer(url, decode(body))
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            logger.warning("worker %s did not answer %s: %s", url, path, exc.__class__.__name__)
            return Answer(url, None, f"{exc.__class__.__name__}: {exc}")


def _error_of(body: bytes) -> str:
    """A member's error answer as one line: its ``{"error": …}`` message, else the start of the body."""
    try:
        return str(orjson.loads(body)["error"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return body[:200].decode(errors="replace")


def _ident(url: str) -> tuple[str, int]:
    parsed = URL(url)
    return (parsed.host or "", parsed.port or 80)
