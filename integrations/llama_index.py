"""LlamaIndex integration: a ColBERT retriever, a ColBERT reranker and a managed index that encodes its own text.

Needs ``llama-index-core >= 0.12`` (``pip install "colbert-adapters[llamaindex]"``); importing this module
without it raises :class:`~colbert_adapters.errors.MissingDependencyError` naming the extra.
``import colbert_adapters`` never imports LlamaIndex.

* :class:`ColBERTRetriever` - a ``BaseRetriever`` (``similarity_top_k``, ``filters``) over a
  :class:`~colbert_adapters.store.MultiVectorStore`; ``aretrieve`` runs in a worker thread.
* :class:`ColBERTRerank` - a ``BaseNodePostprocessor`` scoring nodes with exact MaxSim; emits
  ``ReRankStartEvent`` / ``ReRankEndEvent`` and the legacy ``CBEventType.RERANKING`` callback event.
* :class:`ColBERTIndex` - a ``BaseManagedIndex``: ``from_documents``, ``insert``, ``delete_ref_doc``,
  ``update_ref_doc``, ``refresh_ref_docs``, ``as_retriever``, ``as_query_engine`` and
  :meth:`~ColBERTIndex.persist` / :meth:`~ColBERTIndex.from_persist_dir`. It never needs an embedding model
  (``Settings.embed_model`` is not touched).

Filters: our dict form (``{"field": value}`` / ``{"field": [v1, v2]}``) or LlamaIndex ``MetadataFilters``
made of ``EQ`` / ``IN`` filters combined with ``AND`` (or ``OR`` over one key). Other operators raise
:class:`~colbert_adapters.errors.InvalidInputError`. A filter on a metadata field no node has matches
nothing: the result is empty, not an error.

Example:
    >>> from llama_index.core import Document
    >>> from colbert_adapters.testing import FakeEncoder
    >>> index = ColBERTIndex.from_documents(
    ...     [Document(text="the cat sat", id_="cat"), Document(text="dogs bark loudly", id_="dog")],
    ...     encoder=FakeEncoder(dim=16),
    ... )
    >>> [n.node.ref_doc_id for n in index.as_retriever(similarity_top_k=1).retrieve("a cat")]
    ['cat']
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._optional import require

require("llama_index.core", extra="llamaindex", package="llama-index-core")

from llama_index.core.base.base_retriever import BaseRetriever  # noqa: E402
from llama_index.core.bridge.pydantic import Field, PrivateAttr  # noqa: E402
from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload  # noqa: E402
from llama_index.core.constants import DEFAULT_SIMILARITY_TOP_K  # noqa: E402
from llama_index.core.data_structs.data_structs import IndexDict  # noqa: E402
from llama_index.core.indices.base import BaseIndex  # noqa: E402
from llama_index.core.indices.managed.base import BaseManagedIndex  # noqa: E402
from llama_index.core.ingestion import run_transformations  # noqa: E402
from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]  # noqa: E402
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent  # noqa: E402
from llama_index.core.postprocessor.types import BaseNodePostprocessor  # noqa: E402
from llama_index.core.schema import (  # noqa: E402
    BaseNode,
    Document,
    IndexNode,
    MetadataMode,
    NodeWithScore,
    QueryBundle,
    TextNode,
    TransformComponent,
)
from llama_index.core.settings import Settings  # noqa: E402
from llama_index.core.storage.docstore.types import RefDocInfo  # noqa: E402
from llama_index.core.storage.storage_context import StorageContext  # noqa: E402
from llama_index.core.vector_stores.types import (  # noqa: E402
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)
from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict  # noqa: E402

from .._filters import check_filter, match_filter  # noqa: E402
from .._identity import same_model  # noqa: E402
from .._validation import check_ids, check_k  # noqa: E402
from ..backends import BACKENDS, open_backend  # noqa: E402
from ..backends.base import Backend  # noqa: E402
from ..errors import CollectionConfigError, InvalidInputError  # noqa: E402
from ..store import MultiVectorStore  # noqa: E402
from ..types import Encoder, Hit  # noqa: E402
from ._common import check_query, reject_unknown, rerank_texts, resolve_store  # noqa: E402

__all__ = ["ColBERTIndex", "ColBERTRerank", "ColBERTRetriever", "to_filter"]

logger = logging.getLogger(__name__)
dispatcher = get_dispatcher(__name__)

#: Sentinel filter: ``doc_ids=[]`` allows no document; the retriever returns ``[]``.
_NO_MATCH: dict[str, Any] = {}


def _with_doc_ids(flt: dict[str, Any] | None, doc_ids: Sequence[str] | None) -> dict[str, Any] | None:
    """``flt`` restricted to the nodes of source documents ``doc_ids`` (their ``ref_doc_id`` metadata field)."""
    if doc_ids is None:
        return flt
    wanted = list(dict.fromkeys(check_ids(doc_ids, allow_duplicates=True)))
    if not wanted:
        return _NO_MATCH
    by_doc: dict[str, Any] = {"ref_doc_id": {"$in": wanted}}
    return by_doc if not flt else {"$and": [flt, by_doc]}


_MANIFEST = "colbert_index.json"
_BACKEND_DIR = "colbert_backend"
_FORMAT = "colbert-adapters/llama-index-managed-index"


# --------------------------------------------------------------------------------------------------- filters


def to_filter(filters: MetadataFilters | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Translate LlamaIndex ``MetadataFilters`` (or our dict form) to the colbert-adapters filter dict.

    Operators: ``EQ`` ``NE`` ``GT`` ``GTE`` ``LT`` ``LTE`` ``IN`` ``NIN`` map to ``$eq`` ... ``$nin``;
    ``CONTAINS`` (a list field holds the value) to ``$eq`` (a list field matches by its elements), ``ANY`` to
    ``$in``, ``ALL`` to one ``$eq`` per value, ``TEXT_MATCH`` (case-sensitive substring) to ``$text``,
    ``IS_EMPTY`` to ``$exists: false``. Conditions ``AND``, ``OR`` and ``NOT`` (none of the filters holds), nested
    to any depth. ``TEXT_MATCH_INSENSITIVE`` has no exact equivalent on every backend and raises.

    Args:
        filters: ``MetadataFilters``, a filter dict (see ``MultiVectorStore.search``), or ``None``.

    Returns:
        The filter dict, or ``None`` for no filter.

    Raises:
        InvalidInputError: an unsupported operator or condition, or a malformed dict.

    Example:
        >>> from llama_index.core.vector_stores.types import MetadataFilter, MetadataFilters, FilterOperator
        >>> to_filter(MetadataFilters(filters=[
        ...     MetadataFilter(key="lang", value="en"),
        ...     MetadataFilter(key="year", value=2020, operator=FilterOperator.GTE),
        ... ]))
        {'$and': [{'lang': {'$eq': 'en'}}, {'year': {'$gte': 2020}}]}
    """
    if filters is None:
        return None
    if isinstance(filters, MetadataFilters):
        out = _translate(filters)
    elif isinstance(filters, Mapping):
        out = dict(filters) or None
    else:
        raise InvalidInputError(
            f"filters must be MetadataFilters or a dict like {{'source': 'a'}}, got {type(filters).__name__}"
        )
    check_filter(out)
    return out


