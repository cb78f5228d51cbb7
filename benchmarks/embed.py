"""``make bench-embed``: how fast streamvec embeds, against sentence-transformers and the machine's limit.

One run, one machine, one table. For four text mixes (short ~10-20 tokens,
medium ~60, long 200-256, mixed 8-256) at batch 1, 32 and 128:

* streamvec fp32, the default (fused ONNX graph, length-sorted batches);
* sentence-transformers on torch CPU at batch 32, from its own virtualenv
  (``.cache/bench-st-venv``, made here on first run; several GB because PyPI's
  torch brings its CUDA libraries, which is why it is never in the runtime
  install); if it cannot be installed the row says why;
* efficiency: useful FLOP/s (real tokens only: padding is waste) as a share of
  the fp32 GEMM peak measured in the same run, same thread count;
* streamvec int8 (opt-in) with its quality figures from the int8 gate.

Batch B means: texts are handed over in calls of ``--call-size`` (512, the
ingest agent's default batch), and the engine runs them B at a time; both
engines sort a call's texts by length before batching. Batch 1 is one text per
call, as a search query is. Each figure is the best of ``--passes`` passes.

    python -m benchmarks.embed [--threads N] [--passes 3] [--no-st] [--no-int8] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer

from index.model.embedder import Embedder, usable_cores
from index.model.models import DEFAULT_MODEL, default_model_dir, load_embedder

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample.jsonl"
ST_VENV = REPO / ".cache" / "bench-st-venv"
ST_REQUIREMENT = "sentence-transformers==6.2.0"
ST_INSTALL_TIMEOUT = 1200
MODEL_CACHE = REPO / ".cache" / "bench-models"
# /proc/cpuinfo flags that decide which kernels MLAS picks, and what they are called here.
ISA_FLAGS = {"avx2": "AVX2", "fma": "FMA", "avx512f": "AVX-512", "avx512_vnni": "AVX-512 VNNI",
             "avx_vnni": "AVX-VNNI", "avx512_bf16": "AVX-512 BF16", "amx_tile": "AMX", "amx_bf16": "AMX-BF16",
             "amx_int8": "AMX-INT8"}
BATCHES = (1, 32, 128)
MIXES = ("short", "medium", "long", "mixed")
# Token ranges ([CLS] and [SEP] included) and the tokens each mix holds in all: equal work per mix.
RANGES = {"short": (10, 20), "medium": (55, 65), "long": (200, 256), "mixed": (8, 256)}
TOKENS_PER_MIX = 32_768
TARGET_ST_SPEEDUP = 1.3
TARGET_EFFICIENCY = 0.75
HIDDEN, INTERMEDIATE, LAYERS = 384, 1536, 6


def useful_flops(tokens: int) -> float:
    """MiniLM-L6 FLOPs for one text of ``tokens`` tokens: projections, feed-forward, attention."""
    n, h = tokens, HIDDEN
    return LAYERS * (8 * n * h * h + 4 * n * h * INTERMEDIATE + 4 * n * n * h)


# ---- texts -------------------------------------------------------------------------------


def bench_texts(tokenizer_path: Path) -> dict[str, list[str]]:
    """Deterministic mixes from the WordNet glosses, leaving out the int8 gate's held-out records.

    Short texts are whole glosses; longer ones are consecutive glosses joined and cut
    at a token boundary, so every text is real English of the wanted length.
    """
    rows = [json.loads(line)["text"] for line in SAMPLE.read_text(encoding="utf-8").splitlines()]
    pool = [text for i, text in enumerate(rows) if i % 16 not in (0, 8)]  # held out: index/model/data
    np.random.default_rng(3).shuffle(pool)
    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    rng = np.random.default_rng(11)
    mixes: dict[str, list[str]] = {}
    lo, hi = RANGES["short"]
    short = [t for t, e in zip(pool, tokenizer.encode_batch(pool), strict=True) if lo <= len(e.ids) <= hi]
    mixes["short"] = _take_tokens(short, [len(e.ids) for e in tokenizer.encode_batch(short)])
    cursor = 0
    for name in ("medium", "long", "mixed"):
        lo, hi = RANGES[name]
        texts: list[str] = []
        total = 0
        while total < TOKENS_PER_MIX:
            target = round(float(np.exp(rng.uniform(np.log(lo), np.log(hi))))) if name == "mixed" \
                else int(rng.integers(lo, hi + 1))
            text, cursor = _text_of_length(pool, cursor, target, tokenizer)
            texts.append(text)
            total += target
        mixes[name] = texts
    return mixes


def _take_tokens(texts: list[str], lengths: list[int]) -> list[str]:
    out, total = [], 0
    for text, length in zip(texts, lengths, strict=True):
        if total >= TOKENS_PER_MIX:
            break
        out.append(text)
        total += length
    return out


def _text_of_length(pool: list[str], cursor: int, target: int, tokenizer: Tokenizer) -> tuple[str, int]:
    """Join glosses from ``cursor`` until ``target`` tokens are reached, then cut after token target-2."""
    text = ""
    while True:
        text = f"{text} {pool[cursor % len(pool)]}".strip()
        cursor += 1
        encoding = tokenizer.encode(text)
        if len(encoding.ids) >= target:
            break
    # ids = [CLS] t1 .. tn [SEP]; keep t1 .. t(target-2) and cut the text at the end of the last one.
    end = encoding.offsets[target - 2][1]
    cut = text[:end]
    # A cut inside a word re-tokenises differently; fall back to the last whole word.
    while len(tokenizer.encode(cut).ids) != target and " " in cut:
        cut = cut.rsplit(" ", 1)[0]
    return cut, cursor


# ---- timing ------------------------------------------------------------------------------


@dataclass
class Cell:
    engine: str
    batch: int
    mix: str
    texts: int
    tokens: int
    flops: float
    seconds: float | None
    note: str = ""

    @property
    def sentences_per_s(self) -> float | None:
        return None if self.seconds is None else self.texts / self.seconds

    @property
    def tokens_per_s(self) -> float | None:
        return None if self.seconds is None else self.tokens / self.seconds

    def efficiency(self, peak: float) -> float | None:
        return None if self.seconds is None else self.flops / self.seconds / peak


def best_of(passes: int, run: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(passes):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def time_streamvec(embedder: Embedder, texts: list[str], batch: int, call_size: int, passes: int) -> float:
    embedder.batch_size = batch
    if batch == 1:
        calls = [[text] for text in texts]
    else:
        calls = [texts[start:start + call_size] for start in range(0, len(texts), call_size)]
    embedder.embed(texts[:max(batch, 8)])  # warm-up: first runs of a shape allocate

    def run() -> None:
        for call in calls:
            embedder.embed(call)

    return best_of(passes, run)


def gemm_peak(threads: int, size: int = 2048, passes: int = 5) -> dict[str, float]:
    """fp32 GEMM FLOP/s with ``threads`` threads: onnxruntime's MLAS here, numpy's BLAS in a child process
    (its thread count is fixed when it loads). The peak is the better of the two."""
    a = np.random.default_rng(0).random((size, size), dtype=np.float32)
    weight = numpy_helper.from_array(np.random.default_rng(1).random((size, size), dtype=np.float32), "B")
    graph = helper.make_graph([helper.make_node("MatMul", ["A", "B"], ["C"])], "gemm",
                              [helper.make_tensor_value_info("A", TensorProto.FLOAT, [size, size])],
                              [helper.make_tensor_value_info("C", TensorProto.FLOAT, [size, size])], initializer=[weight])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                                                     ir_version=8).SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    session.run(None, {"A": a})
    flops = 2.0 * size**3
    result = {"onnxruntime": flops / best_of(passes, lambda: session.run(None, {"A": a}))}
    code = textwrap.dedent(f"""
        import time, numpy as np
        a = np.random.default_rng(0).random(({size}, {size}), dtype=np.float32)
        b = a.T.copy()
        a @ b
        best = float("inf")
        for _ in range({passes}):
            started = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - started)
        print({flops} / best)
    """)
    env = {**os.environ, **{name: str(threads) for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}}
    try:
        child = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                               check=False)
        result["numpy"] = float(child.stdout.strip())
    except (subprocess.SubprocessError, ValueError):
        pass
    result["peak"] = max(result.values())
    return result


# ---- sentence-transformers -----------------------------------------------------------------


def st_python(install: bool) -> tuple[Path | None, str]:
    """The benchmark venv's python, installing sentence-transformers there if needed; or why not."""
    python = ST_VENV / "bin" / "python"
    marker = ST_VENV / ".installed"
    if marker.is_file() and python.is_file():
        return python, ""
    if not install:
        return None, f"not installed ({ST_VENV.relative_to(REPO)} missing; run without --no-st-install)"
    log = ST_VENV.parent / "bench-st-venv-install.log"
    ST_VENV.parent.mkdir(parents=True, exist_ok=True)
    print(f"installing {ST_REQUIREMENT} (torch CPU, several GB) into {ST_VENV.relative_to(REPO)} "
          f"for the comparison; log: {log.relative_to(REPO)}", file=sys.stderr, flush=True)
    try:
        with log.open("w") as out:
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(ST_VENV)], check=True, stdout=out,
                           stderr=subprocess.STDOUT, timeout=300)
            subprocess.run([str(python), "-m", "pip", "install", "--quiet", ST_REQUIREMENT], check=True,
                           stdout=out, stderr=subprocess.STDOUT, timeout=ST_INSTALL_TIMEOUT)
    except subprocess.TimeoutExpired:
        return None, f"could not be installed: pip took over {ST_INSTALL_TIMEOUT} s (see {log.name})"
    except (OSError, subprocess.CalledProcessError):
        tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()][-1:] or ["?"]
        return None, f"could not be installed: {tail[0][:120]} (see {log.name})"
    marker.touch()
    return python, ""


