"""The logger aiohttp's request handler writes to, with a client's malformed request at WARNING.

aiohttp refuses a request it cannot parse before any view or middleware sees it (a request line
or header over 8,190 bytes, a bad method, bytes that are not HTTP) and answers ``400`` in
``text/plain``. It logs that refusal through ``logger.exception``: a full traceback at ERROR for
every hostile or broken client, seen in the schema fuzzing of ``tests/integration/test_http_api.py``
as a 9 KB recommendations URL. The mistake is the client's, so this adapter writes one WARNING line
for those and leaves every other exception (a server error) at ERROR with its traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError

PREVIEW = 200
"""Characters of aiohttp's message kept in the warning (it quotes the whole refused line)."""


class ServerLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Pass as aiohttp's ``handler_args={"logger": ServerLog(...)}``."""

    def exception(self, msg: object, *args: Any, exc_info: Any = True, **kwargs: Any) -> None:
        if isinstance(exc_info, HttpProcessingError) and exc_info.code < 500:
            self.logger.warning("refused a malformed request with %d: %s", exc_info.code,
                                _preview(exc_info.message))
            return
        self.logger.error(msg, *args, exc_info=exc_info, **kwargs)


def server_log() -> ServerLog:
    return ServerLog(logging.getLogger("aiohttp.server"), {})


def _preview(message: str) -> str:
    flat = " ".join(message.split())
    return flat if len(flat) <= PREVIEW else flat[:PREVIEW] + "…"
