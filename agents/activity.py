"""Recommendations from activity: user behaviour in, a profile vector per user out.

Items and users live in different partitions, so the join goes the Kafka way, through
internal topics, in three agents (each batch acknowledged only after what it produced is):

1. ``activity`` on ``<app id>-activity``: validates each event (bad ones are dead-lettered
   with a reason) and re-keys it by item onto ``<app id>-activity-by-item`` (the original
   bytes and timestamp), which is co-partitioned with the vectors table;
2. ``activity-join`` on that topic: runs where the item's partition lives and reads the
   item's vector from it; an unknown or deleted item is dead-lettered (``unknown_item``);
   the activity with the vector goes, keyed by user, to ``<app id>-activity-by-user``;
3. ``profiles`` on that topic: folds the activity into the user's profile
   (:mod:`index.profiles`) in the profiles table, co-partitioned with it, and waits for
   the changelog's acks.

No agent calls another worker: each reads only the partitions Kafka assigned it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence

from faust.types import EventT

from agents.acked import AckedTopic, Outgoing
from agents.deadletters import DeadLetter, DeadLetterSink, refusal
from index.codec import CodecError
from index.events import EventError
from index.profiles import (Activity, Profile, add_activity, decode_profile, decode_with_vector, encode_profile,
                            encode_with_vector, parse_activity)
from tables.profiles import ProfileTable
from tables.vectors import VectorTable, writing_for

logger = logging.getLogger(__name__)

# seconds from each activity's timestamp until its profile write was acknowledged
OnProfiled = Callable[[Sequence[float]], None]


async def _dead_letter(sink: DeadLetterSink, refused: list[DeadLetter], stage: str) -> None:
    await sink.send(refused)
    for letter in refused:
        logger.warning("%s: %s partition %d offset %d dead-lettered (%s): %s", stage, letter.topic,
                       letter.partition, letter.offset, letter.reason, letter.error)


def _valid(batch: Sequence[EventT], weights: Mapping[str, float],
           refused: list[DeadLetter]) -> list[tuple[EventT, Activity]]:
    """The batch's activity events that keep the contract; the others go to ``refused``."""
    valid = []
    for source in batch:
        message = source.message
        try:
            valid.append((source, parse_activity(message.value, weights, message.timestamp)))
        except EventError as exc:
            refused.append(refusal(source, exc.reason, str(exc)))
    return valid


class ActivityRepartition:
    """Stage 1: activity, validated, keyed by item."""

    def __init__(self, by_item: AckedTopic, dead_letters: DeadLetterSink, weights: Mapping[str, float]) -> None:
        self.by_item = by_item
        self.dead_letters = dead_letters
        self.weights = weights

    async def process(self, batch: Sequence[EventT]) -> None:
        refused: list[DeadLetter] = []
        outgoing = [Outgoing(activity.item.encode(), source.message.value, timestamp=source.message.timestamp)
                    for source, activity in _valid(batch, self.weights, refused)]
        await self.by_item.send_all(outgoing)
        await _dead_letter(self.dead_letters, refused, "activity")


class ActivityJoin:
    """Stage 2: the item's vector from its own partition, keyed by user."""

    def __init__(self, table: VectorTable, by_user: AckedTopic, dead_letters: DeadLetterSink,
                 weights: Mapping[str, float]) -> None:
        self.table = table
        self.by_user = by_user
        self.dead_letters = dead_letters
        self.weights = weights

    async def process(self, batch: Sequence[EventT]) -> None:
        refused: list[DeadLetter] = []
        outgoing = []
        # Stage 1 checked the contract; a default weight can have been removed since.
        for source, activity in _valid(batch, self.weights, refused):
            message = source.message
            record = self.table.stored(message.partition, activity.item)
            if record is None or record.vector is None:
                refused.append(refusal(source, "unknown_item", f"item {activity.item!r} is not an indexed document "
                                                               "(never produced, or deleted); activity needs items "
                                                               "that are on the events topic"))
                continue
            outgoing.append(Outgoing(activity.user.encode(), encode_with_vector(activity, record.vector),
                                     timestamp=message.timestamp))
        await self.by_user.send_all(outgoing)
        await _dead_letter(self.dead_letters, refused, "activity-join")


class ProfileUpdater:
    """Stage 3: the user's profile, in the profiles table."""

    def __init__(self, table: ProfileTable, dead_letters: DeadLetterSink, half_life: float, keep: int,
                 on_profiled: OnProfiled | None = None) -> None:
        self.table = table
        self.dead_letters = dead_letters
        self.half_life = half_life
        self.keep = keep
        self.on_profiled = on_profiled

    async def process(self, batch: Sequence[EventT]) -> None:
        refused: list[DeadLetter] = []
        stamps = []
        for source in batch:
            try:
                activity, vector = decode_with_vector(source.message.value or b"")
            except CodecError as exc:
                refused.append(refusal(source, "bad_record", f"not a joined activity record: {exc}"))
                continue
            key = activity.user.encode()
            with writing_for(source):
                stored = self.table.get(key)
                profile = self._decoded(activity.user, stored)
                updated = add_activity(profile, activity, vector, self.half_life, self.keep)
                # A redelivery rewrites the stored profile: after a crash the local store can be
                # ahead of the changelog (notes/faust-internals.md §8), and this catches it up.
                self.table[key] = encode_profile(updated) if updated is not None else stored
            if source.message.timestamp is not None:
                stamps.append(source.message.timestamp)
        await self.table.changelog_acked()
        await _dead_letter(self.dead_letters, refused, "profile-updates")
        if self.on_profiled is not None and stamps:
            now = time.time()
            self.on_profiled([now - stamp for stamp in stamps])

    @staticmethod
    def _decoded(user: str, stored: bytes | None) -> Profile | None:
        try:
            return None if stored is None else decode_profile(stored)
        except CodecError as exc:  # written by another streamvec version: start the profile again
            logger.error("profile of user %r unreadable, started again: %s", user, exc)
            return None
