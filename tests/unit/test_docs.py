"""The README and docs/ name only what exists, and the code cites only sections that exist.

Three checks, no broker, no imports of the code they check:

* every repository path (``app/search/service.py``, ``index/model/``, ``docs/faust.md``) and
  every dotted module (``index.model.prepare``) named in backticks in README.md or docs/*.md
  exists; a bare file name (``hnsw.py``) names a file somewhere in the repository;
* every relative markdown link resolves, to a file and, with ``#anchor``, to one of its headings;
* every citation of a doc section in the code (``docs/<name>.md §2.5`` or
  ``docs/<name>.md "Semantics to hold"``) names a file and a heading that exist.

Placeholders (``<app id>``, ``{datadir}``), URLs, absolute and home paths are not checked.
``docs/faust.md`` also names files of Faust's own repository (``faust/tables/recovery.py``):
there only streamvec's own folders are checked.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])

# Names the docs may use that are not files of the repository, each with why.
NOT_IN_REPOSITORY = {
    ".kafka/lib": "the Kafka jars, downloaded by `make install`",
    ".cache/bench-st-venv": "sentence-transformers' virtualenv, created by `make bench-embed`",
    ".cache/bench-pg-venv": "PostgreSQL + pgvector's virtualenv, created by `make bench-query`",
    "test-artifacts/page/": "screenshots the page test writes",
    ".venv": "the virtualenv `make install` creates",
    ".env": "the operator's own variables for compose",
    "apache/kafka": "the official Kafka image on Docker Hub, which compose runs",
    "kafka-configs.sh": "a tool in the Kafka distribution's bin/",
    "kafka-reassign-partitions.sh": "a tool in the Kafka distribution's bin/",
    "config.json": "a file of a sentence-transformers model directory",
    "model.safetensors": "a file of a sentence-transformers model directory",
    "tokenizer.json": "a file of a model directory, or beside an .onnx file",
    "server.properties": "the Kafka broker's configuration, written at run time",
    "vectors-index.ann.snapshot": "the index snapshot, written in a worker's data dir",
}
# Top-level folders of streamvec itself: in docs/faust.md only paths under these are checked.
OWN_FOLDERS = ("app/", "agents/", "index/", "tables/", "streamvec/", "tests/", "benchmarks/", "deploy/",
               "client/", "data/", "docs/")
PACKAGES = ("app", "agents", "index", "tables", "streamvec", "tests", "benchmarks")
SKIPPED_DIRS = {".git", ".venv", ".kafka", ".cache", "__pycache__", "node_modules", "test-artifacts",
                ".pytest_cache", ".mypy_cache", ".ruff_cache", "build", "dist"}
EXTENSIONS = (".py", ".md", ".yml", ".yaml", ".json", ".jsonl", ".toml", ".txt", ".js", ".css", ".html",
              ".xml", ".cfg", ".ini", ".sh")

FENCE = re.compile(r"^```.*?^```", re.S | re.M)
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6}) +(.+?) *#*$", re.M)
PATH_TOKEN = re.compile(r"^[A-Za-z0-9_.\-/]+$")
MODULE_TOKEN = re.compile(rf"^(?:{'|'.join(PACKAGES)})(?:\.[A-Za-z_][A-Za-z0-9_]*)+$")
# docs/<name>.md §2.5, or docs/<name>.md "Heading" (a comma between is allowed, quotes straight or curly).
CITE_SECTION = re.compile(r"docs/([a-z0-9_-]+\.md),? *§ *(\d+(?:\.\d+)*)")
CITE_HEADING = re.compile(r"docs/([a-z0-9_-]+\.md),? *[\"“]([^\"”\n]+)[\"”]")


# ---- reading ------------------------------------------------------------------------------


def prose(text: str) -> str:
    """``text`` without fenced code blocks (command lines and output samples are not prose)."""
    return FENCE.sub("", text)


def tokens(text: str) -> Iterator[str]:
    """The words of every code span of ``text``'s prose, without surrounding punctuation."""
    for _, span in CODE_SPAN.findall(prose(text)):
        for word in span.split():
            word = word.strip("()[],;'\"")
            word = re.sub(r":\d+(-\d+)?$", "", word)  # path:line
            if word:
                yield word


def is_placeholder(word: str) -> bool:
    """``<app id>``, ``{datadir}``, ``FILE.jsonl``, ``/tmp/x``, ``~/.cache``, URLs, options."""
    stem = word.rsplit("/", 1)[-1].split(".")[0]
    return (any(c in word for c in "<>{}*|$…~=:@") or "..." in word or word.startswith(("/", "-"))
            or ("/" not in word and stem.isupper() and stem.isalpha()))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def headings(path: Path) -> list[str]:
    return [match.group(2).strip() for match in HEADING.finditer(prose(path.read_text()))]


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for heading in headings(path):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def repository_basenames(root: Path) -> set[str]:
    names: set[str] = set()
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS]
        names.update(files)
        names.update(dirs)
    return names


# ---- checking -----------------------------------------------------------------------------


