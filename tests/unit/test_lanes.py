"""Serial lanes on a shared pool: order within a lane, progress across lanes, errors kept in futures."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait

import pytest

from tables.lanes import Lane


def test_a_lanes_jobs_run_one_at_a_time_in_submission_order() -> None:
    seen: list[int] = []
    running = threading.Semaphore(1)

    def job(n: int) -> int:
        assert running.acquire(blocking=False), "two jobs of one lane ran at once"
        time.sleep(0.001)
        seen.append(n)
        running.release()
        return n * n

    with ThreadPoolExecutor(4) as pool:
        lane = Lane(pool)
        futures = [lane.submit(job, n) for n in range(50)]
        assert [f.result(timeout=10) for f in futures] == [n * n for n in range(50)]
    assert seen == list(range(50))


def test_a_long_chain_on_one_lane_does_not_starve_another_lane_on_a_one_thread_pool() -> None:
    with ThreadPoolExecutor(1) as pool:
        busy, other = Lane(pool), Lane(pool)
        chain = [busy.submit(time.sleep, 0.02) for _ in range(50)]  # a build in chunks: ~1 s in all
        time.sleep(0.05)
        started = time.monotonic()
        other.submit(lambda: None).result(timeout=10)
        assert time.monotonic() - started < 0.2, "the other lane waited for the whole chain"
        wait(chain)


def test_an_exception_stays_in_its_future_and_the_lane_goes_on() -> None:
    with ThreadPoolExecutor(2) as pool:
        lane = Lane(pool)
        failed = lane.submit(lambda: 1 / 0)
        after = lane.submit(lambda: "next")
        with pytest.raises(ZeroDivisionError):
            failed.result(timeout=10)
        assert after.result(timeout=10) == "next"
        assert lane.idle().result(timeout=10) is None
