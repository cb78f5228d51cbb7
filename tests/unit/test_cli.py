"""The CLI commands that need no broker: embed, produce's input checks, settings errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from app.cli import main


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for name in list(__import__("os").environ):
        if name.startswith("STREAMVEC_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("STREAMVEC_MODEL_CACHE", str(tmp_path / "models"))  # empty: `model prepare` converts
    return CliRunner()


@pytest.fixture
def prepared(runner: CliRunner, model_cache: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """The runner with the session's model cache, where the model is prepared already."""
    monkeypatch.setenv("STREAMVEC_MODEL_CACHE", str(model_cache))
    return runner


def test_embed_writes_one_unit_vector_per_input_line(prepared: CliRunner) -> None:
    runner = prepared
    result = runner.invoke(main, ["embed", "--batch-size", "2"], input="a cat\nthe stock market\nfeline\n")
    assert result.exit_code == 0, result.output
    vectors = np.array([json.loads(line) for line in result.output.splitlines()])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[2] > vectors[0] @ vectors[1]  # cat is nearer feline than the market


def test_produce_refuses_a_bad_file_naming_the_line(runner: CliRunner, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text('{"id": "a", "text": "fine"}\n{"text": "no id"}\n')
    result = runner.invoke(main, ["produce", str(events), "--broker", "127.0.0.1:1"])
    assert result.exit_code != 0
    assert "events.jsonl:2" in result.output and '"id"' in result.output


def test_an_unknown_setting_is_a_usage_error(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMVEC_PARTITONS", "4")
    result = runner.invoke(main, ["embed"], input="x\n")
    assert result.exit_code == 2 and "STREAMVEC_PARTITONS" in result.output


def test_model_prepare_converts_once_and_embed_then_uses_the_prepared_model(runner: CliRunner) -> None:
    first = runner.invoke(main, ["model", "prepare"])
    assert first.exit_code == 0, first.output
    assert "converting " in first.output and "all-MiniLM-L6-v2 (none) prepared:" in first.output
    again = runner.invoke(main, ["model", "prepare"])
    assert again.exit_code == 0 and "already prepared" in again.output and "converting" not in again.output
    embedded = runner.invoke(main, ["embed"], input="a cat\n")
    assert embedded.exit_code == 0 and len(json.loads(embedded.output)) == 384


def test_embed_honours_the_workers_model_settings(prepared: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = prepared
    monkeypatch.setenv("STREAMVEC_EMBED_PROVIDER", "cuda")  # honoured like a worker: refused without a GPU
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed here")
    result = runner.invoke(main, ["embed"], input="x\n")
    assert result.exit_code == 1 and "onnxruntime-gpu" in result.output
