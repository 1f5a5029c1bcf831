"""LangChain integration: a ColBERT retriever, a ColBERT reranker and a multi-vector ``VectorStore``.

Needs ``langchain-core >= 1.0`` (``pip install "colbert-adapters[langchain]"``); importing this module without
it raises :class:`~colbert_adapters.errors.MissingDependencyError` naming the extra. ``import colbert_adapters``
never imports LangChain.

* :class:`ColBERTRetriever` - a ``BaseRetriever`` over a :class:`~colbert_adapters.store.MultiVectorStore`.
* :class:`ColBERTRerank` - a ``BaseDocumentCompressor`` scoring candidates with exact MaxSim; plug it into
  ``langchain_classic.retrievers.ContextualCompressionRetriever``.
* :class:`ColBERTVectorStore` - a ``VectorStore`` (CRUD by id, ``similarity_search``, relevance scores in
  ``[0, 1]``, ``as_retriever()``, ``langchain_core.indexing.index()``).

Example:
    >>> from colbert_adapters.integrations.langchain import ColBERTVectorStore
    >>> from colbert_adapters.testing import FakeEncoder
    >>> vs = ColBERTVectorStore(encoder=FakeEncoder(dim=16))
    >>> vs.add_texts(["the cat sat", "dogs bark loudly"], ids=["cat", "dog"])
    ['cat', 'dog']
    >>> [d.id for d in vs.as_retriever(search_kwargs={"k": 1}).invoke("a cat")]
    ['cat']
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .._optional import require

require("langchain_core", extra="langchain", package="langchain-core")

from langchain_core.callbacks import (  # noqa: E402
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
    Callbacks,
)
from langchain_core.documents import BaseDocumentCompressor, Document  # noqa: E402
from langchain_core.embeddings import Embeddings  # noqa: E402
from langchain_core.retrievers import BaseRetriever  # noqa: E402
from langchain_core.runnables.config import run_in_executor  # noqa: E402
from langchain_core.vectorstores import VectorStore  # noqa: E402
from pydantic import ConfigDict, Field, model_validator  # noqa: E402

from .._validation import check_k  # noqa: E402
from ..backends.base import Backend  # noqa: E402
from ..errors import InvalidInputError  # noqa: E402
from ..store import MultiVectorStore  # noqa: E402
from ..types import Encoder, Hit  # noqa: E402
from ._common import (  # noqa: E402
    check_query,
    normalized_relevance,
    reject_unknown,
    rerank_texts,
    resolve_store,
    search_with_query_length,
)

__all__ = ["ColBERTRerank", "ColBERTRetriever", "ColBERTVectorStore"]

logger = logging.getLogger(__name__)


def _to_document(hit: Hit, extra: dict[str, Any] | None = None) -> Document:
    # A fresh Document per hit: the backend returns copies, so callers can edit results freely.
    return Document(id=hit.id, page_content=hit.text or "", metadata={**hit.metadata, **(extra or {})})


def _build_store_from_parts(data: Any, owner: str, *, default_backend: bool = False) -> Any:
    """``model_validator(mode="before")`` helper: turn ``encoder=``/``backend=`` into ``store=``."""
    if isinstance(data, dict) and ("encoder" in data or "backend" in data):
        data = dict(data)
        data["store"] = resolve_store(
            data.get("store"),
            data.pop("encoder", None),
            data.pop("backend", None),
            owner=owner,
            default_backend=default_backend,
        )
    return data


# --------------------------------------------------------------------------------------------------- retriever


class ColBERTRetriever(BaseRetriever):
    """LangChain retriever: MaxSim search over a :class:`~colbert_adapters.store.MultiVectorStore`.

    Construct it with ``store=`` or with ``encoder=`` and ``backend=``. ``k`` and ``filter`` can be overridden
    per call: ``retriever.invoke("query", k=2, filter={"source": "a"})``. Each returned ``Document`` is a new
    object with ``id`` set and the raw MaxSim score in ``metadata[score_key]``. ``ainvoke`` runs the search in a
    worker thread, so it never blocks the event loop.

    A filter on a metadata field that no document has matches nothing: the result is ``[]``, not an error.

    Args:
        store: the store to search.
        k: number of documents to return (>= 1).
        filter: metadata filter ``{"field": value}`` / ``{"field": [v1, v2]}`` (AND over fields).
        score_key: metadata key receiving the MaxSim score.

    Raises:
        InvalidInputError: (at call time) blank query, ``k <= 0`` or a malformed filter.

    Example:
        >>> from colbert_adapters import MultiVectorStore
        >>> from colbert_adapters.testing import FakeEncoder
        >>> store = MultiVectorStore(FakeEncoder(dim=16))
        >>> _ = store.add(["the cat sat", "dogs bark"], ids=["cat", "dog"])
        >>> docs = ColBERTRetriever(store=store, k=1).invoke("a cat")
        >>> docs[0].id, docs[0].page_content
        ('cat', 'the cat sat')
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    store: MultiVectorStore = Field(description="Encoder + backend searched with MaxSim.")
    k: int = Field(default=4, gt=0, description="Number of documents to return.")
    filter: dict[str, Any] | None = Field(
        default=None, description="Metadata filter {'field': value or [values]} applied to every query."
    )
    score_key: str = Field(default="score", description="Metadata key that receives the MaxSim score.")

    @model_validator(mode="before")
    @classmethod
    def _parts_to_store(cls, data: Any) -> Any:
        return _build_store_from_parts(data, "ColBERTRetriever")

    def _search(self, query: str, **kwargs: Any) -> list[Document]:
        k = kwargs.pop("k", self.k)
        flt = kwargs.pop("filter", self.filter)
        reject_unknown("ColBERTRetriever.invoke", kwargs, ("k", "filter"))
        check_query(query, owner="ColBERTRetriever")
        return [_to_document(h, {self.score_key: h.score}) for h in self.store.search(query, k=k, filter=flt)]

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        # **kwargs must be declared: BaseRetriever only forwards invoke kwargs (k=, filter=) when it is.
        return self._search(query, **kwargs)

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        return await asyncio.to_thread(self._search, query, **kwargs)


