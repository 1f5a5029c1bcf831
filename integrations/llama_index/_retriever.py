"""The LlamaIndex retriever: MaxSim search over a MultiVectorStore, returning LlamaIndex nodes."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks import CallbackManager
from llama_index.core.constants import DEFAULT_SIMILARITY_TOP_K
from llama_index.core.schema import BaseNode, IndexNode, MetadataMode, NodeWithScore, QueryBundle, TextNode
from llama_index.core.vector_stores.types import MetadataFilters, VectorStoreQueryMode
from llama_index.core.vector_stores.utils import metadata_dict_to_node

from ..._fusion import check_hybrid
from ..._mmr import check_lambda_mult, check_score_threshold
from ..._validation import check_ids, check_k
from ...backends.base import Backend
from ...errors import InvalidInputError
from ...highlight import highlight_hits
from ...store import MultiVectorStore
from ...types import Encoder, Hit
from .._common import check_query, resolve_store
from ._filters import _NO_MATCH, _with_doc_ids, to_filter

__all__ = ["ColBERTRetriever"]

#: LlamaIndex's default number of MMR candidates per result (its vector stores' ``DEFAULT_MMR_PREFETCH_FACTOR``).
MMR_PREFETCH_FACTOR = 4.0
#: The ``vector_store_kwargs`` keys of the MMR mode (LlamaIndex's names).
MMR_KEYS = ("mmr_threshold", "mmr_prefetch_factor", "mmr_prefetch_k")


@dataclass(frozen=True, slots=True)
class _Mmr:
    """The MMR settings of a retriever: ``lambda_mult`` and the number of candidates."""

    lambda_mult: float
    fetch_k: int


#: LlamaIndex query modes answered by ``MultiVectorStore.search(mode=...)``: BM25, and BM25 fused with MaxSim.
_LEXICAL_MODES = {
    VectorStoreQueryMode.SPARSE: "lexical",
    VectorStoreQueryMode.TEXT_SEARCH: "lexical",
    VectorStoreQueryMode.HYBRID: "hybrid",
}


def _mmr_settings(mode: object, kwargs: Mapping[str, Any] | None, top_k: int) -> _Mmr | None:
    """The MMR settings of ``vector_store_query_mode`` / ``vector_store_kwargs``; ``None`` for plain search."""
    try:
        resolved = VectorStoreQueryMode(mode)
    except ValueError:
        resolved = None
    if resolved not in (VectorStoreQueryMode.DEFAULT, VectorStoreQueryMode.MMR, *_LEXICAL_MODES):
        raise InvalidInputError(
            f"vector_store_query_mode {mode!r} is not supported: use 'default' (MaxSim), 'mmr', 'sparse' or "
            "'text_search' (BM25 over the texts), or 'hybrid' (both fused)"
        )
    options = dict(kwargs or {})
    unknown = sorted(set(options) - set(MMR_KEYS))
    if unknown:
        raise InvalidInputError(
            f"unknown vector_store_kwargs {', '.join(unknown)}; ColBERTRetriever takes {', '.join(MMR_KEYS)} (with "
            "vector_store_query_mode='mmr')"
        )
    if resolved != VectorStoreQueryMode.MMR:
        if options:
            raise InvalidInputError(
                f"vector_store_kwargs {', '.join(sorted(options))} apply to vector_store_query_mode='mmr' only"
            )
        return None
    lam = check_lambda_mult(options.get("mmr_threshold", 0.5), "mmr_threshold")
    if "mmr_prefetch_k" in options and "mmr_prefetch_factor" in options:
        raise InvalidInputError("pass mmr_prefetch_k or mmr_prefetch_factor, not both")
    if "mmr_prefetch_k" in options:
        return _Mmr(lam, check_k(options["mmr_prefetch_k"]))
    factor = options.get("mmr_prefetch_factor", MMR_PREFETCH_FACTOR)
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not math.isfinite(factor) or factor < 1:
        raise InvalidInputError(f"mmr_prefetch_factor must be a number >= 1 (candidates per result), got {factor!r}")
    return _Mmr(lam, max(top_k, math.ceil(top_k * factor)))


# --------------------------------------------------------------------------------------------------- nodes


def _hit_to_node(hit: Hit) -> BaseNode:
    metadata = dict(hit.metadata)
    if "_node_content" in metadata:  # written by ColBERTIndex: the full node, text stored separately
        return metadata_dict_to_node(metadata, text=hit.text)
    return TextNode(id_=hit.id, text=hit.text or "", metadata=metadata)


# --------------------------------------------------------------------------------------------------- retriever


class ColBERTRetriever(BaseRetriever):
    """LlamaIndex retriever: MaxSim search over a :class:`~colbert_adapters.store.MultiVectorStore`.

    Nodes written by :class:`ColBERTIndex` come back complete (relationships, metadata); documents added
    with ``MultiVectorStore.add`` come back as ``TextNode`` with their id, text and metadata. Scores are raw
    MaxSim (higher is better). ``aretrieve`` runs the search in a worker thread (the LlamaIndex default
    would block the event loop).

    Args:
        store: the store to search (or ``encoder=`` and ``backend=``).
        encoder: the encoder, with ``backend``.
        backend: the backend, with ``encoder``.
        similarity_top_k: number of nodes to return (>= 1).
        filters: ``MetadataFilters`` (EQ/IN, AND) or ``{"field": value or [values]}``.
        doc_ids: search only the nodes of these source documents (``ref_doc_id``), as LlamaIndex's vector
            retrievers do.
        node_ids: search only these nodes (scored exactly, see ``MultiVectorStore.search(ids=)``).
        vector_store_query_mode: ``"default"`` (MaxSim search) or ``"mmr"`` (``VectorStoreQueryMode.MMR``):
            maximal marginal relevance, with MaxSim between the stored token vectors as the similarity of two
            nodes (:meth:`MultiVectorStore.max_marginal_relevance_search`).
            ``"sparse"`` / ``"text_search"``: BM25 over the stored texts (scores are BM25); ``"hybrid"``: MaxSim
            and BM25 fused (``MultiVectorStore.search(mode="hybrid")``), by reciprocal rank, or with ``alpha`` by
            a weighted blend of min-max normalised scores (scores in ``[0, 1]``).
        alpha: ``"hybrid"`` only: the weight of the dense (MaxSim) list, LlamaIndex's convention (``1`` dense
            alone, ``0`` BM25 alone); ``None`` fuses by reciprocal rank.
        vector_store_kwargs: for ``"mmr"``, LlamaIndex's keys: ``mmr_threshold`` (``0`` most diverse .. ``1``
            relevance only, default 0.5), and the candidates, ``mmr_prefetch_k`` or ``mmr_prefetch_factor``
            (default 4: ``4 * similarity_top_k`` candidates).
        score_threshold: drop nodes scoring below this raw MaxSim score (see below).
        highlight: put the matched ``(start, end, weight)`` character spans of each node's text in
            ``node.metadata["highlights"]`` (see ``MultiVectorStore.search(highlight=True)``; render them with
            :func:`colbert_adapters.highlight.render`). Needs an encoder with token offsets (``ColBERTEncoder``).
        callback_manager, object_map, objects, verbose: as for any LlamaIndex ``BaseRetriever``.

    Scores are raw MaxSim, in MMR mode too: the sum over the query's token vectors of the best cosine, so between
    ``-n`` and ``n`` for a query of ``n`` token vectors (``len(store.encode_query(query))``). A
    ``SimilarityPostprocessor(similarity_cutoff=c)`` after this retriever works on that scale: for a mean cosine
    ``m`` per query token, use ``c = m * n``.

    Raises:
        InvalidInputError: ``similarity_top_k <= 0``, unsupported filters, an unsupported query mode or
            ``vector_store_kwargs``, a bad ``score_threshold``, no store; at query time, a blank query, or
            ``highlight`` with an encoder without token offsets.
    """

    def __init__(
        self,
        store: MultiVectorStore | None = None,
        *,
        encoder: Encoder | None = None,
        backend: Backend | None = None,
        similarity_top_k: int = DEFAULT_SIMILARITY_TOP_K,
        filters: MetadataFilters | Mapping[str, Any] | None = None,
        doc_ids: Sequence[str] | None = None,
        node_ids: Sequence[str] | None = None,
        vector_store_query_mode: VectorStoreQueryMode | str = VectorStoreQueryMode.DEFAULT,
        vector_store_kwargs: Mapping[str, Any] | None = None,
        alpha: float | None = None,
        score_threshold: float | None = None,
        highlight: bool = False,
        callback_manager: CallbackManager | None = None,
        object_map: dict[str, Any] | None = None,
        objects: list[IndexNode] | None = None,
        verbose: bool = False,
    ) -> None:
        self._store = resolve_store(store, encoder, backend, owner="ColBERTRetriever")
        self._similarity_top_k = check_k(similarity_top_k)
        self._filters = filters
        self._filter = _with_doc_ids(to_filter(filters), doc_ids)
        self._node_ids = None if node_ids is None else check_ids(node_ids, allow_duplicates=True)
        self._mmr = _mmr_settings(vector_store_query_mode, vector_store_kwargs, self._similarity_top_k)
        self._mode = _LEXICAL_MODES.get(VectorStoreQueryMode(vector_store_query_mode), "late")
        if alpha is not None and self._mode != "hybrid":
            raise InvalidInputError("alpha applies to vector_store_query_mode='hybrid' only")
        self._hybrid = {"fusion": "rrf"} if alpha is None else {"fusion": "blend", "alpha": alpha}
        if self._mode == "hybrid":
            check_hybrid(self._hybrid["fusion"], self._hybrid.get("alpha", 0.5), 60, None, False)
        self._score_threshold = check_score_threshold(score_threshold)
        if not isinstance(highlight, bool):
            raise InvalidInputError(f"highlight must be True or False, got {highlight!r}")
        self._highlight = highlight
        super().__init__(callback_manager=callback_manager, object_map=object_map, objects=objects, verbose=verbose)

    @property
    def store(self) -> MultiVectorStore:
        """The store searched."""
        return self._store

    @property
    def similarity_top_k(self) -> int:
        """Number of nodes returned."""
        top_k: int = self._similarity_top_k
        return top_k

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        query = check_query(query_bundle.query_str, owner="ColBERTRetriever")
        if self._filter is _NO_MATCH:
            return []
        options: dict[str, Any] = {
            "filter": self._filter,
            "ids": self._node_ids,
            "score_threshold": self._score_threshold,
        }
        if self._mode != "late":
            hits = self._store.search(query, self._similarity_top_k, mode=self._mode, **self._hybrid, **options)
            qv = self._store.encode_query(query) if self._highlight else None
        elif self._mmr is None:
            qv = self._store.encode_query(query)
            hits = self._store.search_by_vectors(qv, k=self._similarity_top_k, **options)
        else:
            qv = self._store.encode_query(query)
            hits = self._store.max_marginal_relevance_search_by_vectors(
                qv, k=self._similarity_top_k, fetch_k=self._mmr.fetch_k, lambda_mult=self._mmr.lambda_mult, **options
            )
        nodes = [_hit_to_node(h) for h in hits]
        if (
            self._highlight and qv is not None
        ):  # nodes are encoded with their metadata (MetadataMode.EMBED): align on that text
            embedded = [n.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
            hits = highlight_hits(self._store, qv, hits, encoded_texts=embedded)
            for node, hit in zip(nodes, hits, strict=True):
                node.metadata["highlights"] = list(hit.highlights or [])
        for node, hit in zip(nodes, hits, strict=True):
            if hit.span is not None:  # a long document stored in windows: the characters of the matching window
                node.metadata["span"] = list(hit.span)
        return [NodeWithScore(node=n, score=h.score) for n, h in zip(nodes, hits, strict=True)]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return await asyncio.to_thread(self._retrieve, query_bundle)
