"""LangChain integration beyond the standard suites: retriever, reranker, vector store, index(), examples.

Backend-dependent behaviour is parametrized over every backend of ``tests/_backends.py``; the real tiny
ColBERT encoder is exercised end to end in the ``*_real_encoder`` tests and the example test.
"""

from __future__ import annotations

import asyncio
import doctest
import pathlib
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("langchain_core")

import colbert_adapters.integrations.langchain as lc_module
from _backends import BACKEND_NAMES, SpyEncoder, make_backend
from colbert_adapters.integrations.langchain import (
    ColBERTRerank,
    ColBERTRetriever,
    ColBERTVectorStore,
)
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.indexing import InMemoryRecordManager, index
from langchain_core.vectorstores import VectorStore, VectorStoreRetriever
from pydantic import ValidationError

from colbert_adapters.backends.memory import MemoryBackend
from colbert_adapters.errors import InvalidInputError
from colbert_adapters.scoring import maxsim
from colbert_adapters.store import MultiVectorStore
from colbert_adapters.testing import FakeEncoder

ROOT = pathlib.Path(__file__).resolve().parent.parent
DIM = 32
TEXTS = [
    "ColBERT scores documents by late interaction over token embeddings",
    "Paris is the capital and largest city of France",
    "Photosynthesis turns sunlight into chemical energy in plants",
    "Rust guarantees memory safety without a garbage collector",
    "Qdrant is a vector database with native multivector support",
]
METAS = [
    {"topic": "ir", "year": 2020},
    {"topic": "geo", "year": 2021},
    {"topic": "bio", "year": 2020},
    {"topic": "code", "year": 2022},
    {"topic": "ir", "year": 2023},
]
IDS = ["colbert", "paris", "photo", "rust", "qdrant"]


@pytest.fixture(params=BACKEND_NAMES)
def backend_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(backend_name: str, tmp_path: Path) -> Any:
    s = MultiVectorStore(FakeEncoder(dim=DIM), make_backend(backend_name, tmp_path / backend_name, DIM))
    s.add(TEXTS, ids=IDS, metadatas=METAS)
    yield s
    s.close()


@pytest.fixture
def memory_store() -> MultiVectorStore:
    s = MultiVectorStore(FakeEncoder(dim=DIM), MemoryBackend(dim=DIM))
    s.add(TEXTS, ids=IDS, metadatas=METAS)
    return s


# --------------------------------------------------------------------------------------------------- retriever


def test_retriever_k_filter_scores_and_ids(store: MultiVectorStore) -> None:
    r = ColBERTRetriever(store=store, k=2)
    docs = r.invoke("late interaction token embeddings")
    assert docs[0].id == "colbert" and len(docs) == 2
    assert docs[0].metadata["topic"] == "ir" and docs[0].metadata["score"] > docs[1].metadata["score"]
    assert len(r.invoke("token embeddings", k=4)) == 4
    assert {d.id for d in r.invoke("late interaction", k=5, filter={"topic": "ir"})} == {"colbert", "qdrant"}
    assert [d.id for d in r.invoke("capital", k=5, filter={"year": [2021, 2022]})] in (
        ["paris", "rust"],
        ["rust", "paris"],
    )
    # A field no document has matches nothing: documented empty result, not an error.
    assert r.invoke("late interaction", filter={"no_such_field": "x"}) == []


def test_retriever_returns_fresh_documents(memory_store: MultiVectorStore) -> None:
    r = ColBERTRetriever(store=memory_store, k=1)
    first = r.invoke("Paris France")
    first[0].metadata["topic"] = "changed"
    first[0].page_content = "changed"
    again = r.invoke("Paris France")
    assert again[0].metadata["topic"] == "geo" and again[0].page_content == TEXTS[1]


