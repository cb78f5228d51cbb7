"""The table record codec and the event contract (pure functions, no broker)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from index.records import codec
from index.records.events import EventError, parse_event

DIM = 4


def test_a_record_round_trips_with_its_vector_and_fields() -> None:
    record = codec.Record(vector=np.array([0.5, -0.5, 0.5, -0.5], dtype=np.float32),
                          metadata={"lang": "de", "n": 3}, version=7, text_hash="abc", ts=1.5)
    back = codec.decode(codec.encode(record))
    assert np.array_equal(back.vector, record.vector)
    assert (back.metadata, back.version, back.text_hash, back.ts) == ({"lang": "de", "n": 3}, 7, "abc", 1.5)


def test_a_versioned_tombstone_has_no_vector() -> None:
    back = codec.decode(codec.encode(codec.Record(vector=None, version=4)))
    assert back.deleted and back.version == 4


def test_bytes_of_another_format_are_refused_with_the_fix() -> None:
    with pytest.raises(codec.CodecError, match="another streamvec version"):
        codec.decode(b"\x09\x00\x00\x00\x00")
    with pytest.raises(codec.CodecError, match="too short"):
        codec.decode(b"\x01")


def _event(body: object, key: bytes | None = b"d1") -> object:
    return parse_event(key, json.dumps(body).encode(), DIM)


def test_a_text_upsert_and_a_vector_upsert_parse() -> None:
    event = _event({"id": "d1", "text": "hello", "metadata": {"a": 1}, "version": 2})
    assert (event.op, event.text, event.version, dict(event.metadata)) == ("upsert", "hello", 2, {"a": 1})
    event = _event({"id": "d1", "vector": [3, 0, 0, 4]})
    assert np.allclose(event.vector, [0.6, 0, 0, 0.8])


def test_deletes_come_as_tombstones_or_as_op_delete() -> None:
    assert parse_event(b"d1", None, DIM).op == "delete"
    event = _event({"id": "d1", "op": "delete", "version": 9})
    assert (event.op, event.version) == ("delete", 9)


@pytest.mark.parametrize(("key", "value", "reason"), [
    (b"d1", b"not json", "bad_json"),
    (b"d1", b"[1, 2]", "bad_json"),
    (b"\xff", b"{}", "bad_key"),
    (None, None, "missing_key"),
    (b"d1", b'{"id": "d1"}', "no_content"),
    (b"d1", b'{"id": "d2", "text": "x"}', "key_mismatch"),
    (b"d1", b'{"id": "d1", "text": "x", "colour": "red"}', "unknown_field"),
    (b"d1", b'{"id": "d1", "text": 5}', "bad_text"),
    (b"d1", b'{"id": "d1", "text": "x", "version": "2"}', "bad_version"),
    (b"d1", b'{"id": "d1", "text": "x", "version": true}', "bad_version"),
    (b"d1", b'{"id": "d1", "op": "merge", "text": "x"}', "bad_op"),
    (b"d1", b'{"id": "d1", "vector": [1, 2]}', "bad_vector"),
    (b"d1", b'{"id": "d1", "vector": [0, 0, 0, 0]}', "bad_vector"),
    (b"d1", b'{"id": "d1", "text": "x", "metadata": [1]}', "bad_metadata"),
    (b"d1", b'{"id": "", "text": "x"}', "bad_id"),
])
def test_bad_events_are_refused_with_a_stable_reason(key: bytes | None, value: bytes | None, reason: str) -> None:
    with pytest.raises(EventError) as raised:
        parse_event(key, value, DIM)
    assert raised.value.reason == reason