def missing_paths(doc: Path, root: Path, basenames: set[str]) -> list[str]:
    """Paths and bare file names in ``doc``'s code spans that do not exist."""
    own_only = doc.name == "faust.md"
    problems = []
    for word in tokens(doc.read_text()):
        if is_placeholder(word) or not PATH_TOKEN.match(word) or word in NOT_IN_REPOSITORY:
            continue
        if "/" in word.rstrip("/"):
            if own_only and not word.startswith(OWN_FOLDERS):
                continue
            if not (root / word.rstrip("/")).exists():
                problems.append(word)
        elif (word.endswith(EXTENSIONS) or word.endswith("/")) and not own_only and word.rstrip("/") not in basenames:
            problems.append(word)
    return problems


def module_exists(dotted: str, root: Path) -> bool:
    """``dotted`` is a module or package of the repository, or a name a module defines or imports."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        base = root.joinpath(*parts[:end])
        source = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
        if not source.is_file():
            continue
        rest = parts[end:]
        if not rest:
            return True
        name = re.escape(rest[0])
        return re.search(rf"^\s*(class|def|async def) {name}\b|^{name}\s*[:=]|\bimport\b[^\n]*\b{name}\b",
                         source.read_text(), re.M) is not None
    return False


def missing_modules(doc: Path, root: Path) -> list[str]:
    if doc.name == "faust.md":  # `app.conf.store` there is a Faust app, not streamvec's package
        return []
    return [word for word in tokens(doc.read_text())
            if MODULE_TOKEN.match(word.rstrip("()")) and not module_exists(word.rstrip("()"), root)]


def broken_links(doc: Path) -> list[str]:
    problems = []
    for target in LINK.findall(prose(doc.read_text())):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        linked = (doc.parent / path_part).resolve() if path_part else doc
        if not linked.exists():
            problems.append(target)
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            problems.append(target)
    return problems


def section_numbers(path: Path) -> set[str]:
    """``2.5`` for a heading ``2.5 Hooks …``: the numbers a ``§`` may cite."""
    return {m.group(1) for h in headings(path) if (m := re.match(r"(\d+(?:\.\d+)*)\.? ", h))}


def cites_heading(path: Path, cited: str) -> bool:
    cited = cited.strip().lower()
    for heading in headings(path):
        heading = re.sub(r"`", "", heading).lower()
        if heading == cited or (heading.startswith(cited) and heading[len(cited)] in " :(,—-"):
            return True
    return False


def bad_citations(text: str, root: Path) -> list[str]:
    """Citations ``docs/X.md §N`` and ``docs/X.md "Heading"`` in ``text`` that resolve to nothing."""
    problems = []
    for name, number in CITE_SECTION.findall(text):
        doc = root / "docs" / name
        if not doc.is_file() or number not in section_numbers(doc):
            problems.append(f"docs/{name} §{number}")
    for name, cited in CITE_HEADING.findall(text):
        doc = root / "docs" / name
        if not doc.is_file() or not cites_heading(doc, cited):
            problems.append(f'docs/{name} "{cited}"')
    return problems


def code_files(root: Path) -> Iterator[Path]:
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS and (d == ".ci" or not d.startswith("."))]
        for name in files:
            path = Path(folder) / name
            if path.suffix in (".py", ".toml", ".yml", ".yaml", ".cfg", ".sh", ".js") or name in (
                    "Makefile", "Dockerfile", "run"):
                yield path


# ---- the tests ----------------------------------------------------------------------------


def test_the_docs_exist() -> None:
    names = {doc.name for doc in DOCS}
    for name in ("README.md", "architecture.md", "faust.md", "configuration.md", "events.md",
                 "operations.md", "use-cases.md", "benchmarks.md"):
        assert name in names


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: str(d.relative_to(ROOT)))
def test_every_path_a_doc_names_exists(doc: Path) -> None:
    assert missing_paths(doc, ROOT, repository_basenames(ROOT)) == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: str(d.relative_to(ROOT)))
def test_every_module_a_doc_names_exists(doc: Path) -> None:
    assert missing_modules(doc, ROOT) == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: str(d.relative_to(ROOT)))
def test_every_relative_link_resolves(doc: Path) -> None:
    assert broken_links(doc) == []


def test_every_doc_section_the_code_cites_exists() -> None:
    problems = {str(path.relative_to(ROOT)): found for path in code_files(ROOT)
                if path != Path(__file__).resolve() and (found := bad_citations(path.read_text(errors="replace"), ROOT))}
    assert problems == {}


def test_the_readme_stays_short() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300


def test_the_checks_catch_what_they_are_for(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "real.py").write_text("class There:\n    pass\n")
    doc = tmp_path / "docs" / "x.md"
    doc.write_text("# X\n\n## 2.5 Hooks\n\n## Semantics to hold\n\nSee `app/real.py`, `app/gone.py`, "
                   "`app.real.There`, `app.real.Gone`, `app.gone`, `<app id>-events`, `ghost.py`.\n"
                   "[ok](x.md#semantics-to-hold), [bad](x.md#nowhere), [gone](y.md).\n"
                   "```\nnot/checked.py\n```\n")
    assert missing_paths(doc, tmp_path, repository_basenames(tmp_path)) == ["app/gone.py", "ghost.py"]
    assert missing_modules(doc, tmp_path) == ["app.real.Gone", "app.gone"]
    assert broken_links(doc) == ["x.md#nowhere", "y.md"]
    name = "docs/" + "x.md"  # built, so that this file's own scan does not read it as a citation
    code = f'see {name} §2.5, {name} §3, {name} "Semantics to hold", {name}, "Contracts"'
    assert bad_citations(code, tmp_path) == [f"{name} §3", f'{name} "Contracts"']
