"""A producer whose stop hangs (an unreachable broker) is dropped with nothing of it left running:
aiokafka's stop(), cancelled by the timeout, used to leave its sender retrying old batches, which
could reach the broker after the next producer's (review finding SP-20)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from agents.producer import _stop_quietly


def test_a_producer_that_does_not_stop_in_time_has_its_sender_ended_and_its_connections_closed() -> None:
    async def run() -> tuple[list[int], list[int], bool]:
        sent: list[int] = []

        async def sender_routine() -> None:  # aiokafka's sender: retries its batches until cancelled
            while True:
                sent.append(len(sent))
                await asyncio.sleep(0.01)

        async def hanging_stop() -> None:  # waits for the sender to drain, which never happens
            await asyncio.Event().wait()

        closed = asyncio.Event()

        async def close() -> None:
            closed.set()

        producer = SimpleNamespace(stop=hanging_stop, _sender=SimpleNamespace(sender_task=asyncio.create_task(
            sender_routine())), client=SimpleNamespace(close=close))
        await _stop_quietly(producer, timeout=0.1)  # type: ignore[arg-type]
        after = list(sent)
        await asyncio.sleep(0.1)
        return after, sent, closed.is_set() and producer._sender.sender_task.done()

    after, later, ended = asyncio.run(run())
    assert ended and after and later == after  # nothing was sent once it returned
