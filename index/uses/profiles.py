"""User profiles from activity: the arithmetic, the activity contract and the stored forms.

An activity event (topic ``<app id>-activity``) says a user acted on an item (a document
id): ``{"user": str, "item": str, "action": str, "weight": number?, "ts": number?}``.
A user's profile vector is the time-decayed weighted mean of the vectors of the items they
acted on: an activity of weight ``w`` at time ``t`` counts ``w · 2^(-(T - t) / half_life)``
at the profile's time ``T`` (its latest activity). The sum is kept scaled to ``T``, so an
update is one multiply-add, and late events fit in exactly: the result does not depend on
the order activities arrive in. Weights may be negative (a dislike pushes away). Searches
use the profile's direction only, so the mean's denominator (the decayed sum of ``|w|``)
is kept for reporting.

Activity is delivered at least once, and a profile counts each activity once. A redelivery
comes in one of two shapes (docs/use-cases.md "Recommendations from activity"):

* the profile agent reads ``<app id>-activity-by-user`` again from its last commit (after
  ``kill -9`` or a batch abandoned to a rebalance): the same records at the same offsets. All
  of a user's records are in one partition, read in offset order, so a profile keeps the
  position (partition, offset) of the last record it folded, and a record at or before it
  is skipped. This is exact, however many records the redelivery covers, in one pair of
  numbers per profile (review finding SP-10: it was a window of the last 20 fingerprints).
* an earlier agent sends the activity again, so it reaches ``by-user`` at a new offset. Its
  fingerprint is then the same: the activity's own position on ``<app id>-activity``, which
  travels with it (the :data:`ORIGIN_HEADER` header, then the joined record). A profile
  remembers the fingerprints of its latest ``keep`` activities. Distinct activities with the
  same (item, action, ts) have distinct positions, so both count; a record produced twice to
  ``<app id>-activity`` is two activities.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from index.records.codec import CodecError
from index.records.events import EventError

_FIELDS = frozenset({"user", "item", "action", "weight", "ts"})
_MAX_NAME = 512
_HEADER = struct.Struct("<BI")
_PROFILE_FORMAT = 1
_ACTIVITY_FORMAT = 2

ORIGIN_HEADER = "activity-origin"
"""The header that carries an activity's position on ``<app id>-activity`` to the join, as
``b"<partition>:<offset>"``. Not ``streamvec-``-prefixed: dead letters keep it as one of the
record's own headers (agents/deadletters.py)."""

Position = tuple[int, int]
"""A record's (partition, offset) on its topic."""


@dataclass(frozen=True)
class Activity:
    """A validated activity event; ``weight`` is resolved (the event's, or its action's default)."""

    user: str
    item: str
    action: str
    weight: float
    ts: float
    origin: Position | None = None  # where it was read on <app id>-activity; None from older workers

    @property
    def fingerprint(self) -> str:
        """What identifies this activity: every redelivery of it has the same one.

        Its origin when known, so that distinct activities with the same (item, action, ts)
        differ. Without one (a record joined by an older worker) the (item, action, ts) it
        was before, so that it still matches the fingerprints older workers stored.
        """
        if self.origin is not None:
            return f"@{self.origin[0]}:{self.origin[1]}"
        return f"{self.item}\x1f{self.action}\x1f{self.ts!r}"


def origin_header(partition: int, offset: int) -> tuple[str, bytes]:
    """The :data:`ORIGIN_HEADER` of the activity read at ``partition``, ``offset``."""
    return ORIGIN_HEADER, f"{partition}:{offset}".encode()


