"""The LlamaIndex managed index: ColBERT token vectors in any colbert-adapters backend, no embedding model."""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from llama_index.core.callbacks import CallbackManager
from llama_index.core.constants import DEFAULT_SIMILARITY_TOP_K
from llama_index.core.data_structs.data_structs import IndexDict
from llama_index.core.indices.base import BaseIndex
from llama_index.core.indices.managed.base import BaseManagedIndex
from llama_index.core.ingestion import run_transformations
from llama_index.core.schema import BaseNode, Document, IndexNode, MetadataMode, TransformComponent
from llama_index.core.settings import Settings
from llama_index.core.storage.docstore.types import RefDocInfo
from llama_index.core.storage.storage_context import StorageContext
from llama_index.core.vector_stores.types import MetadataFilters
from llama_index.core.vector_stores.utils import node_to_metadata_dict

from ..._filters import check_filter, match_filter
from ..._validation import check_k
from ...backends.base import Backend
from ...errors import CollectionConfigError, InvalidInputError
from ...store import MultiVectorStore
from ...types import Encoder
from .._common import reject_unknown, resolve_store
from ._filters import to_filter
from ._persist import MANIFEST, ColBERTIndexStruct, open_store, read_manifest, register, write_manifest
from ._retriever import ColBERTRetriever

__all__ = ["ColBERTIndex"]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------- index


#: Keyword arguments of :meth:`ColBERTIndex.as_retriever`.
_RETRIEVER_KEYS = (
    "similarity_top_k",
    "filters",
    "doc_ids",
    "node_ids",
    "vector_store_query_mode",
    "vector_store_kwargs",
    "alpha",
    "score_threshold",
    "highlight",
    "callback_manager",
    "verbose",
)
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

    Persist it with :meth:`persist` and load it with :meth:`from_persist_dir`, or with LlamaIndex's
    ``load_index_from_storage(StorageContext.from_defaults(persist_dir=dir))`` (pass ``encoder=`` there, as
    ``embed_model=`` for a vector index; without it the model the index records is loaded). Neither needs an
    embedding model.

    Example:
        >>> from llama_index.core import Document
        >>> from llama_index.core.llms import MockLLM
        >>> from colbert_adapters.testing import FakeEncoder
        >>> index = ColBERTIndex.from_documents([Document(text="Paris is in France.")], encoder=FakeEncoder())
        >>> response = index.as_query_engine(llm=MockLLM()).query("Where is Paris?")
        >>> [n.node.get_content() for n in response.source_nodes]
        ['Paris is in France.']
    """

    index_struct_cls = ColBERTIndexStruct

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
        if store is None and index_struct is not None:  # loading, e.g. by load_index_from_storage
            persisted = getattr(index_struct, "persist_dir", None)
            if persisted is not None:
                if not (Path(persisted) / MANIFEST).is_file():
                    raise CollectionConfigError(
                        f"this ColBERTIndex was persisted to {persisted}, which holds no {MANIFEST} now; if the "
                        "directory moved, load it with ColBERTIndex.from_persist_dir(its new path)"
                    )
                store = open_store(Path(persisted), encoder, backend, index_id=index_struct.index_id)
            elif backend is None:
                raise CollectionConfigError(
                    "this ColBERTIndex's token vectors were not persisted (storage_context.persist() saves "
                    "LlamaIndex's stores only): save it with index.persist(dir), or pass encoder= and backend= (a "
                    "backend that persists itself)"
                )
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
        return ColBERTIndexStruct()

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
            **kwargs: ``similarity_top_k``, ``filters``, ``doc_ids``, ``node_ids``, ``vector_store_query_mode``
                (``"mmr"``, ``"sparse"``, ``"text_search"``, ``"hybrid"``), ``alpha``, ``vector_store_kwargs``
                (``{"mmr_threshold": 0.5}``), ``score_threshold``,
                ``highlight``, ``callback_manager``, ``verbose`` (see :class:`ColBERTRetriever`); any other raises a
                :class:`TypeError`.
        """
        reject_unknown("ColBERTIndex.as_retriever", _without(kwargs, _RETRIEVER_KEYS), _RETRIEVER_KEYS)
        return ColBERTRetriever(
            self._store,
            similarity_top_k=kwargs.get("similarity_top_k", DEFAULT_SIMILARITY_TOP_K),
            filters=kwargs.get("filters"),
            doc_ids=kwargs.get("doc_ids"),
            node_ids=kwargs.get("node_ids"),
            vector_store_query_mode=kwargs.get("vector_store_query_mode", "default"),
            vector_store_kwargs=kwargs.get("vector_store_kwargs"),
            alpha=kwargs.get("alpha"),
            score_threshold=kwargs.get("score_threshold"),
            highlight=kwargs.get("highlight", False),
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

        Writes ``persist_dir/colbert_index.json`` (format, ``model_id`` and the model to load, backend class,
        index id). A backend with ``save(path)`` (e.g. :class:`~colbert_adapters.backends.memory.MemoryBackend`)
        is saved into ``persist_dir/colbert_backend``; a backend that persists itself (Voyager directory, Qdrant
        Edge, a Qdrant server) is not copied: pass it again to :meth:`from_persist_dir` (or to
        ``load_index_from_storage`` as ``backend=``). No pickle is written.

        Returns:
            ``persist_dir`` as a :class:`~pathlib.Path`.
        """
        root = Path(persist_dir)
        root.mkdir(parents=True, exist_ok=True)
        old = self._index_struct
        self._index_struct = ColBERTIndexStruct(
            index_id=old.index_id, summary=old.summary, nodes_dict=dict(old.nodes_dict), persist_dir=str(root.resolve())
        )
        self._storage_context.index_store.add_index_struct(self._index_struct)
        self._storage_context.persist(persist_dir=str(root))
        write_manifest(root, self.index_id, self._store)
        return root

    @classmethod
    def from_persist_dir(
        cls,
        persist_dir: str | os.PathLike[str],
        encoder: Encoder | None = None,
        *,
        backend: Backend | None = None,
        device: str | None = None,
        **kwargs: Any,
    ) -> ColBERTIndex:
        """Load an index saved by :meth:`persist`.

        Args:
            persist_dir: the directory given to :meth:`persist` (it may have moved since).
            encoder: the encoder the index was built with (a different model is refused); ``None`` loads the
                model the index records (a :class:`~colbert_adapters.encoder.ColBERTEncoder`'s checkpoint).
            backend: the backend, for backends that persist themselves; default: load the saved one.
            device: device for a model loaded here.
            **kwargs: passed to the constructor (e.g. ``batch_size``).

        Raises:
            CollectionConfigError: not a saved ColBERTIndex, the backend was not saved and none is given, no
                encoder is given and the index records no model to load, or the encoder's model differs from the
                one the index was built with.
        """
        root = Path(persist_dir)
        store = open_store(root, encoder, backend, device=device)
        storage_context = StorageContext.from_defaults(persist_dir=str(root))
        index_struct = storage_context.index_store.get_index_struct(_manifest_index_id(root))
        if not isinstance(index_struct, IndexDict):
            raise CollectionConfigError(f"{root} holds no ColBERTIndex index struct")
        return cls(store, index_struct=index_struct, storage_context=storage_context, **kwargs)


def _manifest_index_id(root: Path) -> str | None:
    index_id = read_manifest(root).get("index_id")
    return index_id if isinstance(index_id, str) else None


register(ColBERTIndex)