_OPERATORS = {
    FilterOperator.EQ: "$eq",
    FilterOperator.NE: "$ne",
    FilterOperator.GT: "$gt",
    FilterOperator.GTE: "$gte",
    FilterOperator.LT: "$lt",
    FilterOperator.LTE: "$lte",
    FilterOperator.IN: "$in",
    FilterOperator.NIN: "$nin",
    FilterOperator.ANY: "$in",
    FilterOperator.CONTAINS: "$eq",
    FilterOperator.TEXT_MATCH: "$text",
}


def _leaf(f: MetadataFilter) -> dict[str, Any]:
    op = f.operator
    if op == FilterOperator.IS_EMPTY:
        return {f.key: {"$exists": False}}
    if op == FilterOperator.ALL:
        values = f.value if isinstance(f.value, list) else [f.value]
        return {"$and": [{f.key: {"$eq": v}} for v in values]} if len(values) != 1 else {f.key: {"$eq": values[0]}}
    if op in (FilterOperator.IN, FilterOperator.NIN, FilterOperator.ANY) and not isinstance(f.value, list):
        return {f.key: {_OPERATORS[op]: [f.value]}}
    if op in _OPERATORS:
        return {f.key: {_OPERATORS[op]: f.value}}
    raise InvalidInputError(
        f"unsupported filter operator {op.name} on {f.key!r}; supported: "
        f"{', '.join(sorted({o.name for o in _OPERATORS} | {'ALL', 'IS_EMPTY'}))}"
    )


