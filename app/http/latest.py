"""``GET /dead-letters`` and ``GET /alerts``: the newest records of a topic the group writes.

Read from the topic on request (the last ``limit`` records of each partition, newest first),
so they show what any worker of the group wrote. One admin client and one consumer, started on
first use, serve every such request in turn: a client per request cost an admin client, a consumer and their
connections each, and with the broker down a request waited on aiokafka's own timeouts (review
finding SP-22). A request gets :data:`READ_TIMEOUT` seconds, then a 503. Dead letters carry the refused event as
text, cut at :data:`SHOWN_CHARS` (``streamvec dead-letters list`` shows all); alerts are the
JSON records of ``<app id>-alerts`` as they are.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from agents.deadletters import DeadLetter
from app.search.query import RequestError
from app.topics import bootstrap, partitions_known_to, read_tail

logger = logging.getLogger(__name__)

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
SHOWN_CHARS = 500
READ_TIMEOUT = 8.0
"""Seconds one request may take to read a topic's newest records before it is answered 503."""

Render = Callable[[ConsumerRecord[bytes, bytes]], dict[str, Any]]


class LatestRecords:
    """The newest records of the group's topics, read with one admin client and one consumer."""

    def __init__(self, broker: str, timeout: float = READ_TIMEOUT) -> None:
        self._broker = broker
        self._timeout = timeout
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._turn = asyncio.Lock()

    async def dead_letters(self, topic: str, limit: int) -> list[dict[str, Any]]:
        """The ``limit`` newest dead letters as JSON objects; none if the topic does not exist yet."""
        return await self._latest(topic, limit, _dead_letter)

    async def alerts(self, topic: str, limit: int) -> list[dict[str, Any]]:
        """The ``limit`` newest alerts (watchlist, novel, drift); none if the topic does not exist yet."""
        return await self._latest(topic, limit, _alert)

    async def close(self) -> None:
        async with self._turn:
            await self._drop()

    async def _latest(self, topic: str, limit: int, render: Render) -> list[dict[str, Any]]:
        try:  # the timeout covers the wait for an earlier request too
            records = await asyncio.wait_for(self._read_in_turn(topic, limit), self._timeout)
        except (KafkaError, asyncio.TimeoutError) as exc:
            reason = f"no answer in {self._timeout:.0f} s" if isinstance(exc, asyncio.TimeoutError) else exc
            raise RequestError(f"cannot read {topic}: {reason}; retry when the broker is reachable",
                               status=503) from None
        newest = sorted(records, key=lambda r: (r.timestamp, r.partition, r.offset), reverse=True)[:limit]
        return [render(record) for record in newest]

    async def _read_in_turn(self, topic: str, limit: int) -> list[ConsumerRecord[bytes, bytes]]:
        async with self._turn:
            try:
                return await self._read(topic, limit)
            except (KafkaError, asyncio.CancelledError):
                await self._drop()  # clients cut off mid-read start afresh next time
                raise

    async def _read(self, topic: str, limit: int) -> list[ConsumerRecord[bytes, bytes]]:
        if self._admin is None or self._consumer is None:
            self._admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap(self._broker))
            self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap(self._broker), group_id=None,
                                              auto_offset_reset="earliest")
            await self._admin.start()
            await self._consumer.start()
        # Asked of the admin API each time: the topic may have been created since (app.topics.partitions_of).
        partitions = await partitions_known_to(self._admin, topic)
        return await read_tail(self._consumer, partitions, last=limit) if partitions else []

    async def _drop(self) -> None:
        clients = (self._consumer.stop if self._consumer else None, self._admin.close if self._admin else None)
        self._admin = self._consumer = None
        for stop in clients:
            if stop is None:
                continue
            try:
                await stop()
            except Exception as exc:  # noqa: BLE001 — a client that never started may fail to stop; it is dropped anyway
                logger.warning("closing a client of /alerts and /dead-letters: %s: %s", type(exc).__name__, exc)


def parse_limit(query: Mapping[str, str]) -> int:
    """``limit`` from the query string, the only parameter."""
    unknown = set(query) - {"limit"}
    if unknown:
        raise RequestError(f"unknown parameter(s) {sorted(unknown)}; allowed: limit")
    raw = query.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise RequestError(f"limit: give an integer from 1 to {MAX_LIMIT}, got {raw!r}")
    return int(raw)


def _dead_letter(record: ConsumerRecord[bytes, bytes]) -> dict[str, Any]:
    letter = DeadLetter.from_record(record.key, record.value, record.headers)
    return {"partition": record.partition, "offset": record.offset, "timestamp": record.timestamp / 1000,
            "reason": letter.reason, "error": letter.error,
            "source": {"topic": letter.topic, "partition": letter.partition, "offset": letter.offset},
            "key": _text(letter.key), "value": _text(letter.value)}


def _alert(record: ConsumerRecord[bytes, bytes]) -> dict[str, Any]:
    """An alert as the worker wrote it (workers write JSON objects only), and where it is in the
    topic (``at``: a drift alert has a ``partition`` of its own)."""
    return {**json.loads(record.value or b"{}"), "at": {"partition": record.partition, "offset": record.offset}}


def _text(data: bytes | None) -> str | None:
    if data is None:
        return None
    text = data.decode("utf-8", "replace")
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS - 1] + "…"
