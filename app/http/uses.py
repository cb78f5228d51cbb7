"""HTTP views of the real-time uses (docs/use-cases.md):
``GET /alerts``, ``POST /watchlist/check``, ``GET /recommendations/{user}``, what one worker answers for another
about a user's profile, and what the uses add to a worker's and the group's ``/stats``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson
from aiohttp import web

from app.embedding import EmbeddingService
from app.search.fanout import Answer, FanOut
from app.http.latest import LatestRecords, parse_limit
from app.http.requests import parse_watchlist_check, recommendation_params
from app.http.responses import json_response, rendered
from app.search.service import Coverage, SearchService
from app.usecases import UseCases
from index.uses import health
from index.uses.profiles import decode_profile


class UseCaseViews:
    """The views of the uses, over the worker's use-case state and its search service."""

    def __init__(self, uses: UseCases, service: SearchService, embedding: EmbeddingService, fanout: FanOut,
                 latest: LatestRecords, alerts_topic: str) -> None:
        self.uses = uses
        self.service = service
        self.embedding = embedding
        self.fanout = fanout
        self.latest = latest
        self.alerts_topic = alerts_topic

    async def alerts(self, request: web.Request) -> web.Response:
        """The newest alerts of the group, read from the alerts topic."""
        return json_response({"alerts": await self.latest.alerts(self.alerts_topic, parse_limit(request.query))})

    async def watchlist_check(self, request: web.Request) -> web.Response:
        """Every worker holds the whole watchlist: this one answers alone."""
        text, vector = parse_watchlist_check(await request.read(), self.embedding.dim)
        if vector is None:
            assert text is not None
            vector = await self.embedding.embed_query(text)
        matches = [m for m in self.uses.watchlist.scores(vector) if m.score >= m.threshold]
        return json_response({
            "matches": [{"pattern": m.pattern, "score": m.score, "threshold": m.threshold, "labels": list(m.labels)}
                        for m in matches],
            "patterns": len(self.uses.watchlist), "loaded": self.uses.reader.loaded.is_set()})

    async def recommendations(self, request: web.Request) -> web.Response:
        """Search with the user's profile vector (from the worker holding the user's partition),
        leaving out the user's recent items."""
        user = request.match_info["user"]
        query = recommendation_params(user, request.query)
        answers = await self.fanout.ask("/internal/profile", orjson.dumps({"user": user}), "application/json",
                                        lambda: self._local_profile(user), orjson.loads)
        found = sorted((a.body for a in answers if a.body and a.body["profile"]), key=lambda body: not body["active"])
        profile = found[0]["profile"] if found else None
        if profile is None:
            coverage = self._profile_coverage(answers)
            message = f"user {user!r} has no profile to search with (no activity on an indexed item yet)"
            if coverage.partial:
                message += (f", but partitions {list(coverage.missing)} did not answer; "
                            "retry when the group has settled")
            return json_response({"error": message, **coverage.json()}, status=503 if coverage.partial else 404)
        recent = set(profile["recent"])
        search = dataclasses.replace(query, k=query.k + len(recent),
                                     vector=np.asarray(profile["vector"], dtype=np.float32))
        answer = rendered(await self.service.search([search], endpoint="recommendations"), single=True)
        answer["results"] = [hit for hit in answer["results"] if hit["id"] not in recent][:query.k]
        return json_response({"user": user, **answer, "profile_events": profile["events"]})

    async def internal_profile(self, request: web.Request) -> web.Response:
        return json_response(await self._local_profile(str(orjson.loads(await request.read())["user"])))

    def report(self) -> dict[str, Any]:
        """What this worker adds to its own stats: its alerts, watchlist and the embedding health
        of the partitions it consumes."""
        return {"alerts": self.uses.analysis.counts.snapshot(),
                "watchlist": {"patterns": len(self.uses.watchlist), "loaded": self.uses.reader.loaded.is_set()},
                "health": self.uses.health.snapshot(self.service.table.actives())}

    @staticmethod
    def merge_reports(reports: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """The group's figures from the workers' reports: alerts summed; the watchlist as the
        worker that holds least of it; health per partition from the worker consuming it, and
        for the group."""
        by_kind: dict[str, int] = {}
        by_label: dict[str, int] = {}
        partition_health: dict[str, Any] = {}
        for report in reports:
            for into, counts in ((by_kind, report["alerts"]["by_kind"]), (by_label, report["alerts"]["by_label"])):
                for name, count in counts.items():
                    into[name] = into.get(name, 0) + count
            partition_health.update(report["health"])
        watchlists = [report["watchlist"] for report in reports]
        return {"alerts": {"by_kind": by_kind, "by_label": by_label},
                "watchlist": {"patterns": min((w["patterns"] for w in watchlists), default=0),
                              "loaded": bool(watchlists) and all(w["loaded"] for w in watchlists)},
                "health": {"partitions": dict(sorted(partition_health.items(), key=lambda item: int(item[0]))),
                           "last": health.combine(partition_health, "last"),
                           "current": health.combine(partition_health, "current")}}

    async def _local_profile(self, user: str) -> dict[str, Any]:
        """The user's profile if a partition this worker holds (active or standby) has it, and
        whether an active copy answered; ``partitions``: the profile partitions it holds."""
        profiles = self.uses.profiles
        stored, active = profiles.read(user)
        profile = None if stored is None else decode_profile(stored)
        vector = None if profile is None else profile.vector
        return {"profile": None if profile is None or vector is None else {
                    "vector": vector.tolist(), "events": profile.events, "recent": list(profile.recent)},
                "active": active, "partitions": sorted(profiles.copies())}

    def _profile_coverage(self, answers: Sequence[Answer[Any]]) -> Coverage:
        answered = sorted({p for a in answers if a.body for p in a.body["partitions"]})
        return Coverage(tuple(answered), tuple(sorted(set(range(self.service.partitions)) - set(answered))))