def time_st(python: Path, mixes: dict[str, list[str]], threads: int, passes: int, call_size: int,
            batches: tuple[int, ...]) -> tuple[dict, str]:
    with tempfile.TemporaryDirectory(prefix="bench-st-") as work:
        job, out = Path(work) / "job.json", Path(work) / "out.json"
        job.write_text(json.dumps({"model_dir": str(default_model_dir()), "threads": threads, "passes": passes,
                                   "call_size": call_size, "batches": list(batches), "mixes": mixes}))
        child = subprocess.run([str(python), str(REPO / "benchmarks" / "st_runner.py"), str(job), str(out)],
                               capture_output=True, text=True, timeout=3600, check=False)
        if child.returncode != 0:
            lines = [line for line in child.stderr.splitlines() if line.strip()] or ["?"]
            return {}, f"failed: {lines[-1][:120]}"
        return json.loads(out.read_text()), ""


# ---- report ------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def print_table(cells: list[Cell], peak: float) -> None:
    header = f"{'engine':<30} {'batch':>5} {'mix':<7} {'texts':>5} {'tok/text':>8} {'sent/s':>8} {'tokens/s':>9} " \
             f"{'GFLOP/s':>8} {'eff.':>5}"
    print(header)
    print("-" * len(header))
    for c in cells:
        gflops = None if c.seconds is None else c.flops / c.seconds / 1e9
        eff = c.efficiency(peak)
        line = (f"{c.engine:<30} {c.batch:>5} {c.mix:<7} {c.texts:>5} {c.tokens / c.texts:>8.1f} "
                f"{_fmt(c.sentences_per_s, '.1f'):>8} {_fmt(c.tokens_per_s, ',.0f'):>9} {_fmt(gflops, '.1f'):>8} "
                f"{_fmt(None if eff is None else 100 * eff, '.0f') + ('%' if eff is not None else ''):>5}")
        print(line + (f"  {c.note}" if c.note else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=0, help="threads for every engine (default: usable cores)")
    parser.add_argument("--passes", type=int, default=3, help="passes per figure; the best is kept (default 3)")
    parser.add_argument("--call-size", type=int, default=512, help="texts per embed call (default 512)")
    parser.add_argument("--st-batches", default="32", help="batch sizes for sentence-transformers (default 32)")
    parser.add_argument("--no-st", action="store_true", help="leave sentence-transformers out")
    parser.add_argument("--no-st-install", action="store_true", help="use its venv only if already there")
    parser.add_argument("--no-int8", action="store_true", help="leave int8 out")
    parser.add_argument("--provider", default="cpu", choices=("cpu", "cuda"), help="streamvec's execution provider")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    threads = args.threads or usable_cores()

    fp32 = load_embedder(DEFAULT_MODEL, MODEL_CACHE, threads=threads, provider=args.provider)
    mixes = bench_texts(fp32.files.tokenizer_path)
    tokens = {name: fp32.token_counts(texts) for name, texts in mixes.items()}
    flops = {name: float(sum(useful_flops(n) for n in counts)) for name, counts in tokens.items()}
    peak = gemm_peak(threads)

    cells: list[Cell] = []

    def cell(engine: str, batch: int, mix: str, seconds: float | None, note: str = "") -> Cell:
        made = Cell(engine, batch, mix, len(mixes[mix]), sum(tokens[mix]), flops[mix], seconds, note)
        cells.append(made)
        return made

    label = f"streamvec fp32{' cuda' if args.provider == 'cuda' else ''} (default)"
    with MachineLoad() as load:
        for batch in BATCHES:
            for mix in MIXES:
                cell(label, batch, mix, time_streamvec(fp32, mixes[mix], batch, args.call_size, args.passes))

    st_batches = tuple(int(b) for b in args.st_batches.split(",") if b)
    st_label = "sentence-transformers (torch)"
    st_agreement: dict[str, float] = {}
    st_versions = ""
    if args.no_st:
        st_note = "left out (--no-st)"
        st_result: dict = {}
    else:
        python, st_note = st_python(install=not args.no_st_install)
        st_result = {}
        if python is not None:
            st_result, st_note = time_st(python, mixes, threads, args.passes, args.call_size, st_batches)
    if st_result:
        st_versions = ", ".join(f"{k} {v}" for k, v in st_result["versions"].items())
        for batch in st_batches:
            for mix in MIXES:
                cell(st_label, batch, mix, st_result["seconds"][f"{mix}/{batch}"])
        fp32.batch_size = 32
        for mix in MIXES:
            ours = fp32.embed(mixes[mix])
            theirs = np.asarray(st_result["vectors"][mix], dtype=np.float32)
            st_agreement[mix] = float(((ours * theirs).sum(axis=1)).min())
    else:
        for mix in MIXES:
            cell(st_label, 32, mix, None, st_note)

    int8 = None
    if not args.no_int8:
        int8 = load_embedder(DEFAULT_MODEL, MODEL_CACHE, threads=threads, quantize="int8", provider=args.provider)
        for batch in BATCHES:
            for mix in MIXES:
                cell("streamvec int8 (opt-in)", batch, mix,
                     time_streamvec(int8, mixes[mix], batch, args.call_size, args.passes))

    # ---- print ----
    cpu = cpu_name()
    print(f"\nstreamvec bench-embed: {DEFAULT_MODEL}, {threads} threads, {cpu}, onnxruntime {ort.__version__}, "
          f"Python {platform.python_version()}")
    parts = ", ".join(f"{k} {v / 1e9:.1f}" for k, v in peak.items() if k != "peak")
    print(f"{cpu_isa()}; other processes took {load.others_share:.0%} of the machine's CPU time during the "
          f"fp32 rows{' (figures below are low by about that much)' if load.others_share > 0.05 else ''}")
    print(f"fp32 GEMM peak, {threads} threads, 2048³: {peak['peak'] / 1e9:.1f} GFLOP/s ({parts})")
    report = fp32.export_report
    if report is not None:
        fused = ", ".join(f"{name}×{count}" for name, count in sorted(report.fusions.items())) or "none"
        print(f"fp32 graph: fused {fused}; fused vs unfused: max |Δ| {report.max_abs_diff:.1e}, "
              f"min cosine {report.min_cosine:.7f}")
    if st_versions:
        worst = min(st_agreement.values())
        print(f"sentence-transformers: {st_versions}; min cosine to streamvec fp32 over all texts {worst:.7f}")
    print(f"texts: {', '.join(f'{m} {len(mixes[m])} × {np.mean(tokens[m]):.0f} tokens' for m in MIXES)}; "
          f"calls of {args.call_size} texts; best of {args.passes} passes\n")
    print_table(cells, peak["peak"])
    if int8 is not None and int8.quality is not None:
        q = int8.quality
        print(f"\nint8 quality (held-out: {q.documents} documents, {q.queries} queries): mean cosine to fp32 "
              f"{q.mean_cosine:.4f}, min {q.min_cosine:.4f}; recall@10 of int8 queries on an fp32 index "
              f"{q.recall_at_10:.3f} (int8 index: {q.recall_at_10_int8_index:.3f})")
    print_targets(cells, peak["peak"], st_note)
    if args.json:
        args.json.write_text(json.dumps({
            "threads": threads, "cpu": cpu, "onnxruntime": ort.__version__, "gemm_peak": peak,
            "isa": cpu_isa(), "others_cpu_share": load.others_share,
            "cells": [{**c.__dict__, "sentences_per_s": c.sentences_per_s, "tokens_per_s": c.tokens_per_s,
                       "efficiency": c.efficiency(peak["peak"])} for c in cells],
            "int8_quality": None if int8 is None or int8.quality is None else int8.quality.__dict__,
        }, indent=1))


def print_targets(cells: list[Cell], peak: float, st_note: str) -> None:
    def find(engine_prefix: str, batch: int, mix: str) -> Cell | None:
        return next((c for c in cells if c.engine.startswith(engine_prefix) and c.batch == batch and c.mix == mix
                     and c.seconds is not None), None)

    print("\ntargets:")
    for mix in MIXES:
        ours, theirs = find("streamvec fp32", 32, mix), find("sentence-transformers", 32, mix)
        if ours is None or theirs is None or ours.seconds is None or theirs.seconds is None:
            print(f"  fp32 ≥ {TARGET_ST_SPEEDUP}× sentence-transformers, batch 32, {mix}: not measured ({st_note})")
            continue
        ratio = theirs.seconds / ours.seconds
        verdict = "met" if ratio >= TARGET_ST_SPEEDUP else "MISSED"
        print(f"  fp32 ≥ {TARGET_ST_SPEEDUP}× sentence-transformers, batch 32, {mix:<6}: {ratio:.2f}× {verdict}")
    for batch in (32, 128):
        mixed = find("streamvec fp32", batch, "mixed")
        if mixed is not None:
            eff = mixed.efficiency(peak) or 0.0
            verdict = "met" if eff >= TARGET_EFFICIENCY else "MISSED"
            print(f"  fp32 efficiency ≥ {TARGET_EFFICIENCY:.0%} of GEMM peak, mixed, batch {batch}: {eff:.0%} {verdict}")
    theirs = find("sentence-transformers", 32, "mixed")
    if theirs is not None:
        print(f"  (sentence-transformers, mixed, batch 32: {theirs.efficiency(peak):.0%} of the same peak)")


def cpu_isa() -> str:
    """The vector extensions this CPU offers (and, of the ones MLAS can use, which it lacks)."""
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        return "ISA unknown"
    have = [label for flag, label in ISA_FLAGS.items() if flag in flags]
    lacks = [label for flag, label in ISA_FLAGS.items() if flag not in flags and flag in ("avx512f", "avx512_vnni", "amx_tile")]
    return f"ISA: {' '.join(have) or 'none of ' + ', '.join(ISA_FLAGS.values())}" + (f" (no {', no '.join(lacks)})" if lacks else "")


class MachineLoad:
    """How much CPU time other processes took while this one ran: the bench's figures are only as good as that."""

    def __enter__(self) -> MachineLoad:
        self._start = (self._machine(), self._own())
        return self

    def __exit__(self, *_: object) -> None:
        (busy0, total0), own0 = self._start
        (busy1, total1), own1 = self._machine(), self._own()
        ticks = os.sysconf("SC_CLK_TCK")
        other = max(0.0, (busy1 - busy0) / ticks - (own1 - own0))
        self.others_share = other / max((total1 - total0) / ticks, 1e-9)

    @staticmethod
    def _machine() -> tuple[int, int]:
        """Busy and total jiffies of all CPUs, from /proc/stat."""
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields[:8]) - idle, sum(fields[:8])

    @staticmethod
    def _own() -> float:
        times = os.times()
        return times.user + times.system + times.children_user + times.children_system


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    main()
