"""LlamaIndex conventions, each written as a LlamaIndex user writes it: the official ColbertRerank constructor
(``model=``, ``tokenizer=``, ``top_n=``, ``device=``, ``keep_retrieval_score=``), MMR through
``as_retriever(vector_store_query_mode="mmr", vector_store_kwargs={"mmr_threshold": ...})``, score cut-offs with
``SimilarityPostprocessor``, and ``load_index_from_storage`` with no embedding model.

Backend-dependent behaviour runs on every backend of ``tests/_backends.py``; the model constructors load the tiny
local checkpoint of ``tests/conftest.py``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("llama_index.core")

from _backends import BACKEND_NAMES, make_backend
from colbert_adapters.integrations.llama_index import ColBERTIndex, ColBERTRerank, ColBERTRetriever
from llama_index.core import Document, StorageContext, load_index_from_storage
from llama_index.core.llms import MockLLM
from llama_index.core.postprocessor import SimilarityPostprocessor
from llama_index.core.schema import NodeWithScore, TextNode
from llama_index.core.vector_stores.types import VectorStoreQueryMode

from colbert_adapters.errors import CollectionConfigError, InvalidInputError
from colbert_adapters.store import MultiVectorStore
from colbert_adapters.testing import FakeEncoder

DIM = 32
TEXTS = {
    "colbert": "ColBERT scores documents by late interaction over token embeddings",
    "copy": "ColBERT scores documents by late interaction over token embeddings, again",
    "paris": "Paris is the capital and largest city of France",
    "photo": "Photosynthesis turns sunlight into chemical energy in plants",
    "rust": "Rust guarantees memory safety without a garbage collector",
    "qdrant": "Qdrant is a vector database with native multivector support",
}
QUERY = TEXTS["colbert"]


def _documents() -> list[Document]:
    return [Document(text=t, id_=i, metadata={"n": n}) for n, (i, t) in enumerate(TEXTS.items())]


@pytest.fixture
def no_embed_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail loudly if anything resolves Settings.embed_model or an embedding model (none is installed here)."""

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an embedding model was resolved")

    import llama_index.core.embeddings.utils as embed_utils
    import llama_index.core.settings as settings_module

    monkeypatch.setattr(settings_module._Settings, "embed_model", property(boom, boom))
    monkeypatch.setattr(embed_utils, "resolve_embed_model", boom)


@pytest.fixture(params=BACKEND_NAMES)
def index(request: pytest.FixtureRequest, tmp_path: Path, no_embed_model: None) -> Any:
    name = str(request.param)
    store = MultiVectorStore(FakeEncoder(dim=DIM), make_backend(name, tmp_path / name, DIM))
    yield ColBERTIndex.from_documents(_documents(), store)
    store.close()


def _ref_ids(nodes: list[NodeWithScore]) -> list[str | None]:
    return [n.node.ref_doc_id for n in nodes]


# --------------------------------------------------------------------------------------------------- MMR


def test_mmr_retriever(index: ColBERTIndex) -> None:
    plain = index.as_retriever(similarity_top_k=3).retrieve(QUERY)
    assert _ref_ids(plain)[:2] == ["colbert", "copy"]
    retriever = index.as_retriever(
        vector_store_query_mode="mmr", similarity_top_k=3, vector_store_kwargs={"mmr_threshold": 0.3}
    )
    diverse = retriever.retrieve(QUERY)
    assert _ref_ids(diverse)[0] == "colbert" and "copy" not in _ref_ids(diverse) and len(diverse) == 3
    by_score = {n.node.node_id: n.score for n in index.as_retriever(similarity_top_k=6).retrieve(QUERY)}
    assert all(n.score == pytest.approx(by_score[n.node.node_id], abs=1e-3) for n in diverse)  # raw MaxSim
    relevance_only = index.as_retriever(
        vector_store_query_mode=VectorStoreQueryMode.MMR, similarity_top_k=3, vector_store_kwargs={"mmr_threshold": 1}
    )
    assert _ref_ids(relevance_only.retrieve(QUERY)) == _ref_ids(plain)
    few = index.as_retriever(
        vector_store_query_mode="mmr",
        similarity_top_k=2,
        vector_store_kwargs={"mmr_threshold": 0.3, "mmr_prefetch_k": 2},
    )
    assert _ref_ids(few.retrieve(QUERY)) == ["colbert", "copy"]  # only two candidates to pick from
    engine = index.as_query_engine(
        llm=MockLLM(max_tokens=4), vector_store_query_mode="mmr", similarity_top_k=3, vector_store_kwargs={}
    )
    assert len(engine.query(QUERY).source_nodes) == 3


