"""Dead letters: events the ingest agent could not index, kept with why and where from.

A dead letter is the consumed record's key and value, byte for byte, so it can be replayed
as it was, plus ``streamvec-*`` headers that say why it was refused and where it was read
(the original record's own headers come along after them). The format is what
``streamvec dead-letters`` reads; keep the header names stable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

HEADER_PREFIX = "streamvec-"
REASON = HEADER_PREFIX + "reason"
ERROR = HEADER_PREFIX + "error"
TOPIC = HEADER_PREFIX + "topic"
PARTITION = HEADER_PREFIX + "partition"
OFFSET = HEADER_PREFIX + "offset"

Headers = Sequence[tuple[str, bytes]]


@dataclass(frozen=True)
class DeadLetter:
    """One refused record: its original bytes, the reason code and message, and its origin."""

    key: bytes | None
    value: bytes | None
    reason: str
    error: str
    topic: str
    partition: int
    offset: int
    original_headers: Headers = ()

    def headers(self) -> list[tuple[str, bytes]]:
        why = [(REASON, self.reason), (ERROR, self.error), (TOPIC, self.topic),
               (PARTITION, str(self.partition)), (OFFSET, str(self.offset))]
        return [(name, text.encode()) for name, text in why] + list(self.original_headers)

    @classmethod
    def from_record(cls, key: bytes | None, value: bytes | None, headers: Headers) -> DeadLetter:
        """Read a dead letter back from the topic; a record without our headers reads as ``unknown``."""
        ours = {name: raw.decode("utf-8", "replace") for name, raw in headers if name.startswith(HEADER_PREFIX)}
        return cls(key=key, value=value, reason=ours.get(REASON, "unknown"), error=ours.get(ERROR, ""),
                   topic=ours.get(TOPIC, ""), partition=_int(ours.get(PARTITION)), offset=_int(ours.get(OFFSET)),
                   original_headers=tuple((n, v) for n, v in headers if not n.startswith(HEADER_PREFIX)))


def _int(text: str | None) -> int:
    return int(text) if text is not None and text.lstrip("-").isdigit() else -1


class Topic(Protocol):
    """The part of a Faust topic the sink uses (a fake one will do in tests)."""

    async def send(self, *, key: Any = None, value: Any = None, headers: Any = None) -> Awaitable[Any]: ...

    async def maybe_declare(self) -> None: ...


class DeadLetterSink:
    """Sends dead letters and returns only once the broker has acknowledged each one.

    The ingest agent acknowledges a batch after this returns, so an event is never
    acknowledged without being either indexed or safely in the dead-letter topic.
    """

    def __init__(self, topic: Topic) -> None:
        self.topic = topic
        self._declared = False

    async def declare(self) -> None:
        """Create the topic if it is missing: at worker start, so it exists before the first bad event."""
        if not self._declared:
            await self.topic.maybe_declare()
            self._declared = True

    async def send(self, letters: Sequence[DeadLetter]) -> None:
        if not letters:
            return
        await self.declare()
        pending = [await self.topic.send(key=letter.key, value=_sendable(letter), headers=letter.headers())
                   for letter in letters]
        await asyncio.gather(*pending)


def _sendable(letter: DeadLetter) -> bytes | None:
    """The value to send: Kafka can carry a record with neither key nor value, but the
    producer refuses to write one, so such a record is kept with an empty value."""
    return b"" if letter.key is None and letter.value is None else letter.value
