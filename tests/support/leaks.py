"""Leak checks after each integration and fault test, as faust's own suite has
(``threads_not_lingering`` and ``tasks_not_lingering`` in faust's tests/conftest.py).

A test fails if it leaves behind, in the pytest process, a new non-daemon thread (one that
would keep the process from exiting) or an asyncio task still pending on its event loop. The
workers are separate processes: what is checked here is the harness itself (feeds, producers,
admin clients, executors) and the client library the tests drive.

``ALLOWED_THREADS`` names the threads that are inherent, each with its reason.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

ALLOWED_THREADS: dict[str, str] = {}
"""Thread name prefix → why such a thread may outlive the test that started it (every test)."""

ALLOWED_IN_ASYNC_TESTS: dict[str, str] = {
    "asyncio_": "the default executor of the async test's own event loop (LangChain's async methods run "
                "the sync ones in it); pytest-asyncio shuts it down with the loop, after this check",
}
"""The same, for async tests only: a sync test that leaves such a thread behind still fails."""

RUNNER = "_function_scoped_runner"
"""pytest-asyncio's fixture that owns an async test's event loop."""

GRACE_SECONDS = 5.0
"""A thread that is finishing (an executor worker after ``shutdown(wait=False)``) gets this long."""


def _checked(request: pytest.FixtureRequest) -> bool:
    return any(request.node.get_closest_marker(mark) for mark in ("integration", "faults"))


def _lingering(before: set[threading.Thread], allowed: tuple[str, ...]) -> list[threading.Thread]:
    return [thread for thread in threading.enumerate()
            if thread not in before and thread.is_alive() and not thread.daemon
            and not thread.name.startswith(allowed)]


@pytest.fixture(autouse=True)
def threads_not_lingering(request: pytest.FixtureRequest) -> Iterator[None]:
    if not _checked(request):
        yield
        return
    allowed = (*ALLOWED_THREADS, *(ALLOWED_IN_ASYNC_TESTS if RUNNER in request.fixturenames else ()))
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + GRACE_SECONDS
    while (left := _lingering(before, allowed)) and time.monotonic() < deadline:
        left[0].join(timeout=0.1)
    assert not left, f"the test left {len(left)} non-daemon thread(s) running: {[t.name for t in left]}"


@pytest.fixture(autouse=True)
def tasks_not_lingering(request: pytest.FixtureRequest) -> Iterator[None]:
    """For async tests: no task pending on the test's loop once the test and its fixtures are done
    (pytest-asyncio closes the loop after this fixture's teardown, cancelling what is left, so a
    leak would otherwise pass unseen). Sync tests run their coroutines in ``asyncio.run``, which
    cancels what is left itself, so only async tests have a loop to check."""
    if not _checked(request) or RUNNER not in request.fixturenames:
        yield
        return
    runner = request.getfixturevalue(RUNNER)  # set up before this fixture, so torn down after it
    yield
    loop = runner.get_loop()
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    assert not pending, f"the test left {len(pending)} asyncio task(s) pending: {pending[:5]}"
