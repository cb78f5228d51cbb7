"""Sentence embeddings with onnxruntime: text in, unit-norm float32 vectors out.

Pure layer: no streaming framework here, so the index, the agents and tests
share one embedder. This module only runs a ready ONNX file; which file a model
setting means, and making it (conversion from safetensors in ``index.model.onnx_export``,
opt-in int8 in ``index.model.quantize``), is ``index.model.models`` and ``index.model.prepare``.

Where the time goes, and what is done about it:

* the model: fused attention / LayerNorm / GELU kernels, one intra-op thread per
  core the process may use (CPU affinity and cgroup quota, not the host's count);
* padding: texts are tokenised once, sorted by token count and batched, so a
  batch pads to a length close to its own texts'; rows come back in input order;
* copies: token ids go once from the tokenizer into the int64 arrays ORT reads,
  and each batch's output lands straight in its rows of the result;
* memory: the session loads the file by path (no Python copy of the graph), and
  onnxruntime's arena hands its activation memory back after the last run of each
  call (a 32 × 256-token run needs ~285 MB that would otherwise stay for good).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tokenizers import Encoding, Tokenizer

from index.exceptions import ModelError
from index.model.onnx_export import (
    INPUT_NAMES,
    LAST_HIDDEN_STATE,
    SENTENCE_EMBEDDING,
    SENTENCE_NORM,
    ExportReport,
    read_export_report,
)
from index.model.quantize import QualityReport, read_quality

logger = logging.getLogger(__name__)

DEFAULT_MAX_TOKENS = 256
DEFAULT_BATCH_SIZE = 32
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
# onnxruntime graph optimisations that make this model slower on CPU (measured, see _open_session).
CPU_DISABLED_OPTIMIZERS = ["SkipLayerNormFusion"]
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
# Ops only an int8 graph holds (a ready-made quantised .onnx, say), found by scanning the file.
_INTEGER_OPS = (b"MatMulInteger", b"QAttention", b"DynamicQuantize")
_LONGEST_OP = max(len(op) for op in _INTEGER_OPS)
_SCAN_CHUNK = 1 << 20


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
        digest, integer_kernels = _scan_model(files)
        self.files = files
        self.max_tokens = files.max_tokens
        self.batch_size = batch_size
        self.threads = threads or usable_cores()
        self.model_id = f"{files.name}-{digest[:16]}"
        self._tokenizer, self._pad_id = _load_tokenizer(files.tokenizer_path, files.max_tokens)
        self._encode = getattr(self._tokenizer, "encode_batch_fast", self._tokenizer.encode_batch)  # no offsets
        self._session = _open_session(files.onnx_path, self.threads, provider)
        self.providers: list[str] = self._session.get_providers()
        self._run_overhead = _RUN_OVERHEAD_TOKENS_GPU if self.providers[0] != PROVIDERS["cpu"] \
            else _RUN_OVERHEAD_TOKENS_PER_THREAD * self.threads
        metadata = dict(self._session.get_modelmeta().custom_metadata_map)
        self.export_report: ExportReport | None = read_export_report(metadata)
        self.quality: QualityReport | None = read_quality(metadata)
        self.precision = "int8" if self.quality is not None or integer_kernels else "fp32"
        self._inputs = _input_names(self._session, files.onnx_path)
        self._output = _output_name(self._session, files.onnx_path)
        # The last run of each embed() call hands the arena's activation memory back (see embed()).
        self._releasing_run = ort.RunOptions()
        self._releasing_run.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        self._outputs = [self._output] + [name for name in _output_names(self._session) if name == SENTENCE_NORM]
        self.dim: int = self._run(self._encode([""]), release=True)[0].shape[1]

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
        runs = _length_batches(lengths, self.batch_size, self._run_overhead)
        for index, rows in enumerate(runs):
            vectors[rows], norms[rows] = self._run([encodings[row] for row in rows], release=index == len(runs) - 1)
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

    def _run(self, encodings: list[Encoding], release: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Pad one batch to its longest text, run the graph, pool if the graph does not, normalise;
        returns the unit vectors and the norms they had before (the graph's, when it normalises)."""
        arrays = _padded_arrays(encodings, self._pad_id, with_types="token_type_ids" in self._inputs)
        output, *norm = self._session.run(self._outputs, {name: arrays[name] for name in self._inputs},
                                          self._releasing_run if release else None)
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


def _scan_model(files: ModelFiles) -> tuple[str, bool]:
    """One streamed pass over the graph file: the hash of everything that changes the vectors
    (graph, tokenizer, truncation length), and whether the graph computes in int8.

    Streamed, and the session loads the file by path: holding the graph's bytes in Python
    while onnxruntime loads them kept ~85 MB more in a worker for good.
    """
    digest = hashlib.sha256()
    integer_kernels = False
    tail = b""
    try:
        with files.onnx_path.open("rb") as handle:
            while chunk := handle.read(_SCAN_CHUNK):
                digest.update(chunk)
                window = tail + chunk
                integer_kernels = integer_kernels or any(op in window for op in _INTEGER_OPS)
                tail = window[-_LONGEST_OP:]
        digest.update(files.tokenizer_path.read_bytes())
    except OSError as exc:
        raise ModelError(f"cannot read model {files.onnx_path} or {files.tokenizer_path}: {exc}") from exc
    digest.update(f"max_tokens={files.max_tokens}".encode())
    return digest.hexdigest(), integer_kernels


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


def _open_session(path: Path, threads: int, provider: str = "cpu") -> ort.InferenceSession:
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
        return ort.InferenceSession(str(path), sess_options=options, providers=providers,
                                    disabled_optimizers=disabled)
    except Exception as exc:  # onnxruntime's errors derive from Exception only
        raise ModelError(f"onnxruntime cannot load {path}: {exc}") from exc


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
