"""LangChain integration: a ColBERT retriever, a ColBERT reranker and a multi-vector ``VectorStore``.

Needs ``langchain-core >= 1.0`` (``pip install "colbert-adapters[langchain]"``); importing this module without
it raises :class:`~colbert_adapters.errors.MissingDependencyError` naming the extra. ``import colbert_adapters``
never imports LangChain.

* :class:`ColBERTRetriever` - a ``BaseRetriever`` over a :class:`~colbert_adapters.store.MultiVectorStore`.
* :class:`ColBERTRerank` - a ``BaseDocumentCompressor`` scoring candidates with exact MaxSim
  (``ColBERTRerank(model="lightonai/GTE-ModernColBERT-v1", top_n=3)``); plug it into
  ``langchain_classic.retrievers.ContextualCompressionRetriever`` (``langchain-classic`` comes with the extra).
* :class:`ColBERTVectorStore` - a ``VectorStore`` (CRUD by id, ``similarity_search`` with ``score_threshold``,
  relevance scores in ``[0, 1]``, MMR, search by token vectors, ``as_retriever()`` with the ``similarity``,
  ``similarity_score_threshold`` and ``mmr`` search types, ``langchain_core.indexing.index()``,
  ``from_existing_index``).

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
import os
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
    RetrievalMode,
    check_query,
    load_encoder,
    normalized_relevance,
    query_token_vectors,
    reject_unknown,
    rerank_texts,
    resolve_store,
    search_mode,
    search_with_query_length,
)

__all__ = ["ColBERTRerank", "ColBERTRetriever", "ColBERTVectorStore", "RetrievalMode"]

logger = logging.getLogger(__name__)


def _to_document(hit: Hit, extra: dict[str, Any] | None = None) -> Document:
    # A fresh Document per hit: the backend returns copies, so callers can edit results freely.
    metadata = {**hit.metadata, **(extra or {})}
    if hit.highlights is not None:
        metadata["highlights"] = list(hit.highlights)
    if hit.span is not None:  # a long document stored in windows: the characters of the window that matched
        metadata["span"] = list(hit.span)
    return Document(id=hit.id, page_content=hit.text or "", metadata=metadata)


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
        highlight: put the matched ``(start, end, weight)`` character spans of each document's text in
            ``metadata["highlights"]`` (see ``MultiVectorStore.search(highlight=True)``; render them with
            :func:`colbert_adapters.highlight.render`).
        retrieval_mode: ``RetrievalMode.DENSE`` (MaxSim, the default), ``SPARSE`` (BM25 over the stored texts) or
            ``HYBRID`` (both, reciprocal-rank fused), as langchain-qdrant; ``"late"``/``"lexical"``/``"hybrid"`` too.

    Raises:
        InvalidInputError: (at call time) blank query, ``k <= 0``, a malformed filter, or ``highlight`` with an
            encoder without token offsets.

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
    highlight: bool = Field(default=False, description="Put the matched character spans in metadata['highlights'].")
    retrieval_mode: RetrievalMode | str = Field(
        default=RetrievalMode.DENSE, description="DENSE (MaxSim), SPARSE (BM25) or HYBRID (both fused)."
    )

    @model_validator(mode="before")
    @classmethod
    def _parts_to_store(cls, data: Any) -> Any:
        return _build_store_from_parts(data, "ColBERTRetriever")

    def _search(self, query: str, **kwargs: Any) -> list[Document]:
        k = kwargs.pop("k", self.k)
        flt = kwargs.pop("filter", self.filter)
        highlight = kwargs.pop("highlight", self.highlight)
        mode = search_mode(kwargs.pop("retrieval_mode", self.retrieval_mode))
        reject_unknown("ColBERTRetriever.invoke", kwargs, ("k", "filter", "highlight", "retrieval_mode"))
        check_query(query, owner="ColBERTRetriever")
        hits = self.store.search(query, k=k, filter=flt, highlight=highlight, mode=mode)
        return [_to_document(h, {self.score_key: h.score}) for h in hits]

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

    Construct it with a model, as the official LlamaIndex ColbertRerank and RAGatouille are
    (``ColBERTRerank(model="lightonai/GTE-ModernColBERT-v1", top_n=3)``: a Hub id or a local checkpoint path,
    loaded as a :class:`~colbert_adapters.encoder.ColBERTEncoder`), or with an ``encoder=``. It reranks any
    texts; no index is needed.

    Give it ``store=`` (or ``encoder=`` + ``backend=``) and documents whose ``id`` the backend knows are scored
    with the stored token vectors instead of being re-encoded (only when the stored text equals
    ``page_content``). The other documents, including those without an ``id``, are encoded in one batched
    call. An empty document list returns ``[]``.

    Args:
        model: Hub id or local path of a ColBERT checkpoint, loaded when no ``encoder``/``store`` is given.
        device: device for the model loaded from ``model`` (``None``: cuda, then mps, then cpu).
        encoder: the ColBERT encoder (taken from ``store`` when omitted).
        store: optional store whose stored token vectors are reused.
        top_n: number of documents to keep (>= 1).
        batch_size: encoder batch size for documents that must be encoded.

    Raises:
        InvalidInputError: no model or encoder, ``model`` with ``encoder``/``store``, ``device`` without
            ``model``, an encoder that differs from the store's ("mixed" models), a blank query.

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
    model: str | None = Field(
        default=None, description="Hub id or local path of the ColBERT checkpoint loaded as the encoder."
    )
    device: str | None = Field(default=None, description="Device of the model loaded from `model`.")

    @model_validator(mode="before")
    @classmethod
    def _resolve(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        store, encoder, backend = data.get("store"), data.get("encoder"), data.pop("backend", None)
        model, device = data.get("model"), data.get("device")
        if model is not None:
            if store is not None or encoder is not None or backend is not None:
                raise InvalidInputError(
                    "ColBERTRerank: pass model= (a checkpoint to load) or encoder=/store=, not both"
                )
            data["encoder"] = load_encoder(model, device, owner="ColBERTRerank")
            data["model"] = os.fspath(model)
            return data
        if device is not None:
            raise InvalidInputError(
                "ColBERTRerank: device= applies to the model loaded from model=; an encoder you pass is already "
                "on its device"
            )
        if store is not None or backend is not None:
            data["store"] = resolve_store(store, encoder, backend, owner="ColBERTRerank")
            data.setdefault("encoder", data["store"].encoder)
            if data["encoder"] is None:
                data["encoder"] = data["store"].encoder
        elif encoder is None:
            raise InvalidInputError(
                "ColBERTRerank needs encoder=, model= (a Hub id or checkpoint path to load) or "
                "store=MultiVectorStore(encoder, backend)"
            )
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
    * ``similarity_search(query, k, filter=..., score_threshold=...)`` returns documents with exactly their
      stored metadata; ``similarity_search_with_score`` adds the raw MaxSim score (the sum over the query's
      token vectors of the best cosine: ``-n .. n`` for ``n`` query token vectors, higher is better).
      ``score_threshold`` there is on that raw scale, as in langchain-qdrant.
    * ``similarity_search_with_relevance_scores`` (and ``as_retriever(search_type="similarity_score_threshold",
      search_kwargs={"score_threshold": 0.8})``) use a score in ``[0, 1]``: the MaxSim score divided by the
      number of query token vectors (a mean cosine in ``[-1, 1]``) mapped linearly to ``[0, 1]``.
    * ``max_marginal_relevance_search`` (and ``as_retriever(search_type="mmr", search_kwargs={"k", "fetch_k",
      "lambda_mult", "filter"})``) use :meth:`MultiVectorStore.max_marginal_relevance_search`: MaxSim between
      the stored token vectors is the similarity of two documents.
    * ``similarity_search_by_vector`` / ``max_marginal_relevance_search_by_vector`` take the query's token
      vectors (``vs.store.encode_query(text)``, a ``(n_tokens, dim)`` array or list of lists); a single flat
      vector raises.
    * :meth:`from_documents` / :meth:`from_texts` take ``encoder=`` (no ``embedding``);
      :meth:`from_existing_index` reopens an index directory or Qdrant URL.

    A filter on a metadata field no document has matches nothing (empty result).

    Args:
        store: the store (preferred), or
        encoder: an encoder, with ``backend`` (default: a new exact in-memory backend).
        backend: the backend, with ``encoder``.
        embedding: ignored; accepted so code written for single-vector stores keeps working. ColBERT encodes
            with ``encoder`` (the ``Embeddings`` interface returns one vector per text).
        batch_size: default encoder batch size for writes.
        retrieval_mode: how ``similarity_search*`` (and its retrievers) search: ``RetrievalMode.DENSE`` (MaxSim),
            ``SPARSE`` (BM25; scores are BM25) or ``HYBRID`` (fused; scores are reciprocal-rank sums), as
            langchain-qdrant's ``retrieval_mode``; relevance scores in ``[0, 1]`` exist for ``DENSE`` only.
    """

    def __init__(
        self,
        store: MultiVectorStore | None = None,
        *,
        encoder: Encoder | None = None,
        backend: Backend | None = None,
        embedding: Embeddings | None = None,
        batch_size: int = 32,
        retrieval_mode: RetrievalMode | str = RetrievalMode.DENSE,
    ) -> None:
        self._store = resolve_store(store, encoder, backend, owner="ColBERTVectorStore", default_backend=True)
        self._batch_size = check_k(batch_size)
        self._mode = search_mode(retrieval_mode)
        self.retrieval_mode = retrieval_mode
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
        self,
        query: str,
        k: int = 4,
        filter: dict[str, Any] | None = None,
        score_threshold: float | None = None,
        highlight: bool = False,
        **kwargs: Any,
    ) -> list[tuple[Document, float]]:
        """Top ``k`` documents with their raw MaxSim score (higher is better).

        Args:
            query: the query (non-blank).
            k: number of results (>= 1).
            filter: metadata filter ``{"field": value}`` / ``{"field": [v1, v2]}``.
            score_threshold: drop documents scoring below this raw MaxSim score (``-n .. n`` for ``n`` query
                token vectors; ``len(vs.store.encode_query(query))`` is ``n``).
            highlight: put the matched ``(start, end, weight)`` character spans of each document's text in
                ``metadata["highlights"]`` (see ``MultiVectorStore.search(highlight=True)``).
            **kwargs: none accepted (raises :class:`TypeError`).
        """
        mode = search_mode(kwargs.pop("retrieval_mode", self._mode))
        allowed = ("k", "filter", "score_threshold", "highlight", "retrieval_mode")
        reject_unknown("ColBERTVectorStore.similarity_search", kwargs, allowed)
        hits, _ = search_with_query_length(
            self._store, query, k, filter, score_threshold, highlight=highlight, mode=mode
        )
        return [(_to_document(h), h.score) for h in hits]

    def similarity_search(
        self,
        query: str,
        k: int = 4,
        filter: dict[str, Any] | None = None,
        score_threshold: float | None = None,
        highlight: bool = False,
        **kwargs: Any,
    ) -> list[Document]:
        """Top ``k`` documents for ``query`` (see :meth:`similarity_search_with_score`)."""
        hits = self.similarity_search_with_score(
            query, k, filter=filter, score_threshold=score_threshold, highlight=highlight, **kwargs
        )
        return [d for d, _ in hits]

    def similarity_search_with_score_by_vector(
        self,
        embedding: Any,
        k: int = 4,
        filter: dict[str, Any] | None = None,
        score_threshold: float | None = None,
        **kwargs: Any,
    ) -> list[tuple[Document, float]]:
        """Top ``k`` documents for a query given as its token vectors, with their raw MaxSim scores.

        Args:
            embedding: the query's token vectors, float32 ``(n_tokens, dim)`` (``vs.store.encode_query(text)``)
                or a list of ``n_tokens`` lists of ``dim`` floats. A single flat vector raises: MaxSim needs one
                vector per query token.
            k: number of results (>= 1).
            filter: metadata filter.
            score_threshold: drop documents scoring below this raw MaxSim score.
            **kwargs: none accepted (raises :class:`TypeError`).

        Raises:
            InvalidInputError: a flat vector, a ragged or empty array, bad ``k``, filter or threshold.
            DimensionMismatchError: the token vectors' dimension differs from the encoder's.
        """
        reject_unknown("ColBERTVectorStore.similarity_search_by_vector", kwargs, ("k", "filter", "score_threshold"))
        q = query_token_vectors(embedding, owner="ColBERTVectorStore.similarity_search_by_vector")
        hits = self._store.search_by_vectors(q, k=k, filter=filter, score_threshold=score_threshold)
        return [(_to_document(h), h.score) for h in hits]

    def similarity_search_by_vector(
        self,
        embedding: Any,
        k: int = 4,
        filter: dict[str, Any] | None = None,
        score_threshold: float | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """Top ``k`` documents for a query given as its token vectors (see
        :meth:`similarity_search_with_score_by_vector`)."""
        hits = self.similarity_search_with_score_by_vector(
            embedding, k, filter=filter, score_threshold=score_threshold, **kwargs
        )
        return [d for d, _ in hits]

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: dict[str, Any] | None = None,
        score_threshold: float | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """Documents both relevant and diverse, by maximal marginal relevance over MaxSim.

        The best ``fetch_k`` documents by MaxSim are the candidates; ``k`` of them are picked one at a time,
        trading relevance (MaxSim / query tokens) against similarity to the documents already picked (MaxSim
        between their stored token vectors, both ways, each divided by its token count): see
        :meth:`MultiVectorStore.max_marginal_relevance_search` for the formula.

        Args:
            query: the query (non-blank).
            k: number of documents to return.
            fetch_k: number of candidates (raised to ``k`` when smaller).
            lambda_mult: ``1`` is relevance alone (the order of :meth:`similarity_search`), ``0`` diversity
                alone after the first document.
            filter: metadata filter.
            score_threshold: drop candidates scoring below this raw MaxSim score.
            **kwargs: none accepted (raises :class:`TypeError`).

        Returns:
            Up to ``k`` documents in the order picked.
        """
        return [
            d
            for d, _ in self._mmr(
                "max_marginal_relevance_search", query, None, k, fetch_k, lambda_mult, filter, score_threshold, kwargs
            )
        ]

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: Any,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: dict[str, Any] | None = None,
        score_threshold: float | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """:meth:`max_marginal_relevance_search` for a query given as its token vectors (a ``(n_tokens, dim)``
        array or list of lists, e.g. ``vs.store.encode_query(text)``; a single flat vector raises)."""
        return [
            d
            for d, _ in self.max_marginal_relevance_search_with_score_by_vector(
                embedding, k, fetch_k, lambda_mult, filter=filter, score_threshold=score_threshold, **kwargs
            )
        ]

    def max_marginal_relevance_search_with_score_by_vector(
        self,
        embedding: Any,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: dict[str, Any] | None = None,
        score_threshold: float | None = None,
        **kwargs: Any,
    ) -> list[tuple[Document, float]]:
        """:meth:`max_marginal_relevance_search_by_vector` with each document's raw MaxSim score for the query."""
        return self._mmr(
            "max_marginal_relevance_search_by_vector",
            None,
            embedding,
            k,
            fetch_k,
            lambda_mult,
            filter,
            score_threshold,
            kwargs,
        )

    def _mmr(
        self,
        owner: str,
        query: str | None,
        embedding: Any,
        k: int,
        fetch_k: int,
        lambda_mult: float,
        filter: dict[str, Any] | None,
        score_threshold: float | None,
        kwargs: dict[str, Any],
    ) -> list[tuple[Document, float]]:
        accepted = ("k", "fetch_k", "lambda_mult", "filter", "score_threshold")
        reject_unknown(f"ColBERTVectorStore.{owner}", kwargs, accepted)
        options: dict[str, Any] = {
            "k": k,
            "fetch_k": fetch_k,
            "lambda_mult": lambda_mult,
            "filter": filter,
            "score_threshold": score_threshold,
        }
        if query is not None:
            check_query(query, owner=f"ColBERTVectorStore.{owner}")
            hits = self._store.max_marginal_relevance_search(query, **options)
        else:
            q = query_token_vectors(embedding, owner=f"ColBERTVectorStore.{owner}")
            hits = self._store.max_marginal_relevance_search_by_vectors(q, **options)
        return [(_to_document(h), h.score) for h in hits]

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
        if self._mode != "late":
            raise InvalidInputError(
                f"relevance scores in [0, 1] are defined for RetrievalMode.DENSE; this store searches {self._mode} "
                "(BM25 and fused scores have no fixed range): use similarity_search_with_score"
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
        mode = kwargs.pop("retrieval_mode", RetrievalMode.DENSE)
        vs = cls(store, encoder=encoder, backend=backend, embedding=embedding, retrieval_mode=mode)
        vs.add_texts(texts, metadatas, ids=ids, **kwargs)
        return vs

    @classmethod
    def from_documents(
        cls, documents: list[Document], embedding: Embeddings | None = None, **kwargs: Any
    ) -> ColBERTVectorStore:
        """Create a store and add ``documents`` (their ``id`` kept when set): LangChain's ``from_documents``,
        with the ColBERT encoder given as ``encoder=`` and no ``embedding``.

        Args:
            documents: the documents.
            embedding: unused (a ColBERT store encodes with ``encoder``); accepted for LangChain compatibility.
            **kwargs: :meth:`from_texts` arguments: ``encoder=`` (with ``backend=``) or ``store=``, ``ids=``,
                ``batch_size=``.

        Raises:
            InvalidInputError: neither ``encoder`` nor ``store`` was given.

        Example:
            >>> from colbert_adapters.testing import FakeEncoder
            >>> vs = ColBERTVectorStore.from_documents([Document("the cat sat", id="cat")], encoder=FakeEncoder())
            >>> vs.similarity_search("cat", k=1)[0].id
            'cat'
        """
        vs: ColBERTVectorStore = super().from_documents(documents, embedding, **kwargs)  # type: ignore[arg-type]
        return vs

    @classmethod
    async def afrom_documents(
        cls, documents: list[Document], embedding: Embeddings | None = None, **kwargs: Any
    ) -> ColBERTVectorStore:
        """:meth:`from_documents` in a worker thread."""
        return await run_in_executor(None, cls.from_documents, documents, embedding, **kwargs)

    @classmethod
    def from_existing_index(
        cls,
        location: str | os.PathLike[str],
        encoder: Encoder | None = None,
        *,
        batch_size: int = 32,
        **kwargs: Any,
    ) -> ColBERTVectorStore:
        """Reopen an existing index (langchain-qdrant's ``from_existing_collection``), through
        :meth:`MultiVectorStore.open`.

        Args:
            location: a directory made by ``colbert-adapters index``, a Voyager / Qdrant Edge / saved memory
                index directory, or a Qdrant server URL.
            encoder: the encoder the index was built with; ``None`` loads the model a ``colbert-adapters index``
                directory records.
            batch_size: default encoder batch size for writes.
            **kwargs: :meth:`MultiVectorStore.open` arguments: ``read_only=``, ``device=``, and backend arguments
                such as ``collection_name=`` for a URL.

        Raises:
            CollectionConfigError: ``location`` is not an index, or ``encoder`` is another model than its own.
            InvalidInputError: no encoder is given and the index records no loadable model.
        """
        return cls(MultiVectorStore.open(location, encoder, **kwargs), batch_size=batch_size)