def test_retriever_from_encoder_and_backend_and_bad_input() -> None:
    backend = MemoryBackend(dim=DIM)
    enc = FakeEncoder(dim=DIM)
    MultiVectorStore(enc, backend).add(TEXTS, ids=IDS)
    r = ColBERTRetriever(encoder=enc, backend=backend, k=1)
    assert r.invoke("Rust memory safety")[0].id == "rust"
    with pytest.raises(InvalidInputError, match="empty or blank"):
        r.invoke("   ")
    with pytest.raises(InvalidInputError, match="k must be >= 1"):
        r.invoke("rust", k=0)
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) top_k; it accepts k, filter"):
        r.invoke("rust", top_k=3)
    with pytest.raises(ValidationError):
        ColBERTRetriever(store=r.store, k=0)
    with pytest.raises(ValidationError, match="extra"):
        ColBERTRetriever(store=r.store, kk=1)
    # Construction errors surface as pydantic ValidationError (a ValueError) carrying our message.
    with pytest.raises(ValueError, match="needs an index"):
        ColBERTRetriever(encoder=enc)
    # Mixed backends: a store plus another backend object.
    with pytest.raises(ValueError, match="mixing backends"):
        ColBERTRetriever(store=r.store, backend=MemoryBackend(dim=DIM))


def test_retriever_callbacks_tags_metadata_and_batch(memory_store: MultiVectorStore) -> None:
    seen: dict[str, Any] = {}

    class Spy(BaseCallbackHandler):
        def on_retriever_start(self, serialized: Any, query: str, **kwargs: Any) -> None:
            seen["start"] = (query, kwargs.get("tags"), kwargs.get("metadata"))

        def on_retriever_end(self, documents: Any, **kwargs: Any) -> None:
            seen["end"] = [d.id for d in documents]

    r = ColBERTRetriever(store=memory_store, k=1, tags=["colbert"], metadata={"index": "demo"})
    r.invoke("Paris", config={"callbacks": [Spy()], "tags": ["req"], "metadata": {"user": "u1"}})
    query, tags, metadata = seen["start"]
    assert query == "Paris" and set(tags) == {"req", "colbert"}
    assert metadata["user"] == "u1" and metadata["index"] == "demo" and "ls_retriever_name" in metadata
    assert seen["end"] == ["paris"]
    batch = r.batch(["Paris France", "Rust memory"])
    assert [b[0].id for b in batch] == ["paris", "rust"]


async def test_retriever_ainvoke_does_not_block_the_event_loop() -> None:
    enc = SpyEncoder(DIM)
    s = MultiVectorStore(enc, MemoryBackend(dim=DIM))
    s.add(TEXTS, ids=IDS)
    enc.delay = 0.3
    r = ColBERTRetriever(store=s, k=2)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    docs = await r.ainvoke("Paris France", k=1)
    task.cancel()
    assert [d.id for d in docs] == ["paris"]
    assert ticks >= 10  # the loop kept running during the 0.3 s encode


# --------------------------------------------------------------------------------------------------- reranker


def _docs() -> list[Document]:
    return [Document(page_content=t, metadata=dict(m), id=i) for t, m, i in zip(TEXTS, METAS, IDS, strict=True)]


def test_rerank_is_faithful_maxsim_on_copies() -> None:
    enc = FakeEncoder(dim=DIM)
    docs = _docs()
    before = [d.model_copy(deep=True) for d in docs]
    out = ColBERTRerank(encoder=enc, top_n=3).compress_documents(docs, "late interaction vector database")
    assert docs == before  # inputs untouched
    expected = maxsim(enc.encode_queries(["late interaction vector database"])[0], enc.encode_documents(TEXTS))
    order = np.argsort(-expected, kind="stable")[:3]
    assert [d.id for d in out] == [IDS[i] for i in order]
    np.testing.assert_allclose([d.metadata["relevance_score"] for d in out], expected[order], rtol=1e-6)
    assert all(o is not d for o in out for d in docs)
    assert out[0].metadata["topic"] == METAS[order[0]]["topic"]


def test_rerank_reuses_stored_vectors(backend_name: str, tmp_path: Path) -> None:
    enc = SpyEncoder(DIM)
    s = MultiVectorStore(enc, make_backend(backend_name, tmp_path / backend_name, DIM))
    s.add(TEXTS, ids=IDS, metadatas=METAS)
    enc.documents.clear()
    rr = ColBERTRerank(store=s, top_n=5)
    stale = Document(page_content="Paris was rewritten since indexing", id="paris")
    unknown = Document(page_content="a document the index never saw")
    no_id_match = Document(page_content=TEXTS[0], id="not-in-index")
    docs = [*_docs()[2:], stale, unknown, no_id_match]
    out = rr.compress_documents(docs, "memory safety")
    # Only texts that cannot be reused are encoded, in one batched call.
    assert enc.documents == [stale.page_content, unknown.page_content, TEXTS[0]]
    plain = ColBERTRerank(encoder=FakeEncoder(dim=DIM), top_n=5).compress_documents(docs, "memory safety")
    assert [d.page_content for d in out] == [d.page_content for d in plain]
    np.testing.assert_allclose(
        [d.metadata["relevance_score"] for d in out], [d.metadata["relevance_score"] for d in plain], atol=2e-3
    )
    s.close()


