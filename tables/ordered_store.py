"""Faust's RocksDB store, taking changelog records only in offset order, none skipped.

Faust's recovery consumer can skip changelog records around a rebalance (see
:mod:`tables.changelog_order` for what was seen). A store that applied what came after them
would move its persisted offset past them, and neither Faust nor a later restart would read them
again: a standby copy, and the active it is promoted to, would keep older versions for good. So
each record is checked against the offset its partition's copy is at, and from a range that was
not delivered on, the broker is read straight (:mod:`tables.changelog_reader`) before what came
after it is applied. Meanwhile the copy stays at the offset before the range, so its lag shows.

Faust calls recovery complete once its own consumer reached each changelog's end, records held
behind a gap or not; then ingest resumes each active partition from its progress record in
RocksDB, and the agents write on top of what RocksDB holds. So an active partition's recovery
completes only once its gaps are read (review finding SP-6: a fresh worker reading a compacted
changelog through a slow side reader resumed ingest from an older progress record, read the
events after it again against the older store, and its outcome counts came out half the
writer's; tests/faults/test_compacted_changelogs.py).

Every table of the worker uses this store: the vectors table through
:class:`tables.indexed_store.IndexedStore`, the profiles table as it is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import faust
from faust.stores.rocksdb import Store
from faust.types import TP, EventT
from yarl import URL

from tables.changelog_order import ChangelogOrder, Gap
from tables.changelog_reader import ChangelogReader

logger = logging.getLogger(__name__)

RETRY_SECONDS = (1.0, 30.0)
"""First and longest wait before a range the broker did not give is read again."""
GAP_POLL_SECONDS = 0.05
"""How often the end of recovery looks whether the active partitions' gaps are read."""

S = TypeVar("S", bound=Store)


def store_for(table: faust.Table, store_class: type[S], **extra: Any) -> S:
    """A ``store_class`` for ``table``, built as Faust builds its RocksDB store. Per-table store
    URLs are broken in Faust 0.15 (docs/faust.md §2.1), so tables pick the class here."""
    return store_class(URL("rocksdb://"), table.app, table, table_name=table.name,
                       key_type=table.key_type, key_serializer=table.key_serializer,
                       value_type=table.value_type, value_serializer=table.value_serializer,
                       options=table.options, **extra)


