"""Profiles from activity: the decayed weighted mean, redeliveries, recent items, the contract."""

from __future__ import annotations

import json
import random
import struct
from dataclasses import replace

import numpy as np
import pytest

from index.records.codec import CodecError
from index.records.events import EventError
from index.uses.profiles import (Activity, Position, Profile, add_activity, decode_profile, decode_with_vector,
                                 encode_profile, encode_with_vector, origin_header, origin_in, parse_activity)

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


def replayed(profile: Profile | None, log: list[tuple[Activity, np.ndarray]], start: int = 0, end: int | None = None,
             keep: int = 20) -> Profile | None:
    """``profile`` after reading partition 0 of the by-user topic, ``log``, from ``start`` to ``end``."""
    for offset in range(start, len(log) if end is None else end):
        activity, vector = log[offset]
        profile = add_activity(profile, activity, vector, 7 * DAY, keep, at=(0, offset)) or profile
    return profile


@pytest.mark.parametrize("origins", [True, False])
def test_a_redelivery_of_more_than_the_remembered_fingerprints_counts_each_activity_once(origins: bool) -> None:
    """Review finding SP-10: 30 activities of one user read again from the start counted 40
    with 20 fingerprints remembered. The position folded last makes it exact, for records
    of older workers (no origin) too."""
    log = [(Activity("u", f"item-{n}", "view", 1.0, float(n), (2, 100 + n) if origins else None), X)
           for n in range(30)]
    once = replayed(None, log)
    again = replayed(once, log)
    assert once is not None and again is not None
    assert (once.events, again.events) == (30, 30) and again.folded == (0, 29)
    assert again.vector_sum == pytest.approx(once.vector_sum) and again.weight == once.weight


def test_distinct_activities_with_the_same_item_action_and_ts_both_count() -> None:
    twice = [(Activity("u", "a", "view", 1.0, 10.0, (0, 7)), X), (Activity("u", "a", "view", 1.0, 10.0, (1, 7)), X)]
    profile = replayed(replayed(None, twice), twice)
    assert profile is not None and profile.events == 2 and profile.weight == 2.0


def test_an_activity_sent_again_by_an_earlier_agent_counts_once_and_moves_the_position() -> None:
    view = Activity("u", "a", "view", 1.0, 10.0, (3, 41))
    profile = replayed(None, [(view, X), (Activity("u", "b", "view", 1.0, 11.0, (3, 42)), Y), (view, X)])
    assert profile is not None and profile.events == 2 and profile.folded == (0, 2)
    assert add_activity(profile, view, X, 7 * DAY, 3, at=(0, 2)) is None


def test_a_position_in_another_partition_does_not_cover() -> None:
    profile = replayed(None, [(Activity("u", "a", "view", 1.0, 1.0, (0, 0)), X)])
    moved = add_activity(profile, Activity("u", "b", "view", 1.0, 2.0, (0, 1)), Y, 7 * DAY, 3, at=(1, 0))
    assert moved is not None and moved.events == 2 and moved.folded == (1, 0)


def test_a_profile_stored_by_an_older_worker_decodes_and_its_fingerprints_still_guard_it() -> None:
    """Older workers stored no position: such a profile counts as having folded nothing by
    position (its offset is unknown, and guessing one could skip activity never counted), and
    the (item, action, ts) fingerprints it stored catch a redelivery of what it folded, as
    they did before. The first record folded now gives it a position."""
    header = json.dumps({"w": 1.0, "t": 10.0, "n": 1, "r": ["a"], "s": ["a\x1fview\x1f10.0"]}).encode()
    old = decode_profile(struct.pack("<BI", 1, len(header)) + header + np.array([1.0, 0, 0], "<f8").tobytes())
    assert (old.events, old.seen, old.folded) == (1, ("a\x1fview\x1f10.0",), None)
    skipped = add_activity(old, Activity("u", "a", "view", 1.0, 10.0), X, 7 * DAY, 3, at=(0, 5))
    assert skipped is not None and (skipped.events, skipped.weight, skipped.folded) == (1, 1.0, (0, 5))
    counted = add_activity(old, Activity("u", "b", "view", 1.0, 11.0, (0, 9)), Y, 7 * DAY, 3, at=(0, 6))
    assert counted is not None and counted.events == 2 and decode_profile(encode_profile(counted)).folded == (0, 6)


