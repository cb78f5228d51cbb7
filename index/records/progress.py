"""What a partition's ingest has done so far, kept in the table itself so that it survives crashes.

Every consumed event ends as exactly one outcome (docs/architecture.md "Semantics to hold"). Counters in
a worker's memory die with it, and a redelivered event would be counted again by whoever
reads it next, so the counts could never reconcile after a ``kill -9``. Instead each
partition of the vectors table holds one progress record under :data:`KEY`: which source
offsets have their outcome counted, per input topic, and the counts themselves. The
ingest agent writes it to the changelog with the batch's records and before it
acknowledges the batch, so the changelog always knows which events are done:

* a redelivered event whose offset is recorded as done was already processed (its records
  reached the changelog first), so it is skipped and not counted again;
* the first offset not done is where the partition's next owner starts reading, whatever
  the consumer group committed (see :class:`Progress`);
* standbys and every later owner of the partition read the record from the changelog like
  any other and carry the counts on; ``GET /stats`` sums the records of all partitions.

:data:`KEY` is not valid UTF-8, so no document id (always UTF-8) can collide with it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from index.exceptions import StreamvecError

KEY = b"\xff\x00progress"
OUTCOMES = ("indexed", "deleted", "stale", "unchanged", "dead_lettered")


class ProgressError(StreamvecError, ValueError):
    """A progress record cannot be read: it was written by another streamvec version."""


@dataclass
class Progress:
    """One partition's ingest progress: source offsets done, outcome counts, dead letters by reason.

    Offsets are tracked exactly, not as a high-water mark: every offset below ``next[topic]`` is
    done, and so is every offset in ``ahead[topic]``. Kafka delivers a partition in order, but a
    consumer that seeks (Faust does at every rebalance) can hand over an event after later ones,
    or skip some; a high-water mark would then call the skipped ones done.

    Not every offset is a record, though: transaction markers, aborted records (read committed),
    compacted and deleted offsets never come. So an offset missing below ``ahead`` (a :meth:`gaps`
    range) is only a suspect: :meth:`settle` takes what the log holds there, passes every offset
    that holds no record, and names the first record the consumer really skipped, to be read
    again. ``ahead`` is empty again once a gap is settled, so the record stays small.
    """

    next: dict[str, int] = field(default_factory=dict)
    ahead: dict[str, set[int]] = field(default_factory=dict)
    outcomes: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)

    def begin(self, topic: str, offset: int) -> None:
        """Start tracking ``topic`` at ``offset`` (the first offset it still holds), if not yet tracked."""
        self.next.setdefault(topic, offset)

    def tracks(self, topic: str) -> bool:
        return topic in self.next

    def done(self, topic: str, offset: int) -> bool:
        """Whether the event at ``offset`` of ``topic`` already has its outcome counted here."""
        return offset < self.next.get(topic, 0) or offset in self.ahead.get(topic, ())

    def record(self, topic: str, offset: int, outcome: str, reason: str | None = None) -> None:
        """Count one event's outcome (a dead letter with its reason) and mark its offset done."""
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}; outcomes are {', '.join(OUTCOMES)}")
        if (outcome == "dead_lettered") != (reason is not None):
            raise ValueError("a dead letter needs its reason, and only a dead letter has one")
        if topic not in self.next:
            raise ValueError(f"topic {topic!r} is not tracked yet: begin() it first")
        if self.done(topic, offset):
            raise ValueError(f"{topic} offset {offset} is already counted")
        self.outcomes[outcome] += 1
        if reason is not None:
            self.reasons[reason] += 1
        self.ahead.setdefault(topic, set()).add(offset)
        self._pass_to(topic, self.next[topic])

    def gaps(self) -> dict[str, range]:
        """``{topic: offsets}`` for each topic with done offsets above one not done: from the first
        offset not done up to the last done one (exclusive). Its offsets not done are suspects:
        skipped by the consumer, or offsets that never come as records (see :meth:`settle`)."""
        return {topic: range(self.next[topic], max(ahead)) for topic, ahead in self.ahead.items()}

    def settle(self, topic: str, held: Iterable[int]) -> int | None:
        """Close what it can of the gap of ``topic``, given ``held``: the offsets of its
        :meth:`gaps` range that hold a record the consumer delivers (read from the broker).

        Every other offset of the range never comes (a transaction marker, an aborted record, a
        compacted or deleted offset), so it is done without an outcome. Returns the first held
        offset not done, which the consumer skipped and must read again (the gap stays open from
        there), or None when the gap is closed.
        """
        gap = self.gaps().get(topic)
        if gap is None:
            return None
        skipped = min((offset for offset in held if offset in gap and not self.done(topic, offset)),
                      default=None)
        self._pass_to(topic, gap.stop if skipped is None else skipped)
        return skipped

    def _pass_to(self, topic: str, offset: int) -> None:
        """Every offset below ``offset`` is done; ``next`` moves on over what ``ahead`` holds."""
        ahead = self.ahead.get(topic, set())
        position = max(self.next[topic], offset)
        if position > self.next[topic]:
            ahead.difference_update([done for done in ahead if done < position])
        while position in ahead:
            ahead.discard(position)
            position += 1
        self.next[topic] = position
        if not ahead:
            self.ahead.pop(topic, None)

    def copy(self) -> Progress:
        return Progress(dict(self.next), {t: set(o) for t, o in self.ahead.items()}, Counter(self.outcomes),
                        Counter(self.reasons))

    def counts(self) -> dict[str, Any]:
        """``{outcome: n for every outcome, "dead_letter_reasons": {reason: n}}`` (what /stats shows)."""
        return {**{name: self.outcomes[name] for name in OUTCOMES}, "dead_letter_reasons": dict(self.reasons)}


def resume_offsets(done: Mapping[int, Progress], inputs: Iterable[str]) -> dict[tuple[str, int], int]:
    """``{(input topic, partition): first offset not done}`` for the partitions in ``done``: where
    their ingest resumes, whatever the group committed.

    An input the record has not seen yet starts at offset 0 (its beginning): the group's own
    commit may be past events a stalled batch left behind (see agents/ingest.py), and a
    consumer that seeks can count a jump in offsets as done.
    """
    offsets: dict[tuple[str, int], int] = {}
    for partition, progress in done.items():
        offsets.update({(topic, partition): progress.next.get(topic, 0) for topic in inputs})
        offsets.update({(topic, partition): offset for topic, offset in progress.next.items()})
    return offsets


def encode(progress: Progress) -> bytes:
    body = {"n": progress.next, "a": {topic: sorted(offsets) for topic, offsets in progress.ahead.items()},
            "c": dict(progress.outcomes), "r": dict(progress.reasons)}
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def decode(data: bytes | None) -> Progress:
    """The progress in ``data``; a partition without a record yet has done nothing."""
    if data is None:
        return Progress()
    try:
        body = json.loads(data)
        ahead = {str(topic): {int(offset) for offset in offsets} for topic, offsets in body["a"].items()}
        return Progress(next=_ints(body["n"]), ahead=ahead, outcomes=Counter(_ints(body["c"])),
                        reasons=Counter(_ints(body["r"])))
    except (ValueError, KeyError, TypeError) as exc:
        raise ProgressError(f"the partition's progress record is unreadable ({exc}); it was written by another "
                            "streamvec version: upgrade the worker, or reset the app id's topics and data dir") from None


def _ints(mapping: Mapping[str, Any]) -> dict[str, int]:
    if not all(isinstance(value, int) for value in mapping.values()):
        raise ValueError("counts and offsets must be integers")
    return {str(name): value for name, value in mapping.items()}
