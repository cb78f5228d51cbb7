"""``streamvec produce``: a JSONL file onto the events topic, keyed by document id.

Lines are checked before anything is sent, so a bad file is refused whole instead of
half-loaded. Records are sent with ``acks=all`` and the command returns only when the
broker has acknowledged every one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaProducer
from tqdm import tqdm

from app.replication import DEFAULT_REPLICATION_FACTOR
from app.topics import bootstrap, ensure_topic
from index.exceptions import StreamvecError

_IN_FLIGHT = 2000


class ProduceError(StreamvecError, ValueError):
    """The input file cannot be produced as it is; the message names the line."""


@dataclass(frozen=True)
class Line:
    key: bytes
    value: bytes | None  # None: a tombstone (delete)


def read_events(path: Path, key_field: str = "id") -> list[Line]:
    """Every line as a record keyed by its ``key_field`` (``id`` for events and watchlist
    patterns, ``user`` for activity); raises on the first line that is not such an object."""
    lines = []
    for number, raw in _numbered(path):
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise ProduceError(f"{path}:{number}: not JSON ({exc})") from None
        if not isinstance(body, dict) or not isinstance(body.get(key_field), str) or not body[key_field]:
            raise ProduceError(f'{path}:{number}: each line must be a JSON object with a non-empty string "{key_field}"')
        lines.append(Line(body[key_field].encode(), raw.encode()))
    return lines


def _numbered(path: Path) -> Iterator[tuple[int, str]]:
    with path.open(encoding="utf-8") as handle:
        for number, raw in enumerate(handle, 1):
            if raw.strip():
                yield number, raw.strip()


async def produce(broker: str, topic: str, partitions: int, lines: list[Line], progress: bool = True,
                  replication_factor: int = DEFAULT_REPLICATION_FACTOR) -> dict[int, int]:
    """Send ``lines`` and wait for every acknowledgement; returns the highest offset written in
    each partition (what a search's ``after`` waits for, for read-your-writes). A topic that
    does not exist yet is created with ``replication_factor`` replicas, as a worker would."""
    await ensure_topic(broker, topic, partitions, replication_factor=replication_factor)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap(broker), acks="all", linger_ms=5,
                                max_batch_size=1 << 20, enable_idempotence=False)
    await producer.start()
    offsets: dict[int, int] = {}

    async def acked(pending: list[asyncio.Future]) -> None:
        for meta in await asyncio.gather(*pending):
            offsets[meta.partition] = max(meta.offset, offsets.get(meta.partition, -1))
        bar.update(len(pending))

    try:
        with tqdm(total=len(lines), unit="event", disable=not progress, desc=f"producing to {topic}") as bar:
            pending: list[asyncio.Future] = []
            for line in lines:
                pending.append(await producer.send(topic, key=line.key, value=line.value))
                if len(pending) >= _IN_FLIGHT:
                    await acked(pending)
                    pending = []
            await acked(pending)
    finally:
        await producer.stop()
    return offsets
