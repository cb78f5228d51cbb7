"""Alerts on the real pipeline: watchlist matches, threshold updates, novelty, embedding drift.

One cluster (real Kafka, two worker processes, 4 partitions) serves the module; the tests
run in order. The watchlist holds five real glosses of the sample data (thief, bribe, bomb,
tornado, earthquake); the events are hand-written paraphrases of them, which must alert,
and 1,200 glosses of unrelated categories, which must not. Those glosses are also the
steady input for embedding health (windows of 50 documents per partition: no drift
alert), before 480 glosses of other categories shift it (drift alerts). Thresholds come
from measuring the model on these texts: paraphrases score 0.65-0.86 against their
pattern, the unrelated glosses at most 0.42; windows of the steady input drift at most
0.24 from the reference, shifted ones at least 0.57.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agents.deadletters import DeadLetter
from tests.support.group import Group, new_app_id
from tests.support.kafka import read_topic
from tests.support.usecases import gloss, glosses, histogram_quantiles, partition_of, percentiles
from tests.support.workers import Worker, http, wait_for, wait_for_documents

pytestmark = pytest.mark.integration

PARTITIONS = 4
THRESHOLD = 0.6
PATTERNS = {  # pattern word: (metadata, paraphrases that must alert)
    "thief": ({"labels": ["fraud"]}, ["a criminal who steals other people's belongings to keep or sell them",
                                      "someone who takes property that belongs to another person, intending to sell it"]),
    "bribe": ({"threshold": THRESHOLD, "labels": ["fraud", "corruption"]},
              ["money paid to someone in a position of trust to corrupt their judgement",
               "an illegal payoff made to a trusted official to corrupt his judgment"]),
    "bomb": ({"threshold": THRESHOLD, "labels": ["threat"]},
             ["an explosive device set to go off under certain conditions",
              "a device packed with explosives, rigged to detonate when triggered"]),
    "tornado": ({"labels": ["hazard"]}, ["a violent local windstorm with a funnel-shaped cloud reaching down to the ground",
                                         "a destructive twister: a rotating funnel cloud touching down over land"]),
    "earthquake": ({"threshold": THRESHOLD, "labels": ["hazard"]},
                   ["shaking of the ground caused by movement along a fault deep underground",
                    "a tremor of the earth's surface from underground movement or volcanic activity"]),
}
WEAK_BRIBE = "a payment offered to an official so that he decides in your favour"  # 0.48 against "bribe"
STEADY = ("body", "emotion", "competition", "feeling", "shape", "time", "cognition", "communication", "act",
          "possession", "location")
SHIFTED = ("animal", "plant", "food")
WINDOW = 50
DRIFT_THRESHOLD = 0.4
NOVELTY_THRESHOLD = 0.35
NOVEL_TEXT = "SELECT id, amount FROM payments WHERE status = 'failed' ORDER BY created_at DESC LIMIT 50"  # 0.30


@pytest.fixture(scope="module")
def group(kafka_broker: str, model_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Group]:
    group = Group(kafka_broker, new_app_id("alerts"), tmp_path_factory.mktemp("alerts"), model_cache, PARTITIONS,
                  {"STREAMVEC_ALERT_THRESHOLD": str(THRESHOLD), "STREAMVEC_NOVELTY_THRESHOLD": str(NOVELTY_THRESHOLD),
                   "STREAMVEC_HEALTH_WINDOW": str(WINDOW), "STREAMVEC_DRIFT_THRESHOLD": str(DRIFT_THRESHOLD)})
    try:
        for name in ("a", "b"):
            group.start(name)
        for worker in group.workers.values():
            worker.wait_ready(timeout=120)
        yield group
    finally:
        group.stop_all()


def background() -> list[dict[str, Any]]:
    """The steady input: 1,200 glosses of the steady categories, the patterns' own glosses left out."""
    return [doc for doc in glosses(STEADY, 1300, seed=7) if doc["metadata"]["word"] not in PATTERNS][:1200]


def check(worker: Worker, text: str) -> dict[str, Any]:
    status, answer = http("POST", worker.url + "/watchlist/check", {"text": text})
    assert status == 200, answer
    return answer  # type: ignore[no-any-return]


def alerts(group: Group, kind: str) -> list[dict[str, Any]]:
    return [alert for alert in group.read_json("alerts") if alert["kind"] == kind]


