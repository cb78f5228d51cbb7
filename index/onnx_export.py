"""Build an fp32 ONNX graph for a BERT-family sentence-transformers model.

The model hub is out of reach and torch is far too heavy to install for an
export, so the encoder is written op by op with ``onnx.helper`` straight from
``model.safetensors``. The graph ends in mean pooling over the attention mask
and L2 normalisation, matching sentence-transformers' ``Pooling(mean)`` +
``Normalize`` modules, so the runtime needs only onnxruntime and a tokenizer.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from safetensors import SafetensorError
from safetensors.numpy import load_file

from index.exceptions import ModelError

OPSET = 17
IR_VERSION = 8
# Bump whenever the graph changes: it is part of the cache key, so old cached files are not reused.
EXPORT_FORMAT = "bert-mean-l2-v1"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
SENTENCE_EMBEDDING = "sentence_embedding"
# The encoder's final tensor keeps this stable name so tools can expose it as an output.
LAST_HIDDEN_STATE = "last_hidden_state"

# Additive attention bias for padded positions; exp(-10000) underflows to exactly 0 in fp32.
_MASK_PENALTY = -10000.0
# Clamps used by sentence-transformers' Pooling and Normalize modules.
_MIN_TOKEN_COUNT = 1e-9
_MIN_NORM = 1e-12

# mkstemp creates 0600 files; a shared model cache should be readable by other users' workers.
_CACHE_FILE_MODE = 0o644

_JsonT = TypeVar("_JsonT", dict[str, Any], list[Any])


@dataclass(frozen=True)
class BertConfig:
    """The ``config.json`` fields that shape the graph."""

    num_hidden_layers: int
    hidden_size: int
    num_attention_heads: int
    intermediate_size: int
    layer_norm_eps: float
    max_position_embeddings: int

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_file(cls, path: Path) -> BertConfig:
        """Read and validate ``config.json``, refusing variants the graph does not implement."""
        raw = read_json(path, dict)
        _check_supported(raw, path)
        try:
            values = {field.name: raw[field.name] for field in fields(cls)}
        except KeyError as missing:
            raise ModelError(
                f"{path} has no {missing.args[0]!r}; expected the config.json of a BERT-family model"
            ) from None
        config = cls(**values)
        if config.hidden_size % config.num_attention_heads:
            raise ModelError(f"{path}: hidden_size is not a multiple of num_attention_heads")
        return config


def read_json(path: Path, expected: type[_JsonT]) -> _JsonT:
    """Load a JSON document of the ``expected`` type, reporting the file on any failure."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, expected):
        raise ModelError(f"{path} does not hold a JSON {expected.__name__}")
    return data


def _check_supported(raw: dict[str, Any], path: Path) -> None:
    """Reject activations and position encodings that this exporter would silently get wrong."""
    activation = raw.get("hidden_act", "gelu")
    if activation != "gelu":
        raise ModelError(f"{path}: hidden_act {activation!r} is not supported (only exact 'gelu')")
    positions = raw.get("position_embedding_type", "absolute")
    if positions != "absolute":
        raise ModelError(f"{path}: position_embedding_type {positions!r} is not supported")


def load_weights(path: Path) -> dict[str, np.ndarray]:
    """Load safetensors weights as fp32, dropping the ``bert.`` prefix some checkpoints carry."""
    try:
        tensors = load_file(path)
    except (OSError, SafetensorError, TypeError, ValueError) as exc:
        raise ModelError(f"cannot read weights {path}: {exc}") from exc
    return {key.removeprefix("bert."): value.astype(np.float32) for key, value in tensors.items()}


