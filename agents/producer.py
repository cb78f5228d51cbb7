"""The producer for what ingest must not lose: changelog records, dead letters, alerts.

Faust's own table writes only queue their changelog records; its flush before an offset commit
returns once no send completed for 0.1 s, possibly with records still queued
(docs/faust.md §8). So ingest sends through this producer instead and waits for every
acknowledgement (``acks=all``, idempotent) before it acknowledges the events that caused them.

A send that fails is not the events' fault (they were checked, and sized, before): the broker is
down, slow past the request timeout, or refuses the topic. :class:`BrokerUnavailable` says so, and
the producer is replaced before the next try, since an idempotent producer whose batch expired can
be left with sequence numbers the broker no longer accepts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (KafkaError, MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError,
                             TopicAuthorizationFailedError)
from aiokafka.structs import RecordMetadata

from index.exceptions import StreamvecError

logger = logging.getLogger(__name__)

Headers = Sequence[tuple[str, bytes]]
MAX_REQUEST_BYTES = 16 << 20
"""Largest record the producer sends: big enough for a dead letter of any record the broker
accepted on an input topic (its default limit is 1 MB), plus our headers."""


REQUEST_TIMEOUT_MS = 15_000
"""How long a send may wait for the broker before the batch is retried with a new producer:
longer than a broker's usual stalls (leader moves, GC pauses), short enough that a stopping
worker is not held for long."""


class BrokerUnavailable(StreamvecError):
    """Kafka did not acknowledge a write; nothing of the batch is acknowledged, and it is retried."""


class RecordsTooLarge(BrokerUnavailable):
    """The broker refused a record as larger than its topic takes (``max.message.bytes``): the same
    record will be refused again, so a caller that can send a smaller one does (review finding
    SP-12: a dead letter of a 1 MB event, refused by a dead-letter topic created with the 1 MB
    default, stalled ingest for good)."""


_TOO_LARGE = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError)


@dataclass(frozen=True)
class Outgoing:
    """One record to send: ``partition`` None lets the producer pick by key; ``timestamp``
    (seconds) None stamps it now (a repartitioned record keeps its original's)."""

    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None = None
    headers: Headers = ()
    timestamp: float | None = None


class DurableProducer:
    """Sends records and returns only once the broker has acknowledged every one of them."""

    def __init__(self, bootstrap: str, *, idempotent: bool = True, linger_ms: int = 0,
                 max_batch_bytes: int = 1 << 20) -> None:
        self._bootstrap = bootstrap
        self._idempotent = idempotent
        self._linger_ms = linger_ms
        self._max_batch_bytes = max_batch_bytes
        self._producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()

    async def send_all(self, records: Sequence[Outgoing]) -> list[RecordMetadata]:
        """Send ``records`` in order and wait for each acknowledgement; their metadata in the same order.

        Raises:
            BrokerUnavailable: any record was not acknowledged (the producer is replaced).
        """
        if not records:
            return []
        try:
            return await asyncio.wait_for(self._send(records), REQUEST_TIMEOUT_MS / 1000 + 1)
        except _TOO_LARGE as exc:
            await self._discard()
            topics = sorted({r.topic for r in records})
            raise RecordsTooLarge(f"topic(s) {', '.join(topics)} refused a record as too large ({type(exc).__name__}); "
                                  f"raise the topic's max.message.bytes (streamvec creates its topics with "
                                  f"{MAX_REQUEST_BYTES >> 20} MiB)") from exc
        except TopicAuthorizationFailedError as exc:
            await self._discard()
            raise BrokerUnavailable(f"this worker may not write topic(s) {', '.join(sorted({r.topic for r in records}))} "
                                    f"({exc}); grant its principal WRITE on them (an ACL); the batch is retried "
                                    "until then") from exc
        except (KafkaError, OSError, asyncio.TimeoutError) as exc:
            await self._discard()
            hint = (" (a broker without idempotent producers, such as Tansu, needs "
                    "STREAMVEC_IDEMPOTENT_PRODUCER=false)") if self._idempotent else ""
            raise BrokerUnavailable(f"Kafka did not acknowledge {len(records)} records ({type(exc).__name__}: "
                                    f"{exc}); check that the brokers at {self._bootstrap} are up and reachable "
                                    f"and that the topics exist{hint}") from exc

    async def _send(self, records: Sequence[Outgoing]) -> list[RecordMetadata]:
        producer = await self._started()
        pending = [await producer.send(r.topic, value=r.value, key=r.key, partition=r.partition,
                                       headers=list(r.headers) or None,
                                       timestamp_ms=None if r.timestamp is None else int(r.timestamp * 1000))
                   for r in records]
        return list(await asyncio.gather(*pending))

    async def stop(self) -> None:
        await self._discard()

    async def _started(self) -> AIOKafkaProducer:
        async with self._starting:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self._bootstrap, acks="all", enable_idempotence=self._idempotent,
                    linger_ms=self._linger_ms, max_batch_size=self._max_batch_bytes,
                    max_request_size=MAX_REQUEST_BYTES, request_timeout_ms=REQUEST_TIMEOUT_MS)
                try:
                    await producer.start()
                except BaseException:
                    await _stop_quietly(producer)
                    raise
                self._producer = producer
            return self._producer

    async def _discard(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await _stop_quietly(producer)


async def _stop_quietly(producer: AIOKafkaProducer, timeout: float = 5.0) -> None:
    """Stop a producer that may be stuck on an unreachable broker without waiting for it long, and
    leave nothing of it running.

    aiokafka's ``stop()`` waits for its sender to drain the batches it holds; cancelled by the
    timeout, it left the sender task retrying them, so an old batch could reach the broker after
    the next producer's batches, leaving an older version and an older progress record last in
    the changelog (review finding SP-20). The sender is ended and the connections closed here.
    """
    try:
        await asyncio.wait_for(producer.stop(), timeout)
    except (asyncio.TimeoutError, KafkaError, OSError) as exc:
        logger.warning("an old Kafka producer did not stop cleanly (%s); its sender is ended and its connections "
                       "closed, so none of its batches is sent after the next producer's", type(exc).__name__)
        task = producer._sender.sender_task  # noqa: SLF001 — aiokafka cannot end a sender its stop() left running
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        with contextlib.suppress(KafkaError, OSError):
            await producer.client.close()