def test_mmr_options_are_checked(no_embed_model: None) -> None:
    index = ColBERTIndex.from_documents(_documents(), encoder=FakeEncoder(dim=DIM))
    with pytest.raises(InvalidInputError, match=r"'semantic_hybrid' is not supported.*'default'.*'mmr'.*'hybrid'"):
        index.as_retriever(vector_store_query_mode="semantic_hybrid")
    with pytest.raises(InvalidInputError, match="unknown vector_store_kwargs mmr_treshold"):
        index.as_retriever(vector_store_query_mode="mmr", vector_store_kwargs={"mmr_treshold": 0.5})
    with pytest.raises(InvalidInputError, match="apply to vector_store_query_mode='mmr' only"):
        index.as_retriever(vector_store_kwargs={"mmr_threshold": 0.5})
    with pytest.raises(InvalidInputError, match="mmr_threshold must be between 0"):
        index.as_retriever(vector_store_query_mode="mmr", vector_store_kwargs={"mmr_threshold": 3})
    with pytest.raises(InvalidInputError, match="not both"):
        index.as_retriever(
            vector_store_query_mode="mmr", vector_store_kwargs={"mmr_prefetch_k": 8, "mmr_prefetch_factor": 2}
        )
    with pytest.raises(InvalidInputError, match="mmr_prefetch_factor must be a number >= 1"):
        index.as_retriever(vector_store_query_mode="mmr", vector_store_kwargs={"mmr_prefetch_factor": 0.5})


# --------------------------------------------------------------------------------------------------- score cut-off


def test_similarity_postprocessor_cuts_on_raw_maxsim(index: ColBERTIndex) -> None:
    query = "capital city of France"
    everything = index.as_retriever(similarity_top_k=6).retrieve(query)
    n_query_tokens = index.store.encode_query(query).shape[0]
    cutoff = (everything[0].score + everything[1].score) / 2  # type: ignore[operator]
    assert cutoff <= n_query_tokens  # the raw scale: up to one per query token vector
    engine = index.as_query_engine(
        llm=MockLLM(max_tokens=4),
        similarity_top_k=6,
        node_postprocessors=[SimilarityPostprocessor(similarity_cutoff=cutoff)],
    )
    assert _ref_ids(engine.query(query).source_nodes) == _ref_ids(everything[:1])
    # The same cut-off in the retriever itself.
    kept = index.as_retriever(similarity_top_k=6, score_threshold=cutoff).retrieve(query)
    assert _ref_ids(kept) == _ref_ids(everything[:1])
    with pytest.raises(InvalidInputError, match="score_threshold must be"):
        index.as_retriever(score_threshold="0.5")


# --------------------------------------------------------------------------------------------------- reranker


def test_rerank_constructed_like_the_official_colbert_rerank(tiny_checkpoint: Path, tiny_encoder: Any) -> None:
    model = str(tiny_checkpoint)
    reranker = ColBERTRerank(top_n=3, model=model, tokenizer=model, device="cpu", keep_retrieval_score=True)
    assert reranker.model == model and reranker.top_n == 3
    nodes = [NodeWithScore(node=TextNode(text=t), score=0.5) for t in TEXTS.values()]  # no index, no ids known
    out = reranker.postprocess_nodes(nodes, query_str="memory safety in Rust")
    reference = ColBERTRerank(tiny_encoder, top_n=3).postprocess_nodes(nodes, query_str="memory safety in Rust")
    assert [n.node.get_content() for n in out] == [n.node.get_content() for n in reference] and len(out) == 3
    np.testing.assert_allclose([n.score for n in out], [n.score for n in reference], rtol=1e-5)
    assert out[0].node.metadata["retrieval_score"] == 0.5


def test_rerank_from_a_model_in_a_query_engine(tiny_checkpoint: Path, no_embed_model: None) -> None:
    index = ColBERTIndex.from_documents(_documents(), encoder=FakeEncoder(dim=DIM))
    engine = index.as_query_engine(
        llm=MockLLM(max_tokens=4),
        similarity_top_k=5,
        node_postprocessors=[ColBERTRerank(model=str(tiny_checkpoint), top_n=2)],
    )
    assert len(engine.query("vector database with multivector support").source_nodes) == 2


