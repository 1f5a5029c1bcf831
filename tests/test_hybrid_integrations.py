"""Hybrid retrieval through the integrations, written as their users write it: langchain-qdrant's
``retrieval_mode=RetrievalMode.SPARSE | HYBRID`` on the vector store and retriever, LlamaIndex's
``VectorStoreQueryMode.HYBRID`` / ``SPARSE`` / ``TEXT_SEARCH`` with ``alpha``, and ``colbert-adapters search --mode``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _backends import BACKEND_NAMES, make_backend

from colbert_adapters.errors import InvalidInputError
from colbert_adapters.store import MultiVectorStore
from colbert_adapters.testing import FakeEncoder

DIM = 32
TEXTS = {
    "gear": "Replace gasket part XK-2291 before reassembling the gearbox",
    "pump": "The hydraulic pump needs a new seal every year",
    "paris": "Paris is the capital and largest city of France",
    "rust": "Rust guarantees memory safety without a garbage collector",
}
QUERY = "gasket XK-2291"


def _oracle() -> MultiVectorStore:
    store = MultiVectorStore(FakeEncoder(dim=DIM))
    store.add(list(TEXTS.values()), ids=list(TEXTS))
    return store


# --------------------------------------------------------------------------------------------------- LangChain


@pytest.fixture(params=BACKEND_NAMES)
def lc_docs(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    pytest.importorskip("langchain_core")
    from langchain_core.documents import Document

    name = str(request.param)
    return name, [Document(t, id=i) for i, t in TEXTS.items()], make_backend(name, tmp_path / name, DIM)


def test_langchain_vector_store_retrieval_modes(lc_docs: Any) -> None:
    from colbert_adapters.integrations.langchain import ColBERTVectorStore, RetrievalMode

    _, docs, backend = lc_docs
    oracle = _oracle()
    vs = ColBERTVectorStore.from_documents(
        docs, encoder=FakeEncoder(dim=DIM), backend=backend, retrieval_mode=RetrievalMode.SPARSE
    )
    sparse = vs.similarity_search_with_score(QUERY, k=2)
    assert [d.id for d, _ in sparse] == ["gear"]  # the only text holding a query word
    assert sparse[0][1] == pytest.approx(oracle.search(QUERY, k=1, mode="lexical")[0].score, rel=0.5)
    hybrid = vs.similarity_search(QUERY, k=4, retrieval_mode=RetrievalMode.HYBRID)
    assert hybrid[0].id == "gear" and len(hybrid) == 4
    dense = vs.similarity_search(QUERY, k=4, retrieval_mode="dense")
    assert [d.id for d in dense] == [h.id for h in oracle.search(QUERY, k=4)]
    retriever = vs.as_retriever(search_kwargs={"k": 1})
    assert [d.id for d in retriever.invoke(QUERY)] == ["gear"]
    with pytest.raises(InvalidInputError, match="relevance scores"):
        vs.similarity_search_with_relevance_scores(QUERY, k=2)
    vs.store.close()


def test_langchain_retriever_retrieval_mode(lc_docs: Any) -> None:
    from colbert_adapters.integrations.langchain import ColBERTRetriever, ColBERTVectorStore, RetrievalMode

    _, docs, backend = lc_docs
    vs = ColBERTVectorStore.from_documents(docs, encoder=FakeEncoder(dim=DIM), backend=backend)
    retriever = ColBERTRetriever(store=vs.store, k=3, retrieval_mode=RetrievalMode.HYBRID)
    hits = retriever.invoke(QUERY)
    assert hits[0].id == "gear" and len(hits) == 3
    assert hits[0].metadata["score"] == pytest.approx(2 / 61)  # first in both lists: 1/61 + 1/61
    assert [d.id for d in retriever.invoke(QUERY, retrieval_mode="sparse")] == ["gear"]
    with pytest.raises(InvalidInputError, match="retrieval_mode must be"):
        retriever.invoke(QUERY, retrieval_mode="bm25")
    vs.store.close()


def test_langchain_qdrant_style_enum_is_accepted() -> None:
    pytest.importorskip("langchain_core")
    from enum import Enum

    from colbert_adapters.integrations.langchain import ColBERTRetriever

    class RetrievalMode(str, Enum):  # langchain_qdrant.RetrievalMode, as code migrating from it passes it
        DENSE = "dense"
        SPARSE = "sparse"
        HYBRID = "hybrid"

    retriever = ColBERTRetriever(store=_oracle(), k=1, retrieval_mode=RetrievalMode.SPARSE)
    assert [d.id for d in retriever.invoke(QUERY)] == ["gear"]


# --------------------------------------------------------------------------------------------------- LlamaIndex


@pytest.fixture
def li_index(tmp_path: Path) -> Any:
    pytest.importorskip("llama_index.core")
    from colbert_adapters.integrations.llama_index import ColBERTIndex
    from llama_index.core.schema import TextNode

    nodes = [TextNode(text=t, id_=i) for i, t in TEXTS.items()]
    return ColBERTIndex(nodes=nodes, encoder=FakeEncoder(dim=DIM))


@pytest.mark.parametrize("mode", ["SPARSE", "TEXT_SEARCH"])
def test_llama_index_sparse_modes(li_index: Any, mode: str) -> None:
    from llama_index.core.vector_stores.types import VectorStoreQueryMode

    retriever = li_index.as_retriever(similarity_top_k=2, vector_store_query_mode=getattr(VectorStoreQueryMode, mode))
    nodes = retriever.retrieve(QUERY)
    assert [n.node.node_id for n in nodes] == ["gear"]


def test_llama_index_hybrid_with_alpha(li_index: Any) -> None:
    from llama_index.core.vector_stores.types import VectorStoreQueryMode

    oracle = _oracle()
    retriever = li_index.as_retriever(
        similarity_top_k=3, vector_store_query_mode=VectorStoreQueryMode.HYBRID, alpha=1.0
    )
    dense_only = [n.node.node_id for n in retriever.retrieve(QUERY)]
    assert dense_only == [h.id for h in oracle.search(QUERY, k=3)]  # alpha=1: the dense (late) list alone
    sparse_heavy = li_index.as_retriever(
        similarity_top_k=3, vector_store_query_mode=VectorStoreQueryMode.HYBRID, alpha=0.0
    ).retrieve(QUERY)
    assert sparse_heavy[0].node.node_id == "gear" and sparse_heavy[0].score == pytest.approx(1.0)
    rrf = li_index.as_retriever(similarity_top_k=3, vector_store_query_mode="hybrid").retrieve(QUERY)
    assert rrf[0].node.node_id == "gear"


# --------------------------------------------------------------------------------------------------- CLI


@pytest.mark.parametrize("backend", ["memory", "voyager", "qdrant-edge"])
def test_cli_search_mode(tmp_path: Path, capsys: Any, tiny_checkpoint: Path, backend: str) -> None:
    from colbert_adapters.cli import main

    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in TEXTS.items()))
    idx = str(tmp_path / "idx")
    assert main(["index", str(docs), idx, "--model", str(tiny_checkpoint), "--backend", backend, "-q"]) == 0
    capsys.readouterr()
    runs = {}
    for mode in ("late", "lexical", "hybrid"):
        assert main(["search", idx, QUERY, "-k", "4", "--mode", mode, "--json", "-q"]) == 0
        runs[mode] = json.loads(capsys.readouterr().out)
    assert [h["id"] for h in runs["lexical"]] == ["gear"]
    assert len(runs["late"]) == len(runs["hybrid"]) == 4 and runs["hybrid"][0]["id"] == "gear"
    assert (
        main(["search", idx, QUERY, "-k", "1", "--mode", "hybrid", "--fusion", "blend", "--alpha", "0", "--json"]) == 0
    )
    assert [h["score"] for h in json.loads(capsys.readouterr().out)] == [1.0]


def test_cli_search_bad_mode(tmp_path: Path, capsys: Any) -> None:
    from colbert_adapters.cli import main

    assert main(["search", str(tmp_path), "q", "--mode", "bm25"]) != 0
    assert "invalid choice: 'bm25'" in capsys.readouterr().err
