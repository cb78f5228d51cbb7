"""Recommendations from activity: user behaviour in, a profile vector per user out.

Items and users live in different partitions, so the join goes the Kafka way, through
internal topics, in three agents (each batch acknowledged only after what it produced is):

1. ``activity`` on ``<app id>-activity``: validates each event (bad ones are dead-lettered
   with a reason) and re-keys it by item onto ``<app id>-activity-by-item`` (the original
   bytes and timestamp, and its position as the ``activity-origin`` header: the identity a
   redelivery keeps), which is co-partitioned with the vectors table;
2. ``activity-join`` on that topic: runs where the item's partition lives and reads the
   item's vector from it; an unknown or deleted item is dead-lettered (``unknown_item``);
   the activity with the vector goes, keyed by user, to ``<app id>-activity-by-user``;
3. ``profiles`` on that topic: folds the activity into the user's profile
   (:mod:`index.uses.profiles`) in the profiles table, co-partitioned with it, and waits for
   the changelog's acks. The profile keeps the position of the record it folded last, so a
   redelivered read of this topic is skipped exactly (review finding SP-10).

No agent calls another worker: each reads only the partitions Kafka assigned it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from faust.types import EventT

from agents.deadletters import DeadLetter, dead_letter_records, refusal
from agents.ingest import Sender
from index.records.codec import CodecError
from index.records.events import EventError
from index.uses.profiles import (Activity, Profile, add_activity, decode_profile, decode_with_vector, encode_profile,
                                 encode_with_vector, origin_header, origin_in, parse_activity)
from agents.producer import Outgoing
from tables.profiles import ProfileTable
from tables.vectors import VectorTable

logger = logging.getLogger(__name__)

# seconds from each activity's timestamp until its profile write was acknowledged
OnProfiled = Callable[[Sequence[float]], None]


@dataclass(frozen=True)
class Route:
    """Where the activity agents produce, all through one producer that waits for the acks."""

    sender: Sender
    by_item: str
    by_user: str
    dead_letters: str

    async def send(self, stage: str, records: Sequence[Outgoing], refused: Sequence[DeadLetter]) -> None:
        await self.sender.send_all([*records, *dead_letter_records(refused, self.dead_letters)])
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

    def __init__(self, route: Route, weights: Mapping[str, float]) -> None:
        self.route = route
        self.weights = weights

    async def process(self, batch: Sequence[EventT]) -> None:
        refused: list[DeadLetter] = []
        outgoing = [Outgoing(self.route.by_item, activity.item.encode(), source.message.value,
                             headers=[origin_header(source.message.partition, source.message.offset)],
                             timestamp=source.message.timestamp)
                    for source, activity in _valid(batch, self.weights, refused)]
        await self.route.send("activity", outgoing, refused)


class ActivityJoin:
    """Stage 2: the item's vector from its own partition, keyed by user."""

    def __init__(self, table: VectorTable, route: Route, weights: Mapping[str, float]) -> None:
        self.table = table
        self.route = route
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
            joined = replace(activity, origin=origin_in(message.headers))
            outgoing.append(Outgoing(self.route.by_user, activity.user.encode(),
                                     encode_with_vector(joined, record.vector), timestamp=message.timestamp))
        await self.route.send("activity-join", outgoing, refused)


class ProfileUpdater:
    """Stage 3: the user's profile, in the profiles table."""

    def __init__(self, table: ProfileTable, route: Route, half_life: float, keep: int,
                 on_profiled: OnProfiled | None = None) -> None:
        self.table = table
        self.route = route
        self.half_life = half_life
        self.keep = keep
        self.on_profiled = on_profiled

    async def process(self, batch: Sequence[EventT]) -> None:
        refused: list[DeadLetter] = []
        stamps = []
        for source in batch:
            message = source.message
            try:
                activity, vector = decode_with_vector(message.value or b"")
            except CodecError as exc:
                refused.append(refusal(source, "bad_record", f"not a joined activity record: {exc}"))
                continue
            stored = self.table.read_in(message.partition, activity.user)
            updated = add_activity(self._decoded(activity.user, stored), activity, vector, self.half_life, self.keep,
                                   at=(message.partition, message.offset))
            # A redelivery rewrites the stored profile: after a crash the local store can be
            # ahead of the changelog (docs/faust.md §8), and this catches it up.
            value = encode_profile(updated) if updated is not None else stored
            assert value is not None  # add_activity skips only an activity a stored profile counted
            self.table.write(source, activity.user, value)
            if message.timestamp is not None:
                stamps.append(message.timestamp)
        await self.table.changelog_acked()
        await self.route.send("profile-updates", [], refused)
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