def matched(group: Group) -> Counter[tuple[str, str]]:
    """(document id, pattern) of every watchlist alert, with how often each was produced."""
    return Counter((alert["id"], alert["pattern"]) for alert in alerts(group, "watchlist"))


def documents(group: Group) -> int:
    return int(group.workers["a"].stats()["documents"])


def test_every_worker_holds_the_whole_watchlist_and_bad_patterns_are_dead_lettered(group: Group) -> None:
    patterns = [(word, {"id": word, "text": gloss(word)["text"], "metadata": metadata})
                for word, (metadata, _) in PATTERNS.items()]
    group.send_json("watchlist", [*patterns, ("bad", {"id": "bad", "text": "x", "metadata": {"labels": "fraud"}})])
    for worker in group.workers.values():
        wait_for(f"{worker.name} to hold the watchlist",
                 lambda w=worker: w.stats()["workers"][w.url]["watchlist"]["patterns"] == len(PATTERNS), timeout=60)
        answer = check(worker, PATTERNS["tornado"][1][0])
        assert [m["pattern"] for m in answer["matches"]] == ["tornado"] and answer["matches"][0]["labels"] == ["hazard"]
        assert answer["matches"][0]["threshold"] == pytest.approx(THRESHOLD)  # the default: none in its metadata
    letters = wait_for("the bad pattern's dead letter", lambda: [
        DeadLetter.from_record(r.key, r.value, r.headers) for r in read_topic(group.broker, group.topic_of("dead-letters"))],
        timeout=30)  # sent with the patterns, but its ack may come after theirs
    assert [(letter.key, letter.reason) for letter in letters] == [(b"bad", "bad_labels")]


def test_paraphrases_alert_and_unrelated_documents_do_not(group: Group) -> None:
    steady = background()
    paraphrases = [{"id": f"para-{word}-{n}", "text": text, "metadata": {"source": "paraphrase"}}
                   for word, (_, texts) in PATTERNS.items() for n, text in enumerate(texts)]
    group.send(steady[:600] + paraphrases + steady[600:])
    wait_for_documents(group.workers["a"], len(steady) + len(paraphrases), timeout=300)
    expected = {(p["id"], p["id"].split("-")[1]) for p in paraphrases}
    produced = wait_for("every expected alert", lambda: (found := matched(group)) and set(found) >= expected and found,
                        timeout=30)
    duplicates = sum(produced.values()) - len(produced)
    detected = percentiles([a["detected_ts"] - a["event_ts"] for a in alerts(group, "watchlist")])
    count, p50, p99 = histogram_quantiles(group.workers.values(), "streamvec_alert_latency_seconds", "watchlist")
    print(f"\nwatchlist: {len(expected)} alerts expected, {len(produced)} produced ({duplicates} duplicates); "
          f"sent as a backlog of {len(steady) + len(paraphrases)} events, so the latency includes queueing: "
          f"event → detected p50 {detected[0] * 1000:.0f} ms p99 {detected[1] * 1000:.0f} ms; "
          f"event → alert acknowledged (histogram, {count} alerts) p50 {p50 * 1000:.0f} ms p99 {p99 * 1000:.0f} ms")
    assert set(produced) == expected, f"unexpected: {set(produced) - expected}"
    labels = {a["pattern"]: a["labels"] for a in alerts(group, "watchlist")}
    assert labels["bribe"] == ["fraud", "corruption"] and labels["thief"] == ["fraud"]
    by_label = group.workers["b"].stats()["alerts"]["by_label"]
    assert by_label["fraud"] >= 4 and by_label["hazard"] >= 4
    status, latest = group.workers["b"].get("/alerts?limit=5")
    in_topic = {json.dumps(a, sort_keys=True) for a in group.read_json("alerts")}
    assert status == 200 and len(latest["alerts"]) == 5, latest
    assert all(json.dumps({k: v for k, v in a.items() if k != "at"}, sort_keys=True) in in_topic
               for a in latest["alerts"]), latest
    assert all(set(a["at"]) == {"partition", "offset"} for a in latest["alerts"])


def test_a_steady_input_raises_no_drift_alert(group: Group) -> None:
    health = group.workers["a"].stats()["health"]
    closed = {p: h["windows_closed"] for p, h in health["partitions"].items()}
    assert len(closed) == PARTITIONS and min(closed.values()) >= 4, closed  # a reference and 3+ steady windows each
    assert alerts(group, "drift") == []
    print(f"\nsteady input: {sum(closed.values())} windows closed, largest drift {health['last']['drift_max']:.3f} "
          f"(threshold {DRIFT_THRESHOLD})")


