"""A partition copy's states and the rules between them: every allowed transition, every other one
refused; the generation guard, snapshot usability, expiry and take-back; and long random runs of
rebalances, completions (current and stale), builds, failures, writes, crashes with snapshot
restores and expiries that must keep the invariants."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Iterator

import pytest

from index.records.progress import Progress
from tables import copies as copies_module
from tables.copies import TRANSITIONS, Copies, CopyState, IllegalTransition, PartitionCopy, usable

B, R, S, U, C = CopyState.BUILDING, CopyState.RESTORING, CopyState.SERVING, CopyState.SUSPENDED, CopyState.CLOSED


@pytest.fixture
def moves(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[tuple[CopyState, CopyState]]]:
    """Every transition any copy makes, counted."""
    seen: Counter[tuple[CopyState, CopyState]] = Counter()
    move = PartitionCopy._move

    def recording(self: PartitionCopy[str], to: CopyState) -> None:
        before = self.state
        move(self, to)
        seen[before, to] += 1
    monkeypatch.setattr(copies_module.PartitionCopy, "_move", recording)
    yield seen


def copy_in(state: CopyState, partition: int = 0) -> PartitionCopy[str]:
    """A copy brought to ``state`` by allowed transitions only."""
    copy: PartitionCopy[str] = PartitionCopy(partition, R if state in (R, U) else B, offset=5)
    if state in (S, U):
        copy.restored() if copy.state is R else copy.drain()
    if state is U:
        copy.close(keep=True)
    if state is C:
        copy.close()
    assert copy.state is state
    return copy


ATTEMPTS = {  # the call that asks for each target state
    B: lambda c: c.rebuild() or c._move(B),
    R: lambda c: c.resume(until=c.offset),
    S: lambda c: c._move(S),
    U: lambda c: c.close(keep=True) if c.state is S else c._move(U),
    C: lambda c: c.close(),
}


def test_the_table_names_eleven_transitions_and_closed_leads_nowhere() -> None:
    assert sum(len(targets) for targets in TRANSITIONS.values()) == 11
    assert TRANSITIONS[C] == frozenset()


@pytest.mark.parametrize(("start", "to"), list(itertools.product(CopyState, CopyState)))
def test_every_transition_in_the_table_is_made_and_every_other_one_raises(start: CopyState, to: CopyState) -> None:
    copy = copy_in(start)
    if to in TRANSITIONS[start]:
        ATTEMPTS[to](copy)
        assert copy.state is to
    elif start in (U, C) and to is B:
        assert copy.rebuild() is False  # a stopped copy is never rebuilt: rebuild says so, the state stays
        with pytest.raises(IllegalTransition):
            copy._move(B)
        assert copy.state is start
    else:
        with pytest.raises(IllegalTransition):
            ATTEMPTS[to](copy)
        assert copy.state is start


def test_a_build_holds_writes_until_it_drains_them_then_serves() -> None:
    copy: PartitionCopy[str] = PartitionCopy(3, B)
    assert copy.admit("a", 10) is False and copy.admit("b", 11) is False
    copy.built(stored=9, applied=Progress(next={"t": 4}))
    assert copy.offset == 9 and copy.applied.next == {"t": 4}
    assert copy.drain() == [("a", 10), ("b", 11)] and copy.state is B  # more may have come meanwhile
    assert copy.admit("c", 12) is False
    assert copy.drain() == [("c", 12)]
    assert copy.drain() == [] and copy.state is S
    assert copy.admit("d", 13) is True and copy.pending == []
    copy.took(13, None)
    assert copy.offset == 13


def test_a_stopped_copy_takes_nothing_and_a_drain_says_so() -> None:
    for keep in (True, False):
        copy = copy_in(S)
        copy.close(keep=keep)
        assert copy.stopped and copy.admit("x", 99) is False and copy.pending == []
        assert copy.drain() is None and copy.rebuild() is False and copy.restored() is False


def test_a_restored_copy_that_fell_back_to_a_build_does_not_serve_when_its_recovery_completes() -> None:
    """The bug the old booleans allowed: built was set on a copy whose documents were being rebuilt."""
    copy: PartitionCopy[str] = PartitionCopy(1, R, offset=40)
    assert copy.admit("w", 41) is True  # restoring copies take the replay directly
    assert copy.rebuild() is True and copy.state is B
    assert copy.restored() is False and copy.state is B and not copy.serving


def test_the_generation_guard_names_the_rebalance_a_stale_completion_missed() -> None:
    copies: Copies[str] = Copies()
    copies.rebalancing(7)
    assert copies.current(7) is None
    copies.rebalancing(8)
    assert copies.current(7) == 8 and copies.current(8) is None


def test_a_snapshot_or_suspended_copy_is_usable_only_over_a_store_that_reached_it() -> None:
    assert usable(stored=120, covered=120) and usable(stored=121, covered=120)
    assert not usable(stored=119, covered=120) and not usable(stored=None, covered=-1)


def test_a_restored_partition_replays_from_its_copy_until_it_serves() -> None:
    """Review finding SP-4: a second rebalance before the first's replay is in the index must replay
    from the copy's offset again, not from the store's (which is ahead of it)."""
    copies: Copies[str] = Copies()
    copy = copies.restore(2, 55, Progress(), until=70)
    assert copies.replay_from(2) == 55
    copy.took(60, None)  # some of the replay reached the index before the next rebalance
    assert copies.replay_from(2) == 60
    assert copies.replay_from(3) is None
    with pytest.raises(IllegalTransition, match="already has a restoring copy"):
        copies.build(2)
    copy.took(70, None)
    assert copy.restored() and copies.replay_from(2) is None  # serving: recovery replays after the store


def test_a_restoring_copy_serves_only_once_it_has_what_its_store_had() -> None:
    """The rebalance storm with standbys (2026-12-07): Faust completes a rebalance's recovery
    without reading a standby's changelog, so a standby copy taken back 1,500 records behind its
    store served without them; it must wait until the replay brought it to the store's offset."""
    copy: PartitionCopy[str] = PartitionCopy(3, R, offset=1316, until=2550)
    assert copy.restored() is False and copy.state is R  # recovery completed, the replay not delivered yet
    copy.took(2000, None)
    assert copy.state is R
    copy.took(2550, None)
    assert copy.state is S
    early: PartitionCopy[str] = PartitionCopy(4, R, offset=10, until=20)
    early.took(25, None)  # the replay came before the recovery completed: it serves at completion
    assert early.state is R and early.restored() and early.state is S


