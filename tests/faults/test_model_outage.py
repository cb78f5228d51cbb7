"""The model fails on every text for 20 s during ingest, then recovers: the batch waits, nothing is
dead-lettered for the model's fault, the worker stays up and says what is wrong meanwhile."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import pytest

from tests.faults import harness
from tests.support.kafka import sample_texts
from tests.support.workers import wait_for

pytestmark = pytest.mark.faults

OUTAGE_SECONDS = 20


def test_a_model_outage_stalls_ingest_and_loses_nothing(group_factory: harness.GroupFactory, tmp_path: Path) -> None:
    down = tmp_path / "model-down"
    group = group_factory("outage", FAULT_MODEL_DOWN_FILE=str(down))
    ledger = harness.Ledger(seed=20)
    records = ledger.text_events([(doc["id"], doc["text"]) for doc in sample_texts(900)])
    worker = group.start("a", command=harness.FAULTY_WORKER)
    group.wait_ready()

    feed = harness.Feed(group.broker, group.topic, records, rate=60).start()
    time.sleep(3)
    down.touch()
    outage = time.monotonic()
    seen: dict[str, object] = {}

    def stalled() -> bool:
        status, ready = worker.get("/ready")
        with urllib.request.urlopen(worker.url + "/metrics", timeout=10) as response:
            metrics = response.read().decode()
        if status == 503 and ready["ingest"].get("cause") == "model" and \
                'streamvec_ingest_stalled{cause="model"} 1.0' in metrics:
            seen.update(ready["ingest"])
            return True
        return False
    wait_for("/ready and the metrics to report the model outage", stalled, timeout=OUTAGE_SECONDS, interval=0.5)
    assert "the model fails on every text" in str(seen["error"])
    time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - outage)))
    down.unlink()
    back = time.monotonic()
    group.recovered(since=back)
    feed.wait(timeout=120)
    produced = harness.topic_size(group.broker, group.topic)
    stats = group.wait_consumed(produced, timeout=180)
    assert stats["outcomes"]["indexed"] == len(records) and stats["outcomes"]["dead_lettered"] == 0
    assert worker.alive() and group.crashes() == []
    running = harness.verify(worker, ledger, produced)
    harness.assert_sound(running, "running worker")

    fresh, ready = harness.rebuild_alone(group, ledger, produced)
    harness.assert_sound(fresh, "fresh worker")
    harness.report(f"model down {OUTAGE_SECONDS} s during ingest", 1, group, running, fresh, ready)

