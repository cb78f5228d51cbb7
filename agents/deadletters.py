"""Dead letters: events the ingest agent could not index, kept with why and where from.

A dead letter is the consumed record's key and value, byte for byte, so it can be replayed
as it was, plus ``streamvec-*`` headers that say why it was refused and where it was read
(the original record's own headers come along after them). The format is what
``streamvec dead-letters`` reads; keep the header names stable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agents.acked import AckedTopic, Outgoing

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


def refusal(source: Any, reason: str, error: str) -> DeadLetter:
    """The dead letter of a consumed Faust event (anything with a ``message``) refused for ``reason``."""
    message = source.message
    return DeadLetter(key=message.key, value=message.value, reason=reason, error=error, topic=message.topic,
                      partition=message.partition, offset=message.offset, original_headers=tuple(message.headers or ()))


def _int(text: str | None) -> int:
    return int(text) if text is not None and text.lstrip("-").isdigit() else -1


class DeadLetterSink(AckedTopic):
    """Sends dead letters and returns only once the broker has acknowledged each one.

    The ingest agent acknowledges a batch after this returns, so an event is never
    acknowledged without being either indexed or safely in the dead-letter topic.
    """

    async def send(self, letters: Sequence[DeadLetter]) -> None:
        await self.send_all([Outgoing(letter.key, _sendable(letter), letter.headers()) for letter in letters])


def _sendable(letter: DeadLetter) -> bytes | None:
    """The value to send: Kafka can carry a record with neither key nor value, but the
    producer refuses to write one, so such a record is kept with an empty value."""
    return b"" if letter.key is None and letter.value is None else letter.value
