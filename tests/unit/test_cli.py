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
    monkeypatch.setenv("STREAMVEC_MODEL_CACHE", str(tmp_path / "models"))
    return CliRunner()


def test_embed_writes_one_unit_vector_per_input_line(runner: CliRunner) -> None:
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
