"""Build an fp32 ONNX graph for a BERT-family sentence-transformers model.

The model hub is out of reach and torch is far too heavy to install for an
export, so the encoder is written op by op with ``onnx.helper`` straight from
``model.safetensors``. The graph ends in mean pooling over the attention mask
and L2 normalisation, matching sentence-transformers' ``Pooling(mean)`` +
``Normalize`` modules, so the runtime needs only onnxruntime and a tokenizer.

The graph is laid out as a Hugging Face export would be, so that onnxruntime's
transformer optimizer recognises it: at conversion its fusions replace each
layer's attention, the bias + GELU and the embedding sum + LayerNorm with
single kernels (LayerNorm itself is one op from the start). The fused graph is run
against the unfused one on probe inputs before it is saved (``check_equivalent``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from safetensors import SafetensorError
from safetensors.numpy import load_file

from index.exceptions import ModelError

logger = logging.getLogger(__name__)

OPSET = 17
IR_VERSION = 8
# Bump whenever the graph changes: it is part of the cache key, so old cached files are not reused.
# The onnxruntime version is part of it too: the fused kernels are onnxruntime's own contrib ops.
EXPORT_FORMAT = f"bert-mean-l2-v4-fused-ort{'.'.join(ort.__version__.split('.')[:2])}"
# Key of the conversion report kept in the ONNX file's metadata (see ExportReport).
EXPORT_REPORT_KEY = "streamvec.export"
# onnxruntime's contrib-op domain, where the fused kernels live.
MS_DOMAIN = "com.microsoft"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
SENTENCE_EMBEDDING = "sentence_embedding"
# The mean-pooled vector's L2 norm before normalisation ([batch, 1]): embedding health reads it.
SENTENCE_NORM = "sentence_norm"
# The encoder's final tensor keeps this stable name so tools can expose it as an output.
LAST_HIDDEN_STATE = "last_hidden_state"

# Additive attention bias for padded positions; exp(-10000) underflows to exactly 0 in fp32.
_MASK_PENALTY = -10000.0
# Clamps used by sentence-transformers' Pooling and Normalize modules.
_MIN_TOKEN_COUNT = 1e-9
_MIN_NORM = 1e-12

# The fused graph must agree with the unfused one this closely on every probe text.
FUSED_MIN_COSINE = 0.99999
FUSED_MAX_ABS_DIFF = 1e-4

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
        self._constants: set[str] = set()
        self._count = 0

    def const(self, name: str, value: np.ndarray | float | list[int]) -> str:
        """Add a constant tensor once (floats become fp32 scalars, ints and int lists int64)."""
        if name in self._constants:
            return name
        self._constants.add(name)
        if isinstance(value, int):
            value = np.array(value, dtype=np.int64)
        elif isinstance(value, float):
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
    """Word + token-type + position embeddings, then LayerNorm, laid out as HF exports them.

    Position ids are a [1, max_positions] constant sliced to the input length, the pattern
    onnxruntime fuses into one EmbedLayerNormalization kernel.
    """
    words = g.const("word_embeddings", g.weight("embeddings.word_embeddings.weight"))
    positions = g.const("position_embeddings", g.weight("embeddings.position_embeddings.weight"))
    types = g.const("token_type_embeddings", g.weight("embeddings.token_type_embeddings.weight"))
    position_ids = g.const("position_ids", np.arange(config.max_position_embeddings, dtype=np.int64)[None, :])
    seq_len = g.op("Unsqueeze", g.op("Gather", g.op("Shape", "input_ids"), g.const("one_index", 1)), "axis_0")
    sliced_ids = g.op("Slice", position_ids, g.const("zero_1d", [0]), seq_len, g.const("axis_1", [1]),
                      g.const("step_1", [1]))
    summed = g.op("Add", g.op("Gather", words, "input_ids"), g.op("Gather", types, "token_type_ids"))
    summed = g.op("Add", summed, g.op("Gather", positions, sliced_ids))
    return g.layer_norm(summed, "embeddings.LayerNorm", config.layer_norm_eps)


def _attention_bias(g: _GraphBuilder) -> str:
    """[batch, 1, 1, seq] additive bias: 0 for real tokens, a large negative number for padding."""
    expanded = g.op("Unsqueeze", g.op("Unsqueeze", "attention_mask", "axis_1"), g.const("axis_2", [2]))
    inverted = g.op("Sub", "one", g.op("Cast", expanded, to=TensorProto.FLOAT))
    return g.op("Mul", inverted, g.const("mask_penalty", _MASK_PENALTY))


def _heads(g: _GraphBuilder, x: str, prefix: str, perm: list[int]) -> str:
    """One of Q, K, V: linear projection, split into heads, heads moved before the sequence axis."""
    return g.op("Transpose", g.op("Reshape", g.linear(x, prefix), "split_heads"), perm=perm)


def _self_attention(g: _GraphBuilder, x: str, bias: str, prefix: str) -> str:
    """Multi-head scaled dot-product attention, returning [batch, seq, hidden] before the output dense.

    Q, K and V are three MatMuls in the order HF exports them: onnxruntime's attention fusion
    recognises this layout and packs the three into one Attention kernel.
    """
    q = _heads(g, x, f"{prefix}.query", [0, 2, 1, 3])
    k = _heads(g, x, f"{prefix}.key", [0, 2, 3, 1])
    v = _heads(g, x, f"{prefix}.value", [0, 2, 1, 3])
    scores = g.op("Add", g.op("Div", g.op("MatMul", q, k), "attention_divisor"), bias)
    context = g.op("MatMul", g.op("Softmax", scores, axis=-1), v)
    return g.op("Reshape", g.op("Transpose", context, perm=[0, 2, 1, 3]), "merge_heads")


def _gelu(g: _GraphBuilder, x: str) -> str:
    """Exact GELU, x * 0.5 * (1 + erf(x / sqrt 2)), in the op order ORT fuses into one Gelu kernel."""
    erf = g.op("Erf", g.op("Div", x, "sqrt_2"))
    return g.op("Mul", g.op("Mul", x, g.op("Add", erf, "one")), "half")


def _encoder_layer(g: _GraphBuilder, x: str, bias: str, index: int, config: BertConfig, output: str | None) -> str:
    """One post-LayerNorm transformer block: attention, add & norm, feed-forward, add & norm."""
    prefix = f"encoder.layer.{index}"
    attended = g.linear(_self_attention(g, x, bias, f"{prefix}.attention.self"), f"{prefix}.attention.output.dense")
    x = g.layer_norm(g.op("Add", attended, x), f"{prefix}.attention.output.LayerNorm", config.layer_norm_eps)
    hidden = _gelu(g, g.linear(x, f"{prefix}.intermediate.dense"))
    out = g.linear(hidden, f"{prefix}.output.dense")
    return g.layer_norm(g.op("Add", out, x), f"{prefix}.output.LayerNorm", config.layer_norm_eps, output=output)


def _mean_pool_normalise(g: _GraphBuilder, hidden: str, mask: str) -> str:
    """Masked mean over tokens, then L2 normalisation, clamped like sentence-transformers; the
    norm is a graph output too (embedding health watches it; it is lost once normalised)."""
    token_mask = g.op("Unsqueeze", mask, g.const("axis_2", [2]))
    axis_1 = "axis_1"
    summed = g.op("ReduceSum", g.op("Mul", hidden, token_mask), axis_1, keepdims=0)
    counts = g.op("ReduceSum", token_mask, axis_1, keepdims=0)
    mean = g.op("Div", summed, g.op("Max", counts, g.const("min_token_count", _MIN_TOKEN_COUNT)))
    norm = g.op("ReduceL2", mean, axes=[1], keepdims=1, output=SENTENCE_NORM)
    return g.op("Div", mean, g.op("Max", norm, g.const("min_norm", _MIN_NORM)), output=SENTENCE_EMBEDDING)


def _shared_constants(g: _GraphBuilder, config: BertConfig) -> None:
    """Constants reused by every layer, added once."""
    g.const("one", 1.0)
    g.const("half", 0.5)
    g.const("sqrt_2", float(np.sqrt(2.0)))
    g.const("attention_divisor", float(np.sqrt(config.head_dim)))
    g.const("axis_0", [0])
    g.const("axis_1", [1])
    g.const("split_heads", [0, 0, config.num_attention_heads, config.head_dim])
    g.const("merge_heads", [0, 0, config.hidden_size])


def build_sentence_model(config: BertConfig, weights: dict[str, np.ndarray]) -> onnx.ModelProto:
    """Assemble the full graph: int64 [batch, seq] inputs to a [batch, hidden] unit-norm embedding."""
    g = _GraphBuilder(weights)
    _shared_constants(g, config)
    bias = _attention_bias(g)
    mask = g.op("Cast", "attention_mask", to=TensorProto.FLOAT)
    x = _embeddings(g, config)
    for index in range(config.num_hidden_layers):
        last = index == config.num_hidden_layers - 1
        x = _encoder_layer(g, x, bias, index, config, output=LAST_HIDDEN_STATE if last else None)
    _mean_pool_normalise(g, x, mask)
    inputs = [helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "sequence"]) for name in INPUT_NAMES]
    outputs = [helper.make_tensor_value_info(SENTENCE_EMBEDDING, TensorProto.FLOAT, ["batch", config.hidden_size]),
               helper.make_tensor_value_info(SENTENCE_NORM, TensorProto.FLOAT, ["batch", 1])]
    graph = helper.make_graph(g.nodes, "sentence_encoder", inputs, outputs, initializer=g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)
    onnx.checker.check_model(model)
    return model


@dataclass(frozen=True)
class ExportReport:
    """What a conversion did: the fused kernels and how far the fused graph is from the unfused one."""

    fusions: dict[str, int] = field(default_factory=dict)
    max_abs_diff: float = 0.0
    min_cosine: float = 1.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ExportReport:
        data = json.loads(text)
        return cls(fusions=dict(data.get("fusions", {})), max_abs_diff=float(data.get("max_abs_diff", 0.0)),
                   min_cosine=float(data.get("min_cosine", 1.0)))


def fuse_transformer_ops(model: onnx.ModelProto, config: BertConfig) -> tuple[onnx.ModelProto, dict[str, int]]:
    """Apply onnxruntime's BERT fusions: attention, bias + GELU, embedding sum + LayerNorm.

    Returns the fused model and the number of each fused kernel. Only the Python
    fusion passes run here (opt_level 0); onnxruntime's own graph optimisations
    still run when a session loads the file.
    """
    # Imported here: the optimizer package is large and only conversion needs it.
    from onnxruntime.transformers.fusion_options import (
        AttentionMaskFormat,
        FusionOptions,
    )
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    # The raw [batch, seq] mask, as the unfused graph uses it: exact for any padding side.
    options.attention_mask_format = AttentionMaskFormat.AttentionMask
    # Symbolic shape inference needs sympy and is not needed: every fusion matches without it,
    # and check_equivalent proves the result.
    options.enable_shape_inference = False
    # Residual Add + LayerNormalization stay two ops: onnxruntime's CPU SkipLayerNormalization
    # kernel measured 6-8 % slower end to end than Add + LayerNormalization (onnxruntime 1.32,
    # AVX-512). The embedder also keeps onnxruntime from re-fusing them at load
    # (CPU_DISABLED_OPTIMIZERS).
    options.enable_skip_layer_norm = False
    options.enable_bias_skip_layer_norm = False
    # The optimizer's modules log under their bare names, warning about patterns other models use.
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        fused = optimize_model(onnx.ModelProto.FromString(model.SerializeToString()), model_type="bert",
                               num_heads=config.num_attention_heads, hidden_size=config.hidden_size,
                               optimization_options=options, opt_level=0, use_gpu=False)
    finally:
        logging.disable(previous)
    already_there = {node.op_type for node in model.graph.node}  # e.g. LayerNormalization: built as one op
    counts = {name: count for name, count in fused.get_fused_operator_statistics().items()
              if count and name not in already_there}
    fused.topological_sort()
    model = fused.model
    if any(node.domain == MS_DOMAIN for node in model.graph.node) and \
            not any(opset.domain == MS_DOMAIN for opset in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return model, counts


def probe_inputs(config: BertConfig, vocab_size: int, max_tokens: int = 256) -> list[dict[str, np.ndarray]]:
    """Deterministic right-padded batches of random token ids: one text alone, and mixed lengths together."""
    rng = np.random.default_rng(20261125)
    longest = min(max_tokens, config.max_position_embeddings)
    batches = []
    for lengths in ([7], [3, 12, 40, longest // 2, longest]):
        shape = (len(lengths), max(lengths))
        mask = (np.arange(shape[1])[None, :] < np.asarray(lengths)[:, None]).astype(np.int64)
        ids = rng.integers(1000, vocab_size, size=shape, dtype=np.int64) * mask
        batches.append({"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros(shape, np.int64)})
    return batches


def check_equivalent(reference: onnx.ModelProto, candidate: onnx.ModelProto,
                     batches: list[dict[str, np.ndarray]]) -> tuple[float, float]:
    """Run both graphs on ``batches``; return (max abs difference, min cosine) of their sentence embeddings."""
    max_abs, min_cos = 0.0, 1.0
    sessions = [_probe_session(model) for model in (reference, candidate)]
    for feed in batches:
        expected, actual = (session.run([SENTENCE_EMBEDDING], feed)[0] for session in sessions)
        max_abs = max(max_abs, float(np.abs(expected - actual).max()))
        cosines = (expected * actual).sum(axis=1) / (
            np.linalg.norm(expected, axis=1) * np.linalg.norm(actual, axis=1))
        min_cos = min(min_cos, float(cosines.min()))
    return max_abs, min_cos


def _probe_session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"])


def convert(config: BertConfig, weights: dict[str, np.ndarray], fuse: bool = True,
            progress: Callable[[str], None] = lambda _: None) -> tuple[onnx.ModelProto, ExportReport]:
    """Build the graph and, with ``fuse``, replace it by its verified fused form.

    A fused graph that strays from the unfused one (cosine below FUSED_MIN_COSINE
    or a coordinate off by more than FUSED_MAX_ABS_DIFF) is an error, never used.
    A model whose layout the optimizer cannot fuse keeps its unfused graph, with a
    warning: it is still exact, only slower.
    """
    progress("building the ONNX graph from the weights")
    model = build_sentence_model(config, weights)
    if not fuse:
        return model, ExportReport()
    try:
        progress("fusing attention, GELU and embedding kernels (onnxruntime's transformer optimizer)")
        fused, counts = fuse_transformer_ops(model, config)
    except ImportError as exc:  # e.g. the optimizer's sympy dependency is missing
        logger.warning("onnxruntime transformer fusions unavailable (%s); using the unfused graph", exc)
        return model, ExportReport()
    vocab_size = int(weights["embeddings.word_embeddings.weight"].shape[0])
    progress("checking the fused graph against the unfused one on probe inputs")
    max_abs, min_cos = check_equivalent(model, fused, probe_inputs(config, vocab_size))
    if min_cos < FUSED_MIN_COSINE or max_abs > FUSED_MAX_ABS_DIFF:
        raise ModelError(f"the fused graph disagrees with the unfused one (min cosine {min_cos:.7f}, "
                         f"max abs difference {max_abs:.2e}); please report this with your onnxruntime version")
    return fused, ExportReport(fusions=counts, max_abs_diff=max_abs, min_cosine=min_cos)


def read_export_report(model: onnx.ModelProto | dict[str, str]) -> ExportReport | None:
    """The ExportReport stored in a converted model's metadata, if it has one."""
    metadata = model if isinstance(model, dict) else {p.key: p.value for p in model.metadata_props}
    text = metadata.get(EXPORT_REPORT_KEY)
    return None if text is None else ExportReport.from_json(text)


def export_sentence_model(model_dir: Path, destination: Path, fuse: bool = True,
                          progress: Callable[[str], None] = lambda _: None) -> ExportReport:
    """Convert ``model_dir`` to ONNX at ``destination``, atomically, and return what was done.

    The file is written beside its destination and renamed into place, so
    concurrent workers converting the same model never see a partial file.
    """
    config = BertConfig.from_file(model_dir / "config.json")
    progress(f"reading {model_dir / 'model.safetensors'}")
    model, report = convert(config, load_weights(model_dir / "model.safetensors"), fuse=fuse, progress=progress)
    onnx.helper.set_model_props(model, {EXPORT_REPORT_KEY: report.to_json()})
    save_atomically(model, destination)
    return report


def save_atomically(model: onnx.ModelProto, destination: Path) -> None:
    """Write ``model`` to a temporary file beside ``destination`` and rename it into place."""
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
