"""Fixtures shared by the model tests: the default model is converted once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from index.model.embedder import ModelFiles
from index.model.models import DEFAULT_MODEL, load_embedder, plan_model


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the session, so the model is converted once."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def converted(model_cache: Path) -> ModelFiles:
    """The default model's converted ONNX file and tokenizer, for tests that copy or edit them."""
    load_embedder(DEFAULT_MODEL, model_cache)  # converts it, in a child process
    return plan_model(DEFAULT_MODEL, model_cache).fp32