def _translate(filters: MetadataFilters) -> dict[str, Any] | None:
    parts = [p for f in filters.filters if (p := _translate(f) if isinstance(f, MetadataFilters) else _leaf(f))]
    condition = filters.condition or FilterCondition.AND
    if not parts:
        return None
    if condition == FilterCondition.NOT:
        return {"$not": parts[0] if len(parts) == 1 else {"$and": parts}}
    if condition not in (FilterCondition.AND, FilterCondition.OR):
        raise InvalidInputError(f"unsupported filter condition {condition.name}: use AND, OR or NOT")
    if len(parts) == 1:
        return parts[0]
    return {"$and" if condition == FilterCondition.AND else "$or": parts}


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


# --------------------------------------------------------------------------------------------------- reranker


class ColBERTRerank(BaseNodePostprocessor):
    """LlamaIndex node postprocessor that reranks nodes with exact ColBERT MaxSim.

    Each node's content with its embeddable metadata (``MetadataMode.EMBED``, as LlamaIndex embeds nodes)
    is scored against the query by :func:`colbert_adapters.scoring.rerank` (sum over query tokens of the
    best cosine). Returns the best ``top_n`` as new ``NodeWithScore`` objects holding copies of the nodes:
    the caller's nodes are never mutated. With ``keep_retrieval_score`` the previous score is kept in the
    copy's ``metadata["retrieval_score"]``.

    Give it ``index=`` (a :class:`ColBERTIndex`) or ``store=`` and nodes the index holds (same id and text)
    are scored with their stored token vectors instead of being re-encoded; the others are encoded in one
    batched call. An empty node list returns ``[]``.

    Args:
        encoder: the ColBERT encoder (taken from ``store``/``index`` when omitted).
        store: optional store whose token vectors are reused.
        index: optional :class:`ColBERTIndex` whose token vectors are reused.
        top_n: number of nodes to keep (>= 1).
        batch_size: encoder batch size.
        keep_retrieval_score: keep the incoming score in ``metadata["retrieval_score"]`` of the copies.
        callback_manager: LlamaIndex callback manager.

    Raises:
        InvalidInputError: no encoder, or an encoder/store/index combination that mixes models or backends;
            at query time, a missing or blank query.
    """

    model: str = Field(default="", description="model_id of the ColBERT encoder.")
    top_n: int = Field(default=5, gt=0, description="Number of nodes to return, best first.")
    batch_size: int = Field(default=32, gt=0, description="Encoder batch size.")
    keep_retrieval_score: bool = Field(
        default=False, description="Keep the incoming score in metadata['retrieval_score'] of the copies."
    )
    _encoder: Encoder = PrivateAttr()
    _store: MultiVectorStore | None = PrivateAttr(default=None)

    def __init__(
        self,
        encoder: Encoder | None = None,
        *,
        store: MultiVectorStore | None = None,
        index: ColBERTIndex | None = None,
        top_n: int = 5,
        batch_size: int = 32,
        keep_retrieval_score: bool = False,
        callback_manager: CallbackManager | None = None,
    ) -> None:
        if index is not None:
            if not isinstance(index, ColBERTIndex):
                raise InvalidInputError(f"index must be a ColBERTIndex, got {type(index).__name__}")
            if store is not None and store is not index.store:
                raise InvalidInputError(
                    "ColBERTRerank: got index= and a different store=; mixing backends would read vectors "
                    "from the wrong index. Pass one of them"
                )
            store = index.store
        if store is not None:
            store = resolve_store(store, encoder, None, owner="ColBERTRerank")
            encoder = encoder or store.encoder
        if encoder is None:
            raise InvalidInputError("ColBERTRerank needs encoder= (or store= / index=)")
        super().__init__(  # type: ignore[call-arg]  # pydantic fields, not seen by mypy without the plugin
            model=encoder.model_id,
            top_n=top_n,
            batch_size=batch_size,
            keep_retrieval_score=keep_retrieval_score,
            callback_manager=callback_manager or CallbackManager([]),
        )
        self._encoder = encoder
        self._store = store

    @classmethod
    def class_name(cls) -> str:
        return "ColBERTRerank"

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        if query_bundle is None:
            raise InvalidInputError("ColBERTRerank needs the query: pass query_bundle= or query_str=")
        query = check_query(query_bundle.query_str, owner="ColBERTRerank")
        dispatcher.event(ReRankStartEvent(query=query_bundle, nodes=nodes, top_n=self.top_n, model_name=self.model))
        if not nodes:
            dispatcher.event(ReRankEndEvent(nodes=[]))
            return []
        with self.callback_manager.event(
            CBEventType.RERANKING,
            payload={
                EventPayload.NODES: nodes,
                EventPayload.MODEL_NAME: self.model,
                EventPayload.QUERY_STR: query,
                EventPayload.TOP_K: self.top_n,
            },
        ) as event:
            result = rerank_texts(
                query,
                [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes],
                [n.node.node_id for n in nodes],
                stored_texts=[n.node.get_content(metadata_mode=MetadataMode.NONE) for n in nodes],
                encoder=self._encoder,
                store=self._store,
                top_n=self.top_n,
                batch_size=self.batch_size,
            )
            reranked = [self._copy(nodes[i], score) for i, score in result.order]
            event.on_end(payload={EventPayload.NODES: reranked})
        dispatcher.event(ReRankEndEvent(nodes=reranked))
        return reranked

    def _copy(self, item: NodeWithScore, score: float) -> NodeWithScore:
        metadata = dict(item.node.metadata)
        if self.keep_retrieval_score:
            metadata["retrieval_score"] = item.score
        return NodeWithScore(node=item.node.model_copy(update={"metadata": metadata}), score=score)