def test_a_moved_partition_is_kept_until_it_expires_or_is_taken_back_from_its_offset() -> None:
    copies: Copies[str] = Copies()
    for partition in (0, 1, 2):
        copies.build(partition).drain()
        copies.get(partition).took(100 + partition, None)  # type: ignore[union-attr]
    closed = copies.close([0, 1, 2, 9], keep=True)
    assert [c.state for c in closed] == [U, U, U] and copies.held() == {}
    for copy in closed:
        copies.suspended(copy, now=1000.0)
    assert copies.get(0) is None and copies.held() == {}
    assert copies.expire(now=1059.0, keep=60) == []
    back = copies.take_back({1, 2, 5})
    assert [c.partition for c in back] == [1, 2]
    assert copies.expire(now=1060.0, keep=60) == [0]  # the taken-back ones are out of its reach
    copies.resume(back[0], until=101)
    assert copies.get(1) is back[0] and back[0].state is R and back[0].since is None
    assert copies.replay_from(1) == 101
    back[1].close()  # its store was behind: built instead
    copies.build(2)
    assert sorted(copies.held()) == [1, 2]


def test_only_a_serving_copy_is_kept_suspended() -> None:
    copies: Copies[str] = Copies()
    copies.build(0)
    copies.restore(1, 3, Progress(), until=3)
    assert [c.state for c in copies.close([0, 1], keep=True)] == [C, C]
    with pytest.raises(IllegalTransition, match="cannot be kept suspended"):
        copies.suspended(copy_in(C), now=0.0)


def test_a_snapshot_covers_serving_copies_and_is_skipped_when_nothing_moved() -> None:
    copies: Copies[str] = Copies()
    copies.build(0).drain()
    copies.build(1)  # still building: not covered
    copies.restore(2, 8, Progress(), until=8)  # still restoring: not covered
    covered = copies.covering()
    assert {p: offset for p, (offset, _) in covered.items()} == {0: -1}
    copies.saved({0: -1})
    assert copies.covering() == {}
    copies.get(0).took(4, None)  # type: ignore[union-attr]
    assert {p: offset for p, (offset, _) in copies.covering().items()} == {0: 4}


# ---- random runs ------------------------------------------------------------------------------

PARTITIONS = 6
KEEP = 30.0


