"""The suites' rules, checked on every run (loaded by tests/conftest.py through ``pytest_plugins``):

* every test under tests/integration/ is marked ``integration`` and every test under
  tests/faults/ ``faults``, and no other test carries either mark, so ``-m`` selects exactly
  the folders;
* a skipped integration or fault test fails the run: those suites prove things only when they
  run (pytest's exit 5, nothing collected, fails ``make`` already).
"""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
SUITE_MARKS = {"integration": TESTS / "integration", "faults": TESTS / "faults"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    wrong = []
    for item in items:
        path = Path(item.path)
        for mark, folder in SUITE_MARKS.items():
            inside, marked = folder in path.parents, item.get_closest_marker(mark) is not None
            if inside != marked:
                wrong.append(f"{item.nodeid}: {'lacks' if inside else 'must not carry'} the {mark!r} mark")
    if wrong:
        raise pytest.UsageError("tests marked against their folder (pytestmark = pytest.mark.<suite>):\n  "
                                + "\n  ".join(wrong))


_SKIPPED: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and any(mark in report.keywords for mark in SUITE_MARKS):
        _SKIPPED.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _SKIPPED and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _SKIPPED:
        terminalreporter.section("skipped integration or fault tests fail the run")
        for nodeid in _SKIPPED:
            terminalreporter.write_line(nodeid)
