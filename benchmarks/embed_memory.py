"""What the model costs a worker's memory: RSS after a worker's imports, after its embedder is built, after a batch.

    python -m benchmarks.embed_memory [--cache DIR]

Builds the embedder exactly as a worker does (``embedder_from_settings``) with the
model cache ``--cache`` (default: the settings' cache; an empty directory shows a
first start, when the model is prepared in a child process), then embeds one ingest
batch of 512 long texts (runs of 32 × 256 tokens) through the worker's
``EmbeddingService``. Linux only (reads /proc/self/status).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=None, help="model cache (default: STREAMVEC_MODEL_CACHE's)")
    args = parser.parse_args()
    bare = rss_mb()
    import app.factory  # noqa: F401  (everything a worker imports: Faust, aiohttp, RocksDB, hnswlib, ...)
    from app.embedding import EmbeddingService, embedder_from_settings
    from app.settings import Settings

    settings = Settings.from_env().replace(model_cache=args.cache)
    imported = rss_mb()
    started = time.perf_counter()
    embedder = embedder_from_settings(settings)
    took = time.perf_counter() - started
    loaded = rss_mb()
    glosses = [json.loads(line)["text"] for line in (REPO / "data" / "sample.jsonl").read_text().splitlines()[:523]]
    batch = [" ".join(glosses[start:start + 12]) for start in range(512)]
    service = EmbeddingService(embedder)
    asyncio.run(service.embed(batch))
    service.close()
    after = rss_mb()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"RSS: python {bare:.0f} MB; with a worker's imports {imported:.0f} MB; with the embedder {loaded:.0f} MB "
          f"(+{loaded - imported:.0f} MB, built in {took:.1f} s from {settings.model_cache_dir}); after a batch of "
          f"512 long texts {after:.0f} MB; peak {peak:.0f} MB")


if __name__ == "__main__":
    main()
