"""The profiles table: one record per user (index/uses/profiles.py), in RocksDB and a changelog.

A plain Faust table keyed by user, co-partitioned with ``<app id>-activity-by-user``, so
it survives restarts and moves between workers like every Faust table; its store takes
changelog records in offset order, none skipped (:mod:`tables.ordered_store`). Two additions:
the agent can wait for the broker to acknowledge the changelog records of its writes
(Faust only queues them), and the web layer can read a user's record from the partitions
this worker serves.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

import faust
from faust.streams import _current_event
from faust.types import EventT, FutureMessage

from tables.changelog_reader import ChangelogReader
from tables.ordered_store import OrderedStore, store_for

TABLE_NAME = "profiles"


class ProfileTable(faust.Table):
    """Users' profile records (bytes) by user id (UTF-8 bytes)."""

    def __init__(self, app: faust.App, *, reader: ChangelogReader, **kwargs: Any) -> None:
        self.reader = reader
        super().__init__(app, name=TABLE_NAME, key_type=bytes, value_type=bytes, **kwargs)
        self._unacked: list[FutureMessage] = []

    def _new_store(self) -> OrderedStore:
        return store_for(self, OrderedStore, reader=self.reader)

    def read_in(self, partition: int, user: str) -> bytes | None:
        """The user's record in ``partition``, which this worker must hold (the agent's own)."""
        return self.data._db_for_partition(partition).get(user.encode())  # type: ignore[attr-defined,no-any-return]  # noqa: SLF001

    def write(self, source: EventT, user: str, value: bytes) -> None:
        """Store the user's record for the event ``source``.

        Faust picks the changelog and RocksDB partition of a table write from the current
        event, and a batch's current event is only its last one: each write names its own.
        """
        token = _current_event.set(weakref.ref(source))
        try:
            self[user.encode()] = value
        finally:
            _current_event.reset(token)

    def send_changelog(self, *args: Any, **kwargs: Any) -> FutureMessage:
        """Faust's changelog send (every table write calls it), remembered until acknowledged."""
        sent = super().send_changelog(*args, **kwargs)
        self._unacked.append(sent)
        return sent

    async def changelog_acked(self) -> None:
        """Wait until the broker has acknowledged the changelog record of every write so far."""
        pending, self._unacked = self._unacked, []
        await asyncio.gather(*pending)

    def serving(self) -> list[int]:
        """Partitions this worker answers for: active here in the latest assignment, recovered."""
        return sorted(p for p, active in self.copies().items() if active)

    def copies(self) -> dict[int, bool]:
        """Partitions this worker holds once recovered, active (True) or a warm standby (False):
        a standby answers for a dead worker's users until the group has moved their partition."""
        if not self.app.tables.recovery.completed.is_set():
            return {}
        return self.data.held()  # type: ignore[attr-defined,no-any-return]

    def read(self, user: str) -> tuple[bytes | None, bool]:
        """The user's record from the partitions this worker holds, and whether it came from an
        active copy (an active copy's record wins over a standby's)."""
        key = user.encode()
        for partition, active in sorted(self.copies().items(), key=lambda item: not item[1]):
            value = self.data._db_for_partition(partition).get(key)  # type: ignore[attr-defined]  # noqa: SLF001
            if value is not None:
                return value, active
        return None, False