class OrderedStore(Store):
    """A RocksDB table store whose changelog records go in in offset order (see the module docstring)."""

    def __init__(self, *args: Any, reader: ChangelogReader, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reader = reader
        self._order: ChangelogOrder[EventT] = ChangelogOrder(lambda e: (e.message.partition, e.message.offset))
        self._filling: set[asyncio.Task[None]] = set()

    def apply_changelog_batch(
        self, batch: Iterable[EventT], to_key: Callable[[Any], Any], to_value: Callable[[Any], Any]
    ) -> None:
        ready, gaps = self._order.admit(batch)
        self._write_changelog(ready)
        self._fill(gaps)

    def _write_changelog(self, events: list[EventT]) -> None:
        """Write changelog records that are in offset order per partition (subclasses add to it)."""
        if events:
            # Faust's RocksDB store writes each message's raw key and value; the decoders go unused.
            super().apply_changelog_batch(events, to_key=lambda key: key, to_value=lambda value: value)

    def persisted_offset(self, tp: TP) -> int | None:
        """The offset Faust replays the changelog after (it asks once per rebalance), which is
        where the copy's records go on from."""
        offset = self._replay_from(tp)
        if tp.topic in self.table.changelog_topic.topics:
            self._order.reset(tp.partition, -1 if offset is None else offset)
        return offset

    def _replay_from(self, tp: TP) -> int | None:
        return self.stored_offset(tp.partition)

    def stored_offset(self, partition: int) -> int | None:
        """The changelog offset the partition's RocksDB is at (Faust's own persisted offset); no side effects."""
        return super().persisted_offset(TP(self.table.changelog_topic_name, partition))  # type: ignore[no-any-return]

    def behind_gap(self, partition: int) -> bool:
        """Whether the partition's store holds changelog records behind a range being read."""
        return self._order.missing(partition) is not None

    def held(self) -> dict[int, bool]:
        """The partitions of this table the worker holds in the latest assignment (Faust's assignor),
        each with whether it is active here (True) or a standby (False)."""
        held = dict.fromkeys(self._changelog_partitions(self.app.assignor.assigned_standbys()), False)
        held.update(dict.fromkeys(self._changelog_partitions(self.app.assignor.assigned_actives()), True))
        return held

    def _changelog_partitions(self, tps: Iterable[TP]) -> set[int]:
        topics = self.table.changelog_topic.topics
        return {tp.partition for tp in tps if tp.topic in topics}

    def _wrote(self, partition: int, changelog_offset: int) -> None:
        """This worker wrote the partition's changelog up to ``changelog_offset`` itself."""
        self._order.reset(partition, changelog_offset)

    async def on_rebalance(
        self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP], generation_id: int = 0
    ) -> None:
        for partition in self._changelog_partitions(revoked) - self._changelog_partitions(assigned):
            self._order.forget(partition)  # a range still being read is not written to a closed partition
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        await self._gaps_read(self._changelog_partitions(active_tps))
        await super().on_recovery_completed(active_tps, standby_tps)

    async def _gaps_read(self, partitions: set[int]) -> None:
        """Return once none of ``partitions`` holds records behind a gap (read, or the partition
        moved away: a revoke forgets it), see the module docstring. Standby copies are not waited
        for: they serve nothing that is behind (their lag shows) and take no writes."""
        def pending() -> dict[int, Gap]:
            return {p: gap for p in sorted(partitions) if (gap := self._order.missing(p)) is not None}
        waiting = pending()
        if not waiting:
            return
        began = asyncio.get_running_loop().time()
        logger.info("%s partitions %s: recovery completes once the changelog ranges %s are read from the broker",
                    self.table.name, sorted(waiting), ", ".join(f"{g.start}-{g.end - 1}" for g in waiting.values()))
        while pending():
            await asyncio.sleep(GAP_POLL_SECONDS)
        logger.info("%s partitions %s: their changelog ranges were read in %.1f s; recovery completes",
                    self.table.name, sorted(waiting), asyncio.get_running_loop().time() - began)

    async def stop(self) -> None:
        for task in list(self._filling):
            task.cancel()
        await super().stop()

    def _fill(self, gaps: Iterable[Gap]) -> None:
        for gap in gaps:
            logger.warning("%s partition %d: changelog records of offsets %d to %d were not delivered; reading the "
                           "broker from there before the records after them", self.table.name, gap.partition,
                           gap.start, gap.end - 1)
            task = asyncio.get_running_loop().create_task(self._read_gap(gap))
            self._filling.add(task)
            task.add_done_callback(self._filling.discard)

    async def _read_gap(self, gap: Gap) -> None:
        wait, longest = RETRY_SECONDS
        while self._order.waiting(gap):
            upto = self._order.extent(gap)  # the records held meanwhile are read too: one read for all their gaps
            try:
                found = await self._reader.read(self.table.changelog_topic_name, gap.partition, gap.start, upto)
            except Exception as exc:  # noqa: BLE001 — the copy waits (its lag shows it) and tries again
                logger.warning("%s partition %d: %s; trying again in %.0f s", self.table.name, gap.partition, exc, wait)
                await asyncio.sleep(wait)
                wait = min(wait * 2, longest)
                continue
            ready, more = self._order.filled(gap, found, upto)  # type: ignore[arg-type]  # shaped like Faust's events
            self._write_changelog(ready)
            logger.info("%s partition %d: changelog offsets %d to %d read from the broker: %d records (compaction "
                        "removes some); %d applied in all", self.table.name, gap.partition, gap.start, upto - 1,
                        len(found), len(ready))
            self._fill(more)
            return
