"""A small HTTP client for the CLI and the demo: errors become messages, not tracebacks."""

from __future__ import annotations

from typing import Any

import aiohttp
import click

from app.http.auth import API_KEY_HEADER


async def search(url: str, body: dict[str, Any], api_key: str = "", timeout: float = 30.0) -> dict[str, Any]:
    headers = {API_KEY_HEADER: api_key} if api_key else {}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout), headers=headers) as session:
            async with session.post(f"{url.rstrip('/')}/search", json=body) as response:
                answer = await response.json()
                if response.status != 200:
                    raise click.ClickException(f"{url} answered {response.status}: {answer.get('error')}")
                return answer  # type: ignore[no-any-return]
    except aiohttp.ClientConnectionError as exc:
        raise click.ClickException(f"cannot reach a worker at {url} ({exc}); start one with `streamvec worker`") from None