# --------------------------------------------------------------------------------------------------- index


#: Keyword arguments of :meth:`ColBERTIndex.as_retriever`.
_RETRIEVER_KEYS = ("similarity_top_k", "filters", "doc_ids", "node_ids", "callback_manager", "verbose")
#: Keyword arguments of ``update_ref_doc`` (LlamaIndex's convention: options for the delete and the insert).
_UPDATE_KEYS = ("insert_kwargs", "delete_kwargs")


def _named_params(fn: Any, exclude: Sequence[str] = ()) -> tuple[str, ...]:
    """The keyword arguments ``fn`` names (not ``**kwargs``), less ``exclude`` and ``self`` / ``cls``."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return tuple(
        name
        for name, p in inspect.signature(fn).parameters.items()
        if p.kind in kinds and name not in ("self", "cls", *exclude)
    )


def _only(kwargs: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k in keys}


def _without(kwargs: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k not in keys}


class ColBERTIndex(BaseManagedIndex):
    """A LlamaIndex managed index that stores ColBERT token vectors in any colbert-adapters backend.

    Nodes are encoded by the ColBERT encoder itself (their ``MetadataMode.EMBED`` content, as LlamaIndex
    embeds nodes), so no embedding model is needed and ``Settings.embed_model`` is never resolved. Each
    node is stored under its ``node_id`` with its raw text and its full serialised form (LlamaIndex's
    ``node_to_metadata_dict``), so metadata filters (including ``ref_doc_id``) work and retrieved nodes keep
    their relationships. The docstore keeps the ref-doc -> node mapping used by ``delete_ref_doc``,
    ``update_ref_doc`` and ``refresh_ref_docs``.

    Args:
        store: the store (preferred), or
        encoder: an encoder, with ``backend`` (default: a new exact in-memory backend).
        backend: the backend, with ``encoder``.
        nodes: nodes to insert at construction.
        index_struct, storage_context, callback_manager, transformations, show_progress: as for any
            LlamaIndex index.
        batch_size: encoder batch size.

    Example:
        >>> from llama_index.core import Document
        >>> from llama_index.core.llms import MockLLM
        >>> from colbert_adapters.testing import FakeEncoder
        >>> index = ColBERTIndex.from_documents([Document(text="Paris is in France.")], encoder=FakeEncoder())
        >>> response = index.as_query_engine(llm=MockLLM()).query("Where is Paris?")
        >>> [n.node.get_content() for n in response.source_nodes]
        ['Paris is in France.']
    """

    def __init__(
        self,
        store: MultiVectorStore | None = None,
        *,
        encoder: Encoder | None = None,
        backend: Backend | None = None,
        nodes: Sequence[BaseNode] | None = None,
        index_struct: IndexDict | None = None,
        storage_context: StorageContext | None = None,
        callback_manager: CallbackManager | None = None,
        transformations: list[TransformComponent] | None = None,
        show_progress: bool = False,
        batch_size: int = 32,
        objects: Sequence[IndexNode] | None = None,
    ) -> None:
        self._store = resolve_store(store, encoder, backend, owner="ColBERTIndex", default_backend=True)
        self._batch_size = check_k(batch_size)
        if index_struct is None and nodes is None:
            nodes = []
        super().__init__(
            nodes=nodes,
            objects=objects,
            index_struct=index_struct,
            storage_context=storage_context,
            callback_manager=callback_manager,
            transformations=transformations,
            show_progress=show_progress,
        )

    @property
    def store(self) -> MultiVectorStore:
        """The underlying :class:`~colbert_adapters.store.MultiVectorStore`."""
        return self._store

    @classmethod
    def from_documents(  # type: ignore[override]
        cls,
        documents: Sequence[Document],
        store: MultiVectorStore | None = None,
        *,
        encoder: Encoder | None = None,
        backend: Backend | None = None,
        storage_context: StorageContext | None = None,
        show_progress: bool = False,
        callback_manager: CallbackManager | None = None,
        transformations: list[TransformComponent] | None = None,
        batch_size: int = 32,
        **kwargs: Any,
    ) -> ColBERTIndex:
        """Split documents into nodes (``transformations``, default ``Settings.transformations``) and index them.

        Args:
            documents: LlamaIndex documents (an empty list gives an empty index).
            store: the store, or ``encoder=`` (+ ``backend=``).
            encoder: the encoder, with ``backend`` (default: an in-memory backend).
            backend: the backend.
            storage_context, show_progress, callback_manager, transformations: as for any index.
            batch_size: encoder batch size.
            **kwargs: passed to the constructor.

        Returns:
            The index.
        """
        storage_context = storage_context or StorageContext.from_defaults()
        callback_manager = callback_manager or Settings.callback_manager
        transformations = transformations or Settings.transformations
        resolved = resolve_store(store, encoder, backend, owner="ColBERTIndex", default_backend=True)
        with callback_manager.as_trace("index_construction"):
            for doc in documents:
                storage_context.docstore.set_document_hash(doc.id_, doc.hash)
            nodes = run_transformations(list(documents), transformations, show_progress=show_progress)
            return cls(
                resolved,
                nodes=nodes,
                storage_context=storage_context,
                callback_manager=callback_manager,
                transformations=transformations,
                show_progress=show_progress,
                batch_size=batch_size,
                **kwargs,
            )

    # ------------------------------------------------------------------------------------------ writes

    def _build_index_from_nodes(self, nodes: Sequence[BaseNode], **build_kwargs: Any) -> IndexDict:
        reject_unknown("ColBERTIndex", build_kwargs, ())
        self._insert(nodes)
        return IndexDict()

    def _insert(self, nodes: Sequence[BaseNode], **insert_kwargs: Any) -> None:
        # Reached from insert(), insert_nodes() and update_ref_doc(insert_kwargs=...): none of them takes options.
        reject_unknown("ColBERTIndex.insert / insert_nodes", insert_kwargs, ())
        node_list = list(nodes)
        # The node's content with its metadata is encoded (as LlamaIndex embeds it); its raw text is stored.
        self._store.add(
            [n.get_content(metadata_mode=MetadataMode.NONE) for n in node_list],
            ids=[n.node_id for n in node_list],
            metadatas=[node_to_metadata_dict(n, remove_text=True) for n in node_list],
            encode_texts=[n.get_content(metadata_mode=MetadataMode.EMBED) for n in node_list],
            batch_size=self._batch_size,
            show_progress=False,
        )
        logger.debug("ColBERTIndex: inserted %d nodes", len(node_list))

    def delete_nodes(
        self,
        node_ids: list[str] | None = None,
        delete_from_docstore: bool = False,
        *,
        filters: MetadataFilters | Mapping[str, Any] | None = None,
        **delete_kwargs: Any,
    ) -> None:
        """Delete nodes by id, or every node matching ``filters`` (in one transaction where the backend has them)."""
        if filters is None:
            return super().delete_nodes(node_ids or [], delete_from_docstore, **delete_kwargs)
        reject_unknown("ColBERTIndex.delete_nodes", delete_kwargs, ())
        flt = check_filter(to_filter(filters))
        if node_ids is not None or flt is None:
            raise InvalidInputError("delete_nodes takes node_ids or a non-empty filters, not both")
        doomed = [r.id for r in self._store.get(self._store.ids()) if match_filter(r.metadata, flt)]
        if doomed:
            self._store.delete(doomed)
        if delete_from_docstore:
            for node_id in doomed:
                self.docstore.delete_document(node_id, raise_error=False)
        self._storage_context.index_store.add_index_struct(self._index_struct)

    def _delete_node(self, node_id: str, **delete_kwargs: Any) -> None:
        reject_unknown("ColBERTIndex.delete_nodes", delete_kwargs, ("delete_from_docstore",))
        self._store.delete([node_id])

    def delete_ref_doc(self, ref_doc_id: str, delete_from_docstore: bool = False, **delete_kwargs: Any) -> None:
        """Delete every node of a source document (unknown ids only log a warning, as in LlamaIndex).

        Args:
            ref_doc_id: the source document's id.
            delete_from_docstore: also drop the document and its nodes from the docstore.
        """
        reject_unknown("ColBERTIndex.delete_ref_doc", delete_kwargs, ("delete_from_docstore",))
        info = self.docstore.get_ref_doc_info(ref_doc_id)
        if info is None:
            logger.warning("ref_doc_id %s not found, nothing deleted", ref_doc_id)
            return
        if info.node_ids:
            self._store.delete(list(info.node_ids))
        if delete_from_docstore:
            self.docstore.delete_ref_doc(ref_doc_id, raise_error=False)
        self._storage_context.index_store.add_index_struct(self._index_struct)

    def update_ref_doc(self, document: Document, **update_kwargs: Any) -> None:
        """Replace a source document: delete its nodes, then insert the new version."""
        reject_unknown("ColBERTIndex.update_ref_doc", _without(update_kwargs, _UPDATE_KEYS), _UPDATE_KEYS)
        BaseIndex.update_ref_doc(self, document, **update_kwargs)

    @property
    def ref_doc_info(self) -> dict[str, RefDocInfo]:
        """Source document id -> its node ids and metadata (from the docstore)."""
        return self.docstore.get_all_ref_doc_info() or {}

    # ------------------------------------------------------------------------------------------ reads

    def as_retriever(self, **kwargs: Any) -> ColBERTRetriever:
        """A :class:`ColBERTRetriever` on this index.

        Args:
            **kwargs: ``similarity_top_k``, ``filters``, ``doc_ids``, ``node_ids``, ``callback_manager``,
                ``verbose``; any other raises a :class:`TypeError`.
        """
        reject_unknown("ColBERTIndex.as_retriever", _without(kwargs, _RETRIEVER_KEYS), _RETRIEVER_KEYS)
        return ColBERTRetriever(
            self._store,
            similarity_top_k=kwargs.get("similarity_top_k", DEFAULT_SIMILARITY_TOP_K),
            filters=kwargs.get("filters"),
            doc_ids=kwargs.get("doc_ids"),
            node_ids=kwargs.get("node_ids"),
            callback_manager=kwargs.get("callback_manager") or self._callback_manager,
            object_map=self._object_map,
            verbose=kwargs.get("verbose", False),
        )

    def as_query_engine(self, llm: Any = None, **kwargs: Any) -> Any:
        """A ``RetrieverQueryEngine`` over :meth:`as_retriever`.

        Args:
            llm: the LLM (default ``Settings.llm``).
            **kwargs: the retriever's (:meth:`as_retriever`) and ``RetrieverQueryEngine.from_args``'s keyword
                arguments (``response_mode``, ``node_postprocessors``, ``streaming``, ...); any other raises a
                :class:`TypeError`.
        """
        from llama_index.core.query_engine.retriever_query_engine import RetrieverQueryEngine

        engine_keys = _named_params(RetrieverQueryEngine.from_args, exclude=("retriever", "llm"))
        accepted = (*_RETRIEVER_KEYS, *engine_keys)
        reject_unknown("ColBERTIndex.as_query_engine", _without(kwargs, accepted), ("llm", *accepted))
        retriever = self.as_retriever(**_only(kwargs, _RETRIEVER_KEYS))
        return RetrieverQueryEngine.from_args(retriever, llm=self._resolve_llm(llm), **_only(kwargs, engine_keys))

    def as_chat_engine(self, chat_mode: Any = None, llm: Any = None, **kwargs: Any) -> Any:
        """A chat engine over this index, as ``BaseIndex.as_chat_engine`` builds it.

        Args:
            chat_mode: a ``ChatMode`` (default ``ChatMode.BEST``).
            llm: the LLM (default ``Settings.llm``).
            **kwargs: the retriever's, and the chosen chat engine's ``from_defaults`` keyword arguments (plus
                the query engine's for ``condense_question``); any other raises a :class:`TypeError`.
        """
        from llama_index.core.chat_engine import (
            CondensePlusContextChatEngine,
            CondenseQuestionChatEngine,
            ContextChatEngine,
            SimpleChatEngine,
        )
        from llama_index.core.chat_engine.types import ChatMode
        from llama_index.core.query_engine.retriever_query_engine import RetrieverQueryEngine

        mode = ChatMode(chat_mode) if chat_mode is not None else ChatMode.BEST
        engine: Any = {
            ChatMode.CONDENSE_QUESTION: CondenseQuestionChatEngine,
            ChatMode.CONTEXT: ContextChatEngine,
            ChatMode.CONDENSE_PLUS_CONTEXT: CondensePlusContextChatEngine,
            ChatMode.BEST: CondensePlusContextChatEngine,
            ChatMode.SIMPLE: SimpleChatEngine,
        }.get(mode)
        if engine is None:
            raise ValueError(
                f"chat_mode {mode.value!r} is not available here; use condense_question, context, "
                "condense_plus_context, best or simple (agents: FunctionAgent/ReActAgent with a query engine tool)"
            )
        chat_keys = _named_params(engine.from_defaults, exclude=("retriever", "query_engine", "llm"))
        query_keys = (
            _named_params(RetrieverQueryEngine.from_args, exclude=("retriever", "llm"))
            if engine is CondenseQuestionChatEngine
            else ()
        )
        retriever_keys = _RETRIEVER_KEYS if engine is not SimpleChatEngine else ()
        accepted = tuple(dict.fromkeys((*retriever_keys, *query_keys, *chat_keys)))
        reject_unknown("ColBERTIndex.as_chat_engine", _without(kwargs, accepted), ("chat_mode", "llm", *accepted))
        resolved = self._resolve_llm(llm)
        chat_kwargs = _only(kwargs, chat_keys)
        if engine is SimpleChatEngine:
            return engine.from_defaults(llm=resolved, **chat_kwargs)
        if engine is CondenseQuestionChatEngine:
            query_engine = self.as_query_engine(llm=resolved, **_only(kwargs, (*_RETRIEVER_KEYS, *query_keys)))
            return engine.from_defaults(query_engine=query_engine, llm=resolved, **chat_kwargs)
        retriever = self.as_retriever(**_only(kwargs, _RETRIEVER_KEYS))
        return engine.from_defaults(retriever=retriever, llm=resolved, **chat_kwargs)

    def _resolve_llm(self, llm: Any) -> Any:
        from llama_index.core.llms.utils import resolve_llm

        return resolve_llm(llm, callback_manager=self._callback_manager) if llm else Settings.llm

    # ------------------------------------------------------------------------------------------ persistence

    def persist(self, persist_dir: str | os.PathLike[str]) -> Path:
        """Save the index: the LlamaIndex storage context (JSON) plus the backend's own persistence.

        Writes ``persist_dir/colbert_index.json`` (format, ``model_id``, backend class, index id). A backend
        with ``save(path)`` (e.g. :class:`~colbert_adapters.backends.memory.MemoryBackend`) is saved into
        ``persist_dir/colbert_backend``; a backend that persists itself (Voyager directory, Qdrant Edge,
        a Qdrant server) is not copied: pass it again to :meth:`from_persist_dir`. No pickle is written.

        Returns:
            ``persist_dir`` as a :class:`~pathlib.Path`.
        """
        root = Path(persist_dir)
        root.mkdir(parents=True, exist_ok=True)
        self._storage_context.persist(persist_dir=str(root))
        backend = self._store.backend
        backend_cls = type(backend)
        save = getattr(backend, "save", None)
        saved = callable(save) and callable(getattr(backend_cls, "load", None))
        if saved:
            assert save is not None
            save(root / _BACKEND_DIR)
        manifest = {
            "format": _FORMAT,
            "version": 1,
            "index_id": self.index_id,
            "model_id": self._store.encoder.model_id,
            "backend": f"{backend_cls.__module__}:{backend_cls.__qualname__}",
            "backend_saved": saved,
        }
        (root / _MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        return root

    @classmethod
    def from_persist_dir(
        cls,
        persist_dir: str | os.PathLike[str],
        encoder: Encoder,
        *,
        backend: Backend | None = None,
        **kwargs: Any,
    ) -> ColBERTIndex:
        """Load an index saved by :meth:`persist`.

        Args:
            persist_dir: the directory given to :meth:`persist`.
            encoder: the encoder the index was built with (a different model is refused).
            backend: the backend, for backends that persist themselves; default: load the saved one.
            **kwargs: passed to the constructor (e.g. ``batch_size``).

        Raises:
            CollectionConfigError: not a saved ColBERTIndex, the backend was not saved and none is given, or
                the encoder's model differs from the one the index was built with.
        """
        root = Path(persist_dir)
        manifest_path = root / _MANIFEST
        if not manifest_path.is_file():
            raise CollectionConfigError(f"{root} has no {_MANIFEST}; it was not written by ColBERTIndex.persist()")
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if manifest.get("format") != _FORMAT:
            raise CollectionConfigError(f"{manifest_path} is not a ColBERTIndex manifest")
        if not same_model(str(manifest.get("model_id")), encoder.model_id):
            raise CollectionConfigError(
                f"the index in {root} was built with model {manifest.get('model_id')!r} but the encoder is "
                f"{encoder.model_id!r}; use the same model"
            )
        if backend is None:
            if not manifest.get("backend_saved"):
                raise CollectionConfigError(
                    f"the backend of {root} ({manifest.get('backend')}) persists itself; reopen it and pass backend="
                )
            target = manifest.get("backend")
            if target not in BACKENDS.values():  # never import an arbitrary class named in a file
                raise CollectionConfigError(f"{manifest_path} names an unknown backend {target!r}; pass backend=")
            backend = open_backend(root / _BACKEND_DIR)
        storage_context = StorageContext.from_defaults(persist_dir=str(root))
        index_struct = storage_context.index_store.get_index_struct(manifest.get("index_id"))
        if not isinstance(index_struct, IndexDict):
            raise CollectionConfigError(f"{root} holds no ColBERTIndex index struct")
        return cls(
            MultiVectorStore(encoder, backend),
            index_struct=index_struct,
            storage_context=storage_context,
            **kwargs,
        )
