"""consumer_lag, which /stats and /metrics read, before the consumer has started: no lag, not a 500."""

from __future__ import annotations

from types import SimpleNamespace

from faust.exceptions import ConsumerNotStarted

from app.metrics import consumer_lag


def test_a_consumer_not_started_yet_has_no_lag() -> None:
    def assignment() -> set[object]:
        raise ConsumerNotStarted("Consumer not started")
    app = SimpleNamespace(consumer=SimpleNamespace(assignment=assignment))
    assert consumer_lag(app, "app-vectors-changelog") == {}  # type: ignore[arg-type]
