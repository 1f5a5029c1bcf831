"""LangChain conventions, each written as a langchain-qdrant user writes it: score thresholds, MMR
(``search_type="mmr"``), search by (multi)vector, ``from_documents`` without an embedding, ``from_existing_index``, and
``ColBERTRerank(model=..., top_n=...)`` inside ``ContextualCompressionRetriever``.

Backend-dependent behaviour runs on every backend of ``tests/_backends.py``; the model constructors load the tiny
local checkpoint of ``tests/conftest.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("langchain_core")

from _backends import BACKEND_NAMES, make_backend
from colbert_adapters.integrations.langchain import ColBERTRerank, ColBERTVectorStore
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.documents import Document

from colbert_adapters.cli import main as cli_main
from colbert_adapters.errors import CollectionConfigError, InvalidInputError
from colbert_adapters.store import MultiVectorStore
from colbert_adapters.testing import FakeEncoder

DIM = 32
DOCS = [
    Document("ColBERT scores documents by late interaction over token embeddings", id="colbert", metadata={"t": "ir"}),
    Document(
        "ColBERT scores documents by late interaction over token embeddings, again", id="copy", metadata={"t": "ir"}
    ),
    Document("Paris is the capital and largest city of France", id="paris", metadata={"t": "geo"}),
    Document("Photosynthesis turns sunlight into chemical energy in plants", id="photo", metadata={"t": "bio"}),
    Document("Rust guarantees memory safety without a garbage collector", id="rust", metadata={"t": "code"}),
    Document("Qdrant is a vector database with native multivector support", id="qdrant", metadata={"t": "ir"}),
]
QUERY = "ColBERT scores documents by late interaction over token embeddings"


@pytest.fixture(params=BACKEND_NAMES)
def vs(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    name = str(request.param)
    store = ColBERTVectorStore.from_documents(
        DOCS, encoder=FakeEncoder(dim=DIM), backend=make_backend(name, tmp_path / name, DIM)
    )
    yield store
    store.store.close()


# --------------------------------------------------------------------------------------------------- thresholds


def test_similarity_search_with_score_threshold(vs: ColBERTVectorStore) -> None:
    scored = vs.similarity_search_with_score(QUERY, k=6)
    cut = (scored[2][1] + scored[3][1]) / 2
    kept = vs.similarity_search_with_score(QUERY, k=6, score_threshold=cut)
    assert [d.id for d, _ in kept] == [d.id for d, s in scored if s >= cut] and len(kept) == 3
    assert [d.id for d in vs.similarity_search(QUERY, k=6, score_threshold=cut)] == [d.id for d, _ in kept]
    # as langchain-qdrant: search_kwargs reach similarity_search, on the raw score scale
    retriever = vs.as_retriever(search_kwargs={"k": 6, "score_threshold": cut})
    assert [d.id for d in retriever.invoke(QUERY)] == [d.id for d, _ in kept]
    with pytest.raises(InvalidInputError, match="score_threshold must be"):
        vs.similarity_search(QUERY, score_threshold="high")


def test_similarity_score_threshold_retriever_uses_relevance_in_0_1(vs: ColBERTVectorStore) -> None:
    retriever = vs.as_retriever(
        search_type="similarity_score_threshold", search_kwargs={"score_threshold": 0.9, "k": 4}
    )
    got = retriever.invoke(QUERY)
    relevance = dict((d.id, s) for d, s in vs.similarity_search_with_relevance_scores(QUERY, k=6))
    assert [d.id for d in got] == [i for i, s in relevance.items() if s >= 0.9][:4]
    assert {"colbert", "copy"} <= {d.id for d in got} and "paris" not in {d.id for d in got}


# --------------------------------------------------------------------------------------------------- MMR


def test_mmr_retriever(vs: ColBERTVectorStore) -> None:
    plain = [d.id for d in vs.similarity_search(QUERY, k=3)]
    assert plain[:2] == ["colbert", "copy"]
    retriever = vs.as_retriever(search_type="mmr", search_kwargs={"k": 3, "fetch_k": 6, "lambda_mult": 0.3})
    diverse = [d.id for d in retriever.invoke(QUERY)]
    assert diverse[0] == "colbert" and "copy" not in diverse and len(diverse) == 3
    relevance_only = vs.as_retriever(search_type="mmr", search_kwargs={"k": 3, "fetch_k": 6, "lambda_mult": 1.0})
    assert [d.id for d in relevance_only.invoke(QUERY)] == plain
    filtered = vs.as_retriever(search_type="mmr", search_kwargs={"k": 3, "filter": {"t": "ir"}})
    assert {d.id for d in filtered.invoke(QUERY)} == {"colbert", "copy", "qdrant"}
    with pytest.raises(TypeError, match="fetch_k, lambda_mult, filter"):
        vs.as_retriever(search_type="mmr", search_kwargs={"k": 3, "lamda_mult": 0.2}).invoke(QUERY)


async def test_mmr_search_and_by_vector(vs: ColBERTVectorStore) -> None:
    docs = vs.max_marginal_relevance_search(QUERY, k=3, fetch_k=6, lambda_mult=0.3)
    q = vs.store.encode_query(QUERY)
    by_vector = vs.max_marginal_relevance_search_by_vector(q.tolist(), k=3, fetch_k=6, lambda_mult=0.3)
    assert [d.id for d in by_vector] == [d.id for d in docs]
    scored = vs.max_marginal_relevance_search_with_score_by_vector(q, k=3, fetch_k=6, lambda_mult=0.3)
    raw = dict((d.id, s) for d, s in vs.similarity_search_with_score(QUERY, k=6))
    assert [(d.id, pytest.approx(raw[d.id], abs=1e-3)) for d, _ in scored] == [(d.id, s) for d, s in scored]
    adocs = await vs.amax_marginal_relevance_search(QUERY, k=3, fetch_k=6, lambda_mult=0.3)
    assert [d.id for d in adocs] == [d.id for d in docs]
    with pytest.raises(InvalidInputError, match="lambda_mult must be between 0"):
        vs.max_marginal_relevance_search(QUERY, lambda_mult=5)


# --------------------------------------------------------------------------------------------------- by vector


async def test_similarity_search_by_vector_takes_token_vectors(vs: ColBERTVectorStore) -> None:
    q = vs.store.encode_query("memory safety garbage collector")
    expected = [d.id for d in vs.similarity_search("memory safety garbage collector", k=2)]
    assert [d.id for d in vs.similarity_search_by_vector(q, k=2)] == expected
    assert [d.id for d in vs.similarity_search_by_vector(q.tolist(), k=2)] == expected
    assert [d.id for d in await vs.asimilarity_search_by_vector(q, k=2)] == expected
    with_scores = vs.similarity_search_with_score_by_vector(q, k=2, filter={"t": "geo"})
    assert [d.id for d, _ in with_scores] == ["paris"]
    single = np.ones(DIM, dtype=np.float32).tolist()  # what a dense Embeddings.embed_query returns
    with pytest.raises(InvalidInputError, match=r"single vector of length 32.*encode_query"):
        vs.similarity_search_by_vector(single)
    with pytest.raises(InvalidInputError, match="single vector"):
        vs.max_marginal_relevance_search_by_vector(np.ones(DIM))
    with pytest.raises(InvalidInputError, match="dimension"):
        vs.similarity_search_by_vector(np.ones((3, DIM + 1), dtype=np.float32))


# --------------------------------------------------------------------------------------------------- construction


def test_from_documents_needs_no_embedding() -> None:
    vs = ColBERTVectorStore.from_documents(DOCS, encoder=FakeEncoder(dim=DIM))
    assert sorted(vs.store.ids()) == sorted(d.id for d in DOCS if d.id)
    assert vs.get_by_ids(["rust"])[0].metadata == {"t": "code"}
    with pytest.raises(InvalidInputError, match="encoder="):
        ColBERTVectorStore.from_documents(DOCS)


async def test_afrom_documents() -> None:
    vs = await ColBERTVectorStore.afrom_documents(DOCS[:2], encoder=FakeEncoder(dim=DIM))
    assert sorted(vs.store.ids()) == ["colbert", "copy"]


def test_from_existing_index_reopens_a_cli_index_with_its_model(
    tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    for d in DOCS:
        (folder / f"{d.id}.txt").write_text(d.page_content, encoding="utf-8")
    assert cli_main(["index", str(folder), str(tmp_path / "idx"), "--model", str(tiny_checkpoint), "-q"]) == 0
    capsys.readouterr()
    vs = ColBERTVectorStore.from_existing_index(tmp_path / "idx")  # no encoder: the index records its model
    top = vs.similarity_search_with_score(DOCS[4].page_content, k=2)
    assert top[0][0].id == "rust.txt" and top[0][1] > top[1][1]
    vs.store.close()


def test_from_existing_index_of_a_backend_directory(tmp_path: Path) -> None:
    enc = FakeEncoder(dim=DIM)
    with MultiVectorStore(enc, make_backend("voyager", tmp_path, DIM)) as store:
        store.add([d.page_content for d in DOCS], ids=[str(d.id) for d in DOCS])
    vs = ColBERTVectorStore.from_existing_index(tmp_path / "voyager", encoder=enc, read_only=True)
    assert vs.similarity_search("Paris France", k=1)[0].id == "paris"
    vs.store.close()
    with pytest.raises(InvalidInputError, match="encoder="):
        ColBERTVectorStore.from_existing_index(tmp_path / "voyager")
    with pytest.raises(CollectionConfigError):
        ColBERTVectorStore.from_existing_index(tmp_path / "voyager", encoder=FakeEncoder(dim=DIM, seed=4))
    with pytest.raises(CollectionConfigError):
        ColBERTVectorStore.from_existing_index(tmp_path / "nothing-here", encoder=enc)


# --------------------------------------------------------------------------------------------------- reranker


def test_rerank_from_a_model_path_reranks_plain_texts(tiny_checkpoint: Path, tiny_encoder: Any) -> None:
    reranker = ColBERTRerank(model=str(tiny_checkpoint), top_n=3, device="cpu")
    assert reranker.model == str(tiny_checkpoint) and reranker.store is None
    texts = [Document(d.page_content) for d in DOCS]  # no ids, no index
    out = reranker.compress_documents(texts, "memory safety in Rust")
    reference = ColBERTRerank(encoder=tiny_encoder, top_n=3).compress_documents(texts, "memory safety in Rust")
    assert [d.page_content for d in out] == [d.page_content for d in reference] and len(out) == 3
    np.testing.assert_allclose(
        [d.metadata["relevance_score"] for d in out], [d.metadata["relevance_score"] for d in reference], rtol=1e-5
    )
    with pytest.raises(ValueError, match="not both"):
        ColBERTRerank(model=str(tiny_checkpoint), encoder=tiny_encoder)
    with pytest.raises(ValueError, match="device= applies to the model"):
        ColBERTRerank(encoder=tiny_encoder, device="cpu")
    with pytest.raises(ValueError, match="model must be a Hugging Face Hub id or a local checkpoint path"):
        ColBERTRerank(model="")


def test_rerank_in_contextual_compression_retriever(tiny_checkpoint: Path, tiny_encoder: Any) -> None:
    vs = ColBERTVectorStore.from_documents(DOCS, encoder=tiny_encoder)
    compression_retriever = ContextualCompressionRetriever(
        base_compressor=ColBERTRerank(model=str(tiny_checkpoint), top_n=2),
        base_retriever=vs.as_retriever(search_kwargs={"k": 5}),
    )
    docs = compression_retriever.invoke("Qdrant vector database multivector")
    assert len(docs) == 2 and docs[0].id == "qdrant"
    assert docs[0].metadata["relevance_score"] >= docs[1].metadata["relevance_score"]