def test_rerank_edge_cases() -> None:
    enc = FakeEncoder(dim=DIM)
    rr = ColBERTRerank(encoder=enc, top_n=2)
    assert rr.compress_documents([], "anything") == []
    no_ids = [Document(page_content=t) for t in TEXTS]
    out = rr.compress_documents(no_ids, "Paris France")
    assert out[0].page_content == TEXTS[1] and out[0].id is None
    with pytest.raises(InvalidInputError, match="empty or blank"):
        rr.compress_documents(no_ids, "")
    with pytest.raises(ValidationError):
        ColBERTRerank(encoder=enc, top_n=0)
    with pytest.raises(ValueError, match="needs encoder"):
        ColBERTRerank(top_n=2)
    s = MultiVectorStore(enc, MemoryBackend(dim=DIM))
    with pytest.raises(ValueError, match="not comparable"):
        ColBERTRerank(store=s, encoder=FakeEncoder(dim=DIM, seed=1))
    with pytest.raises(ValueError, match="mixing backends"):
        ColBERTRerank(store=s, backend=MemoryBackend(dim=DIM))
    assert ColBERTRerank(store=s).encoder is enc
    assert ColBERTRerank(encoder=enc, backend=MemoryBackend(dim=DIM)).store is not None


async def test_rerank_inside_contextual_compression_retriever(memory_store: MultiVectorStore) -> None:
    ccr_module = pytest.importorskip("langchain_classic.retrievers.contextual_compression")
    base = ColBERTVectorStore(memory_store).as_retriever(search_kwargs={"k": 4})
    ccr = ccr_module.ContextualCompressionRetriever(
        base_compressor=ColBERTRerank(store=memory_store, top_n=2), base_retriever=base
    )
    docs = ccr.invoke("Qdrant multivector database")
    assert len(docs) == 2 and docs[0].id == "qdrant" and "relevance_score" in docs[0].metadata
    adocs = await ccr.ainvoke("Qdrant multivector database")
    assert [d.id for d in adocs] == [d.id for d in docs]


# --------------------------------------------------------------------------------------------------- vector store


def test_vectorstore_does_not_override_as_retriever_and_keeps_from_texts_signature() -> None:
    assert ColBERTVectorStore.as_retriever is VectorStore.as_retriever
    enc = FakeEncoder(dim=DIM)
    from langchain_core.embeddings import DeterministicFakeEmbedding

    # Positional (texts, embedding, metadatas) like any VectorStore; embedding is unused.
    vs = ColBERTVectorStore.from_texts(TEXTS, DeterministicFakeEmbedding(size=8), METAS, ids=IDS, encoder=enc)
    retriever = vs.as_retriever(search_kwargs={"k": 1})
    assert isinstance(retriever, VectorStoreRetriever)
    assert retriever.invoke("Paris")[0].id == "paris"
    with pytest.raises(InvalidInputError, match="encoder="):
        ColBERTVectorStore.from_texts(TEXTS, DeterministicFakeEmbedding(size=8))


def test_vectorstore_relevance_scores_and_threshold(store: MultiVectorStore) -> None:
    vs = ColBERTVectorStore(store)
    # filterwarnings=error: LangChain warns (-> error) if a relevance score leaves [0, 1].
    scored = vs.similarity_search_with_relevance_scores("Paris is the capital and largest city of France", k=5)
    assert scored[0][0].id == "paris" and scored[0][1] == pytest.approx(1.0, abs=1e-3)
    assert all(0.0 <= s <= 1.0 for _, s in scored)
    assert [s for _, s in scored] == sorted((s for _, s in scored), reverse=True)
    r = vs.as_retriever(search_type="similarity_score_threshold", search_kwargs={"score_threshold": 0.99, "k": 5})
    assert [d.id for d in r.invoke("Paris is the capital and largest city of France")] == ["paris"]
    raw = vs.similarity_search_with_score("Paris is the capital and largest city of France", k=1)
    assert raw[0][1] == pytest.approx(10.0, abs=0.02)  # [CLS] + 9 words, each matched exactly
    assert vs.similarity_search("Paris", k=5, filter={"topic": "nope"}) == []


