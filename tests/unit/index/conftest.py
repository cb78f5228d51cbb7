"""Fixtures shared by the model tests: the default model, prepared once per test session in the
session's model cache (``model_cache``, tests/support/fixtures.py), which the integration
workers share."""

from __future__ import annotations

from pathlib import Path

import pytest

from index.model.embedder import ModelFiles
from index.model.models import DEFAULT_MODEL, plan_model


@pytest.fixture(scope="session")
def converted(model_cache: Path) -> ModelFiles:
    """The default model's converted ONNX file and tokenizer, for tests that copy or edit them."""
    return plan_model(DEFAULT_MODEL, model_cache).fp32