def test_a_threshold_update_applies_to_events_from_then_on(group: Group) -> None:
    bomb, bribe = PATTERNS["bomb"], PATTERNS["bribe"]
    group.send([{"id": "weak-before", "text": WEAK_BRIBE}])
    updates = [("bomb", {"id": "bomb", "text": gloss("bomb")["text"], "version": 2,
                         "metadata": {**bomb[0], "threshold": 0.95}}),
               ("bribe", {"id": "bribe", "text": gloss("bribe")["text"], "version": 2,
                          "metadata": {**bribe[0], "threshold": 0.45}}),
               ("bribe", {"id": "bribe", "text": gloss("bribe")["text"], "version": 1,  # stale: ignored
                          "metadata": {**bribe[0], "threshold": 0.1}})]
    group.send_json("watchlist", updates)
    for worker in group.workers.values():
        wait_for(f"{worker.name} to apply the update", lambda w=worker: [
            (m["pattern"], m["threshold"]) for m in check(w, WEAK_BRIBE)["matches"]] == [("bribe", 0.45)], timeout=30)
        assert check(worker, bomb[1][0])["matches"] == []
    before = documents(group)
    group.send([{"id": "weak-after", "text": WEAK_BRIBE}, {"id": "bomb-after", "text": bomb[1][0]}])
    wait_for_documents(group.workers["a"], before + 2, timeout=60)
    found = wait_for("the alert for weak-after", lambda: (m := matched(group)) and ("weak-after", "bribe") in m and m,
                     timeout=30)
    assert ("weak-before", "bribe") not in found and not any(doc == "bomb-after" for doc, _ in found)
    print("\nthreshold update: 1 alert expected (weak-after), 1 produced; bomb-after and weak-before: none, as expected")


def test_a_document_unlike_anything_indexed_is_novel_and_a_near_duplicate_is_not(group: Group) -> None:
    original = background()[0]
    # The same partition as its original: novelty looks at the partitions of the worker that indexes it.
    duplicate_id = next(f"dup-{n}" for n in range(1000)
                        if partition_of(f"dup-{n}", PARTITIONS) == partition_of(original["id"], PARTITIONS))
    before = documents(group)
    group.send([{"id": "novel-sql", "text": NOVEL_TEXT}, {"id": duplicate_id, "text": original["text"] + " (copy)"}])
    wait_for_documents(group.workers["a"], before + 2, timeout=60)
    novel = wait_for("the novel alert", lambda: [a for a in alerts(group, "novel") if a["id"] == "novel-sql"], timeout=30)
    assert novel[0]["nearest"] is not None and novel[0]["score"] < NOVELTY_THRESHOLD
    assert not [a for a in alerts(group, "novel") if a["id"] == duplicate_id]
    all_novel = {a["id"] for a in alerts(group, "novel")}
    print(f"\nnovelty (threshold {NOVELTY_THRESHOLD}): novel-sql alerted (nearest {novel[0]['nearest']}, "
          f"score {novel[0]['score']:.3f}), its near-duplicate did not; {len(all_novel)} of {documents(group)} "
          "documents novel in all")


def test_a_shifted_input_raises_drift_alerts_once_per_window(group: Group) -> None:
    shifted = glosses(SHIFTED, 480, seed=11)
    before = documents(group)
    group.send(shifted)
    wait_for_documents(group.workers["a"], before + len(shifted), timeout=300)
    drift = wait_for("drift alerts from every partition",
                     lambda: (found := alerts(group, "drift")) and len({a["partition"] for a in found}) == PARTITIONS
                     and found, timeout=30)
    windows = Counter((a["partition"], a["window"]) for a in drift)
    assert all(a["score"] > DRIFT_THRESHOLD for a in drift) and max(windows.values()) == 1, windows
    health = group.workers["b"].stats()["health"]
    assert health["last"]["drift_max"] > DRIFT_THRESHOLD
    print(f"\nshifted input: {len(drift)} drift alerts from {PARTITIONS} partitions, drift "
          f"{min(a['score'] for a in drift):.2f}-{max(a['score'] for a in drift):.2f} (threshold {DRIFT_THRESHOLD})")
