"""Fixtures shared by the model tests: the default model is converted once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from index.embedder import DEFAULT_MODEL, ModelFiles, resolve_model


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the session, so the model is converted once."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def converted(model_cache: Path) -> ModelFiles:
    """The default model's converted ONNX file and tokenizer, for tests that copy or edit them."""
    return resolve_model(DEFAULT_MODEL, model_cache)
