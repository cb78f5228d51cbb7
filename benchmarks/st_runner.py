"""Times sentence-transformers (torch, CPU) for ``benchmarks.embed``; runs in the benchmark's own venv.

Standalone on purpose: it imports neither streamvec nor anything of the runtime
install, only sentence-transformers and torch from ``.cache/bench-st-venv``.

    python st_runner.py JOB.json OUT.json

JOB: {"model_dir", "threads", "passes", "call_size", "batches": [..], "mixes": {name: [texts]}}.
OUT: {"versions": {..}, "seconds": {"<mix>/<batch>": best pass}, "vectors": {mix: [[..]] (batch 32)}}.
"""

from __future__ import annotations

import json
import sys
import time


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as handle:
        job = json.load(handle)
    import sentence_transformers
    import torch

    torch.set_num_threads(job["threads"])
    torch.set_num_interop_threads(1)
    model = sentence_transformers.SentenceTransformer(job["model_dir"], device="cpu")
    out: dict = {"versions": {"sentence-transformers": sentence_transformers.__version__, "torch": torch.__version__},
                 "seconds": {}, "vectors": {}}
    call = job["call_size"]
    for name, texts in job["mixes"].items():
        for batch in job["batches"]:
            model.encode(texts[:batch], batch_size=batch)  # warm-up
            best = float("inf")
            for _ in range(job["passes"]):
                started = time.perf_counter()
                for start in range(0, len(texts), call):
                    vectors = model.encode(texts[start:start + call], batch_size=batch, normalize_embeddings=True)
                best = min(best, time.perf_counter() - started)
            out["seconds"][f"{name}/{batch}"] = best
        out["vectors"][name] = model.encode(texts, batch_size=32, normalize_embeddings=True).tolist()
    del vectors
    with open(sys.argv[2], "w", encoding="utf-8") as handle:
        json.dump(out, handle)


if __name__ == "__main__":
    main()