async def test_vectorstore_async_relevance_scores(memory_store: MultiVectorStore) -> None:
    vs = ColBERTVectorStore(memory_store)
    scored = await vs.asimilarity_search_with_relevance_scores("Rust memory safety", k=2)
    assert scored[0][0].id == "rust" and all(0.0 <= s <= 1.0 for _, s in scored)


def test_vectorstore_crud_details(store: MultiVectorStore, backend_name: str) -> None:
    vs = ColBERTVectorStore(store)
    # An argument the method does not take is an error, not silently ignored (a misspelt filters= would be).
    with pytest.raises(TypeError, match=r"unknown_kw.*accepts ids, batch_size"):
        vs.add_texts(["brand new text"], batch_size=1, unknown_kw=True)
    with pytest.raises(TypeError, match="filters"):
        vs.similarity_search("Paris", k=1, filters={"a": 1})
    with pytest.raises(TypeError, match=r"filters; it accepts k, filter"):
        vs.as_retriever(search_kwargs={"filters": {"a": 1}}).invoke("Paris")
    with pytest.raises(TypeError, match=r"ColBERTRetriever.invoke got unexpected keyword argument\(s\) filters"):
        ColBERTRetriever(store=store, k=1).invoke("Paris", filters={"a": 1})
    with pytest.raises(InvalidInputError, match="not both"):
        vs.delete(["paris"], filter={"a": 1})
    with pytest.raises(InvalidInputError, match=r"\$gte"):
        vs.delete(filter={"a": {"$between": [1, 2]}})
    assert len(vs.get_by_ids(["paris"])) == 1  # nothing was deleted
    ids = vs.add_texts(["brand new text", "another one"], [{"a": 1}, {"a": 2}], batch_size=1)
    assert len(ids) == 2 and all(ids)
    assert vs.delete(filter={"a": {"$gte": 2}}) is True  # delete by filter, operator form
    assert [d.id for d in vs.get_by_ids(ids)] == ids[:1]
    assert len(vs.get_by_ids(["paris"])) == 1
    mixed = vs.add_documents([Document(page_content="has id", id="given"), Document(page_content="no id")])
    assert mixed[0] == "given" and mixed[1]
    assert {d.id for d in vs.get_by_ids(["given", "missing", "paris"])} == {"given", "paris"}
    assert vs.delete(["given", "missing"]) is True
    assert vs.get_by_ids(["given"]) == []
    assert vs.add_documents([]) == []
    with pytest.raises(InvalidInputError, match="empty or blank"):
        vs.similarity_search(" ")
    with pytest.raises(InvalidInputError, match="k must be >= 1"):
        vs.similarity_search("Paris", k=0)
    backend = store.backend
    if callable(getattr(backend, "clear", None)) or callable(getattr(backend, "ids", None)):
        assert vs.delete() is True
        assert store.count() == 0 and vs.similarity_search("Paris") == []
    else:  # documented: delete-all needs a backend that can enumerate its documents
        with pytest.raises(InvalidInputError, match="cannot enumerate"):
            vs.delete()


def test_vectorstore_defaults_to_memory_backend() -> None:
    vs = ColBERTVectorStore(encoder=FakeEncoder(dim=DIM))
    assert isinstance(vs.store.backend, MemoryBackend)
    with pytest.raises(InvalidInputError, match="needs a ColBERT encoder"):
        ColBERTVectorStore()


