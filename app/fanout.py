"""Ask every worker of the group the same question, locally or over HTTP, with a deadline.

The group's members come from Faust's assignor metadata, which every member receives
at each rebalance (notes/faust-internals.md §3). A member that does not answer in time
is reported, never waited for: the caller turns its silence into ``partial: true``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import faust
from yarl import URL

logger = logging.getLogger(__name__)

LocalCall = Callable[[], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Answer:
    """One member's reply: its JSON body, or why there is none."""

    url: str
    body: dict[str, Any] | None
    error: str | None = None


class FanOut:
    """Sends one internal request to every member; calls this worker's own handler directly."""

    def __init__(self, app: faust.App, timeout: float) -> None:
        self._app = app
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def members(self) -> list[str]:
        """Canonical URLs of the group's members, this worker included."""
        own = str(self._app.conf.canonical_url)
        urls = {str(url) for url in self._app.router.tables_metadata()}
        if not any(_ident(url) == _ident(own) for url in urls):
            urls.add(own)
        return sorted(urls)

    async def ask(self, path: str, payload: dict[str, Any], local: LocalCall) -> list[Answer]:
        # Read at call time: `faust worker --web-port` changes it after the app is built.
        own = _ident(str(self._app.conf.canonical_url))
        return list(await asyncio.gather(*(
            self._ask_local(url, local) if _ident(url) == own else self._ask_remote(url, path, payload)
            for url in self.members()
        )))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _ask_local(self, url: str, local: LocalCall) -> Answer:
        return Answer(url, await local())

    async def _ask_remote(self, url: str, path: str, payload: dict[str, Any]) -> Answer:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.post(str(URL(url).with_path(path)), json=payload) as response:
                if response.status != 200:
                    return Answer(url, None, f"HTTP {response.status}: {(await response.text())[:200]}")
                return Answer(url, await response.json())
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            logger.warning("worker %s did not answer %s: %s", url, path, exc.__class__.__name__)
            return Answer(url, None, f"{exc.__class__.__name__}: {exc}")


def _ident(url: str) -> tuple[str, int]:
    parsed = URL(url)
    return (parsed.host or "", parsed.port or 80)
