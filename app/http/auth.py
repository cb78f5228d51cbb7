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

import asyncio
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiokafka import AIOKafkaProducer, TopicPartition

from app.topics import bootstrap, ensure_topic, read_to_end

logger = logging.getLogger(__name__)

API_KEY_HEADER = "X-API-Key"
SECRET_HEADER = "X-Streamvec-Secret"
OPEN_PATHS = frozenset({"/health"})
INTERNAL_PREFIX = "/internal/"
_READ_TIMEOUT = 30.0  # seconds
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ClusterSecret:
    """The group's shared secret, fetched once (from the setting or the secret topic)."""

    def __init__(self, configured: str, broker: str, topic: str) -> None:
        self._value = configured or None
        self._broker = broker
        self._topic = topic
        self._lock = asyncio.Lock()

    async def get(self) -> str:
        if self._value is None:
            async with self._lock:
                if self._value is None:
                    self._value = await _shared_secret(self._broker, self._topic)
                    logger.info("cluster secret taken from topic %s", self._topic)
        return self._value


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


async def _shared_secret(broker: str, topic: str) -> str:
    """The first record of the secret topic, after writing one if the topic is empty."""
    await ensure_topic(broker, topic, 1, {"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"})
    first = await _first_record(broker, topic)
    if first is None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap(broker), acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(topic, key=b"secret", value=secrets.token_urlsafe(32).encode())
        finally:
            await producer.stop()
        first = await _first_record(broker, topic)
    assert first is not None, f"topic {topic} is empty right after a write"
    return first


async def _first_record(broker: str, topic: str) -> str | None:
    try:
        records = await asyncio.wait_for(read_to_end(broker, [TopicPartition(topic, 0)]), _READ_TIMEOUT)
    except asyncio.TimeoutError:
        raise RuntimeError(f"could not read the cluster secret from topic {topic}; is the broker healthy?") from None
    return records[0].value.decode() if records else None
