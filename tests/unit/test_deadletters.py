"""The dead-letter record format and how `streamvec dead-letters list` shows it (no broker)."""

from __future__ import annotations

from agents.deadletters import DeadLetter
from app.cli.deadletters import StoredDeadLetter, format_table


def test_a_dead_letter_reads_back_from_its_headers_with_the_originals_apart() -> None:
    letter = DeadLetter(key=b"\xff", value=None, reason="bad_key", error="the key is not valid UTF-8",
                        topic="app-events", partition=3, offset=41, original_headers=(("trace", b"t-1"),))
    headers = letter.headers()
    assert headers[:5] == [("streamvec-reason", b"bad_key"), ("streamvec-error", b"the key is not valid UTF-8"),
                           ("streamvec-topic", b"app-events"), ("streamvec-partition", b"3"),
                           ("streamvec-offset", b"41")]
    assert DeadLetter.from_record(b"\xff", None, headers) == letter


def test_a_record_without_our_headers_reads_as_unknown() -> None:
    letter = DeadLetter.from_record(b"k", b"v", [("other", b"x")])
    assert (letter.reason, letter.partition, letter.offset, letter.original_headers) == ("unknown", -1, -1,
                                                                                         (("other", b"x"),))


def test_the_list_shows_one_line_per_letter_with_long_parts_shortened() -> None:
    letters = [
        StoredDeadLetter(partition=0, offset=7, timestamp=1_764_000_000.0, letter=DeadLetter(
            key=b"\xfe\xff", value=b'{"id":\n"x", "text": "' + b"y" * 500 + b'"}', reason="bad_key",
            error="the key is not valid UTF-8", topic="app-events", partition=2, offset=9)),
        StoredDeadLetter(partition=1, offset=0, timestamp=1_764_000_001.5, letter=DeadLetter(
            key=b"k" * 100, value=None, reason="missing_key", error="a tombstone needs a key",
            topic="app-events", partition=0, offset=1)),
    ]
    header, first, second = format_table(letters)
    assert header.split()[:4] == ["OFFSET", "PART", "TIME", "(UTC)"]
    assert first.split()[:6] == ["7", "0", "2025-11-24", "16:00:00", "bad_key", "app-events/2/9"]
    assert "b'\\xfe\\xff'" in first and first.endswith("…") and len(first) < 250
    assert "k" * 31 + "…" in second and second.endswith("| null")
