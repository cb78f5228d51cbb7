"""Errors the client raises: one root, and a subclass per thing the caller can act on.

Each message says what went wrong and what to do; ``status`` and the worker's own
``error`` text are kept for callers that branch on them.
"""

from __future__ import annotations


class StreamvecError(Exception):
    """Root of every error the client raises on purpose, so callers can catch one type."""


class RequestError(StreamvecError):
    """A worker refused the request (4xx): fix the request; the message is the worker's."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class AuthenticationError(RequestError):
    """The worker needs an API key (401): pass ``api_key=`` (the workers' ``STREAMVEC_API_KEY``)."""


class Unavailable(StreamvecError):
    """No worker answered, or every try answered 503 (recovering, rebalancing): retry later."""


class ServerError(StreamvecError):
    """A worker failed on a valid request (5xx other than 503): its log has the details."""


class WriteError(StreamvecError):
    """Events could not be written to Kafka; the message names the topic and broker."""


class NotVisible(StreamvecError):
    """Written events did not become visible in time (``wait=True``); the message lists them."""
