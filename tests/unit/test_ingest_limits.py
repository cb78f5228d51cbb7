"""Event limits and the contract rules added with them (pure functions, no broker)."""

from __future__ import annotations

import json

import pytest

from index.records.events import Event, EventError, Limits, apply_limits, parse_event

DIM = 4
LIMITS = Limits(max_key_bytes=8, max_metadata_bytes=64, max_metadata_depth=3, max_text_chars=10)


def _limited(body: dict[str, object], key: bytes | None = None) -> Event:
    key = key if key is not None else str(body["id"]).encode()
    return apply_limits(parse_event(key, json.dumps(body).encode(), DIM), LIMITS)


def _reason(body: dict[str, object], key: bytes | None = None) -> str:
    with pytest.raises(EventError) as raised:
        _limited(body, key)
    return raised.value.reason


def test_a_long_text_is_cut_to_the_limit_not_refused_and_hashed_as_cut() -> None:
    event = _limited({"id": "d1", "text": "abcdefghij" + "k" * 290_000})
    assert event.text == "abcdefghij"
    assert event.text_hash == _limited({"id": "d1", "text": "abcdefghij"}).text_hash


def test_the_key_limit_counts_utf8_bytes_of_the_id_and_applies_to_deletes() -> None:
    assert _limited({"id": "12345678", "text": "x"}).id == "12345678"
    assert _reason({"id": "123456789", "text": "x"}) == "key_too_long"
    assert _reason({"id": "ééééé", "text": "x"}) == "key_too_long"  # 5 characters, 10 bytes
    with pytest.raises(EventError, match="STREAMVEC_MAX_KEY_BYTES"):
        apply_limits(parse_event(b"123456789", None, DIM), LIMITS)


def test_metadata_size_is_measured_as_its_json() -> None:
    assert _limited({"id": "d1", "text": "x", "metadata": {"k": "v" * 50}}).metadata == {"k": "v" * 50}
    assert _reason({"id": "d1", "text": "x", "metadata": {"k": "v" * 60}}) == "metadata_too_large"


def test_metadata_nested_deeper_than_the_limit_is_refused() -> None:
    assert _limited({"id": "d1", "text": "x", "metadata": {"a": {"b": [1]}}}).metadata == {"a": {"b": [1]}}
    assert _reason({"id": "d1", "text": "x", "metadata": {"a": {"b": [[1]]}}}) == "metadata_too_deep"


def test_metadata_that_is_not_json_is_refused_whichever_parser_made_it() -> None:
    event = Event(id="d1", op="upsert", text="x", metadata={"when": object()})
    with pytest.raises(EventError) as raised:
        apply_limits(event, LIMITS)
    assert raised.value.reason == "bad_metadata"


@pytest.mark.parametrize(("value", "reason"), [
    (b'{"id": "d1", "text": "x", "metadata": {"score": NaN}}', "bad_json"),
    (b'{"id": "d1", "text": "x", "ts": Infinity}', "bad_json"),
    (b'{"id": "d1", "text": "x", "ts": 1e999}', "bad_json"),
    (b'{"id": "d1", "vector": [1e999, 0, 0, 1]}', "bad_json"),
    (b'{"id": "d1", "text": "x", "metadata": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "bad_json"),
    (b'{"id": "d1", "text": ""}', "empty_text"),
    (b'{"id": "d1", "text": " \\n\\t "}', "empty_text"),
    (b'{"id": "d1", "vector": ["a", "b", "c", "d"]}', "bad_vector"),
])
def test_values_no_reader_could_use_are_refused(value: bytes, reason: str) -> None:
    with pytest.raises(EventError) as raised:
        parse_event(b"d1", value, DIM)
    assert raised.value.reason == reason
