"""MultiVectorStore: ``score_threshold`` on every search, and maximal marginal relevance (MMR) with MaxSim between
documents, on every backend of ``tests/_backends.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _backends import BACKEND_NAMES, make_backend

from colbert_adapters import _kernels
from colbert_adapters.errors import InvalidInputError
from colbert_adapters.scoring import maxsim, maxsim_batch
from colbert_adapters.store import MultiVectorStore
from colbert_adapters.testing import FakeEncoder

DIM = 16
TEXTS = [
    "ColBERT scores documents by late interaction over token embeddings",
    "ColBERT scores documents by late interaction over token embeddings again",
    "Paris is the capital and largest city of France",
    "Photosynthesis turns sunlight into chemical energy in plants",
    "Rust guarantees memory safety without a garbage collector",
    "Qdrant is a vector database with native multivector support",
    "late interaction retrieval with token level embeddings",
]
IDS = ["colbert", "colbert-copy", "paris", "photo", "rust", "qdrant", "late"]


@pytest.fixture(params=BACKEND_NAMES)
def backend_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(backend_name: str, tmp_path: Path) -> Any:
    s = MultiVectorStore(FakeEncoder(dim=DIM), make_backend(backend_name, tmp_path / backend_name, DIM))
    s.add(TEXTS, ids=IDS, metadatas=[{"n": i} for i in range(len(TEXTS))])
    yield s
    s.close()


def _unit(*rows: list[float]) -> np.ndarray:
    a = np.array(rows, dtype=np.float32)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


# --------------------------------------------------------------------------------------------------- threshold


def test_score_threshold_keeps_hits_at_or_above_it(store: MultiVectorStore) -> None:
    query = "late interaction token embeddings"
    everything = store.search(query, k=7)
    cut = (everything[2].score + everything[3].score) / 2  # between two scores: backends round differently
    kept = store.search(query, k=7, score_threshold=cut)
    assert [h.id for h in kept] == [h.id for h in everything if h.score >= cut] and len(kept) >= 3
    assert store.search(query, k=7, score_threshold=everything[0].score + 1.0) == []
    # k still caps the hits; every search entry point takes it.
    assert [h.id for h in store.search(query, k=1, score_threshold=cut)] == [everything[0].id]
    batch = store.search_batch([query, "Paris France"], k=7, score_threshold=cut)
    assert [h.id for h in batch[0]] == [h.id for h in kept] and all(h.score >= cut for h in batch[1])
    q = store.encode_query(query)
    assert [h.id for h in store.search_by_vectors(q, k=7, score_threshold=cut)] == [h.id for h in kept]
    subset = store.search(query, k=7, ids=["paris", "colbert", "late"], score_threshold=cut)
    assert {h.id for h in subset} == {"colbert", "late", "paris"} & {h.id for h in kept}
    # Raw MaxSim scale: a negative threshold below every score keeps everything.
    assert len(store.search(query, k=7, score_threshold=-float(q.shape[0]))) == 7


@pytest.mark.parametrize("bad", ["0.5", True, float("nan"), float("inf"), [1.0]])
def test_score_threshold_type_is_checked(bad: Any) -> None:
    store = MultiVectorStore(FakeEncoder(dim=DIM))
    store.add(TEXTS[2:5], ids=IDS[2:5])
    hits = store.search("capital city", k=3)
    assert store.search("capital city", k=3, score_threshold=hits[1].score) == hits[:2]  # >=: the equal one stays
    with pytest.raises(InvalidInputError, match="score_threshold must be"):
        store.search("ColBERT", score_threshold=bad)
    with pytest.raises(InvalidInputError, match="score_threshold must be"):
        store.search_batch(["ColBERT"], score_threshold=bad)
    with pytest.raises(InvalidInputError, match="score_threshold must be"):
        store.max_marginal_relevance_search("ColBERT", score_threshold=bad)


# --------------------------------------------------------------------------------------------------- MMR


@pytest.mark.parametrize("chunk_rows", [3, 1000])
def test_document_similarity_both_ways_from_one_product(monkeypatch: pytest.MonkeyPatch, chunk_rows: int) -> None:
    """The kernel behind MMR's document similarity equals MaxSim taken each way, also when documents straddle the
    row chunks (3 rows per chunk)."""
    monkeypatch.setattr(_kernels, "ROW_CHUNK_BYTES", 4 * 8 * chunk_rows)
    rng = np.random.default_rng(3)
    a = _unit(*rng.normal(size=(5, 8)).tolist())
    docs = [_unit(*rng.normal(size=(int(rng.integers(1, 7)), 8)).tolist()) for _ in range(9)]
    offsets = np.cumsum([0] + [d.shape[0] for d in docs]).astype(np.int64)
    forward, backward = _kernels.maxsim_both_ways(a, np.concatenate(docs), offsets)
    np.testing.assert_allclose(forward, maxsim(a, docs), atol=1e-5)
    np.testing.assert_allclose(backward, maxsim_batch(docs, [a])[:, 0], atol=1e-5)


def test_mmr_picks_a_diverse_document_over_a_near_duplicate(backend_name: str, tmp_path: Path) -> None:
    """Query tokens e0, e1, e2. ``a`` matches e0 and e1; ``a_dup`` is nearly ``a``; ``b`` matches e2 only.

    relevance (MaxSim / 3): a 2/3, a_dup slightly less, b 1/3. similarity to ``a``: a_dup ~1, b 0. With lambda 0.5
    the second pick is b (0.5 * 1/3 - 0 > 0.5 * 2/3 - 0.5 * 1); with lambda 1 it is a_dup, as in plain search."""
    e = np.eye(4, dtype=np.float32)
    docs = {
        "a": _unit([1, 0, 0, 0], [0, 1, 0, 0]),
        "a_dup": _unit([1, 0, 0, 0], [0, 1, 0, 0.05]),
        "b": _unit([0, 0, 1, 0], [0, 0, 0, 1]),
    }
    store = MultiVectorStore(FakeEncoder(dim=4), make_backend(backend_name, tmp_path / backend_name, 4))
    store.backend.upsert(list(docs), list(docs.values()), texts=list(docs), metadatas=[{}, {}, {}])
    q = e[:3]
    plain = store.search_by_vectors(q, k=3)
    assert [h.id for h in plain] == ["a", "a_dup", "b"]
    mmr = store.max_marginal_relevance_search_by_vectors(q, k=2, fetch_k=3, lambda_mult=0.5)
    assert [h.id for h in mmr] == ["a", "b"]
    assert mmr[1].score == pytest.approx(plain[2].score, abs=1e-3)  # hits keep their MaxSim score
    relevance_only = store.max_marginal_relevance_search_by_vectors(q, k=3, fetch_k=3, lambda_mult=1.0)
    assert [h.id for h in relevance_only] == [h.id for h in plain]
    store.close()


def test_mmr_with_lambda_one_is_plain_search_order(store: MultiVectorStore) -> None:
    for query in ("late interaction token embeddings", "capital city of France", "memory safety"):
        plain = store.search(query, k=5)
        mmr = store.max_marginal_relevance_search(query, k=5, fetch_k=7, lambda_mult=1.0)
        assert [h.id for h in mmr] == [h.id for h in plain]
        np.testing.assert_allclose([h.score for h in mmr], [h.score for h in plain], rtol=1e-6)


def test_mmr_leaves_out_the_near_copy_of_a_text(store: MultiVectorStore) -> None:
    query = TEXTS[0]
    plain = [h.id for h in store.search(query, k=3)]
    assert plain[:2] == ["colbert", "colbert-copy"]
    diverse = [h.id for h in store.max_marginal_relevance_search(query, k=3, fetch_k=7, lambda_mult=0.3)]
    assert diverse[0] == "colbert" and "colbert-copy" not in diverse and len(set(diverse)) == 3


def _mmr_oracle(q: np.ndarray, docs: list[np.ndarray], k: int, lam: float) -> list[int]:
    """MMR as the formula reads: the full doc-doc similarity matrix, every step scanning every picked document
    (ties go to the more relevant document)."""
    n = len(docs)
    rel = maxsim(q, docs) / q.shape[0]
    full = np.array([maxsim(docs[i], docs) / docs[i].shape[0] for i in range(n)])  # [i, j] = MaxSim(i, j) / n_i
    sim = (full + full.T) / 2
    picked: list[int] = []
    while len(picked) < min(k, n):
        best, best_gain = -1, -np.inf
        for i in np.argsort(-rel, kind="stable").tolist():
            if i in picked:
                continue
            gain = lam * rel[i] - (1 - lam) * (max(sim[i, j] for j in picked) if picked else 0.0)
            if gain > best_gain + 1e-9:
                best, best_gain = i, gain
        picked.append(best)
    return picked


@pytest.mark.parametrize("lam", [0.0, 0.25, 0.5, 0.75])
def test_mmr_matches_the_formula_on_random_vectors(lam: float) -> None:
    rng = np.random.default_rng(7)
    docs = [_unit(*rng.normal(size=(int(rng.integers(2, 9)), 8)).tolist()) for _ in range(30)]
    store = MultiVectorStore(FakeEncoder(dim=8))
    store.backend.upsert([f"d{i}" for i in range(30)], docs, texts=None, metadatas=None)
    q = _unit(*rng.normal(size=(5, 8)).tolist())
    hits = store.max_marginal_relevance_search_by_vectors(q, k=6, fetch_k=30, lambda_mult=lam)
    assert [h.id for h in hits] == [f"d{i}" for i in _mmr_oracle(q, docs, 6, lam)]


def test_mmr_fetch_k_filter_ids_and_threshold(store: MultiVectorStore) -> None:
    query = "late interaction token embeddings"
    assert len(store.max_marginal_relevance_search(query, k=4, fetch_k=2)) == 4  # fetch_k below k is raised to k
    only = store.max_marginal_relevance_search(query, k=5, filter={"n": [2, 3, 6]})
    assert {h.id for h in only} == {"paris", "photo", "late"}
    within = store.max_marginal_relevance_search(query, k=5, ids=["rust", "qdrant"])
    assert {h.id for h in within} == {"rust", "qdrant"}
    everything = store.search(query, k=7)
    cut = (everything[2].score + everything[3].score) / 2
    above = store.max_marginal_relevance_search(query, k=5, score_threshold=cut)
    assert {h.id for h in above} == {h.id for h in everything[:3]}
    assert store.max_marginal_relevance_search(query, filter={"n": 99}) == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lambda_mult": 1.5}, "lambda_mult must be between 0"),
        ({"lambda_mult": -0.1}, "lambda_mult must be between 0"),
        ({"lambda_mult": float("nan")}, "lambda_mult must be between 0"),
        ({"lambda_mult": "0.5"}, "lambda_mult must be a number"),
        ({"fetch_k": 0}, "k must be >= 1"),
        ({"k": 0}, "k must be >= 1"),
        ({"filter": "n=1"}, "filter"),
    ],
)
def test_mmr_bad_arguments(kwargs: dict[str, Any], match: str) -> None:
    store = MultiVectorStore(FakeEncoder(dim=DIM))
    store.add(TEXTS[:3], ids=IDS[:3])
    with pytest.raises(InvalidInputError, match=match):
        store.max_marginal_relevance_search("ColBERT", **kwargs)
    with pytest.raises(InvalidInputError, match="empty or blank"):
        store.max_marginal_relevance_search("  ")


def test_mmr_on_an_empty_store() -> None:
    assert MultiVectorStore(FakeEncoder(dim=DIM)).max_marginal_relevance_search("anything") == []
