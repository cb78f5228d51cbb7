"""A worker dies right after a batch's progress record was acknowledged, before anything else:
the batch's watchlist alert and dead letter must already be on their topics (review finding
SP-2). The progress record makes every later owner skip the batch's events, so whatever the
batch produces has to be acknowledged before it; it once went after it, and was lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.deadletters import DeadLetter
from tests.faults import harness
from tests.support.kafka import read_topic, send_records
from tests.support.usecases import gloss
from tests.support.workers import wait_for

pytestmark = pytest.mark.faults

PARAPHRASE = "a violent local windstorm with a funnel-shaped cloud reaching down to the ground"  # 0.65+ vs "tornado"


def test_a_crash_right_after_the_progress_record_loses_no_alert_and_no_dead_letter(
        group_factory: harness.GroupFactory, tmp_path: Path) -> None:
    crash = tmp_path / "exit-after-progress"
    group = group_factory("sideout", STREAMVEC_ALERT_THRESHOLD="0.6", FAULT_EXIT_AFTER_PROGRESS_FILE=str(crash))
    worker = group.start("a", command=harness.FAULTY_WORKER)
    group.wait_ready()
    group.send_json("watchlist", [("tornado", {"id": "tornado", "text": gloss("tornado")["text"],
                                               "metadata": {"labels": ["hazard"]}})])
    wait_for("the worker to hold the watchlist",
             lambda: worker.stats()["workers"][worker.url]["watchlist"]["patterns"] == 1, timeout=60)

    crash.touch()
    send_records(group.broker, group.topic, [(b"storm", f'{{"id": "storm", "text": "{PARAPHRASE}"}}'.encode()),
                                             (b"storm", b"{not json")])
    wait_for("the worker to die after the progress record", lambda: not worker.alive(), timeout=120)
    assert not crash.exists()
    worker.start()  # its data dir lacks the batch; the changelog has it, with the progress record
    group.wait_ready()
    stats = group.wait_consumed(2, timeout=120)
    assert stats["outcomes"]["indexed"] == 1 and stats["outcomes"]["dead_lettered"] == 1, stats["outcomes"]

    alerts = [a for a in group.read_json("alerts") if a["kind"] == "watchlist"]
    letters = [DeadLetter.from_record(r.key, r.value, r.headers)
               for r in read_topic(group.broker, group.topic_of("dead-letters"))]
    print(f"\nafter a crash right behind the progress record: {len(alerts)} watchlist alert(s), "
          f"{len(letters)} dead letter(s) on their topics")
    assert [(a["id"], a["pattern"]) for a in alerts] == [("storm", "tornado")]
    assert [(letter.key, letter.reason) for letter in letters] == [(b"storm", "bad_json")]
