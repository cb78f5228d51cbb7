"""The outcome counters' snapshot: the shape /stats and /metrics read (keys must stay stable)."""

from __future__ import annotations

import pytest

from agents.outcomes import Outcomes


def test_the_snapshot_has_every_outcome_per_partition_and_in_total_and_reasons_at_both() -> None:
    outcomes = Outcomes()
    outcomes.add(3, "indexed")
    outcomes.add(3, "indexed")
    outcomes.add(1, "stale")
    outcomes.add_dead_letter(3, "bad_json")
    outcomes.add_dead_letter(1, "bad_json")
    outcomes.add_dead_letter(1, "key_too_long")
    outcomes.embeddings_reused = 4
    assert outcomes.snapshot() == {
        "total": {"indexed": 2, "deleted": 0, "stale": 1, "unchanged": 0, "dead_lettered": 3},
        "dead_letter_reasons": {"bad_json": 2, "key_too_long": 1},
        "partitions": {
            "1": {"indexed": 0, "deleted": 0, "stale": 1, "unchanged": 0, "dead_lettered": 2,
                  "dead_letter_reasons": {"bad_json": 1, "key_too_long": 1}},
            "3": {"indexed": 2, "deleted": 0, "stale": 0, "unchanged": 0, "dead_lettered": 1,
                  "dead_letter_reasons": {"bad_json": 1}},
        },
        "embeddings_reused": 4,
    }


def test_an_unknown_outcome_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown outcome"):
        Outcomes().add(0, "invalid")