def test_a_joined_activity_of_an_older_worker_decodes_without_an_origin() -> None:
    header = json.dumps({"user": "u", "item": "a", "action": "view", "weight": 1.0, "ts": 10.0}).encode()
    activity, _ = decode_with_vector(struct.pack("<BI", 2, len(header)) + header + X.tobytes())
    assert activity.origin is None and activity.fingerprint == "a\x1fview\x1f10.0"


def test_the_origin_travels_in_a_header_and_a_bad_one_is_none() -> None:
    assert origin_in([("trace", b"x"), origin_header(4, 1234)]) == (4, 1234)
    assert origin_in(dict([origin_header(0, 0)])) == (0, 0)
    assert origin_in(None) is None and origin_in([("activity-origin", b"4:x")]) is None
    assert origin_in([("activity-origin", b"-1:3")]) is None


@pytest.mark.parametrize("seed", range(30))
def test_crashes_anywhere_count_every_activity_once(seed: int) -> None:
    """Randomised: three users' activity on one by-user partition, some of it sent again by an
    earlier agent (same origin, new offset, among the user's last ``keep``), and many
    distinct activities with the same (item, action, ts). It is read in batches that crash at
    random, with a random part of the batch's profile writes durable, and read again from the
    last commit. Each profile must equal one fold of each distinct activity."""
    rng, keep = random.Random(seed), 5
    vectors = {item: np.asarray(rng.choices(range(-3, 4), k=3), np.float32) for item in "abc"}
    log: list[tuple[Activity, np.ndarray]] = []
    distinct: dict[str, list[tuple[Activity, Position]]] = {}
    for n in range(rng.randint(20, 200)):
        user = rng.choice(["u0", "u1", "u2"])
        mine = distinct.setdefault(user, [])
        if mine and rng.random() < 0.2:
            activity = rng.choice(mine[-keep:])[0]
        else:
            item = rng.choice("abc")
            activity = Activity(user, item, "view", rng.choice([1.0, -0.5]), float(rng.randint(0, 2)), (0, n))
            mine.append((activity, (0, len(log))))
        log.append((activity, vectors[activity.item]))

    durable: dict[str, Profile] = {}
    committed = 0
    while committed < len(log):
        end = min(len(log), committed + rng.randint(1, 40))
        durable_to = rng.randint(committed, end) if rng.random() < 0.4 else end  # else a crash
        for offset in range(committed, durable_to):
            activity, vector = log[offset]
            updated = add_activity(durable.get(activity.user), activity, vector, 7 * DAY, keep, at=(0, offset))
            durable[activity.user] = updated or durable[activity.user]
        if durable_to == end:
            committed = end

    for user, mine in distinct.items():
        expected: Profile | None = None
        for activity, at in mine:
            expected = add_activity(expected, activity, vectors[activity.item], 7 * DAY, keep, at=at)
        assert expected is not None
        assert durable[user].events == len(mine) == expected.events
        assert durable[user].vector_sum == pytest.approx(expected.vector_sum)
        assert durable[user].weight == pytest.approx(expected.weight)


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
    assert (again.weight, again.ts, again.events, again.recent, again.seen, again.folded) == \
        (profile.weight, profile.ts, profile.events, profile.recent, profile.seen, None)
    assert decode_profile(encode_profile(replace(profile, folded=(3, 9)))).folded == (3, 9)
    activity = Activity("ü", "ä", "view", 1.0, 5.0, (1, 2))
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
