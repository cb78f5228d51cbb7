"""The worker's index snapshot: loaded at the first rebalance after a start, saved on a schedule
and at a clean stop (the rules are in :mod:`tables.indexed_store`'s docstring).

A restart without one builds every held partition from RocksDB; with one, a partition whose local
store has reached the snapshot's offset only has the changelog after it replayed. Runs on the
index pool, never on the event loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from index.ann import snapshot
from index.ann.snapshot import Covered, SnapshotError
from index.records import progress
from tables.copies import usable
from tables.index_feed import IndexFeed

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshots:
    """Where the worker's index snapshot lives, and what it must have been made by."""

    directory: Path
    model_id: str

    def restore(self, feed: IndexFeed, held: set[int], stored_offset: Callable[[int], int | None]) -> None:
        """Load the snapshot into ``feed``'s index: each of its partitions in ``held`` whose local store
        (at ``stored_offset``) has reached the snapshot becomes a restoring copy; the rest are built."""
        started = time.perf_counter()
        try:
            found = snapshot.load(self.directory, model_id=self.model_id, dim=feed.index.dim,
                                  ef_search=feed.index.ef_search)
        except SnapshotError as exc:
            logger.info("index snapshot not used (%s): held partitions are built from the local store", exc)
            return
        resumed: dict[int, Covered] = {}
        stores: dict[int, int] = {}
        for partition, covered in sorted(found.partitions.items()):
            if partition not in held:
                continue
            stored = stored_offset(partition)
            if stored is not None and usable(stored, covered.offset):
                resumed[partition], stores[partition] = covered, stored
            else:
                logger.warning("partition %d: the snapshot (changelog offset %d) is ahead of the local store (%s); "
                               "building it from the store instead", partition, covered.offset, stored)
        feed.index.adopt(found.index, set(resumed))
        for partition, covered in resumed.items():
            feed.restore(partition, covered.offset, progress.decode(covered.progress), until=stores[partition])
        logger.info("index restored from the snapshot of %s in %.2f s: partitions %s, %d documents; the "
                    "changelog after their offsets %s is replayed", time.strftime("%H:%M:%S",
                    time.localtime(found.taken)), time.perf_counter() - started, sorted(resumed), len(feed.index),
                    {p: c.offset for p, c in resumed.items()})

    def save(self, feed: IndexFeed) -> None:
        """Save ``feed``'s serving copies, unless they are where the last snapshot had them."""
        covered: dict[int, Covered] = {}

        def covering() -> dict[int, Covered]:
            covered.update({p: Covered(offset, progress.encode(applied))
                            for p, (offset, applied) in feed.copies.covering().items()})
            return covered

        started = time.perf_counter()
        size = snapshot.save(self.directory, feed.index, covering, self.model_id)
        if size:
            offsets = {p: c.offset for p, c in covered.items()}
            feed.copies.saved(offsets)
            logger.info("index snapshot saved in %.2f s: partitions %s at changelog offsets %s, %.1f MB",
                        time.perf_counter() - started, sorted(covered), offsets, size / 1e6)
