"""``GET /dead-letters`` and ``GET /alerts``: the newest records of a topic the group writes.

Read from the topic on request (the last ``limit`` records of each partition, newest first),
so they show what any worker of the group wrote. Dead letters carry the refused event as
text, cut at :data:`SHOWN_CHARS` (``streamvec dead-letters list`` shows all); alerts are the
JSON records of ``<app id>-alerts`` as they are.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from agents.deadletters import DeadLetter
from app.search.query import RequestError
from app.topics import partitions_of, read_to_end

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
SHOWN_CHARS = 500

Render = Callable[[ConsumerRecord[bytes, bytes]], dict[str, Any]]


async def latest_dead_letters(broker: str, topic: str, limit: int) -> list[dict[str, Any]]:
    """The ``limit`` newest dead letters as JSON objects; none if the topic does not exist yet."""
    return await _latest(broker, topic, limit, _dead_letter)


async def latest_alerts(broker: str, topic: str, limit: int) -> list[dict[str, Any]]:
    """The ``limit`` newest alerts (watchlist, novel, drift); none if the topic does not exist yet."""
    return await _latest(broker, topic, limit, _alert)


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


async def _latest(broker: str, topic: str, limit: int, render: Render) -> list[dict[str, Any]]:
    try:
        partitions = await partitions_of(broker, topic)
        records = await read_to_end(broker, partitions, last=limit) if partitions else []
    except KafkaError as exc:
        raise RequestError(f"cannot read {topic}: {exc}; retry when the broker is reachable", status=503) from None
    newest = sorted(records, key=lambda r: (r.timestamp, r.partition, r.offset), reverse=True)[:limit]
    return [render(record) for record in newest]


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