# --------------------------------------------------------------------------------------------------- reranker


class ColBERTRerank(BaseDocumentCompressor):
    """LangChain document compressor that reranks candidates with exact ColBERT MaxSim.

    Scores are computed by :func:`colbert_adapters.scoring.rerank` (sum over query tokens of the best cosine,
    the ColBERT formula). The best ``top_n`` documents come back as *copies* with
    ``metadata["relevance_score"]`` set (the raw MaxSim score); the caller's documents are never mutated.

    Give it ``store=`` (or ``encoder=`` + ``backend=``) and documents whose ``id`` the backend knows are scored
    with the stored token vectors instead of being re-encoded (only when the stored text equals
    ``page_content``). The other documents, including those without an ``id``, are encoded in one batched
    call. An empty document list returns ``[]``.

    Args:
        encoder: the ColBERT encoder (taken from ``store`` when omitted).
        store: optional store whose stored token vectors are reused.
        top_n: number of documents to keep (>= 1).
        batch_size: encoder batch size for documents that must be encoded.

    Raises:
        InvalidInputError: no encoder, an encoder that differs from the store's ("mixed" models), a blank
            query.

    Example:
        >>> from langchain_core.documents import Document
        >>> from colbert_adapters.testing import FakeEncoder
        >>> rr = ColBERTRerank(encoder=FakeEncoder(dim=16), top_n=1)
        >>> docs = [Document("dogs bark"), Document("the cat sat")]
        >>> [d.page_content for d in rr.compress_documents(docs, "a cat")]
        ['the cat sat']
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    encoder: Encoder = Field(description="ColBERT encoder (query, and documents not found in the store).")
    store: MultiVectorStore | None = Field(
        default=None, description="Store whose stored token vectors are reused for documents it holds."
    )
    top_n: int = Field(default=3, gt=0, description="Number of documents to return.")
    batch_size: int = Field(default=32, gt=0, description="Encoder batch size.")

    @model_validator(mode="before")
    @classmethod
    def _resolve(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        store, encoder, backend = data.get("store"), data.get("encoder"), data.pop("backend", None)
        if store is not None or backend is not None:
            data["store"] = resolve_store(store, encoder, backend, owner="ColBERTRerank")
            data.setdefault("encoder", data["store"].encoder)
            if data["encoder"] is None:
                data["encoder"] = data["store"].encoder
        elif encoder is None:
            raise InvalidInputError("ColBERTRerank needs encoder= (or store=MultiVectorStore(encoder, backend))")
        return data

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """Rerank ``documents`` for ``query`` and return the best ``top_n`` as scored copies.

        Args:
            documents: candidates (e.g. from a retriever).
            query: the query (non-blank).
            callbacks: accepted for the LangChain interface (reranking emits no events of its own).

        Returns:
            Up to ``top_n`` new ``Document`` objects, best first, with ``metadata["relevance_score"]``.
        """
        docs = list(documents)
        result = rerank_texts(
            query,
            [d.page_content for d in docs],
            [d.id for d in docs],
            encoder=self.encoder,
            store=self.store,
            top_n=self.top_n,
            batch_size=self.batch_size,
        )
        return [
            docs[i].model_copy(update={"metadata": {**docs[i].metadata, "relevance_score": score}}, deep=True)
            for i, score in result.order
        ]


# --------------------------------------------------------------------------------------------------- vector store


class ColBERTVectorStore(VectorStore):
    """LangChain ``VectorStore`` backed by a multi-vector (ColBERT) index.

    Every document is stored as its token vectors; queries are scored with MaxSim. Works with any
    colbert-adapters backend (exact in-memory, Voyager, Qdrant) through
    :class:`~colbert_adapters.store.MultiVectorStore`.

    * ``add_texts`` / ``add_documents`` upsert by id (``Document.id`` or ``ids=``; missing ids are generated);
      ``batch_size`` sets the encoder batch size (``langchain_core.indexing.index()`` passes it).
    * ``delete(ids)`` ignores unknown ids; ``delete()`` / ``delete(None)`` removes everything, as LangChain's
      ``VectorStore.delete`` documents. ``delete(filter=...)`` raises (filtered deletes are not supported yet)
      rather than delete more than asked.
    * Every method raises :class:`TypeError` on a keyword argument it does not take (a misspelt ``filters=``
      never passes silently).
    * ``get_by_ids`` returns the known documents with ``Document.id`` set.
    * ``similarity_search(query, k, filter=...)`` returns documents with exactly their stored metadata;
      ``similarity_search_with_score`` adds the raw MaxSim score (``0 .. n_query_tokens``, higher is better).
    * ``similarity_search_with_relevance_scores`` (and ``as_retriever(search_type="similarity_score_threshold")``)
      use a score in ``[0, 1]``: the MaxSim score divided by the number of query token vectors (a mean cosine
      in ``[-1, 1]``) mapped linearly to ``[0, 1]``.
    * ``max_marginal_relevance_search`` and search by vector are not supported (a single vector cannot express
      a multi-vector query).

    A filter on a metadata field no document has matches nothing (empty result).

    Args:
        store: the store (preferred), or
        encoder: an encoder, with ``backend`` (default: a new exact in-memory backend).
        backend: the backend, with ``encoder``.
        embedding: ignored; accepted so code written for single-vector stores keeps working. ColBERT encodes
            with ``encoder`` (the ``Embeddings`` interface returns one vector per text).
        batch_size: default encoder batch size for writes.
    """

    def __init__(
        self,
        store: MultiVectorStore | None = None,
        *,
        encoder: Encoder | None = None,
        backend: Backend | None = None,
        embedding: Embeddings | None = None,
        batch_size: int = 32,
    ) -> None:
        self._store = resolve_store(store, encoder, backend, owner="ColBERTVectorStore", default_backend=True)
        self._batch_size = check_k(batch_size)
        del embedding  # documented as unused

    @property
    def store(self) -> MultiVectorStore:
        """The underlying :class:`~colbert_adapters.store.MultiVectorStore`."""
        return self._store

    # ------------------------------------------------------------------------------------------ writes

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        batch_size: int | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Encode and upsert texts.

        Args:
            texts: the texts.
            metadatas: one JSON-serialisable dict per text (or ``None``).
            ids: one id per text; ``None`` entries (or ``ids=None``) get a new UUID. An existing id is replaced.
            batch_size: encoder batch size (default: the store's).
            **kwargs: none accepted (raises :class:`TypeError`).

        Returns:
            The ids, in input order.

        Raises:
            InvalidInputError: lengths differ, duplicate ids, non-JSON metadata.
        """
        text_list = list(texts)
        if ids is None:
            id_list = [str(uuid.uuid4()) for _ in text_list]
        else:
            if len(ids) != len(text_list):
                raise InvalidInputError(f"got {len(ids)} ids for {len(text_list)} texts; pass one id per text")
            id_list = [i if i else str(uuid.uuid4()) for i in ids]
        reject_unknown("ColBERTVectorStore.add_texts", kwargs, ("ids", "batch_size"))
        added: list[str] = self._store.add(
            text_list, ids=id_list, metadatas=metadatas, batch_size=batch_size or self._batch_size
        )
        return added

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete documents by id (unknown ids are ignored), or every document matching ``filter=`` (the forms of
        :meth:`similarity_search`); ``ids=None`` without a filter deletes every document (LangChain's documented
        semantics).

        Returns:
            ``True``.

        Raises:
            InvalidInputError: both ``ids`` and ``filter``, or a malformed or empty filter (nothing is deleted).
            TypeError: any other keyword argument.
        """
        flt = kwargs.pop("filter", None)
        reject_unknown("ColBERTVectorStore.delete", kwargs, ("ids", "filter"))
        if flt is not None:
            if ids is not None:
                raise InvalidInputError("delete takes ids= or filter=, not both")
            self._store.delete(filter=flt)
        elif ids is None:
            self._store.clear()
        else:
            self._store.delete(list(ids))
        return True

    # ------------------------------------------------------------------------------------------ reads

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The stored documents for the known ``ids`` (``Document.id`` set); unknown ids are skipped."""
        return [
            Document(id=r.id, page_content=r.text or "", metadata=dict(r.metadata)) for r in self._store.get(list(ids))
        ]

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Top ``k`` documents with their raw MaxSim score (higher is better).

        Args:
            query: the query (non-blank).
            k: number of results (>= 1).
            filter: metadata filter ``{"field": value}`` / ``{"field": [v1, v2]}``.
            **kwargs: none accepted (raises :class:`TypeError`).
        """
        reject_unknown("ColBERTVectorStore.similarity_search", kwargs, ("k", "filter"))
        hits, _ = search_with_query_length(self._store, query, k, filter)
        return [(_to_document(h), h.score) for h in hits]

    def similarity_search(
        self, query: str, k: int = 4, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[Document]:
        """Top ``k`` documents for ``query`` (see :meth:`similarity_search_with_score`)."""
        return [d for d, _ in self.similarity_search_with_score(query, k, filter=filter, **kwargs)]

    def max_marginal_relevance_search(self, query: str, *args: Any, **kwargs: Any) -> list[Document]:
        """Not available: MMR needs a document-to-document similarity, which this store does not define yet.

        Raises:
            NotImplementedError: always; use :meth:`similarity_search` (or ``search_type="similarity"``).
        """
        raise NotImplementedError(
            "ColBERTVectorStore has no max_marginal_relevance_search (search_type='mmr') yet; use "
            "similarity_search or as_retriever(search_type='similarity')"
        )

    def max_marginal_relevance_search_by_vector(self, embedding: Any, *args: Any, **kwargs: Any) -> list[Document]:
        """Not available (see :meth:`max_marginal_relevance_search`).

        Raises:
            NotImplementedError: always.
        """
        raise NotImplementedError(
            "ColBERTVectorStore has no max_marginal_relevance_search_by_vector: it has no single-vector embeddings "
            "and no MMR yet; use similarity_search"
        )

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        # Applied to the *mean per-query-token* MaxSim (see _similarity_search_with_relevance_scores): a
        # value in [-1, 1] mapped to [0, 1]. The raw sum is unbounded in k, so it cannot be used directly.
        return normalized_relevance

    def _similarity_search_with_relevance_scores(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        kwargs.pop("score_threshold", None)  # applied by the caller
        flt = kwargs.pop("filter", None)
        reject_unknown(
            "ColBERTVectorStore.similarity_search_with_relevance_scores", kwargs, ("k", "filter", "score_threshold")
        )
        hits, n_q = search_with_query_length(self._store, query, k, flt)
        fn = self._select_relevance_score_fn()
        return [(_to_document(h), fn(h.score / n_q)) for h in hits]

    async def _asimilarity_search_with_relevance_scores(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        return await run_in_executor(None, self._similarity_search_with_relevance_scores, query, k, **kwargs)

    # ------------------------------------------------------------------------------------------ construction

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings | None = None,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        store: MultiVectorStore | None = None,
        encoder: Encoder | None = None,
        backend: Backend | None = None,
        **kwargs: Any,
    ) -> ColBERTVectorStore:
        """Create a store and add ``texts`` (LangChain's ``from_texts`` signature).

        Args:
            texts: the texts.
            embedding: unused (kept for LangChain compatibility; may be ``None``). ColBERT needs a token-level
                encoder: pass ``encoder=`` or ``store=``.
            metadatas: one dict per text.
            ids: one id per text.
            store: an existing store to add to, or
            encoder: an encoder (with ``backend``; default an in-memory backend).
            backend: the backend.
            **kwargs: ``batch_size`` and other :meth:`add_texts` arguments.

        Raises:
            InvalidInputError: neither ``encoder`` nor ``store`` was given.
        """
        if store is None and encoder is None:
            raise InvalidInputError(
                "ColBERTVectorStore.from_texts needs encoder= (a ColBERT encoder) or store=; the single-vector "
                "`embedding` argument is not used by a multi-vector store"
            )
        vs = cls(store, encoder=encoder, backend=backend, embedding=embedding)
        vs.add_texts(texts, metadatas, ids=ids, **kwargs)
        return vs
