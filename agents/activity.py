"""Recommendations from activity: user behaviour in, a profile vector per user out.

Items and users live in different partitions, so the join goes the Kafka way, through
internal topics, in three agents (each batch acknowledged only after what it produced is):

1. ``activity`` on ``<app id>-activity``: validates each event (bad ones are dead-lettered
   with a reason) and re-keys it by item onto ``<app id>-activity-by-item`` (the original
   bytes and timestamp, and its position as the ``activity-origin`` header: the identity a
   redelivery keeps), which is co-partitioned with the vectors table;
2. ``activity-join`` on that topic: runs where the item's partition lives and reads the
   item's vector from it; the activity with the vector goes, keyed by user, to
   ``<app id>-activity-by-user``. An item not found may not be indexed yet (ingest lags in
   a bulk load or a model outage: review finding SP-9), so the batch is retried for up to
   ``STREAMVEC_ACTIVITY_ITEM_WAIT`` seconds before such an activity is dead-lettered
   (``unknown_item``);
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

from agents.batches import NotYet
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
_FORGET_AFTER = 60.0  # seconds past its wait that an unknown item's first sighting is kept


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
    """Stage 2: the item's vector from its own partition, keyed by user.

    An activity whose item is not found holds its batch back (:class:`NotYet`: the batch
    agent retries it with a growing pause, up to 5 s) until the item is there, or until
    ``item_wait`` seconds after this worker first saw that activity; then it is
    dead-lettered ``unknown_item`` and the rest of the batch goes on. A batch holds back all
    of its partition meanwhile: activity on items that never come costs its partition up to
    ``item_wait`` per batch. ``item_wait`` 0 dead-letters at once.
    """

    def __init__(self, table: VectorTable, route: Route, weights: Mapping[str, float], item_wait: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.table = table
        self.route = route
        self.weights = weights
        self.item_wait = item_wait
        self.clock = clock
        # When this worker first found the item of an activity (topic, partition, offset)
        # missing; dropped once its batch is done, or _FORGET_AFTER past its wait (a batch
        # left to another worker at a rebalance never comes back to end it here).
        self._missing_since: dict[tuple[str, int, int], float] = {}

    async def process(self, batch: Sequence[EventT]) -> None:
        refused: list[DeadLetter] = []
        outgoing = []
        waiting = []
        now = self.clock()
        # Stage 1 checked the contract; a default weight can have been removed since.
        for source, activity in _valid(batch, self.weights, refused):
            message = source.message
            record = self.table.stored(message.partition, activity.item)
            if record is None or record.vector is None:
                since = self._missing_since.setdefault((message.topic, message.partition, message.offset), now)
                if now - since < self.item_wait:
                    waiting.append(activity.item)
                    continue
                refused.append(refusal(source, "unknown_item", f"item {activity.item!r} is not an indexed document "
                                                               f"(never produced, deleted, or not indexed within "
                                                               f"{self.item_wait:g} s); activity needs items that "
                                                               "are on the events topic"))
                continue
            joined = replace(activity, origin=origin_in(message.headers))
            outgoing.append(Outgoing(self.route.by_user, activity.user.encode(),
                                     encode_with_vector(joined, record.vector), timestamp=message.timestamp))
        if waiting:
            self._forget_stale(now)
            raise NotYet(f"{len(waiting)} item(s) not indexed yet, e.g. {waiting[0]!r}; waiting up to "
                         f"{self.item_wait:g} s for them")
        await self.route.send("activity-join", outgoing, refused)
        for source in batch:  # done: a redelivery of it later is a new sighting
            message = source.message
            self._missing_since.pop((message.topic, message.partition, message.offset), None)

    def _forget_stale(self, now: float) -> None:
        """Drop the first sightings of batches that stopped coming back (moved to another worker)."""
        stale = now - self.item_wait - _FORGET_AFTER
        for key in [key for key, since in self._missing_since.items() if since < stale]:
            del self._missing_since[key]


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
