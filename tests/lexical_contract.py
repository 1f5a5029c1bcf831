"""The lexical (BM25) part of the backend contract: ``lexical_search`` of every backend.

:class:`LexicalContract` is mixed into :class:`contract.BackendContract`, so every backend's contract class runs
it. Knobs, as class attributes:

* ``supports_lexical``: the backend implements ``lexical_search`` (every backend shipped does).
* ``lexical_fts_bm25``: scores are FTS5's BM25 exactly (memory, Voyager); a backend scoring with another IDF
  (Qdrant's ``Modifier.IDF``) sets it to ``False`` and is held to the same ranking on the test corpus instead.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, ClassVar

import numpy as np
import pytest

from colbert_adapters.backends.base import Backend, LexicalBackend
from colbert_adapters.errors import InvalidInputError

__all__ = ["LexicalContract", "fts5_bm25"]

# Words that are their own Porter stems, so a whitespace split counts terms as FTS5 does.
CORPUS = {
    "a": "cat dog cat",
    "b": "dog bird fish fish fish",
    "c": "cat",
    "d": "bird tree tree tree tree tree tree tree",
    "e": "fish dog cat bird tree lamp desk chair",
    "f": "lamp",
}


def fts5_bm25(query: str, corpus: dict[str, str], k1: float = 1.2, b: float = 0.75) -> dict[str, float]:
    """BM25 as SQLite FTS5 documents it (``idf = log((N - n + 0.5) / (n + 0.5))``, at least 1e-6), computed
    independently with a whitespace split, for the documents holding a query word (a repeated query word counts
    once per occurrence)."""
    docs = {i: Counter(t.lower().split()) for i, t in corpus.items()}
    n_docs = len(docs)
    avgdl = sum(sum(c.values()) for c in docs.values()) / n_docs
    words = query.lower().split()
    out: dict[str, float] = {}
    for i, tf in docs.items():
        dl = sum(tf.values())
        score = 0.0
        matched = False
        for w in words:
            n = sum(1 for c in docs.values() if w in c)
            if not tf[w]:
                continue
            matched = True
            idf = math.log((n_docs - n + 0.5) / (n + 0.5))
            idf = idf if idf > 0 else 1e-6
            score += idf * tf[w] * (k1 + 1) / (tf[w] + k1 * (1 - b + b * dl / avgdl))
        if matched:
            out[i] = score
    return out


class LexicalContract:
    """Lexical tests shared by every backend (mixed into ``BackendContract``)."""

    dim: ClassVar[int]
    lexical_fts_bm25: ClassVar[bool] = True
    supports_lexical: ClassVar[bool] = True

    @pytest.fixture(autouse=True)
    def _lexical_only_where_supported(self, request: pytest.FixtureRequest) -> None:
        if request.node.name.startswith("test_lexical") and not self.supports_lexical:
            pytest.skip("backend has no lexical search")

    def _fill_texts(self, backend: Backend, corpus: dict[str, str] = CORPUS, metas: Any = None) -> None:
        rng = np.random.default_rng(7)
        vecs = []
        for _ in corpus:
            x = rng.standard_normal((3, self.dim))
            vecs.append((x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32))
        backend.upsert(list(corpus), vecs, texts=list(corpus.values()), metadatas=metas)

    def test_lexical_implements_protocol(self, backend: Backend) -> None:
        assert isinstance(backend, LexicalBackend)

    @pytest.mark.parametrize("query", ["cat", "fish dog", "tree lamp", "cat bird desk", "lamp lamp lamp cat"])
    def test_lexical_bm25_matches_independent_computation(self, backend: Any, query: str) -> None:
        self._fill_texts(backend)
        want = fts5_bm25(query, CORPUS)
        got = backend.lexical_search(query, k=10)
        assert {h.id for h in got} == set(want)
        ranked = sorted(want, key=lambda i: -want[i])
        assert [h.id for h in got] == ranked
        if self.lexical_fts_bm25:
            np.testing.assert_allclose([h.score for h in got], [want[i] for i in ranked], rtol=1e-6)
        assert all(h.score > 0 for h in got)
        assert [h.score for h in got] == sorted((h.score for h in got), reverse=True)

    def test_lexical_hits_carry_text_and_metadata(self, backend: Any) -> None:
        self._fill_texts(backend, metas=[{"n": i} for i in range(len(CORPUS))])
        (hit,) = backend.lexical_search("lamp desk", k=1)
        assert (hit.id, hit.text, dict(hit.metadata)) == ("e", CORPUS["e"], {"n": 4})

    def test_lexical_k_filter_and_ids(self, backend: Any) -> None:
        self._fill_texts(backend, metas=[{"kind": "odd" if i % 2 else "even"} for i in range(len(CORPUS))])
        assert len(backend.lexical_search("cat dog fish bird tree lamp", k=2)) == 2
        want = fts5_bm25("cat", CORPUS)
        even = backend.lexical_search("cat", k=10, filter={"kind": "even"})
        assert [h.id for h in even] == sorted(["a", "c", "e"], key=lambda i: -want[i])
        odd = backend.lexical_search("cat dog fish bird tree lamp", k=10, filter={"kind": "odd"})
        assert {h.id for h in odd} == {"b", "d", "f"}
        subset = backend.lexical_search("cat dog", k=10, ids=["e", "b", "zzz"])
        assert {h.id for h in subset} == {"e", "b"}
        assert backend.lexical_search("cat", k=10, ids=[]) == []

    def test_lexical_stems_and_folds_case_and_accents(self, backend: Any) -> None:
        self._fill_texts(backend, {"x": "The runner was Running fast", "y": "Un café crème", "z": "nothing"})
        assert [h.id for h in backend.lexical_search("runs", k=5)] == ["x"]
        assert [h.id for h in backend.lexical_search("CAFE creme", k=5)] == ["y"]

    @pytest.mark.parametrize("query", ['"cat', "cat AND", "NEAR(cat dog)", "cat*", "-cat", "cat:", "(cat", "^cat"])
    def test_lexical_query_syntax_is_literal(self, backend: Any, query: str) -> None:
        self._fill_texts(backend)
        hits = backend.lexical_search(query, k=10)
        assert {"a", "c", "e"} <= {h.id for h in hits}

    def test_lexical_stopwords_are_dropped_from_queries(self, backend: Any) -> None:
        self._fill_texts(backend, {"x": "the cat", "y": "the the the the dog", "z": "what about the"})
        assert [h.id for h in backend.lexical_search("the cat", k=5)] == ["x"]
        assert {h.id for h in backend.lexical_search("the", k=5)} == {"x", "y", "z"}  # nothing else to search

    def test_lexical_query_without_words(self, backend: Any) -> None:
        self._fill_texts(backend)
        assert backend.lexical_search("?! ...", k=5) == []
        assert backend.lexical_search("unknownword", k=5) == []

    def test_lexical_texts_none_never_match(self, backend: Any) -> None:
        rng = np.random.default_rng(3)
        vecs = [rng.standard_normal((2, self.dim)).astype(np.float32) for _ in range(3)]
        vecs = [v / np.linalg.norm(v, axis=1, keepdims=True) for v in vecs]
        backend.upsert(["t", "n", "m"], vecs, texts=["cat", None, "dog"])
        assert {h.id for h in backend.lexical_search("cat dog", k=5)} == {"t", "m"}

    def test_lexical_follows_upsert_delete_clear(self, backend: Any) -> None:
        self._fill_texts(backend)
        backend.upsert(["c"], [np.eye(1, self.dim, dtype=np.float32)], texts=["giraffe"])
        assert "c" not in {h.id for h in backend.lexical_search("cat", k=10)}
        assert [h.id for h in backend.lexical_search("giraffe", k=10)] == ["c"]
        backend.delete(["a"])
        assert {h.id for h in backend.lexical_search("cat", k=10)} == {"e"}
        backend.clear()
        assert backend.lexical_search("cat dog giraffe", k=10) == []
        self._fill_texts(backend, {"q": "cat again"})
        assert [h.id for h in backend.lexical_search("cat", k=10)] == ["q"]

    def test_lexical_after_reopen(self, backend: Any) -> None:
        if not getattr(self, "supports_persistence", False):
            pytest.skip("backend has no persistence")
        self._fill_texts(backend)
        backend.delete(["f"])
        before = [(h.id, round(h.score, 6)) for h in backend.lexical_search("cat lamp fish", k=10)]
        reopened = self.reopen(backend)  # type: ignore[attr-defined]
        try:
            after = [(h.id, round(h.score, 6)) for h in reopened.lexical_search("cat lamp fish", k=10)]
            if self.lexical_fts_bm25:
                assert after == before
            else:  # Qdrant counts deleted points in its IDF statistics until its segments are optimised
                assert [i for i, _ in after] == [i for i, _ in before]
        finally:
            reopened.close()

    @pytest.mark.parametrize("k", [0, -1, 1.5, "3", None])
    def test_lexical_bad_k(self, backend: Any, k: Any) -> None:
        self._fill_texts(backend)
        with pytest.raises(InvalidInputError):
            backend.lexical_search("cat", k=k)

    def test_lexical_bad_filter(self, backend: Any) -> None:
        self._fill_texts(backend)
        with pytest.raises(InvalidInputError):
            backend.lexical_search("cat", k=3, filter={"x": {"$bogus": 1}})
