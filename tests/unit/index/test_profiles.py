"""Profiles from activity: the decayed weighted mean, redeliveries, recent items, the contract."""

from __future__ import annotations

import json

import numpy as np
import pytest

from index.records.codec import CodecError
from index.records.events import EventError
from index.uses.profiles import (Activity, Profile, add_activity, decode_profile, decode_with_vector, encode_profile,
                            encode_with_vector, parse_activity)

DAY = 86400.0
WEIGHTS = {"view": 1.0, "purchase": 5.0}
X, Y = np.array([1, 0, 0], np.float32), np.array([0, 1, 0], np.float32)


def fold(*steps: tuple[Activity, np.ndarray], half_life: float = 7 * DAY, keep: int = 3) -> Profile:
    profile = None
    for activity, vector in steps:
        profile = add_activity(profile, activity, vector, half_life, keep) or profile
    assert profile is not None
    return profile


def test_the_profile_is_the_decayed_weighted_mean_of_the_items() -> None:
    profile = fold((Activity("u", "a", "view", 1.0, 0.0), X), (Activity("u", "b", "view", 1.0, 7 * DAY), Y))
    # a is one half-life older than b: it counts half.
    assert profile.vector_sum == pytest.approx([0.5, 1.0, 0.0])
    assert profile.weight == pytest.approx(1.5) and profile.ts == 7 * DAY and profile.events == 2
    assert profile.vector is not None and profile.vector @ Y > profile.vector @ X


def test_the_order_activities_arrive_in_does_not_matter() -> None:
    a, b = (Activity("u", "a", "view", 2.0, 0.0), X), (Activity("u", "b", "purchase", 5.0, 3 * DAY), Y)
    forward, backward = fold(a, b), fold(b, a)
    assert forward.vector_sum == pytest.approx(backward.vector_sum) and forward.weight == pytest.approx(backward.weight)


def test_a_negative_weight_pushes_the_profile_away() -> None:
    profile = fold((Activity("u", "a", "view", 1.0, 0.0), X), (Activity("u", "b", "dislike", -0.5, 0.0), Y))
    assert profile.vector is not None and profile.vector @ Y < 0 and profile.weight == pytest.approx(1.5)


def test_a_redelivered_activity_is_counted_once() -> None:
    view = Activity("u", "a", "view", 1.0, 10.0)
    profile = fold((view, X))
    assert add_activity(profile, view, X, 7 * DAY, 3) is None
    assert add_activity(profile, Activity("u", "a", "view", 1.0, 11.0), X, 7 * DAY, 3) is not None


def test_recent_items_are_the_latest_distinct_ones_most_recent_last() -> None:
    steps = [(Activity("u", item, "view", 1.0, float(t)), X) for t, item in enumerate("abcab")]
    assert fold(*steps, keep=3).recent == ("c", "a", "b")


def test_weights_that_cancel_leave_no_direction() -> None:
    profile = fold((Activity("u", "a", "view", 1.0, 0.0), X), (Activity("u", "a", "unview", -1.0, 0.0), X))
    assert profile.vector is None


def test_stored_forms_round_trip() -> None:
    profile = fold((Activity("u", "a", "view", 1.0, 0.0), X), (Activity("u", "b", "view", 1.0, 5.0), Y))
    again = decode_profile(encode_profile(profile))
    assert again.vector_sum == pytest.approx(profile.vector_sum)
    assert (again.weight, again.ts, again.events, again.recent, again.seen) == \
        (profile.weight, profile.ts, profile.events, profile.recent, profile.seen)
    activity = Activity("ü", "ä", "view", 1.0, 5.0)
    joined, vector = decode_with_vector(encode_with_vector(activity, Y))
    assert joined == activity and vector.tolist() == Y.tolist()
    with pytest.raises(CodecError):
        decode_profile(encode_with_vector(activity, Y))


def test_an_activity_takes_its_actions_default_weight_and_the_record_time() -> None:
    activity = parse_activity(json.dumps({"user": "u", "item": "i", "action": "purchase"}).encode(), WEIGHTS, 99.5)
    assert activity == Activity("u", "i", "purchase", 5.0, 99.5)
    given = parse_activity(b'{"user": "u", "item": "i", "action": "wish", "weight": -2, "ts": 7}', WEIGHTS, 99.5)
    assert (given.weight, given.ts) == (-2.0, 7.0)


@pytest.mark.parametrize(("value", "reason"), [
    (None, "bad_json"), (b"\xff", "bad_json"), (b"[1]", "bad_json"),
    (b'{"user": "u", "item": "i", "action": "view", "color": 1}', "unknown_field"),
    (b'{"item": "i", "action": "view"}', "bad_user"), (b'{"user": "u", "item": "", "action": "view"}', "bad_item"),
    (b'{"user": "u", "item": "i", "action": 3}', "bad_action"),
    (b'{"user": "u", "item": "i", "action": "wish"}', "unknown_action"),
    (b'{"user": "u", "item": "i", "action": "view", "weight": "much"}', "bad_weight"),
    (b'{"user": "u", "item": "i", "action": "view", "ts": true}', "bad_ts"),
])
def test_bad_activity_carries_a_reason_code(value: bytes | None, reason: str) -> None:
    with pytest.raises(EventError) as error:
        parse_activity(value, WEIGHTS, 1.0)
    assert error.value.reason == reason
