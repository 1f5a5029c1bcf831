"""LlamaIndex integration: retriever, reranker (events), managed index (CRUD, query engine, persistence), example.

LlamaIndex has no official conformance suite; these are our contract tests. Backend-dependent behaviour is
parametrized over every backend of ``tests/_backends.py``.
"""

from __future__ import annotations

import asyncio
import doctest
import pathlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("llama_index.core")

import colbert_adapters.integrations.llama_index as li_module
from _backends import BACKEND_NAMES, SpyEncoder, make_backend
from colbert_adapters.integrations.llama_index import (
    ColBERTIndex,
    ColBERTRerank,
    ColBERTRetriever,
    to_filter,
)
from llama_index.core import Document, Settings
from llama_index.core.callbacks import CallbackManager, CBEventType, LlamaDebugHandler
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.llms import MockLLM
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)

from colbert_adapters.backends.memory import MemoryBackend
from colbert_adapters.errors import CollectionConfigError, InvalidInputError
from colbert_adapters.scoring import maxsim
from colbert_adapters.store import MultiVectorStore
from colbert_adapters.testing import FakeEncoder

ROOT = pathlib.Path(__file__).resolve().parent.parent
DIM = 32
TEXTS = {
    "colbert": "ColBERT scores documents by late interaction over token embeddings",
    "paris": "Paris is the capital and largest city of France",
    "photo": "Photosynthesis turns sunlight into chemical energy in plants",
    "rust": "Rust guarantees memory safety without a garbage collector",
    "qdrant": "Qdrant is a vector database with native multivector support",
}
META = {
    "colbert": {"topic": "ir", "year": 2020},
    "paris": {"topic": "geo", "year": 2021},
    "photo": {"topic": "bio", "year": 2020},
    "rust": {"topic": "code", "year": 2022},
    "qdrant": {"topic": "ir", "year": 2023},
}


def _documents() -> list[Document]:
    return [Document(text=t, id_=i, metadata=dict(META[i])) for i, t in TEXTS.items()]


