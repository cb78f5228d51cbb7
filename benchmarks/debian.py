"""The second real-text corpus of ``make bench-query``: Debian package descriptions.

WordNet glosses tuned streamvec's defaults; a default has to hold on text it was not tuned
on too. Debian's English package descriptions (the ``Translation-en`` index of the
machine's apt sources, Debian bookworm main here) are real, varied technical prose that
every Debian machine can fetch from its own package mirror, with no other download.

Each package description is cut into chunks, as a retrieval application would cut long
documents: the short description (prefixed with the package name) and each paragraph of
the long one. Identical chunks (shared boilerplate such as "This package contains the
development files") are kept once. Chunks of one package are near neighbours of each other,
which gives the index the dense clusters that real chunked corpora have.

The index files are fetched with ``apt-get update`` into a private lists directory inside
the cache (``-o Dir::State::Lists=...``), so the machine's own apt state is never changed
(the Docker images' ``Acquire::Languages "none"`` is overridden only for that call).
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

_STANZA_FIELD = re.compile(r"^Description-en: (.*)$((?:\n .*)*)", re.M)
_APT_HELPER = "/usr/lib/apt/apt-helper"
MIN_WORDS = 3
"""Shorter chunks ("Documentation.", "See also foo.") carry too little meaning to search for."""


def debian_descriptions(cache: Path) -> tuple[list[dict], str]:
    """Every distinct description chunk as ``{"id", "text", "metadata": {"package"}}``, in
    file order, with a line saying where they came from."""
    translations = _translation_files(cache / "debian-lists")
    records: list[dict] = []
    seen: set[str] = set()
    for path in translations:
        text = subprocess.run([_APT_HELPER, "cat-file", str(path)], check=True, capture_output=True).stdout.decode()
        for stanza in text.split("\n\n"):
            package = stanza.partition("\n")[0].removeprefix("Package: ").strip()
            found = _STANZA_FIELD.search(stanza)
            if found is None:
                continue
            for chunk in [f"{package}: {found.group(1).strip()}", *_paragraphs(found.group(2))]:
                if chunk in seen or len(chunk.split()) < MIN_WORDS:
                    continue
                seen.add(chunk)
                digest = hashlib.blake2b(chunk.encode(), digest_size=8).hexdigest()
                records.append({"id": f"deb-{digest}", "text": chunk, "metadata": {"package": package}})
    names = ", ".join(p.name.split("_dists_", 1)[-1].removesuffix(".lz4") for p in translations)
    return records, f"Debian package descriptions, chunked ({names})"


def _paragraphs(body: str) -> list[str]:
    """The paragraphs of a Debian long description (continuation lines; " ." separates)."""
    paragraphs, current = [], []
    for line in body.split("\n"):
        if not line.startswith(" "):
            continue
        if line.strip() == ".":
            paragraphs.append(" ".join(current))
            current = []
        else:
            current.append(line.strip())
    paragraphs.append(" ".join(current))
    return [p for p in paragraphs if p]


def _translation_files(lists: Path) -> list[Path]:
    """The ``Translation-en`` indexes of the machine's apt sources, fetched into ``lists`` once."""
    found = sorted(lists.glob("*_i18n_Translation-en*"))
    if found:
        return found
    (lists / "partial").mkdir(parents=True, exist_ok=True)
    got = subprocess.run(["apt-get", "update", "-qq", f"-o=Dir::State::Lists={lists}", "-o=Acquire::Languages=en"],
                         check=False, capture_output=True, text=True)
    found = sorted(lists.glob("*_i18n_Translation-en*"))
    if got.returncode != 0 or not found:
        raise SystemExit(f"could not fetch Debian's Translation-en index into {lists} ({got.stderr.strip()[-500:]}); "
                         "it needs root (or sudo) and the machine's apt sources; or use --corpus wordnet")
    return found