def origin_in(headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None) -> Position | None:
    """The origin a record's headers carry; None without one, or with one that does not parse
    (the activity then falls back to its (item, action, ts) fingerprint)."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers or ()
    for name, raw in pairs:
        if name == ORIGIN_HEADER:
            return _position(raw.decode("ascii", "replace").split(":"))
    return None


def _position(parts: Any) -> Position | None:
    """Two non-negative ints (a list from JSON or from a header), else None."""
    try:
        partition, offset = (int(part) for part in parts)
    except (TypeError, ValueError):
        return None
    return (partition, offset) if partition >= 0 and offset >= 0 else None


def parse_activity(value: bytes | None, weights: Mapping[str, float], kafka_ts: float | None) -> Activity:
    """Validate one activity record; ``ts`` defaults to the record's Kafka timestamp (seconds).

    Raises an :class:`EventError` whose reason code goes on the dead letter.
    """
    if value is None:
        raise EventError("bad_json", "an activity record needs a JSON value (a null value means nothing here)")
    try:
        body = json.loads(value)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise EventError("bad_json", f"the value is not UTF-8 JSON: {exc}") from None
    if not isinstance(body, dict):
        raise EventError("bad_json", f"the value must be a JSON object, got {type(body).__name__}")
    unknown = set(body) - _FIELDS
    if unknown:
        raise EventError("unknown_field", f"unknown field(s) {sorted(unknown)}; allowed: {sorted(_FIELDS)}")
    user, item, action = (_name(body, field) for field in ("user", "item", "action"))
    weight = body.get("weight")
    if weight is None:
        if action not in weights:
            raise EventError("unknown_action", f"action {action!r} has no default weight "
                                               f"(STREAMVEC_ACTION_WEIGHTS knows {sorted(weights)}); send a "
                                               '"weight" with it or add it to the setting')
        weight = weights[action]
    ts = body.get("ts", kafka_ts)
    for name, number in (("weight", weight), ("ts", ts)):
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
            raise EventError(f"bad_{name}", f'"{name}" must be a finite number, got {json.dumps(number)[:80]}')
    return Activity(user, item, action, float(weight), float(ts))


def _name(body: Mapping[str, Any], field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value or len(value.encode()) > _MAX_NAME:
        raise EventError(f"bad_{field}", f'"{field}" must be a non-empty string of at most {_MAX_NAME} bytes, '
                                         f"got {json.dumps(value)[:80]}")
    return value


@dataclass(frozen=True)
class Profile:
    """A user's decayed activity: ``vector_sum`` and ``weight`` scaled to time ``ts``."""

    vector_sum: np.ndarray
    weight: float
    ts: float
    events: int
    recent: tuple[str, ...] = ()  # latest items, most recent last, each once
    seen: tuple[str, ...] = ()  # fingerprints of the latest activities
    # The by-user record folded last. None: nothing folded since the format had it (a record
    # of an older worker); only the fingerprints guard such a profile, as they did before.
    folded: Position | None = None

    @property
    def vector(self) -> np.ndarray | None:
        """The profile's direction, or None when the weights cancel out."""
        norm = float(np.linalg.norm(self.vector_sum))
        return None if norm == 0.0 or not math.isfinite(norm) else (self.vector_sum / norm).astype(np.float32)


def add_activity(profile: Profile | None, activity: Activity, vector: np.ndarray, half_life: float,
                 keep: int, at: Position | None = None) -> Profile | None:
    """The profile after ``activity`` on an item whose unit vector is ``vector``, read at
    position ``at`` of ``<app id>-activity-by-user``; None when the profile stays as it is.

    A record at or before the last one the profile folded is a redelivery of the same read
    and changes nothing. An activity whose fingerprint the profile has seen came again
    through an earlier agent: it is not counted, but the profile moves to ``at``, so that a
    later redelivery of this read is caught by position, not by the bounded fingerprints.
    """
    if profile is not None and at is not None and _covers(profile.folded, at):
        return None
    if profile is not None and activity.fingerprint in profile.seen:
        return None if at is None else replace(profile, folded=at)
    contribution = activity.weight * np.asarray(vector, dtype=np.float64)
    if profile is None:
        return Profile(contribution, abs(activity.weight), activity.ts, 1, _latest((), activity.item, keep),
                       _latest((), activity.fingerprint, keep), at)
    if activity.ts >= profile.ts:  # move the profile's time forward, decaying what it holds
        old, new, ts = _decay(activity.ts - profile.ts, half_life), 1.0, activity.ts
    else:  # a late activity counts as decayed to the profile's time
        old, new, ts = 1.0, _decay(profile.ts - activity.ts, half_life), profile.ts
    vector_sum = profile.vector_sum * old + contribution * new
    weight = profile.weight * old + abs(activity.weight) * new
    return replace(profile, vector_sum=vector_sum, weight=weight, ts=ts, events=profile.events + 1,
                   recent=_latest(profile.recent, activity.item, keep),
                   seen=_latest(profile.seen, activity.fingerprint, keep),
                   folded=at if at is not None else profile.folded)


