"""streamvec's Python client: search a streamvec group over HTTP, write to it through Kafka.

``from streamvec import Client, AsyncClient``. This package imports nothing of the
server (no Faust), so an application can depend on it alone: ``pip install
streamvec-client`` (README, "Python client").
"""

from streamvec.client import AsyncClient, Client
from streamvec.errors import (AuthenticationError, NotVisible, RequestError, ServerError, StreamvecError,
                              Unavailable, WriteError)
from streamvec.models import (BatchResult, Coverage, Document, Documents, Hit, Query, SearchResult, Stats,
                              WriteResult)

__version__ = "0.1.0"
__all__ = [
    "AsyncClient", "AuthenticationError", "BatchResult", "Client", "Coverage", "Document", "Documents", "Hit",
    "NotVisible",
    "Query", "RequestError", "SearchResult", "ServerError", "Stats", "StreamvecError", "Unavailable", "WriteError",
    "WriteResult", "__version__",
]