@pytest.fixture(params=BACKEND_NAMES)
def backend_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def no_embed_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail loudly if anything resolves Settings.embed_model or an embedding model."""

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an embedding model was resolved")

    import llama_index.core.embeddings.utils as embed_utils
    import llama_index.core.settings as settings_module

    monkeypatch.setattr(settings_module._Settings, "embed_model", property(boom, boom))
    monkeypatch.setattr(embed_utils, "resolve_embed_model", boom)


@pytest.fixture
def index(backend_name: str, tmp_path: Path, no_embed_model: None) -> Any:
    store = MultiVectorStore(FakeEncoder(dim=DIM), make_backend(backend_name, tmp_path / backend_name, DIM))
    idx = ColBERTIndex.from_documents(_documents(), store)
    yield idx
    store.close()


class _EventSpy(BaseEventHandler):
    events: list[BaseEvent]

    @classmethod
    def class_name(cls) -> str:
        return "EventSpy"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        self.events.append(event)


@pytest.fixture
def event_spy() -> Any:
    root = get_dispatcher()
    spy = _EventSpy(events=[])
    root.add_event_handler(spy)
    yield spy
    root.event_handlers.remove(spy)


# --------------------------------------------------------------------------------------------------- index


def test_index_crud_and_query_engine(index: ColBERTIndex) -> None:
    store = index.store
    assert store.count() == 5 and set(index.ref_doc_info) == set(TEXTS)
    hits = index.as_retriever(similarity_top_k=2).retrieve("late interaction token embeddings")
    assert hits[0].node.ref_doc_id == "colbert" and len(hits) == 2
    assert hits[0].node.get_content() == TEXTS["colbert"] and hits[0].node.metadata == META["colbert"]
    assert hits[0].score is not None and hits[0].score > hits[1].score  # type: ignore[operator]

    index.insert(Document(text="Voyager is an HNSW library from Spotify", id_="voyager"))
    assert store.count() == 6
    top = index.as_retriever(similarity_top_k=1).retrieve("HNSW library Spotify")
    assert top[0].node.ref_doc_id == "voyager"

    index.delete_ref_doc("voyager", delete_from_docstore=True)
    assert store.count() == 5 and "voyager" not in index.ref_doc_info
    assert all(h.node.ref_doc_id != "voyager" for h in index.as_retriever(similarity_top_k=5).retrieve("HNSW"))
    index.delete_ref_doc("never-inserted")  # logs a warning, no error

    index.update_ref_doc(Document(text="Paris hosts the Louvre museum", id_="paris", metadata={"topic": "geo"}))
    assert store.count() == 5
    top = index.as_retriever(similarity_top_k=1).retrieve("Louvre museum")
    assert top[0].node.ref_doc_id == "paris" and top[0].node.get_content() == "Paris hosts the Louvre museum"

    changed = [*_documents()[:1], Document(text="Rust has a borrow checker", id_="rust")]
    assert index.refresh_ref_docs(changed) == [False, True]

    engine = index.as_query_engine(llm=MockLLM(max_tokens=8), similarity_top_k=2)
    response = engine.query("What does the borrow checker do?")
    assert response.source_nodes[0].node.ref_doc_id == "rust" and len(response.source_nodes) == 2


def test_index_rejects_unknown_keyword_arguments(index: ColBERTIndex) -> None:
    """A misspelt option (``filter=`` for ``filters=``) is a TypeError naming the accepted ones, never ignored."""
    count = index.store.count()
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) filter;.*similarity_top_k, filters"):
        index.as_retriever(filter={"topic": "ir"})
    with pytest.raises(TypeError, match=r"as_query_engine got unexpected keyword argument\(s\) top_k;.*response_mode"):
        index.as_query_engine(llm=MockLLM(max_tokens=8), top_k=2)
    with pytest.raises(TypeError, match=r"as_chat_engine got unexpected keyword argument\(s\) filter;"):
        index.as_chat_engine(chat_mode="context", llm=MockLLM(max_tokens=8), filter={"a": 1})
    with pytest.raises(TypeError, match="insert"):
        index.insert(Document(text="never stored", id_="x"), batch=3)
    with pytest.raises(TypeError, match="delete_ref_doc"):
        index.delete_ref_doc("colbert", hard=True)
    with pytest.raises(TypeError, match=r"update_ref_doc.*insert_kwargs, delete_kwargs"):
        index.update_ref_doc(Document(text="x", id_="colbert"), upsert=True)
    with pytest.raises(TypeError):
        ColBERTIndex(index.store, nodes=[], batchsize=8)  # type: ignore[call-arg]
    assert index.store.count() == count and "colbert" in index.ref_doc_info
    # the accepted ones still work, including those LlamaIndex passes through to its engines
    engine = index.as_query_engine(llm=MockLLM(max_tokens=8), similarity_top_k=2, response_mode="compact")
    assert len(engine.query("borrow checker").source_nodes) == 2
    # Built, not run (chatting starts LlamaIndex event loops that outlive the test), each with a ChatMemoryBuffer
    # (the default Memory opens an aiosqlite connection it never closes).
    from llama_index.core.memory import ChatMemoryBuffer

    llm = MockLLM(max_tokens=8)
    engines = {
        "context": "ContextChatEngine",
        "condense_question": "CondenseQuestionChatEngine",
        "condense_plus_context": "CondensePlusContextChatEngine",
    }
    for mode, name in engines.items():
        memory = ChatMemoryBuffer.from_defaults()
        chat = index.as_chat_engine(chat_mode=mode, llm=llm, memory=memory, similarity_top_k=1, verbose=False)
        assert type(chat).__name__ == name
    with pytest.raises(TypeError, match="similarity_top_k"):  # the simple chat engine retrieves nothing
        index.as_chat_engine(chat_mode="simple", llm=llm, similarity_top_k=1)
    simple = index.as_chat_engine(chat_mode="simple", llm=llm, memory=ChatMemoryBuffer.from_defaults())
    assert type(simple).__name__ == "SimpleChatEngine"


def test_retriever_doc_ids_and_node_ids(index: ColBERTIndex) -> None:
    """``doc_ids=`` keeps the nodes of those source documents, ``node_ids=`` those nodes (LlamaIndex's vector
    retriever conventions), with filters too; an empty list retrieves nothing."""
    query = "late interaction token embeddings"
    everything = index.as_retriever(similarity_top_k=5).retrieve(query)
    by_doc = {h.node.ref_doc_id: h for h in everything}
    got = index.as_retriever(similarity_top_k=5, doc_ids=["qdrant", "rust"]).retrieve(query)
    assert [h.node.ref_doc_id for h in got] == [
        h.node.ref_doc_id for h in everything if h.node.ref_doc_id in ("qdrant", "rust")
    ]
    node = by_doc["paris"].node.node_id
    got = index.as_retriever(similarity_top_k=5, node_ids=[node, "no-such-node"]).retrieve(query)
    assert [h.node.node_id for h in got] == [node] and got[0].score == pytest.approx(by_doc["paris"].score, rel=1e-4)
    ir = MetadataFilters(filters=[MetadataFilter(key="topic", value="ir")])
    got = index.as_retriever(similarity_top_k=5, filters=ir, doc_ids=["qdrant", "rust"]).retrieve(query)
    assert [h.node.ref_doc_id for h in got] == ["qdrant"]
    assert index.as_retriever(similarity_top_k=5, doc_ids=[]).retrieve(query) == []


def test_index_filters(index: ColBERTIndex) -> None:
    ir = index.as_retriever(
        similarity_top_k=5, filters=MetadataFilters(filters=[MetadataFilter(key="topic", value="ir")])
    )
    assert {h.node.ref_doc_id for h in ir.retrieve("vector database")} == {"colbert", "qdrant"}
    by_doc = index.as_retriever(similarity_top_k=5, filters={"ref_doc_id": "rust"})
    assert [h.node.ref_doc_id for h in by_doc.retrieve("anything at all")] == ["rust"]
    unknown = index.as_retriever(filters={"no_such_field": 1})
    assert unknown.retrieve("vector database") == []  # documented: unknown field -> no match


async def test_index_async_paths(index: ColBERTIndex) -> None:
    await index.ainsert(Document(text="Edge is the embedded Qdrant engine", id_="edge"))
    hits = await index.as_retriever(similarity_top_k=1).aretrieve("embedded Qdrant engine")
    assert hits[0].node.ref_doc_id == "edge"
    await index.adelete_ref_doc("edge", delete_from_docstore=True)
    assert index.store.count() == 5


def test_index_never_needs_an_embedding_model(no_embed_model: None) -> None:
    idx = ColBERTIndex.from_documents(
        _documents(), encoder=FakeEncoder(dim=DIM), transformations=[SentenceSplitter(chunk_size=64, chunk_overlap=0)]
    )
    idx.insert(Document(text="one more", id_="more"))
    response = idx.as_query_engine(llm=MockLLM(max_tokens=4)).query("Paris")
    assert response.source_nodes and isinstance(idx.store.backend, MemoryBackend)
    assert ColBERTIndex(encoder=FakeEncoder(dim=DIM)).store.count() == 0  # empty index


def test_index_persistence_round_trip(tmp_path: Path, no_embed_model: None) -> None:
    enc = FakeEncoder(dim=DIM)
    idx = ColBERTIndex.from_documents(_documents(), encoder=enc)
    before = [(h.node.node_id, h.score) for h in idx.as_retriever(similarity_top_k=3).retrieve("vector database")]
    idx.persist(tmp_path / "p")
    assert not list((tmp_path / "p").rglob("*.pkl")) and (tmp_path / "p" / "colbert_index.json").is_file()
    loaded = ColBERTIndex.from_persist_dir(tmp_path / "p", enc)
    after = [(h.node.node_id, h.score) for h in loaded.as_retriever(similarity_top_k=3).retrieve("vector database")]
    assert after == before and set(loaded.ref_doc_info) == set(TEXTS)
    loaded.delete_ref_doc("paris", delete_from_docstore=True)
    assert loaded.store.count() == 4
    with pytest.raises(CollectionConfigError, match="built with model"):
        ColBERTIndex.from_persist_dir(tmp_path / "p", FakeEncoder(dim=DIM, seed=3))
    with pytest.raises(CollectionConfigError, match=r"colbert_index\.json"):
        ColBERTIndex.from_persist_dir(tmp_path, enc)


def test_index_persistence_with_self_persisting_backend(tmp_path: Path, no_embed_model: None) -> None:
    qdrant = pytest.importorskip("colbert_adapters.backends.qdrant")
    enc = FakeEncoder(dim=DIM)
    backend = qdrant.QdrantBackend.edge(tmp_path / "edge", dim=DIM)
    idx = ColBERTIndex.from_documents(_documents(), encoder=enc, backend=backend)
    idx.persist(tmp_path / "p")
    backend.close()
    with pytest.raises(CollectionConfigError, match="pass backend="):
        ColBERTIndex.from_persist_dir(tmp_path / "p", enc)
    reopened = qdrant.QdrantBackend.edge(tmp_path / "edge")
    loaded = ColBERTIndex.from_persist_dir(tmp_path / "p", enc, backend=reopened)
    assert loaded.as_retriever(similarity_top_k=1).retrieve("Rust memory safety")[0].node.ref_doc_id == "rust"
    reopened.close()


# --------------------------------------------------------------------------------------------------- retriever


def test_filter_translation() -> None:
    eq = MetadataFilter(key="topic", value="ir")
    year_in = MetadataFilter(key="year", value=[2020, 2021], operator=FilterOperator.IN)
    assert to_filter(MetadataFilters(filters=[eq, year_in])) == {
        "$and": [{"topic": {"$eq": "ir"}}, {"year": {"$in": [2020, 2021]}}]
    }
    assert to_filter(MetadataFilters(filters=[eq, MetadataFilters(filters=[year_in])])) == to_filter(
        MetadataFilters(filters=[eq, year_in])
    )
    assert to_filter({"topic": "ir"}) == {"topic": "ir"} and to_filter(None) is None
    assert to_filter(MetadataFilters(filters=[])) is None
    insensitive = MetadataFilter(key="topic", value="IR", operator=FilterOperator.TEXT_MATCH_INSENSITIVE)
    with pytest.raises(InvalidInputError, match=r"unsupported filter operator TEXT_MATCH_INSENSITIVE.*supported"):
        to_filter(MetadataFilters(filters=[insensitive]))
    with pytest.raises(InvalidInputError, match="must be MetadataFilters"):
        to_filter("topic=ir")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="range operators compare numbers"):
        to_filter(MetadataFilters(filters=[MetadataFilter(key="year", value="2020", operator=FilterOperator.GT)]))


_F, _OP, _COND = MetadataFilter, FilterOperator, FilterCondition
#: Each FilterOperator and condition as a LlamaIndex QdrantVectorStore user writes it, and the nodes it keeps.
_LLAMA_FILTERS = [
    (MetadataFilters(filters=[_F(key="year", value=2021, operator=_OP.GT)]), {"rust", "qdrant"}),
    (MetadataFilters(filters=[_F(key="year", value=2021, operator=_OP.GTE)]), {"paris", "rust", "qdrant"}),
    (MetadataFilters(filters=[_F(key="year", value=2021, operator=_OP.LT)]), {"colbert", "photo"}),
    (MetadataFilters(filters=[_F(key="year", value=2020, operator=_OP.LTE)]), {"colbert", "photo"}),
    (MetadataFilters(filters=[_F(key="topic", value="ir", operator=_OP.NE)]), {"paris", "photo", "rust"}),
    (MetadataFilters(filters=[_F(key="topic", value=["ir", "geo"], operator=_OP.NIN)]), {"photo", "rust"}),
    (MetadataFilters(filters=[_F(key="topic", value=["bio", "geo"], operator=_OP.IN)]), {"photo", "paris"}),
    (MetadataFilters(filters=[_F(key="topic", value="code", operator=_OP.EQ)]), {"rust"}),
    (MetadataFilters(filters=[_F(key="tags", value="db", operator=_OP.CONTAINS)]), {"qdrant"}),
    (MetadataFilters(filters=[_F(key="tags", value=["db", "ml"], operator=_OP.ANY)]), {"colbert", "qdrant"}),
    (MetadataFilters(filters=[_F(key="tags", value=["ir", "ml"], operator=_OP.ALL)]), {"colbert"}),
    (MetadataFilters(filters=[_F(key="name", value="ColB", operator=_OP.TEXT_MATCH)]), {"colbert"}),
    (MetadataFilters(filters=[_F(key="tags", value=None, operator=_OP.IS_EMPTY)]), {"paris", "photo", "rust"}),
    (
        MetadataFilters(filters=[_F(key="topic", value="ir"), _F(key="year", value=2022, operator=_OP.GTE)]),
        {"qdrant"},
    ),
    (
        MetadataFilters(filters=[_F(key="topic", value="geo"), _F(key="year", value=2022)], condition=_COND.OR),
        {"paris", "rust"},
    ),
    (MetadataFilters(filters=[_F(key="topic", value="ir")], condition=_COND.NOT), {"paris", "photo", "rust"}),
]
_LLAMA_META = {
    "colbert": {"tags": ["ir", "ml"], "name": "ColBERT"},
    "qdrant": {"tags": ["ir", "db"], "name": "Qdrant"},
    "paris": {"tags": []},
}


def test_every_filter_operator_through_the_retriever(backend_name: str, tmp_path: Path) -> None:
    index = ColBERTIndex.from_documents(
        [Document(text=t, id_=i, metadata={**META[i], **_LLAMA_META.get(i, {})}) for i, t in TEXTS.items()],
        encoder=FakeEncoder(dim=DIM),
        backend=make_backend(backend_name, tmp_path / backend_name, DIM),
    )
    for filters, want in _LLAMA_FILTERS:
        nodes = index.as_retriever(similarity_top_k=5, filters=filters).retrieve("late interaction")
        assert {n.node.ref_doc_id for n in nodes} == want, filters
    # delete_nodes(filters=...) as on a LlamaIndex vector store: the matching nodes go, the others stay
    index.delete_nodes(filters=MetadataFilters(filters=[_F(key="year", value=2021, operator=_OP.LTE)]))
    assert {n.node.ref_doc_id for n in index.as_retriever(similarity_top_k=5).retrieve("x")} == {"rust", "qdrant"}
    with pytest.raises(InvalidInputError, match="not both"):
        index.delete_nodes(["a"], filters={"topic": "ir"})
    index.store.close()


def test_retriever_over_plain_store(backend_name: str, tmp_path: Path) -> None:
    store = MultiVectorStore(FakeEncoder(dim=DIM), make_backend(backend_name, tmp_path / backend_name, DIM))
    store.add(list(TEXTS.values()), ids=list(TEXTS), metadatas=list(META.values()))
    r = ColBERTRetriever(store, similarity_top_k=2)
    hits = r.retrieve("Paris capital of France")
    assert isinstance(hits[0].node, TextNode) and hits[0].node.node_id == "paris"
    assert hits[0].node.metadata == META["paris"] and len(hits) == 2
    contradictory = MetadataFilters(
        filters=[MetadataFilter(key="topic", value="ir"), MetadataFilter(key="topic", value="geo")]
    )
    assert ColBERTRetriever(store, filters=contradictory).retrieve("Paris") == []
    in_filter = MetadataFilters(filters=[MetadataFilter(key="year", value=[2020], operator=FilterOperator.IN)])
    got = {h.node.node_id for h in ColBERTRetriever(store, similarity_top_k=5, filters=in_filter).retrieve("energy")}
    assert got == {"colbert", "photo"}
    with pytest.raises(InvalidInputError, match="empty or blank"):
        r.retrieve("  ")
    with pytest.raises(InvalidInputError, match="k must be >= 1"):
        ColBERTRetriever(store, similarity_top_k=0)
    with pytest.raises(InvalidInputError, match="mixing backends"):
        ColBERTRetriever(store, backend=MemoryBackend(dim=DIM))
    store.close()


async def test_retriever_aretrieve_does_not_block() -> None:
    enc = SpyEncoder(DIM)
    store = MultiVectorStore(enc, MemoryBackend(dim=DIM))
    store.add(list(TEXTS.values()), ids=list(TEXTS))
    enc.delay = 0.3
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    hits = await ColBERTRetriever(store, similarity_top_k=1).aretrieve("Rust memory safety")
    task.cancel()
    assert hits[0].node.node_id == "rust" and ticks >= 10


def test_retriever_emits_host_events(event_spy: Any) -> None:
    store = MultiVectorStore(FakeEncoder(dim=DIM), MemoryBackend(dim=DIM))
    store.add(list(TEXTS.values()), ids=list(TEXTS))
    debug = LlamaDebugHandler()
    ColBERTRetriever(store, callback_manager=CallbackManager([debug])).retrieve("Paris")
    assert debug.get_event_pairs(CBEventType.RETRIEVE)
    names = [type(e).__name__ for e in event_spy.events]
    assert "RetrievalStartEvent" in names and "RetrievalEndEvent" in names


# --------------------------------------------------------------------------------------------------- reranker


def _nodes() -> list[NodeWithScore]:
    return [NodeWithScore(node=TextNode(id_=i, text=t, metadata=dict(META[i])), score=0.5) for i, t in TEXTS.items()]


def test_rerank_is_faithful_copies_and_emits_events(event_spy: Any) -> None:
    enc = FakeEncoder(dim=DIM)
    debug = LlamaDebugHandler()
    rr = ColBERTRerank(enc, top_n=3, keep_retrieval_score=True, callback_manager=CallbackManager([debug]))
    assert BaseNodePostprocessor.__name__ in [b.__name__ for b in type(rr).__mro__]
    nodes = _nodes()
    before = [(n.node.model_copy(deep=True), n.score) for n in nodes]
    out = rr.postprocess_nodes(nodes, query_str="late interaction vector database")
    assert [(n.node, n.score) for n in nodes] == before  # inputs untouched
    contents = [n.node.get_content(metadata_mode="embed") for n in nodes]  # type: ignore[arg-type]
    expected = maxsim(enc.encode_queries(["late interaction vector database"])[0], enc.encode_documents(contents))
    order = np.argsort(-expected, kind="stable")[:3]
    assert [n.node.node_id for n in out] == [list(TEXTS)[i] for i in order]
    np.testing.assert_allclose([n.score for n in out], expected[order], rtol=1e-6)
    assert out[0].node.metadata["retrieval_score"] == 0.5 and "retrieval_score" not in nodes[0].node.metadata
    # Instrumentation events and the legacy callback event.
    starts = [e for e in event_spy.events if isinstance(e, ReRankStartEvent)]
    ends = [e for e in event_spy.events if isinstance(e, ReRankEndEvent)]
    assert len(starts) == 1 and starts[0].top_n == 3 and starts[0].model_name == enc.model_id
    assert len(ends) == 1 and [n.node.node_id for n in ends[0].nodes] == [n.node.node_id for n in out]
    (pair,) = debug.get_event_pairs(CBEventType.RERANKING)
    assert pair[0].payload is not None and pair[0].payload["model_name"] == enc.model_id


def test_rerank_reuses_index_vectors(backend_name: str, tmp_path: Path, no_embed_model: None) -> None:
    enc = SpyEncoder(DIM)
    store = MultiVectorStore(enc, make_backend(backend_name, tmp_path / backend_name, DIM))
    idx = ColBERTIndex.from_documents(_documents(), store)
    retrieved = idx.as_retriever(similarity_top_k=4).retrieve("energy from sunlight")
    enc.documents.clear()
    rr = ColBERTRerank(index=idx, top_n=2)
    extra = NodeWithScore(node=TextNode(text="Sunlight energy for plants, not in the index"), score=0.1)
    out = rr.postprocess_nodes([*retrieved, extra], QueryBundle("energy from sunlight"))
    assert enc.documents == [extra.node.get_content(metadata_mode="embed")]  # type: ignore[arg-type]
    # The expected ranking: MaxSim on the vectors as the index stores them (Voyager: int8-quantised), the node
    # that is not in the index encoded afresh.
    fake = FakeEncoder(dim=DIM)
    q = fake.encode_queries(["energy from sunlight"])[0]
    stored = {r.id: r.vectors for r in store.backend.get([n.node.node_id for n in retrieved], with_vectors=True)}
    nodes = [*retrieved, extra]
    vecs = [stored.get(n.node.node_id) for n in nodes]
    vecs[-1] = fake.encode_documents([extra.node.get_content(metadata_mode="embed")])[0]  # type: ignore[arg-type]
    expected = maxsim(q, vecs)
    order = np.argsort(-expected, kind="stable")[:2]
    assert [n.node.node_id for n in out] == [nodes[i].node.node_id for i in order]
    np.testing.assert_allclose([n.score for n in out], expected[order], atol=1e-5)
    store.close()


def test_rerank_in_query_engine_and_bad_input(no_embed_model: None) -> None:
    enc = FakeEncoder(dim=DIM)
    idx = ColBERTIndex.from_documents(_documents(), encoder=enc)
    rr = ColBERTRerank(index=idx, top_n=1)
    engine = idx.as_query_engine(llm=MockLLM(max_tokens=4), similarity_top_k=4, node_postprocessors=[rr])
    response = engine.query("Rust memory safety garbage collector")
    assert [n.node.ref_doc_id for n in response.source_nodes] == ["rust"]
    assert rr.postprocess_nodes([], query_str="anything") == []
    with pytest.raises(InvalidInputError, match="needs the query"):
        rr.postprocess_nodes(_nodes())
    with pytest.raises(InvalidInputError, match="empty or blank"):
        rr.postprocess_nodes(_nodes(), query_str=" ")
    with pytest.raises(InvalidInputError, match="needs encoder"):
        ColBERTRerank()
    with pytest.raises(InvalidInputError, match="not comparable"):
        ColBERTRerank(FakeEncoder(dim=DIM, seed=2), index=idx)
    other = MultiVectorStore(enc, MemoryBackend(dim=DIM))
    with pytest.raises(InvalidInputError, match="mixing backends"):
        ColBERTRerank(index=idx, store=other)
    with pytest.raises(ValueError):
        ColBERTRerank(enc, top_n=0)
    assert rr.to_dict()["top_n"] == 1 and rr.class_name() == "ColBERTRerank"


async def test_rerank_async(no_embed_model: None) -> None:
    rr = ColBERTRerank(FakeEncoder(dim=DIM), top_n=1)
    out = await rr.apostprocess_nodes(_nodes(), query_str="Paris capital France")
    assert out[0].node.node_id == "paris"


# --------------------------------------------------------------------------------------------------- real encoder


def test_real_encoder_index_and_rerank(tiny_encoder: Any, tmp_path: Path, no_embed_model: None) -> None:
    idx = ColBERTIndex.from_documents(_documents(), encoder=tiny_encoder)
    query = TEXTS["rust"]
    hits = idx.as_retriever(similarity_top_k=3).retrieve(query)
    assert hits[0].node.ref_doc_id == "rust"
    reused = ColBERTRerank(index=idx, top_n=3).postprocess_nodes(hits, query_str="garbage collector")
    encoded = ColBERTRerank(tiny_encoder, top_n=3).postprocess_nodes(hits, query_str="garbage collector")
    assert [n.node.node_id for n in reused] == [n.node.node_id for n in encoded]
    np.testing.assert_allclose([n.score for n in reused], [n.score for n in encoded], rtol=1e-4)
    idx.persist(tmp_path / "p")
    loaded = ColBERTIndex.from_persist_dir(tmp_path / "p", tiny_encoder)
    assert loaded.as_retriever(similarity_top_k=1).retrieve(query)[0].node.ref_doc_id == "rust"


# --------------------------------------------------------------------------------------------------- module


def test_module_doctests(no_embed_model: None) -> None:
    import importlib
    import pkgutil

    names = [li_module.__name__] + [m.name for m in pkgutil.iter_modules(li_module.__path__, f"{li_module.__name__}.")]
    attempted = 0
    for name in names:
        result = doctest.testmod(importlib.import_module(name))
        assert result.failed == 0, name
        attempted += result.attempted
    assert attempted >= 3


def test_missing_llama_index_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['llama_index.core'] = None\n"
        "try:\n"
        "    import colbert_adapters.integrations.llama_index\n"
        "except ImportError as e:\n"
        "    print(type(e).__name__, e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert "MissingDependencyError" in out.stdout and "colbert-adapters[llamaindex]" in out.stdout


def test_settings_untouched_by_import() -> None:
    # Importing and using the integration must not configure LlamaIndex globals.
    assert Settings._embed_model is None and Settings._llm is None


def test_llama_index_example_runs_offline(tiny_checkpoint: pathlib.Path, tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        str(ROOT / "examples" / "llama_index_query_engine.py"),
        "--model",
        str(tiny_checkpoint),
        "--persist-dir",
        str(tmp_path / "index"),
    ]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "capital of France" in first.stdout and "answer:" in first.stdout
    assert len([ln for ln in first.stdout.splitlines() if ln.strip()[:2] in {"1.", "2."}]) == 2
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert second.returncode == 0 and "reloaded 6 nodes" in second.stderr
    assert second.stdout == first.stdout
