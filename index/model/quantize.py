"""Opt-in int8: dynamic quantisation of the ONNX graph, and the quality gate it must pass.

int8 trades accuracy for speed (about 2× on CPUs with VNNI). The loss is
measured, not assumed: on a held-out text set (``index/model/data/int8_heldout.json``,
WordNet glosses never used by the benchmark) the int8 vectors are compared
with the fp32 ones by cosine, and int8 queries are searched against an fp32
index to get recall@10 (exact search, so the figure is the model's loss alone).
The figures are stored in the int8 file's metadata when it is made; a worker
refuses the int8 model when they fall below the user's thresholds
(:class:`QualityGate`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Protocol

import numpy as np
import onnx

from index.exceptions import ModelError
from index.model.onnx_export import save_atomically

logger = logging.getLogger(__name__)

QUANTIZE_CHOICES = ("none", "int8")
# Key of the QualityReport kept in the int8 file's metadata.
QUALITY_REPORT_KEY = "streamvec.int8_quality"
RECALL_K = 10
# Defaults of the gate (STREAMVEC_INT8_MIN_COSINE / STREAMVEC_INT8_MIN_RECALL); docs/configuration.md "The embedder" explains the trade.
DEFAULT_MIN_MEAN_COSINE = 0.99
DEFAULT_MIN_RECALL = 0.88


class Embeds(Protocol):
    def embed(self, texts: list[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class QualityReport:
    """How far int8 vectors are from fp32 ones on the held-out texts."""

    mean_cosine: float  # int8 vs fp32 vector of the same text, averaged over documents and queries
    min_cosine: float
    recall_at_10: float  # int8 queries against an fp32 index (exact top-10)
    recall_at_10_int8_index: float  # int8 queries against an int8 index, both vs the fp32 truth
    documents: int
    queries: int

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> QualityReport:
        return cls(**json.loads(text))

    def summary(self) -> str:
        return (f"mean cosine {self.mean_cosine:.4f}, min cosine {self.min_cosine:.4f}, "
                f"recall@{RECALL_K} {self.recall_at_10:.3f} (int8 queries, fp32 index), "
                f"{self.recall_at_10_int8_index:.3f} (int8 index) on {self.documents} documents "
                f"and {self.queries} queries")


@dataclass(frozen=True)
class QualityGate:
    """The least quality a user accepts from int8; both figures must be met."""

    min_mean_cosine: float = DEFAULT_MIN_MEAN_COSINE
    min_recall: float = DEFAULT_MIN_RECALL

    def check(self, report: QualityReport) -> None:
        """Raise ModelError naming the figure that falls short and the settings that decide."""
        failures = []
        if report.mean_cosine < self.min_mean_cosine:
            failures.append(f"mean cosine {report.mean_cosine:.4f} < {self.min_mean_cosine}")
        if report.recall_at_10 < self.min_recall:
            failures.append(f"recall@{RECALL_K} {report.recall_at_10:.3f} < {self.min_recall}")
        if failures:
            raise ModelError(
                f"the int8 model fails its quality gate ({'; '.join(failures)}); use STREAMVEC_QUANTIZE=none, "
                "or lower STREAMVEC_INT8_MIN_COSINE / STREAMVEC_INT8_MIN_RECALL if that loss is acceptable"
            )


def heldout_texts() -> tuple[list[str], list[str]]:
    """The gate's documents and queries (shipped with the package)."""
    data = json.loads(resources.files("index.model").joinpath("data/int8_heldout.json").read_text(encoding="utf-8"))
    return list(data["documents"]), list(data["queries"])


def quantize_int8(source: Path, destination: Path) -> None:
    """Write the dynamic int8 quantisation of ``source`` to ``destination``.

    Weights become int8 per output channel; activations are quantised on each run.
    Attention (fused or not) and every weight MatMul become integer kernels;
    LayerNorm, GELU, softmax and pooling stay fp32.
    """
    # Imported here: only int8 users pay for the quantisation tooling.
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root_logger = logging.getLogger()
    level = root_logger.level
    root_logger.setLevel(logging.ERROR)  # its "please consider pre-processing" advice is harmless here
    try:
        quantize_dynamic(onnx.load(str(source)), destination, weight_type=QuantType.QInt8, per_channel=True,
                         # contrib ops (Attention, SkipLayerNormalization) have no ONNX shape inference
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    except Exception as exc:  # onnxruntime.quantization raises plain exceptions
        raise ModelError(f"cannot quantise {source} to int8: {exc}") from exc
    finally:
        root_logger.setLevel(level)


def measure_quality(reference: Embeds, candidate: Embeds, documents: list[str], queries: list[str],
                    k: int = RECALL_K) -> QualityReport:
    """Compare ``candidate`` (int8) with ``reference`` (fp32) on the same texts."""
    if len(documents) < k or not queries:
        raise ValueError(f"need at least {k} documents and one query")
    fp32_docs, fp32_queries = reference.embed(documents), reference.embed(queries)
    int8_docs, int8_queries = candidate.embed(documents), candidate.embed(queries)
    cosines = np.concatenate([_row_cosines(fp32_docs, int8_docs), _row_cosines(fp32_queries, int8_queries)])
    truth = _top_k(fp32_queries, fp32_docs, k)
    return QualityReport(
        mean_cosine=float(cosines.mean()),
        min_cosine=float(cosines.min()),
        recall_at_10=_recall(truth, _top_k(int8_queries, fp32_docs, k)),
        recall_at_10_int8_index=_recall(truth, _top_k(int8_queries, int8_docs, k)),
        documents=len(documents),
        queries=len(queries),
    )


def store_quality(source: Path, report: QualityReport, destination: Path) -> None:
    """Save ``source`` with ``report`` in its metadata as ``destination`` (atomically)."""
    model = onnx.load(str(source))
    props = {p.key: p.value for p in model.metadata_props}
    props[QUALITY_REPORT_KEY] = report.to_json()
    onnx.helper.set_model_props(model, props)
    save_atomically(model, destination)


def read_quality(metadata: dict[str, str]) -> QualityReport | None:
    """The QualityReport in a model's metadata map (``session.get_modelmeta().custom_metadata_map``)."""
    text = metadata.get(QUALITY_REPORT_KEY)
    return None if text is None else QualityReport.from_json(text)


def _row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray((a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)))


def _top_k(queries: np.ndarray, documents: np.ndarray, k: int) -> np.ndarray:
    scores = queries @ documents.T
    return np.argpartition(-scores, k - 1, axis=1)[:, :k]


def _recall(truth: np.ndarray, found: np.ndarray) -> float:
    return float(np.mean([len(set(t) & set(f)) / truth.shape[1] for t, f in zip(truth, found, strict=True)]))
