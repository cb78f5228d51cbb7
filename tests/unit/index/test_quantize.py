"""int8 is opt-in and gated: it is made once per model, measured against fp32, and refused below the gate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import index.model.prepare as prepare_module
from index.model.embedder import Embedder, ModelFiles
from index.exceptions import ModelError
from index.model.models import DEFAULT_MODEL, load_embedder, plan_model
from index.model.prepare import prepare
from index.model.quantize import QualityGate, QualityReport, heldout_texts, measure_quality

# A slice of the held-out set keeps the unit suite fast; the full set is what workers and the bench use.
SMALL_DOCS, SMALL_QUERIES = 60, 12


@pytest.fixture(scope="module")
def fp32_files(converted: ModelFiles) -> ModelFiles:
    return converted


@pytest.fixture(scope="module")
def int8_cache(fp32_files: ModelFiles, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An int8 model made and measured once for this module, on a slice of the held-out texts."""
    cache = tmp_path_factory.mktemp("int8-cache")
    (cache / fp32_files.onnx_path.name).symlink_to(fp32_files.onnx_path)  # the fp32 file this cache would make
    documents, queries = heldout_texts()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(prepare_module, "heldout_texts", lambda: (documents[:SMALL_DOCS], queries[:SMALL_QUERIES]))
        made = prepare(plan_model(DEFAULT_MODEL, cache, "int8"))
    assert [path.name for path in made] == [plan_model(DEFAULT_MODEL, cache, "int8").int8_path.name]
    return cache


def test_heldout_texts_ship_with_the_package() -> None:
    documents, queries = heldout_texts()
    assert len(documents) >= 500 and len(queries) >= 100
    assert not set(documents) & set(queries)


def test_int8_model_carries_its_quality_and_is_close_to_fp32(int8_cache: Path, fp32_files: ModelFiles) -> None:
    int8 = load_embedder(DEFAULT_MODEL, int8_cache, quantize="int8", gate=QualityGate(0.9, 0.5))
    assert int8.precision == "int8"
    assert int8.quality is not None
    assert int8.quality.documents == SMALL_DOCS and int8.quality.queries == SMALL_QUERIES
    assert 0.95 < int8.quality.mean_cosine <= 1.0
    assert int8.quality.min_cosine <= int8.quality.mean_cosine
    texts = ["The cat sat on the mat", "Quarterly revenue grew 4%", "Kafka partitions share the work"]
    fp32 = Embedder(fp32_files)
    assert ((int8.embed(texts) * fp32.embed(texts)).sum(axis=1) > 0.95).all()
    assert int8.model_id != fp32.model_id  # int8 vectors are not interchangeable with fp32 ones


def test_int8_is_made_once(int8_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object) -> None:
        raise AssertionError("quantised again")

    monkeypatch.setattr(prepare_module, "quantize_int8", refuse)
    assert prepare(plan_model(DEFAULT_MODEL, int8_cache, "int8")) == []
    load_embedder(DEFAULT_MODEL, int8_cache, quantize="int8", gate=QualityGate(0.9, 0.5))


def test_int8_below_the_gate_is_refused_with_the_settings_that_decide(int8_cache: Path) -> None:
    with pytest.raises(ModelError, match="STREAMVEC_QUANTIZE=none.*STREAMVEC_INT8_MIN_COSINE"):
        load_embedder(DEFAULT_MODEL, int8_cache, quantize="int8", gate=QualityGate(min_mean_cosine=0.99999))


def test_gate_checks_both_figures() -> None:
    report = QualityReport(mean_cosine=0.993, min_cosine=0.97, recall_at_10=0.91, recall_at_10_int8_index=0.9,
                           documents=600, queries=200)
    QualityGate(0.99, 0.88).check(report)
    with pytest.raises(ModelError, match="recall@10 0.910 < 0.95"):
        QualityGate(0.99, 0.95).check(report)
    with pytest.raises(ModelError, match="mean cosine 0.9930 < 0.995"):
        QualityGate(0.995, 0.5).check(report)
    assert QualityReport.from_json(report.to_json()) == report


class _Fixed:
    """A stand-in model: a fixed vector per text, optionally nudged."""

    def __init__(self, table: dict[str, np.ndarray], noise: float = 0.0) -> None:
        self.table, self.noise = table, noise

    def embed(self, texts: list[str]) -> np.ndarray:
        rows = np.stack([self.table[text] for text in texts])
        rows = rows + self.noise * np.random.default_rng(0).standard_normal(rows.shape).astype(np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_measure_quality_of_an_identical_and_a_noisy_model() -> None:
    rng = np.random.default_rng(1)
    texts = [f"t{i}" for i in range(60)]
    table = {text: rng.standard_normal(16).astype(np.float32) for text in texts}
    same = measure_quality(_Fixed(table), _Fixed(table), texts[:50], texts[50:])
    assert same.mean_cosine == pytest.approx(1.0, abs=1e-6)
    assert same.recall_at_10 == same.recall_at_10_int8_index == 1.0
    noisy = measure_quality(_Fixed(table), _Fixed(table, noise=0.5), texts[:50], texts[50:])
    assert noisy.mean_cosine < 0.99 and noisy.recall_at_10 < 1.0
