"""The watchlist's matching: exact, per-pattern thresholds, versions, options from metadata."""

from __future__ import annotations

import numpy as np
import pytest

from index.records.events import EventError
from index.uses.watchlist import Pattern, Watchlist, pattern_options, supersedes

DIM = 3


def unit(*values: float) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def test_a_document_matches_every_pattern_at_or_above_its_threshold_best_first() -> None:
    watchlist = Watchlist(DIM)
    watchlist.apply([Pattern("x", unit(1, 0, 0), 0.9, ("fraud",)), Pattern("xy", unit(1, 1, 0), 0.5),
                     Pattern("z", unit(0, 0, 1), 0.1)])
    [matches, none] = watchlist.match(np.stack([unit(1, 0.2, 0), unit(0, -1, 0)]))
    assert [(m.pattern, m.labels) for m in matches] == [("x", ("fraud",)), ("xy", ())]
    assert matches[0].score == pytest.approx(float(unit(1, 0.2, 0) @ unit(1, 0, 0)), abs=1e-6)
    assert none == []


def test_a_score_equal_to_the_threshold_matches() -> None:
    watchlist = Watchlist(DIM)
    watchlist.apply([Pattern("x", unit(1, 0, 0), 1.0)])
    assert [m.pattern for m in watchlist.match(unit(1, 0, 0)[None, :])[0]] == ["x"]


def test_changes_replace_and_delete_patterns_and_remember_versions() -> None:
    watchlist = Watchlist(DIM)
    watchlist.apply([Pattern("x", unit(1, 0, 0), 0.9, version=1)])
    watchlist.apply([Pattern("x", unit(0, 1, 0), 0.9, version=2)])
    assert watchlist.match(unit(1, 0, 0)[None, :]) == [[]] and len(watchlist) == 1
    watchlist.apply(deletes=[("x", 3)])
    assert len(watchlist) == 0 and watchlist.version_of("x") == 3 and "x" not in watchlist
    assert watchlist.match(unit(0, 1, 0)[None, :]) == [[]]


def test_scores_lists_every_pattern_matching_or_not() -> None:
    watchlist = Watchlist(DIM)
    watchlist.apply([Pattern("x", unit(1, 0, 0), 0.9), Pattern("y", unit(0, 1, 0), 0.9)])
    assert [m.pattern for m in watchlist.scores(unit(0, 1, 0.1))] == ["y", "x"]


@pytest.mark.parametrize(("metadata", "expected"), [
    ({}, (0.8, ())), ({"threshold": 0.5, "labels": ["a", "b"]}, (0.5, ("a", "b"))), ({"threshold": 1}, (1.0, ())),
])
def test_threshold_and_labels_come_from_the_metadata(metadata: dict, expected: tuple) -> None:
    assert pattern_options(metadata, 0.8) == expected


@pytest.mark.parametrize(("metadata", "reason"), [
    ({"threshold": "high"}, "bad_threshold"), ({"threshold": 1.5}, "bad_threshold"), ({"threshold": True}, "bad_threshold"),
    ({"labels": "fraud"}, "bad_labels"), ({"labels": ["ok", 3]}, "bad_labels"), ({"labels": [""]}, "bad_labels"),
])
def test_bad_options_carry_a_reason_code(metadata: dict, reason: str) -> None:
    with pytest.raises(EventError) as error:
        pattern_options(metadata, 0.8)
    assert error.value.reason == reason


def test_a_newer_version_or_no_version_supersedes() -> None:
    assert supersedes(2, 1) and supersedes(None, 5) and supersedes(1, None)
    assert not supersedes(1, 1) and not supersedes(1, 2)