@pytest.mark.parametrize("cleanup", ["incremental", "full"])
def test_indexing_api_counts(backend_name: str, tmp_path: Path, cleanup: str) -> None:
    store = MultiVectorStore(FakeEncoder(dim=DIM), make_backend(backend_name, tmp_path / backend_name, DIM))
    vs = ColBERTVectorStore(store)
    rm = InMemoryRecordManager(namespace=f"colbert/{backend_name}")
    rm.create_schema()
    f1 = Document(page_content="first file about ColBERT", metadata={"source": "f1"})
    f2 = Document(page_content="second file about Qdrant", metadata={"source": "f2"})
    kw: dict[str, Any] = {"cleanup": cleanup, "source_id_key": "source", "key_encoder": "sha256"}

    def run(docs: list[Document]) -> dict[str, int]:
        return dict(index(docs, rm, vs, **kw))

    assert run([f1, f2]) == {"num_added": 2, "num_updated": 0, "num_skipped": 0, "num_deleted": 0}
    assert run([f1, f2]) == {"num_added": 0, "num_updated": 0, "num_skipped": 2, "num_deleted": 0}
    f1_edit = Document(page_content="first file, edited", metadata={"source": "f1"})
    assert run([f1_edit, f2]) == {"num_added": 1, "num_updated": 0, "num_skipped": 1, "num_deleted": 1}
    assert store.count() == 2
    if cleanup == "full":
        assert run([f2]) == {"num_added": 0, "num_updated": 0, "num_skipped": 1, "num_deleted": 1}
        assert [d.page_content for d in vs.similarity_search("file", k=5)] == [f2.page_content]
    else:
        hits = vs.similarity_search("first file edited", k=5)
        assert {d.page_content for d in hits} == {f1_edit.page_content, f2.page_content}
    store.close()


async def test_aindex_incremental(memory_store: MultiVectorStore) -> None:
    from langchain_core.indexing import aindex

    vs = ColBERTVectorStore(encoder=FakeEncoder(dim=DIM))
    rm = InMemoryRecordManager(namespace="colbert/async")
    await rm.acreate_schema()
    docs = [Document(page_content=t, metadata={"source": i}) for t, i in zip(TEXTS, IDS, strict=True)]
    kw: dict[str, Any] = {"cleanup": "incremental", "source_id_key": "source", "key_encoder": "sha256"}
    assert (await aindex(docs, rm, vs, **kw))["num_added"] == 5
    assert (await aindex(docs, rm, vs, **kw))["num_skipped"] == 5


# --------------------------------------------------------------------------------------------------- real encoder


def test_real_encoder_end_to_end(tiny_encoder: Any) -> None:
    vs = ColBERTVectorStore.from_texts(TEXTS, None, METAS, ids=IDS, encoder=tiny_encoder)
    hits = vs.similarity_search_with_score(TEXTS[3], k=5)
    assert hits[0][0].id == "rust" and len(hits) == 5
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
    rel = vs.similarity_search_with_relevance_scores(TEXTS[3], k=5)
    assert all(0.0 <= s <= 1.0 for _, s in rel)
    docs = ColBERTRetriever(store=vs.store, k=3).invoke(TEXTS[3])
    assert docs[0].id == "rust" and docs[0].metadata["score"] == pytest.approx(hits[0][1], rel=1e-5)
    # Reranking with stored vectors equals reranking by re-encoding with the same encoder.
    reused = ColBERTRerank(store=vs.store, top_n=5).compress_documents(docs, "memory safety in Rust")
    encoded = ColBERTRerank(encoder=tiny_encoder, top_n=5).compress_documents(docs, "memory safety in Rust")
    assert [d.id for d in reused] == [d.id for d in encoded]
    np.testing.assert_allclose(
        [d.metadata["relevance_score"] for d in reused],
        [d.metadata["relevance_score"] for d in encoded],
        rtol=1e-4,
    )
    q = tiny_encoder.encode_queries(["memory safety in Rust"])[0]
    expected = maxsim(q, tiny_encoder.encode_documents([d.page_content for d in docs]))
    np.testing.assert_allclose(
        sorted(expected, reverse=True), [d.metadata["relevance_score"] for d in encoded], rtol=1e-4
    )


# --------------------------------------------------------------------------------------------------- module


def test_module_doctests() -> None:
    result = doctest.testmod(lc_module)
    assert result.attempted > 0 and result.failed == 0


def test_missing_langchain_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['langchain_core'] = None\n"
        "try:\n"
        "    import colbert_adapters.integrations.langchain\n"
        "except ImportError as e:\n"
        "    print(type(e).__name__, e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert "MissingDependencyError" in out.stdout and "colbert-adapters[langchain]" in out.stdout


def test_langchain_rag_example_runs_offline(tiny_checkpoint: pathlib.Path) -> None:
    cmd = [sys.executable, str(ROOT / "examples" / "langchain_rag.py"), "--model", str(tiny_checkpoint)]
    start = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "How does ColBERT score a document?" in out.stdout
    assert len([line for line in out.stdout.splitlines() if line.strip()[:2] in {"1.", "2."}]) == 2
    assert "answer: (FakeListChatModel)" in out.stdout
    assert time.monotonic() - start < 300