def test_rerank_arguments_that_do_not_apply(tiny_checkpoint: Path, tiny_encoder: Any) -> None:
    model = str(tiny_checkpoint)
    with pytest.raises(InvalidInputError, match="leave tokenizer= out"):
        ColBERTRerank(model=model, tokenizer="bert-base-uncased")
    with pytest.raises(InvalidInputError, match=r"pass model= .* or encoder="):
        ColBERTRerank(tiny_encoder, model=model)
    with pytest.raises(InvalidInputError, match="device= apply to the model loaded from model="):
        ColBERTRerank(tiny_encoder, device="cpu")
    with pytest.raises(InvalidInputError, match="first positional argument is the encoder"):
        ColBERTRerank(3)  # type: ignore[arg-type]  # the official class takes top_n first
    with pytest.raises(InvalidInputError, match="Hugging Face Hub id or a local checkpoint path"):
        ColBERTRerank(model=3)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------- loading


def test_load_index_from_storage_needs_no_embedding_model(tmp_path: Path, no_embed_model: None) -> None:
    enc = FakeEncoder(dim=DIM)
    index = ColBERTIndex.from_documents(_documents(), encoder=enc)
    before = [(n.node.node_id, n.score) for n in index.as_retriever(similarity_top_k=3).retrieve("vector database")]
    index.persist(tmp_path / "storage")
    loaded = load_index_from_storage(StorageContext.from_defaults(persist_dir=str(tmp_path / "storage")), encoder=enc)
    assert isinstance(loaded, ColBERTIndex)
    after = [(n.node.node_id, n.score) for n in loaded.as_retriever(similarity_top_k=3).retrieve("vector database")]
    assert after == before and set(loaded.ref_doc_info) == set(TEXTS)
    # A FakeEncoder records no model to load: say so.
    with pytest.raises(CollectionConfigError, match="no model to load; pass encoder="):
        load_index_from_storage(StorageContext.from_defaults(persist_dir=str(tmp_path / "storage")))


def test_load_index_from_storage_loads_the_recorded_model(
    tmp_path: Path, tiny_encoder: Any, no_embed_model: None
) -> None:
    index = ColBERTIndex.from_documents(_documents(), encoder=tiny_encoder)
    index.persist(tmp_path / "storage")
    loaded = load_index_from_storage(StorageContext.from_defaults(persist_dir=str(tmp_path / "storage")))
    assert isinstance(loaded, ColBERTIndex) and loaded.store.encoder is not tiny_encoder
    assert _ref_ids(loaded.as_retriever(similarity_top_k=1).retrieve(TEXTS["rust"])) == ["rust"]
    moved = tmp_path / "moved"
    shutil.move(str(tmp_path / "storage"), str(moved))
    with pytest.raises(CollectionConfigError, match="from_persist_dir"):
        load_index_from_storage(StorageContext.from_defaults(persist_dir=str(moved)), encoder=tiny_encoder)
    again = ColBERTIndex.from_persist_dir(moved)  # a moved directory loads from where it is now
    assert _ref_ids(again.as_retriever(similarity_top_k=1).retrieve(TEXTS["rust"])) == ["rust"]


def test_load_index_from_storage_with_a_self_persisting_backend(tmp_path: Path, no_embed_model: None) -> None:
    enc = FakeEncoder(dim=DIM)
    store = MultiVectorStore(enc, make_backend("voyager", tmp_path, DIM))
    ColBERTIndex.from_documents(_documents(), store).persist(tmp_path / "storage")
    store.close()
    context = StorageContext.from_defaults(persist_dir=str(tmp_path / "storage"))
    with pytest.raises(CollectionConfigError, match="pass backend="):
        load_index_from_storage(context, encoder=enc)
    backend = make_backend("voyager", tmp_path, DIM)  # reopens the directory
    loaded = load_index_from_storage(context, encoder=enc, backend=backend)
    assert _ref_ids(loaded.as_retriever(similarity_top_k=1).retrieve("Paris capital of France")) == ["paris"]
    backend.close()


def test_storage_context_persist_alone_keeps_no_vectors(tmp_path: Path, no_embed_model: None) -> None:
    index = ColBERTIndex.from_documents(_documents(), encoder=FakeEncoder(dim=DIM))
    index.storage_context.persist(persist_dir=str(tmp_path / "storage"))  # LlamaIndex's stores only
    with pytest.raises(CollectionConfigError, match=r"index\.persist\(dir\)"):
        load_index_from_storage(StorageContext.from_defaults(persist_dir=str(tmp_path / "storage")))


def test_mmr_retriever_over_a_plain_store() -> None:
    store = MultiVectorStore(FakeEncoder(dim=DIM))
    store.add(list(TEXTS.values()), ids=list(TEXTS))
    hits = ColBERTRetriever(store, similarity_top_k=2, vector_store_query_mode="mmr").retrieve(QUERY)
    assert hits[0].node.node_id == "colbert" and len(hits) == 2
