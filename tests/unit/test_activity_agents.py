"""The three activity agents chained without a broker: what each sends is what the next reads.

Review finding SP-10: a redelivery is counted once whichever agent reads again (the profile
agent by the position folded last, the two before it by the activity's origin), and distinct
activities with the same (item, action, ts) both count. Review finding SP-9: the join waits
for an item not indexed yet, up to its ``item_wait``, before it dead-letters the activity.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from agents.activity import ActivityJoin, ActivityRepartition, ProfileUpdater, Route
from agents.batches import NotYet, until_done
from agents.producer import Outgoing
from index.uses.profiles import decode_profile

WEIGHTS = {"view": 1.0}


class Sent:
    """The producer: keeps what the agents send, in order, by topic."""

    def __init__(self) -> None:
        self.records: list[Outgoing] = []

    async def send_all(self, records: Sequence[Outgoing]) -> None:
        self.records.extend(records)

    def on(self, topic: str) -> list[Outgoing]:
        return [record for record in self.records if record.topic == topic]


class Profiles:
    """The profiles table of one worker: RocksDB by partition, every write acknowledged at once."""

    def __init__(self) -> None:
        self.data: dict[tuple[int, str], bytes] = {}

    def read_in(self, partition: int, user: str) -> bytes | None:
        return self.data.get((partition, user))

    def write(self, source: Any, user: str, value: bytes) -> None:
        self.data[(source.message.partition, user)] = value

    async def changelog_acked(self) -> None:
        return None


def event(topic: str, partition: int, offset: int, value: bytes | None, headers: Sequence[tuple[str, bytes]] = ()
          ) -> Any:
    return SimpleNamespace(message=SimpleNamespace(topic=topic, partition=partition, offset=offset, key=None,
                                                   value=value, headers=list(headers), timestamp=None))


def read(records: Sequence[Outgoing], topic: str, first_offset: int) -> list[Any]:
    """``records`` as the next agent consumes them, from one partition of ``topic``."""
    return [event(topic, 0, first_offset + n, record.value, record.headers) for n, record in enumerate(records)]


def test_redeliveries_at_every_stage_count_each_activity_once_and_same_looking_ones_count_twice() -> None:
    sent, profiles = Sent(), Profiles()
    route = Route(sent, "by-item", "by-user", "dead-letters")
    items = SimpleNamespace(stored=lambda partition, item: SimpleNamespace(vector=np.array([1, 0, 0], np.float32)))
    stages = (ActivityRepartition(route, WEIGHTS), ActivityJoin(items, route, WEIGHTS),  # type: ignore[arg-type]
              ProfileUpdater(profiles, route, 3600.0, 20))  # type: ignore[arg-type]
    body = json.dumps({"user": "u", "item": "a", "action": "view", "ts": 10}).encode()
    activity = [event("activity", 1, offset, body) for offset in (5, 6)]  # two activities, the same body

    async def main() -> None:
        for _ in range(2):  # stage 1 reads the batch again: each activity goes to by-item twice
            await stages[0].process(activity)
        by_item = read(sent.on("by-item"), "by-item", 0)
        for _ in range(2):  # and stage 2 reads its input again
            await stages[1].process(by_item)
        by_user = read(sent.on("by-user"), "by-user", 0)
        assert len(by_user) == 8
        for _ in range(2):  # and stage 3 reads all of it again
            await stages[2].process(by_user)

    asyncio.run(main())
    profile = decode_profile(profiles.data[(0, "u")])
    assert (profile.events, profile.weight, profile.folded) == (2, 2.0, (0, 7))
    assert not sent.on("dead-letters")


class Items:
    """The vectors table of one worker: the items indexed so far, by id."""

    def __init__(self, *indexed: str) -> None:
        self.indexed = set(indexed)

    def stored(self, partition: int, item: str) -> Any:
        return SimpleNamespace(vector=np.array([1, 0, 0], np.float32)) if item in self.indexed else None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def by_item(*items: str) -> list[Any]:
    """Activity of user u on ``items``, as the join reads it from by-item partition 0."""
    return [event("by-item", 0, offset, json.dumps({"user": "u", "item": item, "action": "view", "ts": 1}).encode())
            for offset, item in enumerate(items)]


def join(items: Items, item_wait: float) -> tuple[ActivityJoin, Sent, Clock]:
    sent, clock = Sent(), Clock()
    return ActivityJoin(items, Route(sent, "by-item", "by-user", "dead-letters"), WEIGHTS,  # type: ignore[arg-type]
                        item_wait, clock), sent, clock


def test_an_item_indexed_within_the_wait_joins_its_activity() -> None:
    items = Items("old")
    stage, sent, clock = join(items, item_wait=30.0)
    batch = by_item("old", "fresh")
    with pytest.raises(NotYet, match="'fresh'"):
        asyncio.run(stage.process(batch))
    clock.now += 29.0
    with pytest.raises(NotYet):
        asyncio.run(stage.process(batch))
    assert sent.records == []  # nothing of a batch that waits goes out
    items.indexed.add("fresh")
    asyncio.run(stage.process(batch))
    assert len(sent.on("by-user")) == 2 and sent.on("dead-letters") == []


def test_an_item_still_unknown_after_the_wait_is_dead_lettered_and_the_rest_goes_on() -> None:
    stage, sent, clock = join(Items("old"), item_wait=30.0)
    batch = by_item("old", "never")
    with pytest.raises(NotYet):
        asyncio.run(stage.process(batch))
    clock.now += 30.0
    asyncio.run(stage.process(batch))
    [letter] = sent.on("dead-letters")
    assert dict(letter.headers)["streamvec-reason"] == b"unknown_item" and len(sent.on("by-user")) == 1
    clock.now += 1.0  # read again later (a redelivery): a new sighting, a new wait
    with pytest.raises(NotYet):
        asyncio.run(stage.process(batch))


def test_no_item_wait_dead_letters_at_once() -> None:
    stage, sent, _ = join(Items(), item_wait=0.0)
    asyncio.run(stage.process(by_item("never")))
    assert len(sent.on("dead-letters")) == 1


def test_a_batch_that_is_not_yet_done_is_retried_without_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    tries: list[int] = []

    async def process(batch: Sequence[Any]) -> None:
        tries.append(len(batch))
        if len(tries) == 1:
            raise NotYet("an item is not indexed yet")

    with caplog.at_level(logging.INFO, logger="agents.batches"):
        assert asyncio.run(until_done("activity-join", process, by_item("fresh"), lambda: True))
    assert tries == [1, 1]
    [record] = caplog.records
    assert "waits: an item is not indexed yet" in record.getMessage() and record.exc_info is None