def _covers(folded: Position | None, at: Position) -> bool:
    """Whether a profile that folded the record at ``folded`` has folded the one at ``at``:
    the same partition (a user's records stay in one unless partitions are added), no later
    offset. A recreated by-user topic starts its offsets again, and would need its profiles
    dropped with it."""
    return folded is not None and folded[0] == at[0] and at[1] <= folded[1]


def _decay(seconds: float, half_life: float) -> float:
    return float(2.0 ** (-seconds / half_life))


def _latest(items: tuple[str, ...], item: str, keep: int) -> tuple[str, ...]:
    """``items`` with ``item`` moved (or added) to the end, at most ``keep`` long."""
    if keep <= 0:
        return ()
    return (*[other for other in items if other != item], item)[-keep:]


def encode_profile(profile: Profile) -> bytes:
    """Stored form (profiles table and its changelog): a JSON header and the float64 sum."""
    fields: dict[str, Any] = {"w": profile.weight, "t": profile.ts, "n": profile.events, "r": list(profile.recent),
                              "s": list(profile.seen)}
    if profile.folded is not None:
        fields["f"] = list(profile.folded)
    header = json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()
    return _pack(_PROFILE_FORMAT, header, np.ascontiguousarray(profile.vector_sum, dtype="<f8").tobytes())


def decode_profile(data: bytes) -> Profile:
    """A stored profile. ``"f"`` (the position folded last) is optional within format 1, so
    records of older workers still decode (with ``folded`` None), and older workers still
    decode ours: a rollback keeps the profiles and only loses the position."""
    header, body = _unpack(_PROFILE_FORMAT, data, "profile")
    return Profile(np.frombuffer(body, dtype="<f8").copy(), float(header["w"]), float(header["t"]), int(header["n"]),
                   tuple(header["r"]), tuple(header["s"]), _position(header.get("f")))


def encode_with_vector(activity: Activity, vector: np.ndarray) -> bytes:
    """An activity joined with its item's vector (the record that travels to the user's partition)."""
    fields: dict[str, Any] = {"user": activity.user, "item": activity.item, "action": activity.action,
                              "weight": activity.weight, "ts": activity.ts}
    if activity.origin is not None:
        fields["o"] = list(activity.origin)
    header = json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()
    return _pack(_ACTIVITY_FORMAT, header, np.ascontiguousarray(vector, dtype="<f4").tobytes())


def decode_with_vector(data: bytes) -> tuple[Activity, np.ndarray]:
    header, body = _unpack(_ACTIVITY_FORMAT, data, "joined activity")
    try:
        activity = Activity(str(header["user"]), str(header["item"]), str(header["action"]), float(header["weight"]),
                            float(header["ts"]), _position(header.get("o")))
    except (KeyError, TypeError, ValueError) as exc:
        raise CodecError(f"joined activity header is incomplete: {exc}") from None
    return activity, np.frombuffer(body, dtype="<f4")


def _pack(fmt: int, header: bytes, body: bytes) -> bytes:
    return _HEADER.pack(fmt, len(header)) + header + body


def _unpack(fmt: int, data: bytes, what: str) -> tuple[dict[str, Any], bytes]:
    if len(data) < _HEADER.size:
        raise CodecError(f"{what} record of {len(data)} bytes is too short")
    found, length = _HEADER.unpack_from(data)
    if found != fmt:
        raise CodecError(f"{what} record format {found} is not {fmt}: written by another streamvec version")
    try:
        header = json.loads(data[_HEADER.size:_HEADER.size + length])
    except ValueError as exc:
        raise CodecError(f"{what} header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise CodecError(f"{what} header is not a JSON object")
    return header, data[_HEADER.size + length:]
