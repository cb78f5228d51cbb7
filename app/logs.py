"""Third-party log lines at the level they deserve: nothing at ERROR that is not an error.

**aiokafka's ERROR lines for conditions it recovers from by itself, written at WARNING.** A
healthy worker logged ERROR lines at every start and rebalance (issue 18: "start-up logs
nothing at ERROR that is not an error"), all from aiokafka, for states it gets out of alone:

* ``Topic %s not found in cluster metadata``: a topic created moments before (Faust creates the
  app's topics as its agents start; the consumer's metadata catches up at its next refresh).
  A topic that stays missing repeats the line at every refresh, at WARNING.
* ``Group Coordinator Request failed: %s``: the group coordinator is not elected yet (a fresh
  cluster creating ``__consumer_offsets``, a coordinator moving); aiokafka asks again.
* ``OffsetCommit failed for group %s due to group error (%s), will rejoin``: a commit that met
  a rebalance (the generation moved on); the member rejoins, and the events are redelivered.

Each is matched by aiokafka's message template (``record.msg``), not by its text, so only these
lines move; every other ERROR of aiokafka's stays one.

**aiohttp's refusal of a request it cannot parse, in one WARNING line.** aiohttp refuses a
request before any view or middleware sees it (a request line or header over 8,190 bytes, a bad
method, bytes that are not HTTP) and answers ``400`` in ``text/plain``. It logs that through
``logger.exception``: a full traceback at ERROR for every hostile or broken client, seen in the
schema fuzzing of ``tests/integration/test_http_api.py`` as a 9 KB recommendations URL. The
mistake is the client's; every other exception (a server error) stays at ERROR with its traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError

TRANSIENT: dict[str, frozenset[str]] = {
    "aiokafka.cluster": frozenset({"Topic %s not found in cluster metadata"}),
    "aiokafka.consumer.group_coordinator": frozenset({
        "Group Coordinator Request failed: %s",
        "OffsetCommit failed for group %s due to group error (%s), will rejoin",
    }),
}
"""Logger name → aiokafka's templates of ERROR lines that describe a transient state."""


class Transient(logging.Filter):
    """Lowers the ERROR records of ``templates`` to WARNING (a filter may change the record it lets through)."""

    def __init__(self, templates: frozenset[str]) -> None:
        super().__init__()
        self.templates = templates

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and record.msg in self.templates:
            record.levelno, record.levelname = logging.WARNING, logging.getLevelName(logging.WARNING)
        return True


def lower_transient_errors() -> None:
    """Install the filters (once per process: a second call changes nothing)."""
    for name, templates in TRANSIENT.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, Transient) for f in logger.filters):
            logger.addFilter(Transient(templates))


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