def source_fingerprint(model_dir: Path) -> str:
    """Hash the config, weights and export format: the cache key of a converted model."""
    digest = hashlib.sha256(EXPORT_FORMAT.encode())
    for name in ("config.json", "model.safetensors"):
        with (model_dir / name).open("rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()


class _GraphBuilder:
    """Collects nodes and initialisers, naming intermediate tensors automatically."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self._weights = weights
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def const(self, name: str, value: np.ndarray | float | list[int]) -> str:
        """Add a constant tensor (scalars become fp32, int lists int64)."""
        if isinstance(value, float):
            value = np.array(value, dtype=np.float32)
        elif isinstance(value, list):
            value = np.array(value, dtype=np.int64)
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def weight(self, key: str, transpose: bool = False) -> np.ndarray:
        """Fetch a checkpoint tensor; HF Linear weights are [out, in] and MatMul wants [in, out]."""
        try:
            value = self._weights[key]
        except KeyError:
            raise ModelError(f"weight {key!r} is missing; is this a BERT-family checkpoint?") from None
        return np.ascontiguousarray(value.T) if transpose else value

    def op(self, op_type: str, *inputs: str, output: str | None = None, **attrs: Any) -> str:
        """Append one single-output node and return its output name."""
        return self.op_multi(op_type, list(inputs), 1, output=output, **attrs)[0]

    def op_multi(
        self, op_type: str, inputs: list[str], count: int, output: str | None = None, **attrs: Any
    ) -> list[str]:
        """Append a node with ``count`` outputs (e.g. Split) and return their names."""
        self._count += 1
        if output is not None:
            outputs = [output]
        else:
            outputs = [f"{op_type.lower()}_{self._count}_{index}" for index in range(count)]
        self.nodes.append(helper.make_node(op_type, inputs, outputs, name=f"{op_type}_{self._count}", **attrs))
        return outputs

    def linear(self, x: str, prefix: str) -> str:
        """``x @ W.T + b`` for the HF Linear layer stored under ``prefix``."""
        w = self.const(f"{prefix}.weight", self.weight(f"{prefix}.weight", transpose=True))
        b = self.const(f"{prefix}.bias", self.weight(f"{prefix}.bias"))
        return self.op("Add", self.op("MatMul", x, w), b)

    def layer_norm(self, x: str, prefix: str, eps: float, output: str | None = None) -> str:
        """LayerNormalization over the hidden axis with the checkpoint's gamma and beta."""
        scale = self.const(f"{prefix}.weight", self.weight(f"{prefix}.weight"))
        bias = self.const(f"{prefix}.bias", self.weight(f"{prefix}.bias"))
        return self.op("LayerNormalization", x, scale, bias, output=output, axis=-1, epsilon=eps)


def _embeddings(g: _GraphBuilder, config: BertConfig) -> str:
    """Word + position + token-type embeddings, then LayerNorm."""
    words = g.const("word_embeddings", g.weight("embeddings.word_embeddings.weight"))
    positions = g.const("position_embeddings", g.weight("embeddings.position_embeddings.weight"))
    types = g.const("token_type_embeddings", g.weight("embeddings.token_type_embeddings.weight"))
    seq_len = g.op("Shape", "input_ids", start=1, end=2)
    position_rows = g.op("Slice", positions, g.const("zero_1d", [0]), seq_len, g.const("axis_0", [0]))
    summed = g.op("Add", g.op("Gather", words, "input_ids"), position_rows)
    summed = g.op("Add", summed, g.op("Gather", types, "token_type_ids"))
    return g.layer_norm(summed, "embeddings.LayerNorm", config.layer_norm_eps)


def _attention_bias(g: _GraphBuilder, mask: str) -> str:
    """[batch, 1, 1, seq] additive bias: 0 for real tokens, a large negative number for padding."""
    expanded = g.op("Unsqueeze", mask, g.const("axes_1_2", [1, 2]))
    return g.op("Mul", g.op("Sub", "one", expanded), g.const("mask_penalty", _MASK_PENALTY))


def _fused_qkv(g: _GraphBuilder, x: str, prefix: str) -> list[str]:
    """Q, K and V from one [hidden, 3*hidden] MatMul: one big GEMM beats three small ones."""
    parts = ("query", "key", "value")
    w = np.concatenate([g.weight(f"{prefix}.{p}.weight", transpose=True) for p in parts], axis=1)
    b = np.concatenate([g.weight(f"{prefix}.{p}.bias") for p in parts])
    qkv = g.op("Add", g.op("MatMul", x, g.const(f"{prefix}.qkv.weight", w)), g.const(f"{prefix}.qkv.bias", b))
    return g.op_multi("Split", [qkv, "qkv_split"], 3, axis=-1)


def _self_attention(g: _GraphBuilder, x: str, bias: str, prefix: str) -> str:
    """Multi-head scaled dot-product attention, returning [batch, seq, hidden] before the output dense."""
    q, k, v = _fused_qkv(g, x, f"{prefix}.attention.self")
    q = g.op("Transpose", g.op("Reshape", q, "split_heads"), perm=[0, 2, 1, 3])
    k = g.op("Transpose", g.op("Reshape", k, "split_heads"), perm=[0, 2, 3, 1])
    v = g.op("Transpose", g.op("Reshape", v, "split_heads"), perm=[0, 2, 1, 3])
    scores = g.op("Add", g.op("Mul", g.op("MatMul", q, k), "attention_scale"), bias)
    context = g.op("MatMul", g.op("Softmax", scores, axis=-1), v)
    return g.op("Reshape", g.op("Transpose", context, perm=[0, 2, 1, 3]), "merge_heads")


def _gelu(g: _GraphBuilder, x: str) -> str:
    """Exact GELU, x * 0.5 * (1 + erf(x / sqrt 2)), in the op order ORT fuses into one Gelu kernel."""
    erf = g.op("Erf", g.op("Div", x, "sqrt_2"))
    return g.op("Mul", g.op("Mul", x, g.op("Add", erf, "one")), "half")


def _encoder_layer(g: _GraphBuilder, x: str, bias: str, index: int, config: BertConfig, output: str | None) -> str:
    """One post-LayerNorm transformer block: attention, add & norm, feed-forward, add & norm."""
    prefix = f"encoder.layer.{index}"
    attended = g.linear(_self_attention(g, x, bias, prefix), f"{prefix}.attention.output.dense")
    x = g.layer_norm(g.op("Add", attended, x), f"{prefix}.attention.output.LayerNorm", config.layer_norm_eps)
    hidden = _gelu(g, g.linear(x, f"{prefix}.intermediate.dense"))
    out = g.linear(hidden, f"{prefix}.output.dense")
    return g.layer_norm(g.op("Add", out, x), f"{prefix}.output.LayerNorm", config.layer_norm_eps, output=output)


def _mean_pool_normalise(g: _GraphBuilder, hidden: str, mask: str) -> str:
    """Masked mean over tokens, then L2 normalisation, clamped like sentence-transformers."""
    token_mask = g.op("Unsqueeze", mask, g.const("axis_2", [2]))
    axis_1 = g.const("axis_1", [1])
    summed = g.op("ReduceSum", g.op("Mul", hidden, token_mask), axis_1, keepdims=0)
    counts = g.op("ReduceSum", token_mask, axis_1, keepdims=0)
    mean = g.op("Div", summed, g.op("Max", counts, g.const("min_token_count", _MIN_TOKEN_COUNT)))
    norm = g.op("ReduceL2", mean, axes=[1], keepdims=1)
    return g.op("Div", mean, g.op("Max", norm, g.const("min_norm", _MIN_NORM)), output=SENTENCE_EMBEDDING)


def _shared_constants(g: _GraphBuilder, config: BertConfig) -> None:
    """Constants reused by every layer, added once."""
    g.const("one", 1.0)
    g.const("half", 0.5)
    g.const("sqrt_2", float(np.sqrt(2.0)))
    g.const("attention_scale", float(1.0 / np.sqrt(config.head_dim)))
    g.const("split_heads", [0, 0, config.num_attention_heads, config.head_dim])
    g.const("merge_heads", [0, 0, config.hidden_size])
    g.const("qkv_split", [config.hidden_size] * 3)


def build_sentence_model(config: BertConfig, weights: dict[str, np.ndarray]) -> onnx.ModelProto:
    """Assemble the full graph: int64 [batch, seq] inputs to a [batch, hidden] unit-norm embedding."""
    g = _GraphBuilder(weights)
    _shared_constants(g, config)
    mask = g.op("Cast", "attention_mask", to=TensorProto.FLOAT)
    bias = _attention_bias(g, mask)
    x = _embeddings(g, config)
    for index in range(config.num_hidden_layers):
        last = index == config.num_hidden_layers - 1
        x = _encoder_layer(g, x, bias, index, config, output=LAST_HIDDEN_STATE if last else None)
    _mean_pool_normalise(g, x, mask)
    inputs = [helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "sequence"]) for name in INPUT_NAMES]
    outputs = [helper.make_tensor_value_info(SENTENCE_EMBEDDING, TensorProto.FLOAT, ["batch", config.hidden_size])]
    graph = helper.make_graph(g.nodes, "sentence_encoder", inputs, outputs, initializer=g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)
    onnx.checker.check_model(model)
    return model


def export_sentence_model(model_dir: Path, destination: Path) -> None:
    """Convert ``model_dir`` to ONNX at ``destination``, atomically.

    The file is written beside its destination and renamed into place, so
    concurrent workers converting the same model never see a partial file.
    """
    config = BertConfig.from_file(model_dir / "config.json")
    model = build_sentence_model(config, load_weights(model_dir / "model.safetensors"))
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".tmp")
    os.close(fd)
    try:
        onnx.save_model(model, temp_name)
        os.chmod(temp_name, _CACHE_FILE_MODE)
        os.replace(temp_name, destination)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
