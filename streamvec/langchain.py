"""A LangChain vector store over a streamvec group (``pip install "streamvec-client[langchain]"``).

Texts are embedded by the workers' own model unless an ``embedding`` is given (its vectors
must have the workers' dimension). Writes go through Kafka like any event and, by
default, return only once the workers show them, so a search right after sees them.
Page content comes back as the stored text when the workers return it (text storage).
The async methods are LangChain's defaults: the blocking ones in an executor.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore

from streamvec.client import Client
from streamvec.errors import Unavailable
from streamvec.models import Hit
from streamvec.models import Document as StoredDocument


class StreamvecVectorStore(VectorStore):
    """LangChain's ``VectorStore`` on a :class:`~streamvec.Client` (with ``broker=`` to write).

    Args:
        client: the client; the store does not close it.
        embedding: embeds on the client side instead of the workers (same dimension).
        wait: writes return once every document reads back as written.
        wait_timeout: seconds to wait for that before :class:`~streamvec.NotVisible`.
    """

    def __init__(self, client: Client, *, embedding: Embeddings | None = None, wait: bool = True,
                 wait_timeout: float = 30.0) -> None:
        self.client = client
        self._embedding = embedding
        self._wait = wait
        self._wait_timeout = wait_timeout

    @property
    def embeddings(self) -> Embeddings | None:
        return self._embedding

    @classmethod
    def from_texts(cls, texts: list[str], embedding: Embeddings | None = None,
                   metadatas: list[dict[str, Any]] | None = None, *, ids: list[str] | None = None,
                   client: Client | None = None, **kwargs: Any) -> StreamvecVectorStore:
        """A store on ``client`` (required) holding ``texts``."""
        if client is None:
            raise ValueError("from_texts needs client=streamvec.Client(url, broker=..., app_id=...)")
        store = cls(client, embedding=embedding, **kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store

    def add_texts(self, texts: Iterable[str], metadatas: list[dict[str, Any]] | None = None, *,
                  ids: list[str | None] | None = None, **kwargs: Any) -> list[str]:
        """Upsert texts; a missing id (None) gets a new UUID. Returns the ids in order."""
        _no_options(kwargs)
        texts = list(texts)
        chosen = [given or str(uuid.uuid4()) for given in (ids or [None] * len(texts))]
        metadatas = metadatas or [{} for _ in texts]
        if not len(texts) == len(chosen) == len(metadatas):
            raise ValueError(f"{len(texts)} texts, {len(chosen)} ids and {len(metadatas)} metadatas: give one each")
        vectors: Sequence[Sequence[float] | None] = (
            self._embedding.embed_documents(texts) if self._embedding else [None] * len(texts))
        documents = [{"id": doc_id, "text": text, "metadata": metadata, "vector": vector}
                     for doc_id, text, metadata, vector in zip(chosen, texts, metadatas, vectors, strict=True)]
        self.client.upsert(documents, wait=self._wait, wait_timeout=self._wait_timeout)
        return chosen

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool:
        """Delete documents by id (ids never stored are fine)."""
        _no_options(kwargs)
        if ids is None:
            raise ValueError("give the ids to delete: a streamvec group cannot be emptied through LangChain")
        self.client.delete(ids, wait=self._wait, wait_timeout=self._wait_timeout)
        return True

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The stored documents of ``ids``, in that order; ids not stored are left out. Raises
        :class:`~streamvec.Unavailable` rather than leave out ids whose partitions did not answer."""
        if not ids:
            return []
        found = self.client.get_many(list(ids))
        if found.coverage.partial and None in found.documents:
            raise Unavailable(f"partitions {list(found.coverage.missing)} did not answer; retry when the group settled")
        return [_from_stored(document) for document in found if document is not None]

    def similarity_search(self, query: str, k: int = 4, filter: Mapping[str, Any] | None = None,
                          **kwargs: Any) -> list[Document]:
        return [document for document, _ in self.similarity_search_with_score(query, k, filter, **kwargs)]

    def similarity_search_with_score(self, query: str, k: int = 4, filter: Mapping[str, Any] | None = None,
                                     ef: int | None = None) -> list[tuple[Document, float]]:
        """Documents and cosine similarity (1 = same direction), best first; ``filter`` is a
        streamvec metadata filter, ``ef`` the HNSW search breadth."""
        if self._embedding is not None:
            return self.similarity_search_by_vector_with_score(self._embedding.embed_query(query), k, filter, ef)
        return _scored(self.client.search(query, k=k, filter=filter, ef=ef).hits)

    def similarity_search_by_vector(self, embedding: list[float], k: int = 4,
                                    filter: Mapping[str, Any] | None = None, **kwargs: Any) -> list[Document]:
        return [document for document, _ in self.similarity_search_by_vector_with_score(embedding, k, filter,
                                                                                          **kwargs)]

    def similarity_search_by_vector_with_score(self, embedding: Sequence[float], k: int = 4,
                                               filter: Mapping[str, Any] | None = None,
                                               ef: int | None = None) -> list[tuple[Document, float]]:
        return _scored(self.client.search(vector=embedding, k=k, filter=filter, ef=ef).hits)

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        # Scores are cosine similarities already: LangChain's cosine relevance (1 - distance).
        return lambda score: score


def _scored(hits: Iterable[Hit]) -> list[tuple[Document, float]]:
    return [(Document(page_content=hit.text or "", metadata=dict(hit.metadata), id=hit.id), hit.score)
            for hit in hits]


def _from_stored(document: StoredDocument) -> Document:
    return Document(page_content=document.text or "", metadata=dict(document.metadata), id=document.id)


def _no_options(kwargs: Mapping[str, Any]) -> None:
    if kwargs:
        raise TypeError(f"unexpected arguments {sorted(kwargs)}")
