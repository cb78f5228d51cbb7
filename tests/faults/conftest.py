"""The fault suite prints a table of what each fault did at the end of the run (its fixtures,
``group_factory`` among them, come from tests/support/fixtures.py)."""

from __future__ import annotations

import pytest

from tests.faults import harness


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if harness.ROWS:
        terminalreporter.section("faults: what each fault did to the group")
        for line in harness.table():
            terminalreporter.write_line(line)
        terminalreporter.write_line("lost: ids whose last version is missing (records or index); resurr.: deleted ids "
                                    "that show; → complete / ready: longest time after a fault until a search "
                                    "answered for every partition / every worker was ready; fresh ready: a worker "
                                    "with an empty data dir, rebuilt from the changelog alone")
