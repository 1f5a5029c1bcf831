"""LlamaIndex integration: a ColBERT retriever, a ColBERT reranker and a managed index that encodes its own text.

Needs ``llama-index-core >= 0.12`` (``pip install "colbert-adapters[llamaindex]"``); importing this module
without it raises :class:`~colbert_adapters.errors.MissingDependencyError` naming the extra.
``import colbert_adapters`` never imports LlamaIndex.

* :class:`ColBERTRetriever` - a ``BaseRetriever`` (``similarity_top_k``, ``filters``, ``doc_ids``,
  ``vector_store_query_mode="mmr"`` with ``vector_store_kwargs={"mmr_threshold": ...}``) over a
  :class:`~colbert_adapters.store.MultiVectorStore`; ``aretrieve`` runs in a worker thread. Scores are raw MaxSim.
* :class:`ColBERTRerank` - a ``BaseNodePostprocessor`` scoring nodes with exact MaxSim, built from an encoder or,
  as the official ColbertRerank, from ``model=``; emits ``ReRankStartEvent`` / ``ReRankEndEvent`` and the legacy
  ``CBEventType.RERANKING`` callback event.
* :class:`ColBERTIndex` - a ``BaseManagedIndex``: ``from_documents``, ``insert``, ``delete_ref_doc``,
  ``update_ref_doc``, ``refresh_ref_docs``, ``as_retriever``, ``as_query_engine`` and
  :meth:`~ColBERTIndex.persist` / :meth:`~ColBERTIndex.from_persist_dir` / ``load_index_from_storage``. It never
  needs an embedding model (``Settings.embed_model`` is not touched). Importing this package adds the ColBERTIndex
  struct type to LlamaIndex's index registries (that is how ``load_index_from_storage`` finds it); nothing else
  of LlamaIndex's is changed.

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

from ..._optional import require

require("llama_index.core", extra="llamaindex", package="llama-index-core")

from ._filters import to_filter  # noqa: E402
from ._index import ColBERTIndex  # noqa: E402
from ._rerank import ColBERTRerank  # noqa: E402
from ._retriever import ColBERTRetriever  # noqa: E402

__all__ = ["ColBERTIndex", "ColBERTRerank", "ColBERTRetriever", "to_filter"]