class World:
    """A worker's copies under random rebalances, completions, builds, writes, failures, crashes."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.end = [0] * PARTITIONS  # the changelog's end per partition (what the store reaches)
        self.stored: list[int | None] = [None] * PARTITIONS
        self.now = 0.0
        self.generation = 0
        self.held: set[int] = set()
        self.snapshot: dict[int, int] = {}
        self.copies: Copies[int] = Copies()
        self.closed: list[PartitionCopy[int]] = []
        self.whole: set[PartitionCopy[int]] = set()  # copies whose documents are all in the index (built, or replayed)
        self.lane: dict[int, int] = {}  # per partition, the last write its lane has queued but not applied yet
        self.replays: dict[int, int] = {}  # per held partition, the offset recovery replays after (what Faust was told)
        self.delivered: dict[int, int] = {}  # per copy's partition, the last offset handed to it (lane, replay, build)

    def dump(self) -> dict[int, tuple[CopyState, int, int, float | None]]:
        return {p: (c.state, c.offset, len(c.pending), c.since) for p, c in self.copies._copies.items()}

    # -- steps --

    def rebalance(self) -> None:
        self.generation += 1
        self.copies.rebalancing(self.generation)
        held = {p for p in range(PARTITIONS) if self.rng.random() < 0.5}
        self._close(self.held - held)
        self.held = held
        for copy in self.copies.take_back(held):
            if usable(self.stored[copy.partition], copy.offset):
                self.copies.resume(copy, until=self.stored[copy.partition])  # type: ignore[arg-type]
                self.delivered[copy.partition] = copy.offset
            else:
                copy.close()
                self.closed.append(copy)
        self._recover()

    def _recover(self) -> None:
        """Faust asks where recovery replays each held partition from (the store's offset unless a
        restoring copy says otherwise); a restoring copy must never be told an offset past its own."""
        for partition in self.held:
            offset = self.copies.replay_from(partition)
            copy = self.copies.get(partition)
            if copy is not None and copy.state is CopyState.RESTORING:
                assert offset == copy.offset, "a restoring copy replays from past what it has"
            stored = self.stored[partition]
            self.replays[partition] = offset if offset is not None else (-1 if stored is None else stored)

    def _close(self, partitions: set[int]) -> None:
        for copy in self.copies.close(partitions, keep=True):
            self.lane.pop(copy.partition, None)  # a stopped copy's lane drops what it queued
            if copy.state is CopyState.SUSPENDED and self.rng.random() < 0.9:  # its lane ended in time
                self.copies.suspended(copy, self.now)
            else:
                if copy.state is CopyState.SUSPENDED:
                    copy.close()
                self.closed.append(copy)

    def complete(self, generation: int) -> None:
        if self.copies.current(generation) is not None:
            return
        for copy in self.copies.restoring(self.held):
            if self.rng.random() < 0.5:  # a standby: Faust completes its recovery without reading its changelog
                assert copy.restored() == (copy.offset >= copy.until), "a copy serves before it has what its store had"
                continue
            self._catch_up(copy)
            if self.rng.random() < 0.2:  # an index update fails while the replay is waited for
                copy.rebuild()
                self.whole.discard(copy)
            copy.restored()
        self._close(set(self.copies.held()) - self.held)
        for partition in sorted(self.held - set(self.copies.held())):
            self.copies.build(partition)

    def complete_stale(self) -> None:
        before = self.dump()
        if self.generation:
            self.complete(self.rng.randrange(self.generation))
        assert self.dump() == before, "a stale completion changed the copies"

    def _catch_up(self, copy: PartitionCopy[int]) -> None:
        """Recovery delivers the changelog after where it replays from into a restoring copy, in order,
        up to its end; if that began past records the copy lacks, they never reach the index."""
        self.apply_lane(copy.partition)
        if self.replays.get(copy.partition, -1) > copy.offset:
            self.whole.discard(copy)
        self.stored[copy.partition] = self.delivered[copy.partition] = self.end[copy.partition]
        copy.took(self.end[copy.partition], None)

    def apply_lane(self, partition: int | None = None) -> None:
        """A partition's lane applies what it queued (a random one if ``partition`` is None)."""
        if partition is None:
            if not self.lane:
                return
            partition = self.rng.choice(sorted(self.lane))
        offset = self.lane.pop(partition, None)
        copy = self.copies.get(partition)
        if offset is not None and copy is not None and copy.state in (CopyState.SERVING, CopyState.RESTORING):
            copy.took(offset, None)

    def build_ends(self) -> None:
        building = [c for c in self.copies.held().values() if c.state is CopyState.BUILDING]
        if not building:
            return
        copy = self.rng.choice(building)
        copy.built(self.stored[copy.partition], Progress())
        while pending := copy.drain():
            for _, offset in pending:
                copy.took(offset, None)
        self.whole.add(copy)
        self.delivered[copy.partition] = max(copy.offset, self.delivered.get(copy.partition, -1))

    def write(self) -> None:
        partition = self.rng.randrange(PARTITIONS)
        copy = self.copies.get(partition) if partition in self.held else None
        if copy is not None and copy.state is CopyState.RESTORING:
            self._catch_up(copy)  # the replay comes before any newer record
        self.end[partition] += 1
        if partition not in self.held:
            return
        stored = self.stored[partition]
        if copy is not None and copy.serving and self.delivered.get(partition, copy.offset) < (stored or -1):
            self.whole.discard(copy)  # records its store has never reached it, and only newer ones come now
        self.stored[partition] = self.end[partition]
        if copy is None:
            return
        state = copy.state
        applied = copy.admit(self.end[partition], self.end[partition])
        assert applied == (state in (CopyState.SERVING, CopyState.RESTORING)), "a building copy was written"
        if applied:
            self.lane[partition] = self.delivered[partition] = self.end[partition]  # the index has it once applied

    def fail(self) -> None:
        held = list(self.copies.held().values())
        if held:
            copy = self.rng.choice(held)
            assert copy.rebuild() and copy.state is CopyState.BUILDING and copy.pending == []
            self.whole.discard(copy)
            self.lane.pop(copy.partition, None)  # the build reads the store instead

    def take_snapshot(self) -> None:
        covered = self.copies.covering()
        if covered:
            self.snapshot = {p: offset for p, (offset, _) in covered.items()}
            self.copies.saved(self.snapshot)

    def crash(self) -> None:
        """The worker restarts: a new store, the first rebalance restores what the snapshot allows."""
        self.closed += [c for c in self.copies._copies.values()]
        for copy in self.copies._copies.values():
            copy.close()
        self.copies = Copies()
        self.held = set()
        self.lane, self.delivered = {}, {}
        self.rebalance()
        for partition, offset in sorted(self.snapshot.items()):
            if partition in self.held and usable(self.stored[partition], offset):
                restored = self.copies.restore(partition, offset, Progress(), until=self.stored[partition])  # type: ignore[arg-type]
                self.whole.add(restored)  # the snapshot's documents are right up to its offset
                self.delivered[partition] = offset
        self._recover()  # the snapshot is loaded in on_rebalance, before Faust asks

    def expire(self) -> None:
        self.now += self.rng.choice([1.0, 10.0, KEEP])
        for partition in self.copies.expire(self.now, KEEP):
            assert self.copies._copies.get(partition) is None

    # -- invariants --

    def check(self) -> None:
        for partition, copy in self.copies._copies.items():
            assert copy.partition == partition and copy.state is not CopyState.CLOSED
            if copy.state is CopyState.SUSPENDED:
                assert copy.since is not None and partition not in self.copies.held()
                assert self.now - copy.since < KEEP or partition not in self.held
            if copy.serving:
                assert copy.pending == [], "a serving copy has writes waiting"
                assert copy in self.whole, "a copy serves while its documents are not all in the index"
            if copy.state is not CopyState.BUILDING:
                assert copy.pending == []
        for copy in self.closed:
            assert copy.state is CopyState.CLOSED and copy.admit(-1, -1) is False and copy.pending == []
            with pytest.raises(IllegalTransition):
                copy.resume(until=0)
        assert self.copies.ready == all(c.serving for c in self.copies.held().values())


STEPS = ["rebalance", "complete", "complete_stale", "build_ends", "build_ends", "write", "write", "write", "fail",
         "take_snapshot", "crash", "expire", "apply_lane"]


@pytest.mark.parametrize("seed", range(200))
def test_random_runs_keep_the_invariants(seed: int, moves: Counter[tuple[CopyState, CopyState]]) -> None:
    rng = random.Random(seed)
    world = World(rng)
    for _ in range(300):
        step = rng.choice(STEPS)
        if step == "complete":
            world.complete(world.generation)
        else:
            getattr(world, step)()
        world.check()
    assert set(moves) <= {(a, b) for a, targets in TRANSITIONS.items() for b in targets}


def test_random_runs_make_every_transition(moves: Counter[tuple[CopyState, CopyState]]) -> None:
    for seed in range(50):
        rng = random.Random(10_000 + seed)
        world = World(rng)
        for _ in range(300):
            step = rng.choice(STEPS)
            world.complete(world.generation) if step == "complete" else getattr(world, step)()
    allowed = {(a, b) for a, targets in TRANSITIONS.items() for b in targets}
    assert set(moves) == allowed, sorted(allowed - set(moves), key=str)
