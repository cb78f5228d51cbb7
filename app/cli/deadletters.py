"""``streamvec dead-letters``: read the dead-letter topic, and replay chosen records.

Both read the topic from its beginning to the end offsets it had when the command
started, so a worker that keeps dead-lettering cannot make the command run forever, and
a replayed record that fails again is not read back in the same run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from agents.deadletters import DeadLetter
from app.topics import bootstrap, partitions_of, read_to_end
from index.exceptions import StreamvecError

_KEY_WIDTH = 32
_DETAIL_WIDTH = 100


class DeadLetterError(StreamvecError, RuntimeError):
    """The dead-letter topic cannot be read or replayed; the message says what to check."""


@dataclass(frozen=True)
class StoredDeadLetter:
    """A dead letter with its place in the dead-letter topic and when it was written (s since epoch)."""

    partition: int
    offset: int
    timestamp: float
    letter: DeadLetter


async def read_dead_letters(broker: str, topic: str, reason: str | None = None) -> list[StoredDeadLetter]:
    """Every dead letter (of ``reason``, if given) up to the end offsets at the start, oldest first."""
    try:
        partitions = await partitions_of(broker, topic)
        if not partitions:
            raise DeadLetterError(f"topic {topic} does not exist on {broker}: no worker with this app id "
                                  "(STREAMVEC_APP_ID) has started on this broker yet, so nothing was dead-lettered")
        found = [_stored(record) for record in await read_to_end(broker, partitions)]
    except KafkaError as exc:
        raise DeadLetterError(f"cannot read {topic} from the Kafka broker at {broker}: {exc}; "
                              "check STREAMVEC_BROKER (or --broker) and that the broker is up") from None
    chosen = [item for item in found if reason is None or item.letter.reason == reason]
    return sorted(chosen, key=lambda item: (item.timestamp, item.partition, item.offset))


def _stored(record: ConsumerRecord[bytes, bytes]) -> StoredDeadLetter:
    return StoredDeadLetter(partition=record.partition, offset=record.offset, timestamp=record.timestamp / 1000,
                            letter=DeadLetter.from_record(record.key, record.value, record.headers))


async def replay(broker: str, letters: Sequence[StoredDeadLetter], default_topic: str, to: str | None = None) -> int:
    """Send each letter's original key and value (and original headers, none of ours) back to
    ``to``, else to the topic it was read from, else ``default_topic``; wait for every ack."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap(broker), acks="all", enable_idempotence=False)
    try:
        await producer.start()
        pending = [await producer.send(to or item.letter.topic or default_topic, key=item.letter.key,
                                       value=item.letter.value, headers=list(item.letter.original_headers))
                   for item in letters]
        await asyncio.gather(*pending)
    except KafkaError as exc:
        raise DeadLetterError(f"cannot replay to the Kafka broker at {broker}: {exc}; some records may have been "
                              "sent (replaying them twice is safe: upserts by id are idempotent)") from None
    finally:
        await producer.stop()
    return len(letters)


def format_table(letters: Sequence[StoredDeadLetter]) -> list[str]:
    """Readable lines: one per dead letter, with a header; long keys, errors and values are shortened."""
    rows = [("OFFSET", "PART", "TIME (UTC)", "REASON", "SOURCE (topic/partition/offset)", "KEY", "ERROR | VALUE")]
    for item in letters:
        letter = item.letter
        rows.append((
            str(item.offset), str(item.partition),
            datetime.fromtimestamp(item.timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S"),
            letter.reason, f"{letter.topic}/{letter.partition}/{letter.offset}",
            _shorten(_show(letter.key), _KEY_WIDTH),
            _shorten(f"{letter.error} | {_show(letter.value)}", _DETAIL_WIDTH),
        ))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    return ["  ".join([cell.ljust(width) for cell, width in zip(row, widths)] + [row[-1]]).rstrip() for row in rows]


def _show(data: bytes | None) -> str:
    """Bytes as text when they are UTF-8, else as a Python bytes literal; ``null`` for none."""
    if data is None:
        return "null"
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return repr(data)


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())  # one line per record, whatever the value holds
    return text if len(text) <= width else text[:width - 1] + "…"
