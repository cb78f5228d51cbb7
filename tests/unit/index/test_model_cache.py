"""A model is prepared once per machine, in a separate process, never inside the process that loads it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from index.model.embedder import ModelFiles
from index.exceptions import ModelError
from index.model.models import DEFAULT_MODEL, default_model_dir, load_embedder, plan_model
from index.model.prepare import main as prepare_main

# A loader process: loads the model from CACHE, then says whether it imported the converter itself.
_LOADER = textwrap.dedent("""
    import logging, sys
    from pathlib import Path
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    from index.model.models import load_embedder
    embedder = load_embedder(sys.argv[1], Path(sys.argv[2]))
    print(embedder.model_id, "onnxruntime.transformers.optimizer" in sys.modules)
""")


def test_two_loaders_on_an_empty_cache_convert_once_and_neither_in_its_own_process(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    loaders = [subprocess.Popen([sys.executable, "-c", _LOADER, DEFAULT_MODEL, str(cache)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parents[3]) for _ in range(2)]
    results = [loader.communicate(timeout=300) for loader in loaders]
    assert [loader.returncode for loader in loaders] == [0, 0], results
    model_ids = {out.split()[0] for out, _ in results}
    assert len(model_ids) == 1
    assert all(out.split()[1] == "False" for out, _ in results)  # the converter ran in a child process
    logs = "".join(err for _, err in results)
    assert logs.count("converting ") == 1, logs  # the second child found the file made under the lock
    assert [path.name for path in cache.iterdir() if not path.name.startswith(".")] == \
        [plan_model(DEFAULT_MODEL, cache).fp32.onnx_path.name]


def test_a_prepared_model_is_not_prepared_again(converted: ModelFiles, model_cache: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert prepare_main([DEFAULT_MODEL, "--cache", str(model_cache)]) == 0
    assert capsys.readouterr().err == ""


def test_a_child_failure_comes_back_as_a_model_error_that_says_what_to_do(tmp_path: Path) -> None:
    model_dir = tmp_path / "broken-model"
    model_dir.mkdir()
    for name in ("config.json", "tokenizer.json"):
        (model_dir / name).write_bytes((default_model_dir() / name).read_bytes())
    (model_dir / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ModelError, match=r"cannot read weights .*model\.safetensors"):
        load_embedder(str(model_dir), tmp_path / "cache")


def test_an_unwritable_cache_names_the_setting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert prepare_main([DEFAULT_MODEL, "--cache", str(blocker / "cache")]) == 2
    assert "set STREAMVEC_MODEL_CACHE to a writable directory" in capsys.readouterr().err
