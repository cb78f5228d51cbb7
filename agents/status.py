"""Whether ingest is going through, and if not, why: what ``/ready`` and the metrics report.

A failure that is no event's fault (the model fails on every text, Kafka does not
acknowledge) stalls ingest: the batch is retried until it goes through and nothing is
acknowledged meanwhile. The worker stays up and keeps answering queries; this object is
how it tells operators that its input is not moving and what to do about it.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

Cause = Literal["model", "broker", "store", "observer", "internal"]
CAUSES: tuple[Cause, ...] = ("model", "broker", "store", "observer", "internal")


@dataclass(frozen=True)
class Stall:
    cause: Cause
    error: str
    since: float
    attempts: int


class IngestStatus:
    """The ingest agent's state, written by the agent, read by the views and the metrics."""

    def __init__(self) -> None:
        self.stall: Stall | None = None
        self.retries: Counter[Cause] = Counter()
        self.embeddings_reused = 0

    def stalled(self, cause: Cause, error: str) -> None:
        """A batch failed for ``cause`` and will be retried."""
        previous = self.stall
        since = previous.since if previous is not None else time.time()
        attempts = previous.attempts + 1 if previous is not None else 1
        self.stall = Stall(cause, error, since, attempts)
        self.retries[cause] += 1

    def flowing(self) -> None:
        """A batch went through."""
        self.stall = None

    def report(self) -> dict[str, Any]:
        """``{"flowing": bool, "cause", "error", "since", "attempts"}`` (the last four only while stalled)."""
        if self.stall is None:
            return {"flowing": True}
        return {"flowing": False, "cause": self.stall.cause, "error": self.stall.error,
                "since": self.stall.since, "attempts": self.stall.attempts}
