"""The live group behind the tests of what users meet (the page, the client, Prometheus): two
workers with an API key, a watchlist of one pattern, a few hundred real texts (one of which
the pattern alerts on) and two refused events. tests/integration/conftest.py starts it once
per session (``user_group``); those modules only read it, or write documents of their own."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from app.http.auth import API_KEY_HEADER
from tests.support.group import Group, OnGroup
from tests.support.kafka import REPO

PARTITIONS = 4
WATCHED = "wn30-n-02129165"  # the lion: its own text is the watchlist's one pattern
PATTERN = {"id": "big-cats", "metadata": {"threshold": 0.95, "labels": ["cats"]}}
API_KEY = "page-and-client-key-81f2"
CLUSTER_SECRET = "users-cluster-secret-5d0e"


@dataclass
class Users(OnGroup):
    group: Group
    api_key: str
    documents: list[dict[str, Any]]
    refused: dict[str, int]  # reason → dead letters sent on purpose
    alerts: dict[str, str]  # document id → the pattern it must raise a watchlist alert for

    @property
    def urls(self) -> list[str]:
        return [worker.url for worker in self.workers]

    @property
    def auth(self) -> dict[str, str]:
        return {API_KEY_HEADER: self.api_key}


def user_documents() -> list[dict[str, Any]]:
    """Every animal and food gloss of the demo data and every 40th of the rest (~660 texts)."""
    with (REPO / "data" / "sample.jsonl").open() as handle:
        rows = [json.loads(line) for line in handle]
    return [row for number, row in enumerate(rows)
            if row["metadata"].get("category") in ("animal", "food") or number % 40 == 0]
