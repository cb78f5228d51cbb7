"""Embedding health windows: the reference, drift, the rolling figures, the group's view."""

from __future__ import annotations

import numpy as np
import pytest

from index.uses.health import HealthMonitor, Observation, combine

DIM = 4


def around(center: list[float], rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """``n`` unit vectors scattered around ``center``."""
    rows = np.asarray(center, dtype=np.float64) + rng.normal(0, 0.2, (n, DIM))
    return list((rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32))


def feed(monitor: HealthMonitor, partition: int, vectors: list[np.ndarray], **fields: object) -> list:
    closed = [monitor.observe(partition, Observation(v, **fields)) for v in vectors]  # type: ignore[arg-type]
    return [c for c in closed if c is not None]


def test_the_first_window_is_the_reference_and_a_steady_input_does_not_drift() -> None:
    rng = np.random.default_rng(1)
    monitor = HealthMonitor(DIM, window=50, drift_threshold=0.1)
    reference, steady = feed(monitor, 0, around([1, 0, 0, 0], rng, 100))
    assert (reference.window, reference.drift, reference.documents) == (0, None, 50)
    assert steady.drift is not None and steady.drift < 0.02 and not monitor.drifted(steady)


def test_a_shifted_input_drifts_once_per_window() -> None:
    rng = np.random.default_rng(2)
    monitor = HealthMonitor(DIM, window=50, drift_threshold=0.1)
    feed(monitor, 3, around([1, 0, 0, 0], rng, 50))
    shifted = feed(monitor, 3, around([0, 1, 0, 0], rng, 120))
    assert [c.window for c in shifted] == [1, 2]  # the last 20 documents fill no window yet
    assert all(monitor.drifted(c) for c in shifted) and shifted[0].drift == pytest.approx(1.0, abs=0.1)


def test_partitions_have_their_own_windows() -> None:
    rng = np.random.default_rng(3)
    monitor = HealthMonitor(DIM, window=10, drift_threshold=0.1)
    assert feed(monitor, 0, around([1, 0, 0, 0], rng, 9)) == []
    assert feed(monitor, 1, around([1, 0, 0, 0], rng, 9)) == []
    assert set(monitor.snapshot([0, 1, 2])) == {"0", "1"}


def test_the_snapshot_has_the_rolling_and_the_last_window_figures() -> None:
    rng = np.random.default_rng(4)
    monitor = HealthMonitor(DIM, window=4, drift_threshold=0.1)
    feed(monitor, 0, around([1, 0, 0, 0], rng, 4), norm=5.0, truncated=False, text_chars=40, best_similarity=0.5)
    feed(monitor, 0, around([1, 0, 0, 0], rng, 2), norm=7.0, truncated=True, text_chars=None)
    snapshot = monitor.snapshot([0])["0"]
    assert (snapshot["documents"], snapshot["windows_closed"], snapshot["reference"]) == (6, 1, True)
    last, current = snapshot["last"], snapshot["current"]
    assert (last["norm_mean"], last["truncated_share"], last["text_chars_mean"]) == (5.0, 0.0, 40.0)
    assert last["drift"] == pytest.approx(0.0, abs=1e-6)
    assert (current["documents"], current["norm_mean"], current["truncated_share"]) == (2, 7.0, 1.0)
    assert current["text_chars_mean"] is None and current["best_similarity_mean"] is None


def test_a_nan_norm_is_not_counted() -> None:
    monitor = HealthMonitor(DIM, window=4, drift_threshold=0.1)
    monitor.observe(0, Observation(np.ones(DIM, np.float32) / 2, norm=float("nan")))
    assert monitor.snapshot([0])["0"]["current"]["norm_mean"] is None


def test_the_group_figures_weigh_partitions_by_documents_and_keep_the_worst_drift() -> None:
    partitions = {
        "0": {"last": {"documents": 30, "drift": 0.1, "norm_mean": 4.0, "truncated_share": 0.0,
                       "text_chars_mean": 10.0, "best_similarity_mean": None}},
        "1": {"last": {"documents": 10, "drift": 0.5, "norm_mean": 8.0, "truncated_share": 1.0,
                       "text_chars_mean": None, "best_similarity_mean": None}},
        "2": {"last": None},
    }
    group = combine(partitions)
    assert (group["partitions"], group["documents"], group["drift_max"]) == (2, 40, 0.5)
    assert group["drift"] == pytest.approx(0.2) and group["norm_mean"] == pytest.approx(5.0)
    assert group["truncated_share"] == pytest.approx(0.25) and group["text_chars_mean"] == 10.0
    assert group["best_similarity_mean"] is None
