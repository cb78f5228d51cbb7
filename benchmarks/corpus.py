"""The query benchmark's data: real texts embedded once by streamvec's own model.

Real texts give real neighbourhoods (hubs, near-duplicates, uneven density) that random
vectors do not, and recall measured on them means something. Two corpora:

* ``wordnet``: every WordNet 3.0 gloss. They come from Debian's ``wordnet-base`` package,
  fetched here when missing (``apt-get download`` + ``dpkg -x``, see data/README.md), and are
  read with data/make_sample.py's parser. streamvec's defaults were tuned on these.
* ``debian``: Debian package descriptions cut into chunks (benchmarks/debian.py), a corpus no
  default was tuned on.

Embedding ~100k texts takes minutes, so it happens once: texts and fp32 vectors are cached
outside the repository (default ``~/.cache/streamvec/bench``) and every later run only
slices them. A fixed shuffle holds out the first ``QUERY_POOL`` texts as queries; documents
are taken from the rest, so no query is ever among the documents. At most
``QUERY_POOL + MAX_DOCUMENTS`` texts are embedded.

    python -m benchmarks.corpus [--corpus wordnet|debian|both] [--cache DIR]   # build the caches alone
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from app.settings import Settings
from benchmarks.debian import debian_descriptions
from data.make_sample import MAX_WORDS_SHOWN, POS_FILES, POS_NAMES, clean, lemma_of, parse_data_file
from index.model.models import load_embedder

DEFAULT_CACHE = Path.home() / ".cache" / "streamvec" / "bench"
QUERY_POOL = 1000
MAX_DOCUMENTS = 100_000
SHUFFLE_SEED = 20251126
EMBED_CHUNK = 4096
DIM = 384


@dataclass
class Corpus:
    """Documents and held-out queries, with unit-norm float32 vectors."""

    doc_ids: list[str]
    doc_texts: list[str]
    doc_metadata: list[dict]
    doc_vectors: np.ndarray
    query_texts: list[str]
    query_vectors: np.ndarray
    source: str
    name: str = ""


@dataclass(frozen=True)
class Source:
    """A real-text corpus: its cache file stem, its name in reports, and how to read its texts
    (with a line saying exactly where they came from)."""

    stem: str
    title: str
    read: Callable[[Path], tuple[list[dict], str]]


def load_corpus(cache: Path, n: int, queries: int, synthetic: bool, name: str = "wordnet") -> Corpus:
    """``n`` documents and ``queries`` query vectors of the corpus ``name``, or clustered random vectors."""
    if synthetic:
        return synthetic_corpus(n, queries)
    records, vectors, source = embedded(cache, SOURCES[name])
    available = len(vectors) - QUERY_POOL
    if n > available or queries > QUERY_POOL:
        raise SystemExit(f"{name} has {available} embedded documents and {QUERY_POOL} held-out queries; "
                         f"ask for at most that (--n {available}) or use --synthetic")
    docs = records[QUERY_POOL:QUERY_POOL + n]
    return Corpus(doc_ids=[r["id"] for r in docs], doc_texts=[r["text"] for r in docs],
                  doc_metadata=[r["metadata"] for r in docs],
                  doc_vectors=vectors[QUERY_POOL:QUERY_POOL + n],
                  query_texts=[r["text"] for r in records[:queries]], query_vectors=vectors[:queries],
                  source=f"{source}, all-MiniLM-L6-v2 fp32 (cache {cache})", name=name)


def synthetic_corpus(n: int, queries: int, clusters: int = 200, seed: int = 7) -> Corpus:
    """Gaussian clusters around random centres, normalised: a quick run with no model and no download."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng.standard_normal((clusters, DIM), dtype=np.float32))

    def draw(count: int) -> np.ndarray:
        noise = rng.standard_normal((count, DIM), dtype=np.float32) * np.float32(0.6 / np.sqrt(DIM))
        return _unit(centres[rng.integers(0, clusters, count)] + noise)

    ids = [f"syn-{i:07d}" for i in range(n)]
    return Corpus(doc_ids=ids, doc_texts=[f"synthetic document {i}" for i in range(n)],
                  doc_metadata=[{"cluster": "synthetic"}] * n, doc_vectors=draw(n),
                  query_texts=[f"synthetic query {i}" for i in range(queries)], query_vectors=draw(queries),
                  source=f"synthetic: {clusters} Gaussian clusters, {DIM} dimensions", name="synthetic")


