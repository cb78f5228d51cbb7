"""Errors raised by the pure index layer (embedder, vector index, codecs)."""


class StreamvecError(Exception):
    """Root of every error streamvec raises on purpose, so callers can catch one type."""


class ModelError(StreamvecError, ValueError):
    """The embedding model cannot be found, converted or used; the message names the fix."""


class FilterError(StreamvecError, ValueError):
    """A metadata filter is malformed; the message names the place and the fix."""


class VectorError(StreamvecError, ValueError):
    """A vector has the wrong shape, a non-finite value or zero length."""
