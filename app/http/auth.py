"""Who may call what: clients need the API key (when one is set), workers the cluster secret.

The worker-to-worker endpoints (``/internal/*``) answer only requests that carry the
cluster secret, whether or not an API key is set: they take raw query frames and reveal
every partition's contents. The secret is ``STREAMVEC_CLUSTER_SECRET`` when given;
otherwise the first worker of the group draws a random one and shares it through the
one-partition topic ``<app id>-cluster-secret`` (kept forever, never compacted), so a group
works with no setup and every member agrees on the first record of that topic. Anyone who can read that topic
can call the internal endpoints, which is no more than they could read from the events
topic itself; set the variable to keep the secret out of Kafka.

Secrets are compared with :func:`hmac.compare_digest` (constant time) and never logged.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web

from app.search.secret import SECRET_HEADER, ClusterSecret

API_KEY_HEADER = "X-API-Key"
OPEN_PATHS = frozenset({"/health"})
INTERNAL_PREFIX = "/internal/"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def auth_middleware(api_key: str, secret: ClusterSecret,
                    open_paths: frozenset[str] = OPEN_PATHS) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """aiohttp middleware enforcing the rules in the module docstring; ``open_paths`` never need the key."""

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(INTERNAL_PREFIX):
            if not _same(request.headers.get(SECRET_HEADER), await secret.get()):
                return web.json_response({"error": "worker-to-worker endpoint: the cluster secret is missing "
                                          "or wrong (all workers need the same STREAMVEC_CLUSTER_SECRET)"},
                                         status=403)
        elif api_key and request.path not in open_paths and not _same(_presented_key(request), api_key):
            return web.json_response(
                {"error": f"an API key is required: send it as `{API_KEY_HEADER}: <key>` or `Authorization: Bearer <key>`"},
                status=401, headers={"WWW-Authenticate": 'Bearer realm="streamvec"'})
        return await handler(request)

    return check


def _presented_key(request: web.Request) -> str | None:
    if API_KEY_HEADER in request.headers:
        return request.headers[API_KEY_HEADER]
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token if scheme.lower() == "bearer" else None


def _same(presented: str | None, expected: str) -> bool:
    return presented is not None and hmac.compare_digest(presented.encode(), expected.encode())
