"""store.search(mode="late" | "lexical" | "hybrid"): modes, fusions, options and bad input, on every backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _backends import BACKEND_NAMES, make_backend
from lexical_contract import CORPUS, fts5_bm25

from colbert_adapters import FakeEncoder, InvalidInputError, MultiVectorStore
from colbert_adapters.backends.memory import MemoryBackend
from colbert_adapters.types import Hit

DIM = 16
META = [{"n": i, "kind": "odd" if i % 2 else "even"} for i in range(len(CORPUS))]
LEXICAL_BACKENDS = BACKEND_NAMES


def _store(name: str, tmp_path: Path) -> MultiVectorStore:
    store = MultiVectorStore(FakeEncoder(dim=DIM), make_backend(name, tmp_path, DIM))
    store.add(list(CORPUS.values()), ids=list(CORPUS), metadatas=META)
    return store


def _rrf(lists: list[list[str]], k: int = 60) -> list[tuple[str, float]]:
    scores: dict[str, float] = {}
    for ids in lists:
        for rank, i in enumerate(ids, start=1):
            scores[i] = scores.get(i, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])


@pytest.fixture
def oracle() -> MultiVectorStore:
    store = MultiVectorStore(FakeEncoder(dim=DIM), MemoryBackend())
    store.add(list(CORPUS.values()), ids=list(CORPUS), metadatas=META)
    return store


@pytest.mark.parametrize("name", LEXICAL_BACKENDS)
def test_lexical_mode_is_bm25(name: str, tmp_path: Path) -> None:
    with _store(name, tmp_path) as store:
        hits = store.search("fish dog", k=10, mode="lexical")
    want = fts5_bm25("fish dog", CORPUS)
    assert [h.id for h in hits] == sorted(want, key=lambda i: -want[i])
    if not name.startswith("qdrant"):  # Qdrant's IDF is ln(1 + ...), FTS5's ln(...): same ranking here
        assert [h.score for h in hits] == pytest.approx([want[h.id] for h in hits], rel=1e-6)
    assert all(h.text == CORPUS[h.id] for h in hits)


@pytest.mark.parametrize("name", LEXICAL_BACKENDS)
def test_hybrid_rrf_fuses_both_lists(name: str, tmp_path: Path, oracle: MultiVectorStore) -> None:
    query = "cat bird lamp"
    with _store(name, tmp_path) as store:
        late = [h.id for h in store.search(query, k=100)]
        lexical = [h.id for h in store.search(query, k=100, mode="lexical")]
        hits = store.search(query, k=4, mode="hybrid")
    if not name.startswith("qdrant"):  # the FTS5 backends rank exactly as the memory oracle
        assert lexical == [h.id for h in oracle.search(query, k=100, mode="lexical")]
    want = _rrf([late, lexical])[:4]
    assert [h.id for h in hits] == [i for i, _ in want]
    assert [h.score for h in hits] == pytest.approx([s for _, s in want])


def test_default_mode_is_late(oracle: MultiVectorStore) -> None:
    late = oracle.search("cat bird", k=3, mode="late")
    assert oracle.search("cat bird", k=3) == late
    assert [h.id for h in late] == [h.id for h in oracle.search_by_vectors(oracle.encode_query("cat bird"), k=3)]


def test_rrf_k_and_fetch_k(oracle: MultiVectorStore) -> None:
    query = "cat tree"
    late = [h.id for h in oracle.search(query, k=3)]
    lexical = [h.id for h in oracle.search(query, k=3, mode="lexical")]
    hits = oracle.search(query, k=2, mode="hybrid", rrf_k=1, fetch_k=3)
    want = _rrf([late, lexical], k=1)[:2]
    assert [(h.id, round(h.score, 9)) for h in hits] == [(i, round(s, 9)) for i, s in want]


def test_blend(oracle: MultiVectorStore) -> None:
    query = "dog fish"
    late = oracle.search(query, k=100)
    lexical = oracle.search(query, k=100, mode="lexical")

    def norm(hits: list[Hit]) -> dict[str, float]:
        lo, hi = min(h.score for h in hits), max(h.score for h in hits)
        return {h.id: (h.score - lo) / (hi - lo) for h in hits}

    a, b = norm(late), norm(lexical)
    for alpha in (0.0, 0.3, 1.0):
        want = {i: alpha * a.get(i, 0.0) + (1 - alpha) * b.get(i, 0.0) for i in set(a) | set(b)}
        hits = oracle.search(query, k=6, mode="hybrid", fusion="blend", alpha=alpha)
        assert [h.score for h in hits] == pytest.approx(sorted(want.values(), reverse=True)[:6])
        assert all(0.0 <= h.score <= 1.0 for h in hits)
    only_late = oracle.search(query, k=3, mode="hybrid", fusion="blend", alpha=1.0)
    assert [h.id for h in only_late] == [h.id for h in late[:3]]


def test_rerank_scores_the_union_by_maxsim(oracle: MultiVectorStore) -> None:
    query = "lamp chair"
    hits = oracle.search(query, k=2, mode="hybrid", rerank=True, fetch_k=2)
    late = oracle.search(query, k=6)
    lexical_ids = {h.id for h in oracle.search(query, k=2, mode="lexical")}
    pool = {h.id: h.score for h in late[:2]} | {h.id: h.score for h in late if h.id in lexical_ids}
    want = sorted(pool.items(), key=lambda kv: -kv[1])[:2]
    assert [(h.id, h.score) for h in hits] == [(i, pytest.approx(s)) for i, s in want]


@pytest.mark.parametrize("mode", ["lexical", "hybrid"])
def test_filter_ids_and_threshold(oracle: MultiVectorStore, mode: str) -> None:
    q = "cat dog fish bird tree lamp"
    filtered = oracle.search(q, k=10, mode=mode, filter={"kind": "odd"})
    assert filtered and all(h.metadata["kind"] == "odd" for h in filtered)
    subset = oracle.search(q, k=10, mode=mode, ids=["a", "f", "nope"])
    assert {h.id for h in subset} <= {"a", "f"} and subset
    every = oracle.search(q, k=10, mode=mode)
    cut = every[len(every) // 2].score
    kept = oracle.search(q, k=10, mode=mode, score_threshold=cut)
    assert kept == [h for h in every if h.score >= cut]


def test_search_batch_modes(oracle: MultiVectorStore) -> None:
    queries = ["cat", "tree lamp"]
    for mode in ("late", "lexical", "hybrid"):
        batch = oracle.search_batch(queries, k=3, mode=mode)
        assert batch == [oracle.search(q, k=3, mode=mode) for q in queries]


def test_lexical_mode_does_not_encode_the_query() -> None:
    from _backends import SpyEncoder

    enc = SpyEncoder(dim=DIM)
    store = MultiVectorStore(enc)
    store.add(["cat"], ids=["c"])
    store.search("cat", mode="lexical")
    assert enc.queries == []
    store.search("cat", mode="hybrid")
    assert enc.queries == ["cat"]


def test_texts_none_and_wordless_queries(tmp_path: Path) -> None:
    store = MultiVectorStore(FakeEncoder(dim=DIM))
    store.backend.upsert(["x", "y"], FakeEncoder(dim=DIM).encode_documents(["cat", "cat"]), texts=["cat", None])
    assert [h.id for h in store.search("cat", mode="lexical")] == ["x"]
    assert store.search("?!", mode="lexical") == []
    assert {h.id for h in store.search("?! cat", mode="hybrid")} == {"x", "y"}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "bm25"}, "mode must be one of 'late', 'lexical', 'hybrid'"),
        ({"mode": None}, "mode must be one of"),
        ({"mode": "hybrid", "fusion": "max"}, "fusion must be one of 'rrf', 'blend'"),
        ({"mode": "hybrid", "alpha": 1.5}, r"alpha must be a number in \[0, 1\]"),
        ({"mode": "hybrid", "alpha": True}, "alpha must be"),
        ({"mode": "hybrid", "rrf_k": 0}, "rrf_k must be a positive int"),
        ({"mode": "hybrid", "fetch_k": 0}, "fetch_k must be a positive int"),
        ({"mode": "hybrid", "rerank": "yes"}, "rerank must be True or False"),
    ],
)
def test_bad_mode_arguments(oracle: MultiVectorStore, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        oracle.search("cat", **kwargs)
    with pytest.raises(InvalidInputError, match=match):
        oracle.search_batch(["cat"], **kwargs)


def test_backend_without_lexical_search(oracle: MultiVectorStore) -> None:
    class LateOnly:
        """A backend implementing only the Backend protocol (as a user's own may)."""

        def __init__(self, inner: MemoryBackend) -> None:
            self._inner = inner

        def __getattr__(self, name: str) -> Any:
            if name == "lexical_search":
                raise AttributeError(name)
            return getattr(self._inner, name)

        def __enter__(self) -> Any:
            return self

        def __exit__(self, *exc: object) -> None:
            self._inner.close()

    late_only: Any = LateOnly(MemoryBackend(dim=DIM))
    for method in ("dim", "upsert", "delete", "delete_where", "get", "search", "ids", "clear", "count", "close"):
        setattr(late_only, method, getattr(late_only._inner, method))
    store = MultiVectorStore(FakeEncoder(dim=DIM), late_only)
    store.add(["cat"], ids=["c"])
    assert [h.id for h in store.search("cat")] == ["c"]
    with pytest.raises(InvalidInputError, match="lexical search"):
        store.search("cat", mode="hybrid")


@pytest.mark.parametrize("mode", ["lexical", "hybrid"])
def test_highlight_in_lexical_modes(tiny_encoder: Any, mode: str) -> None:
    with MultiVectorStore(tiny_encoder) as store:
        store.add(["the cat sat", "a dog barked"], ids=["c", "d"])
        hits = store.search("cat", k=2, mode=mode, highlight=True)
        plain = store.search("cat", k=2, mode=mode)
    assert [h.id for h in hits] == [h.id for h in plain] and hits[0].id == "c"
    assert hits[0].highlights and all(0 <= s < e <= len(hits[0].text or "") for s, e, _ in hits[0].highlights)


def test_highlight_needs_offsets_in_every_mode(oracle: MultiVectorStore) -> None:
    with pytest.raises(InvalidInputError, match="offset"):
        oracle.search("cat", mode="lexical", highlight=True)


def test_qdrant_collection_without_sparse_vector_names_the_fix() -> None:
    pytest.importorskip("qdrant_client")
    from qdrant_client import QdrantClient, models

    from colbert_adapters import CollectionConfigError
    from colbert_adapters.backends.qdrant import QdrantBackend

    client = QdrantClient(":memory:")
    client.create_collection(  # made elsewhere (or by a version before lexical search): no sparse vector
        "docs",
        vectors_config={
            "colbert": models.VectorParams(
                size=DIM,
                distance=models.Distance.DOT,
                multivector_config=models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM),
            ),
            "summary": models.VectorParams(size=DIM, distance=models.Distance.COSINE),
        },
    )
    store = MultiVectorStore(FakeEncoder(dim=DIM), QdrantBackend(client=client, collection_name="docs"))
    store.add(["the cat sat"], ids=["c"])
    assert [h.id for h in store.search("cat")] == ["c"]
    with pytest.raises(CollectionConfigError, match="copy_to"):
        store.search("cat", mode="lexical")


@pytest.mark.parametrize("target", ["qdrant-edge", "voyager"])
def test_copy_to_builds_the_lexical_index(oracle: MultiVectorStore, tmp_path: Path, target: str) -> None:
    oracle.copy_to(target, tmp_path / "copy")
    with MultiVectorStore.open(tmp_path / "copy", FakeEncoder(dim=DIM)) as copied:
        got = [h.id for h in copied.search("fish dog", k=10, mode="lexical")]
    assert got == [h.id for h in oracle.search("fish dog", k=10, mode="lexical")]
