"""Poison events of every kind, interleaved with good ones: each is dead-lettered alone, nothing else is lost.

Includes the event that once crashed the ingest agent and lost its whole batch (issue 9): valid
JSON holding a lone surrogate, which UTF-8 cannot encode; lone surrogates in every other string
field; and values just under Kafka's default message size limit, one valid (a text that is cut)
and one not (its dead letter is as large as the event).
"""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from tests.faults import harness
from tests.support.kafka import read_topic, sample_texts

pytestmark = pytest.mark.faults

NEAR_MAX = 1_000_000  # bytes: under the broker's default message.max.bytes (1,048,588)


def _raw(body: str) -> bytes:
    return body.encode()


def poison(ledger: harness.Ledger) -> list[tuple[harness.Record, str]]:
    """(record, the reason it must be dead-lettered with)."""
    deep: dict[str, object] = {"leaf": 1}
    for _ in range(40):
        deep = {"in": deep}
    cases: list[tuple[harness.Record, str]] = [
        ((b"s01", _raw('{"id": "s01", "text": "broken \\ud800 surrogate"}')), "bad_text"),
        ((None, _raw('{"id": "s02\\udfff", "text": "an id with a lone surrogate"}')), "bad_text"),
        ((b"s03", _raw('{"id": "s03", "text": "ok", "metadata": {"k\\ud800": 1}}')), "bad_text"),
        ((b"s04", _raw('{"id": "s04", "text": "ok", "metadata": {"k": ["x", {"y": "\\udc00"}]}}')), "bad_text"),
        ((b"s05", _raw('{"id": "s05", "vector": [' + ",".join(["0.5"] * harness.DIM) + '], "text": "\\ud83d"}')),
         "bad_text"),
        ((b"\xed\xa0\x80", _raw('{"text": "a key that is not UTF-8"}')), "bad_key"),
        ((b"p01", b"\xff\xfe not json"), "bad_json"),
        ((b"p02", b"[1, 2, 3]"), "bad_json"),
        ((b"p03", _raw('{"id": "p03", "vector": [NaN]}')), "bad_json"),
        ((b"p04", _raw('{"id": "p04", "text": "x", "colour": "red"}')), "unknown_field"),
        ((b"p05", _raw('{"id": "p05", "vector": [0.1, 0.2]}')), "bad_vector"),
        ((b"p06", json.dumps({"id": "p06", "vector": [0.0] * harness.DIM}).encode()), "bad_vector"),
        ((b"p07", _raw('{"id": "p07", "text": "   "}')), "empty_text"),
        ((b"p08", _raw('{"id": "p08", "metadata": {}}')), "no_content"),
        ((b"p09", _raw('{"id": "other", "text": "x"}')), "key_mismatch"),
        ((b"k" * 600, json.dumps({"id": "k" * 600, "text": "x"}).encode()), "key_too_long"),
        ((b"p10", json.dumps({"id": "p10", "text": "x", "metadata": deep}).encode()), "metadata_too_deep"),
        ((b"p11", json.dumps({"id": "p11", "text": "x", "metadata": {"k": "v" * 20_000}}).encode()),
         "metadata_too_large"),
        ((b"p12", _raw('{"id": "p12", "text": "x", "version": "3"}')), "bad_version"),
        ((b"p13", json.dumps({"id": "p13", "vector": [0.1] * ((NEAR_MAX - 40) // 5)}).encode()), "bad_vector"),
    ]
    return [(ledger.invalid_record(record), reason) for record, reason in cases]


def test_poison_events_are_dead_lettered_alone_and_nothing_else_is_lost(group_factory: harness.GroupFactory) -> None:
    group = group_factory("poison")
    ledger = harness.Ledger(seed=9)
    good = ledger.vector_events([f"v{n}" for n in range(300)], 1500)
    good += ledger.text_events([(doc["id"], doc["text"]) for doc in sample_texts(150)])
    huge_text = ("a very long text about cats " * 40_000)[:NEAR_MAX - 100]
    good += ledger.text_events([("huge-text", huge_text)])
    bad = poison(ledger)
    records = list(good)
    rng = random.Random(4)
    for record, _ in bad:  # interleaved: every poison event shares its batch with good ones
        records.insert(rng.randrange(len(records) + 1), record)

    group.start("a"), group.start("b")
    group.wait_ready()
    harness.send_now(group.broker, group.topic, records)
    produced = harness.topic_size(group.broker, group.topic)
    assert produced == len(records)
    group.wait_consumed(produced, timeout=300)
    running = harness.verify(group.any(), ledger, produced)
    harness.assert_sound(running, "running group")
    assert group.crashes() == []

    letters = read_topic(group.broker, f"{group.app_id}-dead-letters")
    by_origin = {(dict(r.headers)["streamvec-partition"], dict(r.headers)["streamvec-offset"]):
                 dict(r.headers)["streamvec-reason"].decode() for r in letters}
    assert sorted(Counter(by_origin.values()).items()) == sorted(Counter(reason for _, reason in bad).items())
    huge = next(r for r in letters if r.key == b"p13")
    assert len(huge.value) > NEAR_MAX - 100  # the dead letter keeps the whole value
    status, document = group.any().get("/documents/huge-text")
    assert status == 200 and len(document["text"]) == 100_000  # cut to STREAMVEC_MAX_TEXT_CHARS, not refused

    fresh, ready = harness.rebuild_alone(group, ledger, produced)
    harness.assert_sound(fresh, "fresh worker")
    harness.report(f"poison events ({len(bad)} kinds)", 1, group, running, fresh, ready)
