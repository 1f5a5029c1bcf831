"""The behavioural contract every backend must satisfy (see ``colbert_adapters/backends/base.py``).

Each backend gets a test module with a ``Test<Name>`` class that subclasses :class:`BackendContract` and
provides ``make_backend(tmp_path, dim)`` (or overrides the ``backend`` fixture). Knobs, as class attributes:

* ``exact``: results equal the exact :class:`MemoryBackend` oracle (same ids, same order, same scores).
  Approximate backends set it to ``False`` and are held to ``min_recall`` against the oracle instead.
* ``score_atol``: tolerance on scores compared with the oracle / a naive MaxSim loop.
* ``vector_atol``: tolerance on vectors read back with ``get(..., with_vectors=True)`` (a backend that stores
  float16 copies sets it to about ``1e-3``).
* ``stable_ties``: equal scores come back in insertion order.
* ``supports_persistence``: enables the round-trip tests, which call ``reopen(backend)``.

This file is named without the ``test_`` prefix and the class without ``Test`` so pytest does not collect
the abstract suite itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from lexical_contract import LexicalContract

from colbert_adapters.backends.base import Backend
from colbert_adapters.backends.memory import MemoryBackend
from colbert_adapters.errors import DimensionMismatchError, InvalidInputError

__all__ = ["BackendContract", "naive_maxsim", "unit_multivector"]


def unit_multivector(rng: np.random.Generator, n_tokens: int, dim: int) -> np.ndarray:
    """Random float32 ``(n_tokens, dim)`` with L2-normalised rows."""
    x = rng.standard_normal((n_tokens, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def naive_maxsim(query: np.ndarray, doc: np.ndarray) -> float:
    """Reference MaxSim written as the textbook double loop, in float64."""
    total = 0.0
    for q in np.asarray(query, dtype=np.float64):
        best = -np.inf
        for d in np.asarray(doc, dtype=np.float64):
            best = max(best, float(np.dot(q, d)))
        total += best
    return total


def _corpus(rng: np.random.Generator, n: int, dim: int, prefix: str = "d") -> tuple[list[str], list[np.ndarray]]:
    ids = [f"{prefix}{i}" for i in range(n)]
    vecs = [unit_multivector(rng, int(rng.integers(1, 12)), dim) for _ in range(n)]
    return ids, vecs


def _snapshot(backend: Backend) -> tuple[int, list[tuple[str, str | None, dict[str, Any], bytes]]]:
    """Everything observable about the stored documents, for 'unchanged' assertions."""
    ids = [f"d{i}" for i in range(10)] + ["new0", "new1"]
    recs = backend.get(ids, with_vectors=True)
    return backend.count(), [
        (r.id, r.text, dict(r.metadata), np.asarray(r.vectors, dtype=np.float32).tobytes()) for r in recs
    ]


class BackendContract(LexicalContract):
    """Shared behavioural tests; subclass it as ``Test<Backend>`` and implement :meth:`make_backend`."""

    dim: ClassVar[int] = 8
    exact: ClassVar[bool] = True
    score_atol: ClassVar[float] = 1e-5
    vector_atol: ClassVar[float] = 1e-6
    min_recall: ClassVar[float] = 0.9
    stable_ties: ClassVar[bool] = True
    supports_persistence: ClassVar[bool] = False

    # ------------------------------------------------------------------------------------------ hooks

    def make_backend(self, tmp_path: Path, dim: int) -> Backend:
        """Return a new, empty backend for ``dim``-d vectors (``tmp_path`` is free to use)."""
        raise NotImplementedError

    def reopen(self, backend: Backend) -> Backend:
        """Persist ``backend``, close it, and return a backend reopened from the persisted state.

        ``self.tmp_path`` (set by the ``backend`` fixture) is the test's temporary directory.
        """
        raise NotImplementedError

    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[Backend]:
        """A fresh backend from :meth:`make_backend`, closed after the test. Override it if needed."""
        self.tmp_path = tmp_path
        b = self.make_backend(tmp_path, self.dim)
        yield b
        b.close()

    @pytest.fixture
    def rng(self) -> np.random.Generator:
        return np.random.default_rng(1234)

    @pytest.fixture
    def filled(self, backend: Backend, rng: np.random.Generator) -> tuple[Backend, list[str], list[np.ndarray]]:
        ids, vecs = _corpus(rng, 10, self.dim)
        metas = [{"color": ["red", "green", "blue"][i % 3], "year": 2020 + i % 4, "i": i} for i in range(10)]
        backend.upsert(ids, vecs, texts=[f"text {i}" for i in range(10)], metadatas=metas)
        return backend, ids, vecs

    def _oracle(self, ids: Sequence[str], vecs: Sequence[np.ndarray], metas: Any = None) -> MemoryBackend:
        oracle = MemoryBackend(dim=self.dim)
        oracle.upsert(list(ids), list(vecs), metadatas=metas)
        return oracle

    def _assert_like_oracle(self, got: list[Any], want: list[Any]) -> None:
        if self.exact:
            assert [h.id for h in got] == [h.id for h in want]
            np.testing.assert_allclose([h.score for h in got], [h.score for h in want], atol=self.score_atol)
        else:
            recall = len({h.id for h in got} & {h.id for h in want}) / max(1, len(want))
            assert recall >= self.min_recall
            exact = {h.id: h.score for h in want}
            for h in got:
                if h.id in exact:
                    assert abs(h.score - exact[h.id]) <= self.score_atol

    # ------------------------------------------------------------------------------------------ basics

    def test_implements_protocol(self, backend: Backend) -> None:
        assert isinstance(backend, Backend)

    def test_empty_backend(self, backend: Backend, rng: np.random.Generator) -> None:
        assert backend.count() == 0
        assert backend.search(unit_multivector(rng, 3, self.dim), k=5) == []
        assert backend.get(["missing"]) == []
        assert backend.delete(["missing"]) == 0

    def test_upsert_empty_batch_is_noop(self, backend: Backend) -> None:
        backend.upsert([], [])
        assert backend.count() == 0

    def test_own_vectors_rank_first(self, backend: Backend, rng: np.random.Generator) -> None:
        ids, vecs = _corpus(rng, 30, self.dim)
        backend.upsert(ids, vecs)
        assert backend.count() == 30
        for i in (0, 7, 29):
            hits = backend.search(vecs[i], k=3)
            assert hits[0].id == ids[i]
            # Every query token finds itself: the score is the number of query tokens.
            assert hits[0].score == pytest.approx(vecs[i].shape[0], abs=self.score_atol)
            assert hits[0].score > hits[1].score

    def test_scores_match_naive_maxsim(self, backend: Backend, rng: np.random.Generator) -> None:
        ids, vecs = _corpus(rng, 25, self.dim)
        backend.upsert(ids, vecs)
        by_id = dict(zip(ids, vecs, strict=True))
        query = unit_multivector(rng, 5, self.dim)
        hits = backend.search(query, k=25)
        assert len(hits) == (25 if self.exact else len(hits))
        for h in hits:
            assert h.score == pytest.approx(naive_maxsim(query, by_id[h.id]), abs=self.score_atol)
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)

    @pytest.mark.parametrize("k", [1, 5, 17, 80])
    def test_matches_memory_oracle(self, backend: Backend, rng: np.random.Generator, k: int) -> None:
        ids, vecs = _corpus(rng, 80, self.dim)
        backend.upsert(ids, vecs)
        oracle = self._oracle(ids, vecs)
        for _ in range(4):
            query = unit_multivector(rng, int(rng.integers(1, 9)), self.dim)
            got = backend.search(query, k=k)
            want = oracle.search(query, k=k)
            assert len(want) == k
            self._assert_like_oracle(got, want)

    def test_k_larger_than_count_returns_all(self, backend: Backend, rng: np.random.Generator) -> None:
        ids, vecs = _corpus(rng, 4, self.dim)
        backend.upsert(ids, vecs)
        hits = backend.search(unit_multivector(rng, 3, self.dim), k=100)
        assert sorted(h.id for h in hits) == sorted(ids)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)

    @pytest.mark.parametrize("k", [0, -1, 2.5, True, "3"])
    def test_invalid_k(self, filled: Any, rng: np.random.Generator, k: Any) -> None:
        backend, _, _ = filled
        with pytest.raises(InvalidInputError):
            backend.search(unit_multivector(rng, 2, self.dim), k=k)

    def test_ties_keep_insertion_order(self, backend: Backend, rng: np.random.Generator) -> None:
        if not self.stable_ties:
            pytest.skip("backend does not promise insertion order for ties")
        same = unit_multivector(rng, 3, self.dim)
        order = ["c", "a", "e", "b", "d"]
        for doc_id in order:  # separate calls: insertion order is call order
            backend.upsert([doc_id], [same])
        hits = backend.search(unit_multivector(rng, 2, self.dim), k=5)
        assert [h.id for h in hits] == order

    # ------------------------------------------------------------------------------------------ upsert

    def test_upsert_replaces(self, filled: Any, rng: np.random.Generator) -> None:
        backend, ids, vecs = filled
        old = vecs[3]
        new = unit_multivector(rng, 4, self.dim)
        backend.upsert([ids[3]], [new], texts=["replaced"], metadatas=[{"color": "black"}])
        assert backend.count() == 10
        (rec,) = backend.get([ids[3]], with_vectors=True)
        assert rec.text == "replaced"
        assert dict(rec.metadata) == {"color": "black"}
        np.testing.assert_allclose(rec.vectors, new, atol=self.vector_atol)
        # Old vectors are gone: the old query no longer matches d3 perfectly.
        hits = {h.id: h.score for h in backend.search(old, k=10)}
        assert hits[ids[3]] == pytest.approx(naive_maxsim(old, new), abs=self.score_atol)
        top = backend.search(new, k=1)[0]
        assert (top.id, top.text) == (ids[3], "replaced")
        # The old metadata no longer matches a filter.
        assert ids[3] not in {h.id for h in backend.search(new, k=10, filter={"color": "red"})}

    def test_dimension_fixed_after_first_upsert(self, backend: Backend, rng: np.random.Generator) -> None:
        backend.upsert(["a"], [unit_multivector(rng, 2, self.dim)])
        assert backend.dim == self.dim
        with pytest.raises(DimensionMismatchError):
            backend.upsert(["b"], [unit_multivector(rng, 2, self.dim + 1)])
        with pytest.raises(DimensionMismatchError):
            backend.search(unit_multivector(rng, 2, self.dim - 1), k=1)
        assert backend.count() == 1
        assert backend.dim == self.dim

    def test_text_and_metadata_round_trip(self, backend: Backend, rng: np.random.Generator) -> None:
        metas = [
            {
                "title": "Zürich ☃ 東京",
                "n": 3,
                "x": 1.5,
                "ok": True,
                "none": None,
                "tags": ["a", "b"],
                "nested": {"k": [1, {"z": "é"}]},
            },
            None,
        ]
        vecs = [unit_multivector(rng, 3, self.dim), unit_multivector(rng, 2, self.dim)]
        backend.upsert(["ü-1", "plain"], vecs, texts=["naïve café — 😀", None], metadatas=metas)
        a, b = backend.get(["ü-1", "plain"])
        assert (a.id, a.text, dict(a.metadata)) == ("ü-1", "naïve café — 😀", metas[0])
        assert (b.id, b.text, dict(b.metadata)) == ("plain", None, {})
        hit = backend.search(vecs[0], k=1)[0]
        assert (hit.id, hit.text, dict(hit.metadata)) == ("ü-1", "naïve café — 😀", metas[0])

    def test_returned_metadata_is_a_copy(self, filled: Any) -> None:
        backend, ids, _ = filled
        (rec,) = backend.get([ids[0]])
        with contextlib.suppress(TypeError):  # an immutable mapping is fine too
            rec.metadata["color"] = "mutated"  # type: ignore[index]
        assert backend.get([ids[0]])[0].metadata["color"] == "red"

    def test_caller_array_mutation_does_not_leak(self, backend: Backend, rng: np.random.Generator) -> None:
        v = unit_multivector(rng, 3, self.dim)
        original = v.copy()
        backend.upsert(["a"], [v])
        v[:] = 0.5
        np.testing.assert_allclose(backend.get(["a"], with_vectors=True)[0].vectors, original, atol=self.vector_atol)

    # ------------------------------------------------------------------------------------------ delete / get

    def test_delete(self, filled: Any, rng: np.random.Generator) -> None:
        backend, ids, vecs = filled
        assert backend.delete([ids[1], ids[4], "unknown"]) == 2
        assert backend.count() == 8
        assert backend.delete([ids[1]]) == 0
        assert backend.delete([]) == 0
        for q in (vecs[1], vecs[4], unit_multivector(rng, 3, self.dim)):
            returned = {h.id for h in backend.search(q, k=10)}
            assert returned == set(ids) - {ids[1], ids[4]}
        assert backend.get([ids[1], ids[2]]) == backend.get([ids[2]])

    def test_delete_then_readd(self, filled: Any, rng: np.random.Generator) -> None:
        backend, ids, _ = filled
        backend.delete([ids[0]])
        new = unit_multivector(rng, 2, self.dim)
        backend.upsert([ids[0]], [new], texts=["back"])
        assert backend.count() == 10
        hit = backend.search(new, k=1)[0]
        assert (hit.id, hit.text) == (ids[0], "back")

    def test_get(self, filled: Any) -> None:
        backend, ids, vecs = filled
        recs = backend.get([ids[5], "nope", ids[2]])
        assert [r.id for r in recs] == [ids[5], ids[2]]
        assert [r.text for r in recs] == ["text 5", "text 2"]
        assert recs[0].metadata == {"color": "blue", "year": 2021, "i": 5}
        assert all(r.vectors is None for r in recs)
        with_vecs = backend.get([ids[2], ids[5]], with_vectors=True)
        np.testing.assert_allclose(with_vecs[0].vectors, vecs[2], atol=self.vector_atol)
        np.testing.assert_allclose(with_vecs[1].vectors, vecs[5], atol=self.vector_atol)
        assert with_vecs[0].vectors.dtype == np.float32

    # ------------------------------------------------------------------------------------------ filters

    def test_filter_equality(self, filled: Any, rng: np.random.Generator) -> None:
        backend, ids, _ = filled
        hits = backend.search(unit_multivector(rng, 3, self.dim), k=10, filter={"color": "red"})
        assert sorted(h.id for h in hits) == sorted(ids[i] for i in (0, 3, 6, 9))
        assert all(h.metadata["color"] == "red" for h in hits)

    def test_filter_membership(self, filled: Any, rng: np.random.Generator) -> None:
        backend, ids, _ = filled
        hits = backend.search(unit_multivector(rng, 3, self.dim), k=10, filter={"year": [2020, 2023]})
        assert sorted(h.id for h in hits) == sorted(ids[i] for i in range(10) if i % 4 in (0, 3))

    def test_filter_and(self, filled: Any, rng: np.random.Generator) -> None:
        backend, ids, _ = filled
        hits = backend.search(
            unit_multivector(rng, 3, self.dim), k=10, filter={"color": ["red", "green"], "year": 2020}
        )
        # i % 3 in (0, 1) and i % 4 == 0  ->  i in {0, 4}
        assert sorted(h.id for h in hits) == sorted([ids[0], ids[4]])

    def test_filter_missing_field_matches_nothing(self, filled: Any, rng: np.random.Generator) -> None:
        backend, _, _ = filled
        assert backend.search(unit_multivector(rng, 3, self.dim), k=10, filter={"author": "x"}) == []
        assert backend.search(unit_multivector(rng, 3, self.dim), k=10, filter={"color": "purple"}) == []

    def test_selective_filter_returns_k_hits(self, backend: Backend, rng: np.random.Generator) -> None:
        ids, vecs = _corpus(rng, 200, self.dim)
        metas = [{"rare": i % 25 == 0} for i in range(200)]  # 8 matching documents
        backend.upsert(ids, vecs, metadatas=metas)
        oracle = self._oracle(ids, vecs, metas)
        query = unit_multivector(rng, 4, self.dim)
        got = backend.search(query, k=5, filter={"rare": True})
        want = oracle.search(query, k=5, filter={"rare": True})
        assert len(got) == 5
        assert all(int(h.id[1:]) % 25 == 0 for h in got)
        self._assert_like_oracle(got, want)

    def test_filter_with_k_and_scores(self, filled: Any, rng: np.random.Generator) -> None:
        backend, ids, vecs = filled
        query = unit_multivector(rng, 3, self.dim)
        metas = [{"color": ["red", "green", "blue"][i % 3]} for i in range(10)]
        want = self._oracle(ids, vecs, metas).search(query, k=2, filter={"color": "blue"})
        got = backend.search(query, k=2, filter={"color": "blue"})
        self._assert_like_oracle(got, want)

    def test_invalid_filter(self, filled: Any, rng: np.random.Generator) -> None:
        backend, _, _ = filled
        with pytest.raises(InvalidInputError):
            backend.search(unit_multivector(rng, 2, self.dim), k=3, filter=[("color", "red")])  # type: ignore[arg-type]

    _OPERATOR_METAS: ClassVar[list[Any]] = [
        {"lang": "en", "year": 2019, "tags": ["ir", "nlp"], "author": {"name": "Ada", "h": 10}, "draft": False,
         "score": 0.5, "title": "Late interaction retrieval"},
        {"lang": "fr", "year": 2021, "tags": ["ir"], "author": {"name": "Bob"}, "draft": True, "score": None},
        {"lang": "en", "year": 2022.0, "tags": [], "author": {"name": "Ada", "h": 3}, "title": "Dense retrieval"},
        {"lang": "de", "year": "2020", "tags": "nlp", "draft": False},
        {"year": 2023, "tags": ["cv", None], "score": 7},
        {"lang": "en", "year": 2020, "draft": 1, "title": "ColBERT"},
        None,
        {"lang": "en", "year": [2018, 2024], "author": "Cy"},
    ]  # fmt: skip
    #: (filter, the documents n0..n7 it matches), worked out by hand from the documented semantics.
    _OPERATOR_CASES: ClassVar[list[tuple[Any, set[int]]]] = [
        ({"year": {"$gte": 2021}}, {1, 2, 4, 7}),
        ({"year": {"$gt": 2019, "$lt": 2022}}, {1, 5, 7}),  # each operator on some element of a list
        ({"year": {"$lte": 2019}}, {0, 7}),
        ({"year": 2022}, {2}),
        ({"lang": {"$ne": "en"}}, {1, 3, 4, 6}),  # a missing field matches $ne
        ({"lang": {"$nin": ["en", "fr"]}}, {3, 4, 6}),
        ({"lang": {"$in": ["fr", "de"]}}, {1, 3}),
        ({"tags": "ir"}, {0, 1}),
        ({"tags": {"$in": ["nlp", "cv"]}}, {0, 3, 4}),
        ({"tags": {"$exists": True}}, {0, 1, 3, 4}),  # [] is empty
        ({"tags": {"$exists": False}}, {2, 5, 6, 7}),
        ({"score": {"$exists": False}}, {1, 2, 3, 5, 6, 7}),  # null is empty
        ({"tags": None}, {4}),
        ({"score": None}, {1}),
        ({"author.name": "Ada"}, {0, 2}),
        ({"author.h": {"$gt": 5}}, {0}),
        ({"author": {"$exists": True}}, {0, 1, 2, 7}),
        ({"$or": [{"lang": "de"}, {"author.name": "Bob"}]}, {1, 3}),
        ({"$and": [{"lang": "en"}, {"$not": {"year": {"$gte": 2021}}}]}, {0, 5}),
        ({"draft": False}, {0, 3}),
        ({"draft": True}, {1}),  # 1 is not true
        ({"draft": 1}, {5}),
        ({"draft": {"$ne": True}}, {0, 2, 3, 4, 5, 6, 7}),
        ({"title": {"$text": "retrieval"}}, {0, 2}),
        ({"title": {"$text": "Retrieval"}}, set()),  # case-sensitive
        ({"lang": "en", "year": {"$in": [2019, 2020]}}, {0, 5}),
        ({"$or": [{"year": {"$lt": 2019}}, {"tags": {"$nin": ["ir", "nlp"]}}]}, {2, 4, 5, 6, 7}),
        ({"$not": {"tags": "ir"}}, {2, 3, 4, 5, 6, 7}),
    ]

    def _operator_corpus(self, backend: Backend, rng: np.random.Generator) -> tuple[list[str], list[np.ndarray]]:
        ids, vecs = _corpus(rng, len(self._OPERATOR_METAS), self.dim)
        ids = [f"n{i}" for i in range(len(ids))]
        backend.upsert(ids, vecs, metadatas=self._OPERATOR_METAS)
        return ids, vecs

    def test_operator_filters(self, backend: Backend, rng: np.random.Generator) -> None:
        ids, _ = self._operator_corpus(backend, rng)
        q = unit_multivector(rng, 3, self.dim)
        for flt, want in self._OPERATOR_CASES:
            got = {h.id for h in backend.search(q, k=len(ids), filter=flt)}
            assert got == {f"n{i}" for i in want}, flt

    def test_random_filters_match_the_oracle(self, backend: Backend, rng: np.random.Generator) -> None:
        ids, vecs = self._operator_corpus(backend, rng)
        oracle = self._oracle(ids, vecs, self._OPERATOR_METAS)
        leaves = [flt for flt, _ in self._OPERATOR_CASES if not any(k.startswith("$") for k in flt)]
        q = unit_multivector(rng, 3, self.dim)
        for _ in range(25):
            a, b, c = (leaves[int(i)] for i in rng.integers(len(leaves), size=3))
            op = ["$and", "$or"][int(rng.integers(2))]
            flt = {op: [a, {"$not": b} if rng.random() < 0.5 else b, c]}
            got = [h.id for h in backend.search(q, k=3, filter=flt)]
            want = [h.id for h in oracle.search(q, k=3, filter=flt)]
            if self.exact:
                assert got == want, flt
            else:
                assert set(got) <= {h.id for h in oracle.search(q, k=len(ids), filter=flt)}, flt
                assert len(got) == len(want), flt

    @pytest.mark.parametrize(
        "flt",
        [
            {"year": {"$between": [1, 2]}},
            {"year": {"$gte": "2020"}},
            {"year": {"$gt": True}},
            {"lang": {"$in": "en"}},
            {"lang": {"$in": []}},
            {"lang": {"$eq": ["en"]}},
            {"lang": {"$exists": "yes"}},
            {"$or": {"lang": "en"}},
            {"$or": []},
            {"$gte": 3},
            {"author": {"name": "Ada"}},
            {"a..b": 1},
            {"year": {"$lt": float("nan")}},
        ],
    )
    def test_bad_operator_filters(self, filled: Any, rng: np.random.Generator, flt: Any) -> None:
        backend, _, _ = filled
        with pytest.raises(InvalidInputError) as err:
            backend.search(unit_multivector(rng, 2, self.dim), k=3, filter=flt)
        assert "$" in str(err.value) or "key" in str(err.value)  # names the accepted forms or the key
        with pytest.raises(InvalidInputError):
            backend.delete_where(flt)
        assert backend.count() == 10

    def test_delete_where(self, backend: Backend, rng: np.random.Generator) -> None:
        self._operator_corpus(backend, rng)
        with pytest.raises(InvalidInputError):
            backend.delete_where({})
        assert backend.delete_where({"lang": "xx"}) == 0
        assert backend.delete_where({"year": {"$gte": 2021}}) == 4
        assert sorted(backend.ids()) == ["n0", "n3", "n5", "n6"]
        assert backend.delete_where({"$or": [{"draft": False}, {"lang": {"$exists": False}}]}) == 3
        assert backend.ids() == ["n5"] and backend.count() == 1
        assert backend.search(unit_multivector(rng, 2, self.dim), k=3)[0].id == "n5"

    # ------------------------------------------------------------------------------------------ bad input

    @pytest.mark.parametrize(
        ("case", "error"),
        [
            ("wrong_dim", DimensionMismatchError),
            ("nan", InvalidInputError),
            ("inf", InvalidInputError),
            ("empty_multivector", InvalidInputError),
            ("one_dimensional", InvalidInputError),
            ("ragged_nested_lists", InvalidInputError),
            ("duplicate_ids", InvalidInputError),
            ("non_str_id", InvalidInputError),
            ("empty_id", InvalidInputError),
            ("metadata_not_json", InvalidInputError),
            ("metadata_nan", InvalidInputError),
            ("metadata_not_dict", InvalidInputError),
            ("text_not_str", InvalidInputError),
            ("fewer_vectors", InvalidInputError),
            ("fewer_texts", InvalidInputError),
            ("more_metadatas", InvalidInputError),
        ],
    )
    def test_bad_input_leaves_store_unchanged(
        self, filled: Any, rng: np.random.Generator, case: str, error: type[Exception]
    ) -> None:
        backend, _, _ = filled
        before = _snapshot(backend)
        good = unit_multivector(rng, 3, self.dim)
        # Every batch starts with valid items (a new id and a replacement of d0) that must not be written.
        ids: list[Any] = ["new0", "d0", "new1"]
        vectors: list[Any] = [good, unit_multivector(rng, 2, self.dim), good.copy()]
        texts: list[Any] = ["t0", "t1", "t2"]
        metas: list[Any] = [{"a": 1}, {"a": 2}, {"a": 3}]
        bad = vectors[2]
        if case == "wrong_dim":
            vectors[2] = unit_multivector(rng, 3, self.dim + 2)
        elif case == "nan":
            bad[1, 0] = np.nan
        elif case == "inf":
            bad[0, 0] = np.inf
        elif case == "empty_multivector":
            vectors[2] = np.zeros((0, self.dim), dtype=np.float32)
        elif case == "one_dimensional":
            vectors[2] = good[0]
        elif case == "ragged_nested_lists":
            vectors[2] = [[0.1] * self.dim, [0.2] * (self.dim - 1)]
        elif case == "duplicate_ids":
            ids[2] = "new0"
        elif case == "non_str_id":
            ids[2] = 7
        elif case == "empty_id":
            ids[2] = ""
        elif case == "metadata_not_json":
            metas[2] = {"when": object()}
        elif case == "metadata_nan":
            metas[2] = {"x": float("nan")}
        elif case == "metadata_not_dict":
            metas[2] = ["a"]
        elif case == "text_not_str":
            texts[2] = 42
        elif case == "fewer_vectors":
            vectors = vectors[:2]
        elif case == "fewer_texts":
            texts = texts[:2]
        elif case == "more_metadatas":
            metas = [*metas, {"a": 4}]
        with pytest.raises(error):
            backend.upsert(ids, vectors, texts=texts, metadatas=metas)
        assert _snapshot(backend) == before
        assert backend.get(["new0", "new1"]) == []

    @pytest.mark.parametrize("case", ["empty", "nan", "1d", "ragged", "3d"])
    def test_bad_query(self, filled: Any, case: str) -> None:
        backend, _, _ = filled
        d = self.dim
        query: Any = {
            "empty": np.zeros((0, d), dtype=np.float32),
            "nan": np.full((2, d), np.nan, dtype=np.float32),
            "1d": np.ones(d, dtype=np.float32),
            "ragged": [[0.1] * d, [0.1] * (d - 1)],
            "3d": np.ones((1, 2, d), dtype=np.float32),
        }[case]
        with pytest.raises(InvalidInputError):
            backend.search(query, k=3)

    # ------------------------------------------------------------------------------------------ lifecycle

    def test_close_is_idempotent(self, tmp_path: Path) -> None:
        backend = self.make_backend(tmp_path, self.dim)
        backend.close()
        backend.close()

    def test_persistence_round_trip(self, filled: Any, rng: np.random.Generator) -> None:
        if not self.supports_persistence:
            pytest.skip("backend has no persistence")
        backend, ids, _ = filled
        backend.delete([ids[9]])
        query = unit_multivector(rng, 4, self.dim)
        before_hits = backend.search(query, k=9)
        before_recs = backend.get(ids, with_vectors=True)
        reopened = self.reopen(backend)
        try:
            assert reopened.count() == 9
            assert reopened.dim == self.dim
            after_recs = reopened.get(ids, with_vectors=True)
            assert [(r.id, r.text, dict(r.metadata)) for r in after_recs] == [
                (r.id, r.text, dict(r.metadata)) for r in before_recs
            ]
            for a, b in zip(after_recs, before_recs, strict=True):
                np.testing.assert_array_equal(a.vectors, b.vectors)
            after_hits = reopened.search(query, k=9)
            assert [h.id for h in after_hits] == [h.id for h in before_hits]
            np.testing.assert_allclose(
                [h.score for h in after_hits], [h.score for h in before_hits], atol=self.score_atol
            )
            # The reopened backend keeps working.
            reopened.upsert(["fresh"], [unit_multivector(rng, 2, self.dim)])
            assert reopened.count() == 10
        finally:
            reopened.close()

    def test_persistence_of_empty_backend(self, backend: Backend, rng: np.random.Generator) -> None:
        if not self.supports_persistence:
            pytest.skip("backend has no persistence")
        reopened = self.reopen(backend)
        try:
            assert reopened.count() == 0
            assert reopened.search(unit_multivector(rng, 2, self.dim), k=3) == []
        finally:
            reopened.close()
