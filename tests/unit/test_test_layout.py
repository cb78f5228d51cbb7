"""Every test module has a basename of its own.

``tests/unit`` and ``tests/integration`` are not packages, so pytest imports each test module
by its basename; two modules of one name stop the whole collection ("import file mismatch"), as
``tests/unit/test_replication.py`` beside ``tests/integration/test_replication.py`` did on a
clean-clone CI run (2026-12-07) while each passed when run alone."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_no_two_test_modules_share_a_basename() -> None:
    names = Counter(path.name for path in TESTS.rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []
