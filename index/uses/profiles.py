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

Activity is delivered at least once: a profile remembers the fingerprints of its latest
activities and ignores one it has already counted.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
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


@dataclass(frozen=True)
class Activity:
    """A validated activity event; ``weight`` is resolved (the event's, or its action's default)."""

    user: str
    item: str
    action: str
    weight: float
    ts: float

    @property
    def fingerprint(self) -> str:
        """What identifies a delivery of this activity: a redelivered one has the same."""
        return f"{self.item}\x1f{self.action}\x1f{self.ts!r}"


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

    @property
    def vector(self) -> np.ndarray | None:
        """The profile's direction, or None when the weights cancel out."""
        norm = float(np.linalg.norm(self.vector_sum))
        return None if norm == 0.0 or not math.isfinite(norm) else (self.vector_sum / norm).astype(np.float32)


def add_activity(profile: Profile | None, activity: Activity, vector: np.ndarray, half_life: float,
                 keep: int) -> Profile | None:
    """The profile after ``activity`` on an item whose unit vector is ``vector``; None if the
    profile already counted this activity (a redelivery)."""
    if profile is not None and activity.fingerprint in profile.seen:
        return None
    contribution = activity.weight * np.asarray(vector, dtype=np.float64)
    if profile is None:
        return Profile(contribution, abs(activity.weight), activity.ts, 1, _latest((), activity.item, keep),
                       _latest((), activity.fingerprint, keep))
    if activity.ts >= profile.ts:  # move the profile's time forward, decaying what it holds
        old, new, ts = _decay(activity.ts - profile.ts, half_life), 1.0, activity.ts
    else:  # a late activity counts as decayed to the profile's time
        old, new, ts = 1.0, _decay(profile.ts - activity.ts, half_life), profile.ts
    vector_sum = profile.vector_sum * old + contribution * new
    weight = profile.weight * old + abs(activity.weight) * new
    return replace(profile, vector_sum=vector_sum, weight=weight, ts=ts, events=profile.events + 1,
                   recent=_latest(profile.recent, activity.item, keep),
                   seen=_latest(profile.seen, activity.fingerprint, keep))


def _decay(seconds: float, half_life: float) -> float:
    return float(2.0 ** (-seconds / half_life))


def _latest(items: tuple[str, ...], item: str, keep: int) -> tuple[str, ...]:
    """``items`` with ``item`` moved (or added) to the end, at most ``keep`` long."""
    if keep <= 0:
        return ()
    return (*[other for other in items if other != item], item)[-keep:]


def encode_profile(profile: Profile) -> bytes:
    """Stored form (profiles table and its changelog): a JSON header and the float64 sum."""
    header = json.dumps({"w": profile.weight, "t": profile.ts, "n": profile.events, "r": list(profile.recent),
                         "s": list(profile.seen)}, separators=(",", ":"), ensure_ascii=False).encode()
    return _pack(_PROFILE_FORMAT, header, np.ascontiguousarray(profile.vector_sum, dtype="<f8").tobytes())


def decode_profile(data: bytes) -> Profile:
    header, body = _unpack(_PROFILE_FORMAT, data, "profile")
    return Profile(np.frombuffer(body, dtype="<f8").copy(), float(header["w"]), float(header["t"]), int(header["n"]),
                   tuple(header["r"]), tuple(header["s"]))


def encode_with_vector(activity: Activity, vector: np.ndarray) -> bytes:
    """An activity joined with its item's vector (the record that travels to the user's partition)."""
    header = json.dumps({"user": activity.user, "item": activity.item, "action": activity.action,
                         "weight": activity.weight, "ts": activity.ts}, separators=(",", ":"),
                        ensure_ascii=False).encode()
    return _pack(_ACTIVITY_FORMAT, header, np.ascontiguousarray(vector, dtype="<f4").tobytes())


def decode_with_vector(data: bytes) -> tuple[Activity, np.ndarray]:
    header, body = _unpack(_ACTIVITY_FORMAT, data, "joined activity")
    try:
        activity = Activity(str(header["user"]), str(header["item"]), str(header["action"]), float(header["weight"]),
                            float(header["ts"]))
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
