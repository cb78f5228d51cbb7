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
    or skip some; a high-water mark would then call the skipped ones done. A hole below
    ``ahead`` is what the consumer skipped: :meth:`holes` names it, and it is read again.
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
        ahead = self.ahead.setdefault(topic, set())
        ahead.add(offset)
        while self.next[topic] in ahead:
            ahead.discard(self.next[topic])
            self.next[topic] += 1
        if not ahead:
            del self.ahead[topic]

    def holes(self) -> dict[str, int]:
        """``{topic: first offset not done}`` for topics with done offsets above a hole."""
        return {topic: self.next[topic] for topic in self.ahead}

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
