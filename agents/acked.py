"""A topic whose every send is awaited until the broker acknowledges it.

Whatever an agent produces because of an event (a dead letter, an alert, a repartitioned
record) must be durable before that event is acknowledged, or a crash in between loses
it: senders here return only once every record is acked, and raise if one is refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


class Topic(Protocol):
    """The part of a Faust topic used here (a fake one will do in tests)."""

    async def send(self, *, key: Any = None, value: Any = None, headers: Any = None,
                   timestamp: float | None = None) -> Awaitable[Any]: ...

    async def maybe_declare(self) -> None: ...


@dataclass(frozen=True)
class Outgoing:
    """One record to produce; ``timestamp`` (seconds) None means now."""

    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()
    timestamp: float | None = None


class AckedTopic:
    """Sends records and returns once the broker has acknowledged each one; creates the
    topic at worker start (``declare``), so it exists with its partition count before the
    first record and before anyone consumes it."""

    def __init__(self, topic: Topic) -> None:
        self.topic = topic
        self._declared = False

    async def declare(self) -> None:
        if not self._declared:
            await self.topic.maybe_declare()
            self._declared = True

    async def send_all(self, records: Sequence[Outgoing]) -> None:
        if not records:
            return
        await self.declare()
        pending = [await self.topic.send(key=record.key, value=record.value, headers=list(record.headers) or None,
                                         **({"timestamp": record.timestamp} if record.timestamp is not None else {}))
                   for record in records]
        await asyncio.gather(*pending)
