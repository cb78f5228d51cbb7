"""HTTP to the workers: one kept-alive session, the API key, retries with backoff.

Any worker answers for the whole group, so a request that finds a worker unreachable or
answering 503 (recovering, rebalancing, an ``id`` not found while partitions are missing)
is retried on the next URL after a growing pause. A 4xx is the caller's to fix and is
raised at once with the worker's own message.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

from streamvec.errors import AuthenticationError, RequestError, ServerError, Unavailable

API_KEY_HEADER = "X-API-Key"
_MAX_PAUSE = 2.0  # seconds between tries, at most


class Transport:
    """JSON requests to a list of worker URLs."""

    def __init__(self, urls: Sequence[str], api_key: str | None, timeout: float, retries: int, backoff: float) -> None:
        if not urls:
            raise ValueError("give at least one worker URL, e.g. http://127.0.0.1:6066")
        self.urls = [url.rstrip("/") for url in urls]
        self._headers = {API_KEY_HEADER: api_key} if api_key else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._retries = retries
        self._backoff = backoff
        self._next = 0
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, method: str, path: str, body: Any = None,
                      params: Mapping[str, str] | None = None, missing_ok: bool = False) -> Any:
        """The decoded JSON answer; ``None`` for a 404 when ``missing_ok``. Raises the errors of
        :mod:`streamvec.errors`."""
        failures: list[str] = []
        for attempt in range(self._retries + 1):
            if attempt:
                await asyncio.sleep(min(_MAX_PAUSE, self._backoff * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0))
            url = self._pick()
            try:
                status, answer = await self._once(method, url + path, body, params)
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
                failures.append(f"{url}: {type(exc).__name__} {exc}".rstrip())
                continue
            if status == 503:
                failures.append(f"{url}: 503 {_message(answer)}")
                continue
            if status == 404 and missing_ok:
                return None
            if 400 <= status < 500:
                error = AuthenticationError if status == 401 else RequestError
                hint = " (pass api_key=..., the workers' STREAMVEC_API_KEY)" if status == 401 else ""
                raise error(f"{method} {path}: {status} {_message(answer)}{hint}", status)
            if status >= 500:
                raise ServerError(f"{method} {path} failed on {url} with {status}: {_message(answer)}; "
                                  "the worker's log has the details")
            return answer
        seen = list(dict.fromkeys(failures))  # the same failure once
        raise Unavailable(f"{method} {path}: no worker answered in {self._retries + 1} tries ("
                          + "; ".join(seen[-3:]) + "); check that workers run at " + ", ".join(self.urls))

    def _pick(self) -> str:
        url = self.urls[self._next % len(self.urls)]
        self._next += 1
        return url

    async def _once(self, method: str, url: str, body: Any, params: Mapping[str, str] | None) -> tuple[int, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        async with self._session.request(method, url, json=body, params=params) as response:
            if response.content_type == "application/json":
                return response.status, await response.json()
            return response.status, {"error": (await response.text())[:200]}


def _message(answer: Any) -> str:
    return str(answer.get("error", answer)) if isinstance(answer, dict) else str(answer)
