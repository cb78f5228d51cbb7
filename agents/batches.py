"""Agents that acknowledge a batch only after it is done, and never let an error out.

Faust's ``take_events`` acknowledges a batch when its generator closes, also when the
body raised: an exception out of a batch loses the batch (docs/faust.md §8).
Agents built here take batches with ``noack_take`` and acknowledge each event after the
batch's work (and everything it produced) is acknowledged by the broker. Bad input is
the processor's to dead-letter; any exception that still comes out means something
outside the events failed (a topic refused a write): the batch is tried again, with a
growing pause, until it goes through; during a rebalance or a shutdown it is left
unacknowledged for the partitions' next owner, as the ingest agent does. A retried batch
must be safe to process twice, which at-least-once delivery asks of every processor anyway.
A processor that must wait for something else (an item not indexed yet) raises
:class:`NotYet`: the batch is retried the same way, logged in one line, without a traceback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

import faust
from faust.types import EventT

from index.exceptions import StreamvecError

logger = logging.getLogger(__name__)

Process = Callable[[Sequence[EventT]], Awaitable[None]]
_FIRST_PAUSE = 0.5
_LONGEST_PAUSE = 5.0
_POLL = 0.25


class NotYet(StreamvecError):
    """The batch cannot be done yet, and nothing failed: it waits for another agent's work.
    The processor decides how long it waits (it is retried until it stops raising)."""


async def until_done(name: str, process: Process, batch: Sequence[EventT], may_retry: Callable[[], bool]) -> bool:
    """Run ``process(batch)`` until it returns (True), or until a failure meets a rebalance or
    the worker's stop (False: leave the batch unacknowledged). Each failure is logged."""
    pause = _FIRST_PAUSE
    while True:
        first = batch[0].message
        where = f"a batch of {len(batch)} events (from {first.topic} partition {first.partition} offset {first.offset})"
        try:
            await process(batch)
            return True
        except NotYet as exc:
            logger.info("%s: %s waits: %s; retrying in %.1f s", name, where, exc, pause)
        except Exception:  # noqa: BLE001 — anything: the batch stays unacknowledged and is retried
            logger.exception("%s: %s failed; retrying in %.1f s", name, where, pause)
        deadline = asyncio.get_running_loop().time() + pause
        while may_retry() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(_POLL)
        if not may_retry():
            logger.warning("%s: rebalancing or stopping while a batch fails; it stays unacknowledged", name)
            return False
        pause = min(pause * 2, _LONGEST_PAUSE)


def register_batch_agent(app: faust.App, topic: faust.TopicT, name: str, process: Process, batch_size: int,
                         batch_wait: float, may_retry: Callable[[], bool]) -> faust.types.AgentT:
    """Declare an agent ``name`` on ``topic`` that runs ``process`` on batches and acks after it."""

    @app.agent(topic, name=name)
    async def agent(stream: faust.StreamT) -> None:
        async for batch in stream.noack_take(batch_size, within=batch_wait):
            if await until_done(name, process, batch, may_retry):
                for event in batch:
                    await stream.ack(event)
            del batch  # an abandoned batch's events must be collectable: Faust's rebalance waits for them

    return agent
