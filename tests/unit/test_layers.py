"""The layers of docs/architecture.md "Layers" hold: each package imports only the layers below it, and the client
package ``streamvec`` imports none of the server (an application gets it without Faust)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN = {
    "index": {"faust", "mode", "aiohttp", "aiokafka", "tables", "agents", "app"},
    "tables": {"agents", "app", "aiohttp"},
    "agents": {"app", "aiohttp"},
    "streamvec": {"app", "agents", "index", "tables", "faust", "mode", "numpy", "hnswlib", "onnxruntime",
                  "rocksdict", "tokenizers"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_layer_imports_nothing_above_it(package: str) -> None:
    offending = {
        str(path.relative_to(REPO)): sorted(_imports(path) & FORBIDDEN[package])
        for path in (REPO / package).rglob("*.py")
    }
    assert not {path: names for path, names in offending.items() if names}


def test_importing_the_client_loads_nothing_of_the_server() -> None:
    probe = ("import sys, streamvec, streamvec.langchain; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in "
             "{'app', 'agents', 'index', 'tables', 'faust', 'mode', 'numpy'}))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd="/", check=True)
    assert loaded.stdout.strip() == "[]", loaded.stdout


def _app_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("app.")}


def test_http_is_the_top_of_app() -> None:
    """``app/http`` parses and renders: the query engine, metrics and use cases below it never
    import it back (the only import cycle ``app`` had went http → usecases → http.metrics)."""
    below = [*(REPO / "app" / "search").rglob("*.py"), REPO / "app" / "metrics.py", REPO / "app" / "usecases.py"]
    offending = {str(path.relative_to(REPO)): sorted(name for name in _app_imports(path) if name.startswith("app.http"))
                 for path in below}
    assert not {path: names for path, names in offending.items() if names}


@pytest.mark.parametrize("module", ["tables/changelog_order.py", "tables/copies.py", "tables/lanes.py",
                                    "tables/index_feed.py"])
def test_the_rules_under_the_faust_stores_import_no_faust(module: str) -> None:
    """The stores' pure parts (changelog order, copy states, lanes, the index feed) are unit-tested
    without Faust or a broker; the Faust subclasses only hook them in (docs/architecture.md "Layers")."""
    assert not _imports(REPO / module) & {"faust", "mode", "aiokafka", "rocksdict"}
