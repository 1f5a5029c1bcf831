"""The LlamaIndex retriever: MaxSim search over a MultiVectorStore, returning LlamaIndex nodes."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks import CallbackManager
from llama_index.core.constants import DEFAULT_SIMILARITY_TOP_K
from llama_index.core.schema import BaseNode, IndexNode, NodeWithScore, QueryBundle, TextNode
from llama_index.core.vector_stores.types import MetadataFilters
from llama_index.core.vector_stores.utils import metadata_dict_to_node

from ..._validation import check_ids, check_k
from ...backends.base import Backend
from ...store import MultiVectorStore
from ...types import Encoder, Hit
from .._common import check_query, resolve_store
from ._filters import _NO_MATCH, _with_doc_ids, to_filter

__all__ = ["ColBERTRetriever"]

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
        callback_manager, object_map, objects, verbose: as for any LlamaIndex ``BaseRetriever``.

    Raises:
        InvalidInputError: ``similarity_top_k <= 0``, unsupported filters, no store; at query time, a blank
            query.
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
        hits = self._store.search(query, k=self._similarity_top_k, filter=self._filter, ids=self._node_ids)
        return [NodeWithScore(node=_hit_to_node(h), score=h.score) for h in hits]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return await asyncio.to_thread(self._retrieve, query_bundle)
