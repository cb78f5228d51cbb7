"""Unit tests of the HTTP layer's pure parts: the wire frame, the auth rules, the OpenAPI document."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from app.search import wire
from app.http.auth import API_KEY_HEADER, auth_middleware
from app.search.secret import SECRET_HEADER, ClusterSecret
from app.http.openapi import build_openapi
from app.logs import server_log


def test_a_frame_carries_its_header_and_float32_array() -> None:
    vectors = np.random.default_rng(0).normal(size=(3, 384))
    header, array = wire.unpack(wire.pack({"rows": [{"k": 5}]}, vectors))
    assert header == {"rows": [{"k": 5}]}
    assert array.dtype == np.float32 and array.shape == (3, 384)
    np.testing.assert_allclose(array, vectors.astype(np.float32))


@pytest.mark.parametrize("frame", [b"", b"\x05\x00\x00\x00{}", b"\x02\x00\x00\x00{}\x00", b"\x02\x00\x00\x00[]"])
def test_a_broken_frame_is_a_frame_error(frame: bytes) -> None:
    with pytest.raises(wire.FrameError, match="not a streamvec search frame"):
        wire.unpack(frame)


def _statuses(api_key: str, requests: list[tuple[str, dict[str, str]]]) -> list[int]:
    async def run() -> list[int]:
        app = web.Application(middlewares=[auth_middleware(api_key, ClusterSecret("s3cret", "unused:1", "unused"))])

        async def ok(request: web.Request) -> web.Response:
            return web.json_response({})

        for path in ("/health", "/stats", "/internal/stats"):
            app.router.add_get(path, ok)
        async with TestClient(TestServer(app)) as client:
            return [(await client.get(path, headers=headers)).status for path, headers in requests]

    return asyncio.run(run())


def test_with_an_api_key_only_health_is_open() -> None:
    assert _statuses("k1", [("/health", {}), ("/stats", {}), ("/stats", {API_KEY_HEADER: "k2"}),
                            ("/stats", {API_KEY_HEADER: "k1"}), ("/stats", {"Authorization": "Bearer k1"}),
                            ("/stats", {"Authorization": "Basic k1"})]) == [200, 401, 401, 200, 200, 401]


def test_internal_endpoints_need_the_secret_with_or_without_an_api_key() -> None:
    for api_key in ("", "k1"):
        assert _statuses(api_key, [("/internal/stats", {}), ("/internal/stats", {API_KEY_HEADER: "k1"}),
                                   ("/internal/stats", {SECRET_HEADER: "guess"}),
                                   ("/internal/stats", {SECRET_HEADER: "s3cret"})]) == [403, 403, 403, 200]
    assert _statuses("", [("/stats", {})]) == [200]


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if "$ref" in node else []
        return own + [r for value in node.values() for r in _refs(value)]
    return [r for item in node for r in _refs(item)] if isinstance(node, list) else []


def test_the_openapi_document_comes_from_the_models_and_is_consistent() -> None:
    spec = build_openapi(384, protected=True)
    schemas = spec["components"]["schemas"]
    assert all(ref.removeprefix("#/components/schemas/") in schemas for ref in _refs(spec))
    vector = schemas["SearchBody"]["properties"]["vector"]
    assert vector["minItems"] == vector["maxItems"] == 384
    assert schemas["SearchBody"]["additionalProperties"] is False
    assert "401" in spec["paths"]["/stats"]["get"]["responses"]
    assert "security" not in spec["paths"]["/health"]["get"]
    open_spec = build_openapi(384, protected=False)
    assert "401" not in open_spec["paths"]["/stats"]["get"]["responses"]
    json.dumps(spec)  # serialisable as served


def test_a_request_the_server_cannot_parse_is_a_documented_400_logged_once_at_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    """A URL over aiohttp's 8,190-byte line limit never reaches a view: the answer is aiohttp's
    text/plain 400, which the OpenAPI document must list for every operation, and the log gets one
    WARNING line, not a traceback at ERROR. A view's crash stays an ERROR."""
    async def run() -> list[tuple[int, str]]:
        app = web.Application(handler_args={"logger": server_log()})

        async def crash(request: web.Request) -> web.Response:
            raise RuntimeError("a bug")

        app.router.add_get("/recommendations/{user}", crash)
        async with TestClient(TestServer(app)) as client:
            answers = []
            for user in ("u" * 9_000, "u"):
                response = await client.get(f"/recommendations/{user}")
                answers.append((response.status, response.content_type))
            return answers

    with caplog.at_level("WARNING", logger="aiohttp.server"):
        assert asyncio.run(run()) == [(400, "text/plain"), (500, "text/plain")]
    refused, crashed = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert refused.levelname == "WARNING" and "refused a malformed request with 400" in refused.getMessage()
    assert refused.exc_info is None and len(refused.getMessage()) < 400
    assert crashed.levelname == "ERROR" and crashed.exc_info is not None
    spec = build_openapi(384, protected=True)
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            assert "text/plain" in operation["responses"]["400"]["content"], path
