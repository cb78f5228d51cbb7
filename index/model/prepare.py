"""Make a model's runnable files in the cache, once per machine: ``python -m index.model.prepare MODEL``.

Run as its own process (by ``index.model.models.load_embedder`` when a file is missing,
or by ``streamvec model prepare`` ahead of time), so the converter's memory peak
(safetensors, two ONNX graphs, the optimizer; for int8 also two sessions measuring
quality) is returned to the system when it exits instead of staying in a worker.

Concurrent preparations of one model wait for each other on a lock file in the
cache (``fcntl.flock``: released by the kernel if the holder dies), and each file is
written beside its destination and renamed into place, so a reader sees either no
file or a whole one. The second process to get the lock finds the files made and
returns at once.
"""

from __future__ import annotations

import argparse
import fcntl
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from index.model.embedder import Embedder
from index.exceptions import ModelError
from index.model.models import ERROR_PREFIX, ModelPlan, plan_model
from index.model.onnx_export import export_sentence_model
from index.model.quantize import QUANTIZE_CHOICES, heldout_texts, measure_quality, quantize_int8, store_quality

Progress = Callable[[str], None]


def prepare(plan: ModelPlan, threads: int | None = None, progress: Progress = lambda _: None) -> list[Path]:
    """Make every missing file of ``plan`` under the cache's lock; return the files this call made."""
    if not plan.missing:
        return []
    made: list[Path] = []
    with _cache_lock(plan.fp32.onnx_path.parent, progress):
        fp32_path = plan.fp32.onnx_path
        if plan.source_dir is not None and not fp32_path.is_file():
            progress(f"converting {plan.source_dir} to ONNX")
            report = export_sentence_model(plan.source_dir, fp32_path, progress=progress)
            fused = ", ".join(f"{op}×{count}" for op, count in sorted(report.fusions.items())) or "none"
            progress(f"wrote {fp32_path.name}: fused {fused}, min cosine to unfused {report.min_cosine:.7f}")
            made.append(fp32_path)
        if plan.int8_path is not None and not plan.int8_path.is_file():
            _make_int8(plan, threads, progress)
            made.append(plan.int8_path)
    return made


def _make_int8(plan: ModelPlan, threads: int | None, progress: Progress) -> None:
    """Quantise the fp32 file and store its quality on the held-out texts in the int8 file itself.

    The report is measured once per model, here, not at every start.
    """
    assert plan.int8_path is not None
    with tempfile.TemporaryDirectory(dir=plan.int8_path.parent, prefix=".int8-") as work:
        raw = Path(work) / "model.onnx"
        progress("quantising to int8 (dynamic, per channel)")
        quantize_int8(plan.fp32.onnx_path, raw)
        documents, queries = heldout_texts()
        progress(f"measuring int8 against fp32 on {len(documents)} held-out documents and {len(queries)} queries")
        report = measure_quality(Embedder(plan.fp32, threads), Embedder(replace(plan.fp32, onnx_path=raw), threads),
                                 documents, queries)
        store_quality(raw, report, plan.int8_path)
    progress(f"wrote {plan.int8_path.name}: {report.summary()}")


@contextmanager
def _cache_lock(cache_dir: Path, progress: Progress) -> Iterator[None]:
    """Hold ``<cache>/.prepare.lock`` exclusively; say so when another process holds it first."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        handle = (cache_dir / ".prepare.lock").open("a")
    except OSError as exc:
        raise ModelError(f"cannot use the model cache {cache_dir}: {exc}; set STREAMVEC_MODEL_CACHE to a "
                         "writable directory") from exc
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"another process is preparing a model in {cache_dir}; waiting for it")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def main(argv: list[str] | None = None) -> int:
    """Prepare one model; progress lines and any error go to stderr (exit status 2 on a ModelError)."""
    parser = argparse.ArgumentParser(prog="python -m index.model.prepare", description=__doc__)
    parser.add_argument("model")
    parser.add_argument("--cache", type=Path, required=True, help="the model cache directory")
    parser.add_argument("--quantize", choices=QUANTIZE_CHOICES, default="none")
    parser.add_argument("--threads", type=int, default=None, help="threads for the int8 quality measurement")
    args = parser.parse_args(argv)
    started = time.perf_counter()

    def progress(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {message}", file=sys.stderr, flush=True)

    try:
        prepare(plan_model(args.model, args.cache, args.quantize), args.threads, progress)
    except ModelError as exc:
        print(ERROR_PREFIX + " ".join(str(exc).split()), file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
