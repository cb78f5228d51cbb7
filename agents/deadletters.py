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

from agents.producer import MAX_REQUEST_BYTES, Outgoing

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


OMITTED = HEADER_PREFIX + "value-omitted"
_HEADROOM = 64 << 10  # for the headers and the record's own framing


def dead_letter_records(letters: Sequence[DeadLetter], topic: str, omit_values: bool = False) -> list[Outgoing]:
    """The records that put ``letters`` on the dead-letter ``topic``, keyed like the originals.

    Kafka can carry a record with neither key nor value, but the producer refuses to write
    one, so such a letter keeps an empty value. A value too large for any record the
    producer sends (an input topic configured above streamvec's limit), or every value with
    ``omit_values`` (the topic refused a letter as too large), is left out, and the
    ``streamvec-value-omitted`` header says how many bytes it had: the letter still says
    why and where from, so the event can be found at its origin.
    """
    return [_record(letter, topic, omit_values) for letter in letters]


def _record(letter: DeadLetter, topic: str, omit_value: bool) -> Outgoing:
    value = b"" if letter.key is None and letter.value is None else letter.value
    headers = letter.headers()
    size = len(letter.key or b"") + len(value or b"") + sum(len(n) + len(v) for n, v in headers)
    if value and (omit_value or size > MAX_REQUEST_BYTES - _HEADROOM):
        headers.append((OMITTED, str(len(value)).encode()))
        value = b""
    return Outgoing(topic=topic, key=letter.key, value=value, headers=headers)