def embedded(cache: Path, source: Source) -> tuple[list[dict], np.ndarray, str]:
    """All texts in the fixed shuffled order, the vectors of the first ones (embedded on first
    use) and the provenance line."""
    texts_path, vectors_path = cache / f"{source.stem}.jsonl", cache / f"{source.stem}-minilm-fp32.npy"
    about_path = cache / f"{source.stem}.source.txt"
    if not vectors_path.is_file():
        _build(cache, source, texts_path, vectors_path, about_path)
    records = [json.loads(line) for line in texts_path.read_text(encoding="utf-8").splitlines()]
    vectors = np.load(vectors_path, mmap_mode="r")
    if len(vectors) > len(records) or len(vectors) < min(len(records), QUERY_POOL + MAX_DOCUMENTS):
        raise SystemExit(f"{texts_path} and {vectors_path} disagree ({len(records)} texts, {len(vectors)} "
                         "vectors); delete both to rebuild them")
    about = about_path.read_text().strip() if about_path.is_file() else source.title
    return records, np.asarray(vectors), about


def _build(cache: Path, source: Source, texts_path: Path, vectors_path: Path, about_path: Path) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    records, about = source.read(cache)
    order = np.random.default_rng(SHUFFLE_SEED).permutation(len(records))
    records = [records[i] for i in order]
    count = min(len(records), QUERY_POOL + MAX_DOCUMENTS)
    settings = Settings.from_env()
    embedder = load_embedder(settings.model, settings.model_cache_dir.resolve(), threads=settings.embed_threads
                             or None, batch_size=settings.embed_batch_size)
    vectors = np.empty((count, embedder.dim), dtype=np.float32)
    with tqdm(total=count, unit="text", desc=f"embedding {source.stem} (once, cached)") as bar:
        for start in range(0, count, EMBED_CHUNK):
            chunk = records[start:min(start + EMBED_CHUNK, count)]
            vectors[start:start + len(chunk)] = embedder.embed([r["text"] for r in chunk])
            bar.update(len(chunk))
    _write_atomically(texts_path, lambda f: f.write(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()))
    _write_atomically(about_path, lambda f: f.write(f"{about}; {len(records):,} texts, {count:,} embedded\n".encode()))
    _write_atomically(vectors_path, lambda f: np.save(f, vectors))


def wordnet(cache: Path) -> tuple[list[dict], str]:
    """The WordNet glosses and their provenance line."""
    return wordnet_glosses(wordnet_dir(cache)), "WordNet 3.0 glosses"


def wordnet_glosses(wn: Path) -> list[dict]:
    """One record per synset of WordNet 3.0 ("synonyms: gloss", as data/sample.jsonl), texts deduplicated."""
    records, seen = [], set()
    for name in POS_FILES.values():
        for ss in parse_data_file(str(wn / f"data.{name}")):
            words = list(dict.fromkeys(clean(lemma_of(w).replace("_", " ")) for w, _ in ss["words"]))
            text = f"{', '.join(words[:MAX_WORDS_SHOWN])}: {clean(ss['gloss'])}"
            if text in seen:
                continue
            seen.add(text)
            pos = "a" if ss["ss_type"] == "s" else ss["ss_type"]
            records.append({"id": f"wn30-{pos}-{ss['offset']}", "text": text,
                            "metadata": {"pos": POS_NAMES[ss["ss_type"]], "word": words[0]}})
    return records


def wordnet_dir(cache: Path) -> Path:
    """WordNet's data files: installed, or unpacked from ``wordnet-base`` into the cache."""
    for candidate in (Path("/usr/share/wordnet"), cache / "wordnet" / "usr" / "share" / "wordnet"):
        if (candidate / "data.noun").is_file():
            return candidate
    target = cache / "wordnet"
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target) as work:
        got = subprocess.run(["apt-get", "download", "wordnet-base"], check=False, cwd=work, capture_output=True, text=True)
        debs = list(Path(work).glob("wordnet-base_*.deb"))
        if got.returncode != 0 or not debs:
            raise SystemExit(f"could not download WordNet ({got.stderr.strip()}); run `apt-get update` and retry, "
                             "or install it (`apt-get install wordnet-base`), or use --synthetic")
        subprocess.run(["dpkg", "-x", str(debs[0]), str(target)], check=True)
    return target / "usr" / "share" / "wordnet"


def _write_atomically(path: Path, write) -> None:
    """A killed build leaves no half file that a later run would trust."""
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as f:
        write(f)
    os.replace(f.name, path)


def _unit(vectors: np.ndarray) -> np.ndarray:
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"cache directory (default {DEFAULT_CACHE})")
    parser.add_argument("--corpus", choices=[*SOURCES, "both"], default="both")
    args = parser.parse_args()
    for name in SOURCES if args.corpus == "both" else [args.corpus]:
        records, vectors, about = embedded(args.cache, SOURCES[name])
        print(f"{name}: {len(records):,} texts, vectors {vectors.shape} in {args.cache} ({about})")


SOURCES = {"wordnet": Source("glosses", "WordNet 3.0 glosses", wordnet),
           "debian": Source("debian", "Debian package descriptions", debian_descriptions)}
"""The real corpora by ``--corpus`` name; WordNet keeps its original cache file names."""

if __name__ == "__main__":
    main()
