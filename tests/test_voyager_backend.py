"""VoyagerBackend: the shared contract plus Voyager-specific behaviour.

Recall is measured against the exact :class:`MemoryBackend` on real all-MiniLM-L6-v2 token vectors (the
``real_vectors`` fixture). Crash safety is in ``test_crash.py``; the codecs' and MaxSim kernels' unit tests are in
``test_kernels.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from contract import BackendContract, unit_multivector

from colbert_adapters.backends import resolve_backend
from colbert_adapters.backends.base import Backend
from colbert_adapters.backends.memory import MemoryBackend
from colbert_adapters.backends.voyager import VoyagerBackend
from colbert_adapters.errors import (
    ColBERTError,
    CollectionConfigError,
    DimensionMismatchError,
    IndexLockedError,
    InvalidInputError,
)
from colbert_adapters.store import MultiVectorStore
from colbert_adapters.testing import FakeEncoder

ROOT = Path(__file__).resolve().parents[1]


class TestVoyagerBackend(BackendContract):
    """The contract with default settings (small test corpora stay in the exactly searched mutable segment).

    The default int8 storage keeps each component of a unit vector within ``max|x| / 254 <= 1 / 254`` (the
    vector tolerance); a score then moves by at most ``sqrt(dim) / 254`` per query token, far less in practice.
    """

    exact = False
    score_atol = 2e-2  # int8 storage (per-token scale) of the vectors used for the exact rerank
    vector_atol = 1 / 254
    min_recall = 0.9
    supports_persistence = True
    options: dict[str, Any] = {}  # noqa: RUF012 - read-only class configuration

    def make_backend(self, tmp_path: Path, dim: int) -> Backend:
        return VoyagerBackend(tmp_path / "index", dim=dim, **self.options)

    def reopen(self, backend: Backend) -> Backend:
        assert isinstance(backend, VoyagerBackend)
        path = backend.path
        backend.close()
        return VoyagerBackend(path, **self.options)


class TestVoyagerBackendSegmented(TestVoyagerBackend):
    """The contract with a tiny mutable segment: most documents live in sealed HNSW segments."""

    options = {"mutable_max_tokens": 16, "max_segments": 3}  # noqa: RUF012


class TestVoyagerBackendInt14(TestVoyagerBackend):
    """The contract with int14 vectors in the document store (int8 codes plus 6-bit residuals: each component
    within ``max|x| / 15,748``, with float32 rounding), segmented."""

    score_atol = 2e-3
    vector_atol = 1.001 / 15_748
    options = {"vector_dtype": "int14", "mutable_max_tokens": 16, "max_segments": 3}  # noqa: RUF012


class TestVoyagerBackendFloat16(TestVoyagerBackend):
    """The contract with float16 vectors in the document store (tighter tolerances), segmented too."""

    score_atol = 5e-3
    vector_atol = 2e-3
    options = {"vector_dtype": "float16", "mutable_max_tokens": 16, "max_segments": 3}  # noqa: RUF012


class TestVoyagerBackend4bit(TestVoyagerBackend):
    """The contract with the compressed store (``compression="4bit"``), a codec trained early and small segments:
    most documents live in compressed segments and come back decompressed (each component within its bucket's
    width, after renormalisation)."""

    score_atol = 0.3
    vector_atol = 0.25
    min_recall = 0.8
    # Inline maintenance: a document's vectors read back change when it is sealed (int8 rows, then decompressed),
    # so each write leaves the index in its final state.
    options = {  # noqa: RUF012
        "compression": "4bit",
        "train_tokens": 200,
        "mutable_max_tokens": 16,
        "max_segments": 3,
        "background_maintenance": False,
    }

    def _assert_like_oracle(self, got: list[Any], want: list[Any]) -> None:
        """Decompressed vectors swap near-ties: a hit the oracle ranks lower must score within ``score_atol`` of
        the oracle's last hit; shared hits are scored within ``score_atol``; recall holds from ``k = 5``."""
        assert len(got) == len(want)
        exact = {h.id: h.score for h in want}
        for h in got:
            if h.id in exact:
                assert abs(h.score - exact[h.id]) <= self.score_atol
            else:
                assert h.score >= want[-1].score - self.score_atol
        if len(want) >= 5:
            assert len(exact.keys() & {h.id for h in got}) / len(want) >= self.min_recall


class TestVoyagerBackend2bit(TestVoyagerBackend4bit):
    """The contract with ``compression="2bit"`` (coarser residuals: wider tolerances)."""

    score_atol = 1.0
    vector_atol = 0.6
    min_recall = 0.6
    options = {**TestVoyagerBackend4bit.options, "compression": "2bit"}  # noqa: RUF012


class TestVoyagerBackendProjected(TestVoyagerBackend):
    """The contract with graphs over half-dimension projections (``graph_dim``), segmented."""

    options = {"mutable_max_tokens": 16, "max_segments": 3}  # noqa: RUF012

    def make_backend(self, tmp_path: Path, dim: int) -> Backend:
        backend = VoyagerBackend(tmp_path / "index", dim=dim, graph_dim=max(1, dim // 2), **self.options)
        assert backend.stats()["graph_dim"] == max(1, dim // 2)
        return backend


# ---------------------------------------------------------------------------------------------- helpers


def _corpus(n: int, dim: int, seed: int = 0, prefix: str = "d") -> tuple[list[str], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [f"{prefix}{i}" for i in range(n)], [unit_multivector(rng, int(rng.integers(3, 12)), dim) for _ in range(n)]


def _recall(got: list[Any], want: list[Any]) -> float:
    return len({h.id for h in got} & {h.id for h in want}) / max(1, len(want))


def _state(backend: VoyagerBackend, ids: list[str]) -> dict[str, tuple[Any, ...]]:
    return {
        r.id: (r.text, json.dumps(r.metadata, sort_keys=True), np.asarray(r.vectors).tobytes())
        for r in backend.get(ids, with_vectors=True)
    }


@pytest.fixture(scope="module")
def real_index(real_vectors: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The 500 real documents in one Voyager index (default settings, fully sealed) and the exact oracle."""
    path = tmp_path_factory.mktemp("real") / "index"
    backend = VoyagerBackend(path, model_id=real_vectors.model_id)
    metas = [{"rare": i % 100 == 7, "parity": i % 2} for i in range(len(real_vectors.docs))]
    backend.upsert(real_vectors.doc_ids, real_vectors.docs, texts=real_vectors.texts, metadatas=metas)
    backend.compact()
    oracle = MemoryBackend()
    oracle.upsert(real_vectors.doc_ids, real_vectors.docs, metadatas=metas)
    yield backend, oracle
    backend.close()


# ---------------------------------------------------------------------------------------------- recall


def test_small_writes_do_not_rewrite_a_large_segment_each_time(tmp_path: Path) -> None:
    """Beside a large segment, small sealed segments are folded among themselves until they hold
    1/FOLD_RATIO of its tokens; only then is the large segment's graph extended (and its file rewritten)."""
    rng = np.random.default_rng(4)
    backend = VoyagerBackend(tmp_path / "index", dim=8, mutable_max_tokens=50, max_segments=3)
    big = 32 * 400
    backend.upsert([f"big{i}" for i in range(big // 100)], [unit_multivector(rng, 100, 8) for _ in range(big // 100)])
    try:
        done = len(backend.stats()["maintenance"])  # the large segment's seal
        for i in range(20):  # 20 seals of 50 tokens: 1,000 tokens beside the 12,800-token segment
            backend.upsert([f"s{i}a", f"s{i}b"], [unit_multivector(rng, 25, 8) for _ in range(2)])
            backend.wait_for_maintenance()  # the folds a write asks for run in the background
        events = backend.stats()["maintenance"]
        assert len(events) < 256  # none dropped from the log
        # The tokens already in the graph that each fold extended.
        folds = [e["base_tokens"] for e in events[done:] if e["kind"] == "fold"]
        into_big = [n for n in folds if n >= big]
        assert 1 <= len(into_big) <= 1_000 // (big // VoyagerBackend.FOLD_RATIO) + 1
        assert len(folds) > len(into_big)  # the small segments were folded among themselves meanwhile
        assert backend.count() == big // 100 + 40 and len(backend.stats()["segments"]) <= 3
    finally:
        backend.close()


def test_large_segments_get_the_larger_construction_beam(tmp_path: Path) -> None:
    """With the default ef_construction, graphs above LARGE_SEGMENT_TOKENS are built with the larger beam (a
    segment folded past the size is rebuilt with it, not extended); an explicit beam applies to every size and
    replaces the default for good."""
    rng = np.random.default_rng(7)

    def docs(n: int, n_tok: int) -> list[Any]:
        return [unit_multivector(rng, n_tok, 8) for _ in range(n)]

    def beams(b: VoyagerBackend) -> list[tuple[int, int]]:
        b.wait_for_maintenance()  # folds run in the background
        return sorted((s["n_tokens"], s["ef_construction"]) for s in b.stats()["segments"])

    class Small(VoyagerBackend):  # read when the backend is constructed
        LARGE_SEGMENT_TOKENS = 300

    small, large = VoyagerBackend.DEFAULT_EF_CONSTRUCTION, VoyagerBackend.DEFAULT_EF_CONSTRUCTION_LARGE
    assert large > small
    path = tmp_path / "auto"
    backend = Small(
        path, dim=8, mutable_max_tokens=50, max_segments=2, background_maintenance=False
    )  # a deterministic layout: seals and merges inline
    backend.upsert([f"a{i}" for i in range(14)], docs(14, 20))  # 280 tokens: one segment, small beam
    assert beams(backend) == [(280, small)]
    backend.upsert(["b0", "b1", "b2"], docs(3, 20))  # a second segment of 60 tokens
    assert beams(backend) == [(60, small), (280, small)]
    backend.upsert(["c0", "c1", "c2"], docs(3, 20))  # a third: folding makes 400 tokens > 300, rebuilt
    assert beams(backend) == [(400, large)]
    backend.upsert([f"d{i}" for i in range(40)], docs(40, 10))  # another 400-token segment
    assert beams(backend) == [(400, large), (400, large)]
    stats = backend.stats()
    assert (stats["ef_construction"], stats["ef_construction_large"]) == (small, large)
    backend.close()
    with VoyagerBackend(path, read_only=True) as reader:  # the size-dependent default is persisted
        assert reader.stats()["ef_construction_large"] == large
    with Small(
        path, ef_construction=48, mutable_max_tokens=50, max_segments=2, background_maintenance=False
    ) as explicit:
        assert explicit.stats()["ef_construction_large"] is None
        explicit.upsert([f"e{i}" for i in range(40)], docs(40, 10))  # 3 segments: folded into one, rebuilt
        assert beams(explicit) == [(1200, 48)]
    with VoyagerBackend(path) as reopened:
        stats = reopened.stats()
        assert (stats["ef_construction"], stats["ef_construction_large"]) == (48, None)
        assert reopened.count() == 14 + 3 + 3 + 40 + 40

    with Small(
        tmp_path / "fixed", dim=8, ef_construction=50, mutable_max_tokens=50, background_maintenance=False
    ) as fixed:
        fixed.upsert([f"f{i}" for i in range(40)], docs(40, 10))
        assert beams(fixed) == [(400, 50)]


def test_projected_graphs(real_vectors: Any, tmp_path: Path) -> None:
    """graph_dim: each new segment's graph indexes its tokens' leading principal directions (the projection is
    stored with the segment, format version 3), the rerank scores the full vectors, and recall stays that of a
    full-dimension graph; folding keeps the base's projection, a changed graph_dim rebuilds."""
    ids, docs = real_vectors.doc_ids, real_vectors.docs
    dim = docs[0].shape[1]
    oracle = MemoryBackend()
    oracle.upsert(ids, docs)
    truth = [oracle.search(q, k=10) for q in real_vectors.queries]
    opts: dict[str, Any] = {
        "exact_below_tokens": 0,
        "mutable_max_tokens": 4000,
        "max_segments": 2,
        "background_maintenance": False,  # a deterministic layout: seals and merges inline
    }

    def recall(b: VoyagerBackend) -> float:
        return float(np.mean([_recall(b.search(q, k=10), t) for q, t in zip(real_vectors.queries, truth, strict=True)]))

    with VoyagerBackend(tmp_path / "full", graph_dim=dim, **opts) as full:
        full.upsert(ids, docs)
        rec_full = recall(full)
        assert full.stats()["format_version"] == 2 and full.stats()["graph_dim"] is None
        with sqlite3.connect(tmp_path / "full" / "store.sqlite") as db:
            assert not db.execute("SELECT name FROM sqlite_master WHERE name = 'projections'").fetchall()
    path = tmp_path / "projected"
    backend = VoyagerBackend(path, graph_dim=dim // 3, **opts)
    try:
        backend.upsert(ids[:300], docs[:300])
        backend.wait_for_maintenance()  # the sealer runs in the background
        segs = backend.stats()["segments"]
        assert segs and all(s["graph_dim"] == dim // 3 for s in segs)
        backend.upsert(ids[300:], docs[300:])  # more segments: folded into the first, extended with its projection
        stats = backend.stats()
        assert stats["format_version"] == 3 and all(s["graph_dim"] == dim // 3 for s in stats["segments"])
        rec_proj = recall(backend)
        assert rec_proj >= rec_full - 0.03, (rec_full, rec_proj)
        with sqlite3.connect(path / "store.sqlite") as db:
            assert db.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone() == ("3",)
            rows = db.execute("SELECT segment, length(matrix) FROM projections").fetchall()
        assert sorted(r[0] for r in rows) == sorted(s["id"] for s in stats["segments"])
        assert all(n == 4 * dim * (dim // 3) for _, n in rows)
        want = [[(h.id, h.score) for h in backend.search(q, k=5)] for q in real_vectors.queries[:5]]
    finally:
        backend.close()
    with VoyagerBackend(path, read_only=True) as reader:  # the projections and the setting persist
        assert reader.stats()["graph_dim"] == dim // 3
        got = [[(h.id, h.score) for h in reader.search(q, k=5)] for q in real_vectors.queries[:5]]
        assert got == want
    with VoyagerBackend(path, graph_dim=dim, **opts) as changed:  # back to full graphs: a fold rebuilds
        assert changed.stats()["graph_dim"] is None
        changed.upsert([f"x{i}" for i in range(60)], docs[:60])
        changed.delete([f"x{i}" for i in range(60)])
        changed.compact()
        assert [s["graph_dim"] for s in changed.stats()["segments"]] == [dim]
        with sqlite3.connect(path / "store.sqlite") as db:
            assert db.execute("SELECT count(*) FROM projections").fetchone() == (0,)
        assert recall(changed) >= rec_full - 0.03


def test_new_indexes_get_the_default_graph_dim(tmp_path: Path) -> None:
    """A new index projects its graphs by default (max(64, dim // 3) dimensions), whether its dimension is given
    or comes with the first upsert; an index written before that default (no setting, documents already in it)
    keeps full-dimension graphs; small dimensions keep them too."""
    assert [VoyagerBackend.default_graph_dim(d) for d in (8, 64, 96, 128, 384, 768)] == [64, 64, 64, 64, 128, 256]
    rng = np.random.default_rng(5)
    docs = [unit_multivector(rng, 8, 128) for _ in range(40)]
    ids = [f"d{i}" for i in range(40)]
    opts: dict[str, Any] = {"mutable_max_tokens": 100}
    with VoyagerBackend(tmp_path / "given", dim=128, **opts) as given:
        assert given.stats()["graph_dim"] == 64
        given.upsert(ids, docs)
        given.wait_for_maintenance()
        assert [s["graph_dim"] for s in given.stats()["segments"]] == [64] * len(given.stats()["segments"])
    with VoyagerBackend(tmp_path / "later", **opts) as later:
        assert later.stats()["graph_dim"] is None  # no dimension yet
        later.upsert(ids, docs)
        later.wait_for_maintenance()
        assert later.stats()["graph_dim"] == 64 and later.stats()["segments"][0]["graph_dim"] == 64
    with VoyagerBackend(tmp_path / "later", read_only=True) as reader:  # persisted with the first upsert
        assert reader.stats()["graph_dim"] == 64
    old = tmp_path / "old"
    with VoyagerBackend(old, dim=128, graph_dim=128, **opts) as backend:
        backend.upsert(ids[:20], docs[:20])
    with sqlite3.connect(old / "store.sqlite") as db:  # as written before the default existed
        db.execute("DELETE FROM meta WHERE key = 'graph_dim'")
    db.close()
    with VoyagerBackend(old, **opts) as backend:
        assert backend.stats()["graph_dim"] is None
        backend.upsert(ids[20:], docs[20:])
        assert all(s["graph_dim"] == 128 for s in backend.stats()["segments"])
    with VoyagerBackend(tmp_path / "small", dim=32) as small:
        assert small.stats()["graph_dim"] is None  # 64 >= 32: full-dimension graphs


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "64"])
def test_graph_dim_is_validated(tmp_path: Path, bad: Any) -> None:
    with pytest.raises(InvalidInputError, match="graph_dim"):
        VoyagerBackend(tmp_path / "index", dim=4, graph_dim=bad)


def test_unequal_segments_keep_the_recall_of_one(real_vectors: Any, tmp_path: Path) -> None:
    """A large and a small segment rank candidates as one segment would: the imputed similarity of a query
    token that missed a document must not depend on its segment's size (a per-segment floor favoured the
    documents of the large segment and lost about 0.04 recall@10 here)."""
    opts: dict[str, Any] = {
        "mutable_max_tokens": 500,
        "max_segments": 8,
        "k_token": 32,
        "n_rerank": 40,
        "num_threads": 1,
        "background_maintenance": False,  # a deterministic layout: seals and merges inline
    }
    ids, docs = real_vectors.doc_ids, real_vectors.docs
    oracle = MemoryBackend()
    oracle.upsert(ids, docs)
    truth = [oracle.search(q, k=10) for q in real_vectors.queries]
    cut = int(len(ids) * 0.85)
    with VoyagerBackend(tmp_path / "one", **opts) as one, VoyagerBackend(tmp_path / "two", **opts) as two:
        one.upsert(ids, docs)
        two.upsert(ids[:cut], docs[:cut])
        two.wait_for_maintenance()
        two.upsert(ids[cut:], docs[cut:])
        one.wait_for_maintenance()
        two.wait_for_maintenance()
        sizes = sorted(s["n_tokens"] for s in two.stats()["segments"])
        assert len(sizes) == 2 and sizes[1] > 4 * sizes[0] and two.stats()["mutable_tokens"] == 0
        rec_one = np.mean([_recall(one.search(q, k=10), t) for q, t in zip(real_vectors.queries, truth, strict=True)])
        rec_two = np.mean([_recall(two.search(q, k=10), t) for q, t in zip(real_vectors.queries, truth, strict=True)])
    assert rec_two >= rec_one - 0.02, (rec_one, rec_two)


def test_incremental_writes_keep_the_hnsw_work_per_token_bounded(tmp_path: Path) -> None:
    """Many small writes: segment merges extend a graph instead of rebuilding, so the HNSW work per token
    stays bounded (rebuilding merged segments made it grow with the number of writes: 4.8x here)."""
    rng = np.random.default_rng(3)
    backend = VoyagerBackend(tmp_path / "index", dim=16, mutable_max_tokens=50, max_segments=3)
    oracle = MemoryBackend()
    total = 0
    try:
        for i in range(60):
            ids = [f"w{i}-{j}" for j in range(3)]
            docs = [unit_multivector(rng, int(rng.integers(5, 15)), 16) for _ in ids]
            backend.upsert(ids, docs)
            backend.wait_for_maintenance()
            # The oracle scores the vectors as stored (int8-quantised), so scores agree to float32 rounding.
            oracle.upsert(ids, [r.vectors for r in backend.get(ids, with_vectors=True)])
            total += sum(d.shape[0] for d in docs)
        assert len(backend.stats()["segments"]) <= 3
        # Tokens inserted into a graph by each seal, fold and rebuild (a fold inserts the folded tokens only).
        events = backend.stats()["maintenance"]
        assert len(events) < 256  # none dropped from the log
        inserted = [e["inserted_tokens"] for e in events]
        assert len(inserted) > 10 and sum(inserted) <= 2 * total
        backend.delete([f"w{i}-0" for i in range(0, 60, 2)])
        backend.wait_for_maintenance()
        oracle.delete([f"w{i}-0" for i in range(0, 60, 2)])
        assert backend.count() == oracle.count()
        for q in [unit_multivector(rng, 4, 16) for _ in range(5)]:
            every = backend.search(q, k=200)  # more than the documents: all of them, none deleted
            assert {h.id for h in every} == set(list(oracle.ids()))
            want = {h.id: h.score for h in oracle.search(q, k=5)}
            got = {h.id: h.score for h in backend.search(q, k=5)}
            assert got.keys() == want.keys()
            assert all(abs(got[i] - want[i]) < 1e-4 for i in got)
    finally:
        backend.close()


def test_recall_at_10_on_real_vectors(real_index: Any, real_vectors: Any) -> None:
    backend, oracle = real_index
    assert len(backend.stats()["segments"]) == 1 and backend.stats()["mutable_tokens"] == 0
    recalls, diffs = [], []
    for q in real_vectors.queries:
        got, want = backend.search(q, k=10), oracle.search(q, k=10)
        recalls.append(_recall(got, want))
        exact = {h.id: h.score for h in want}
        diffs += [abs(h.score - exact[h.id]) for h in got if h.id in exact]
    assert float(np.mean(recalls)) >= 0.95
    # int8 vectors (per-token scale) are enough for the exact rerank: scores (10-20 here) within 2e-2 of the
    # float32 oracle (measured 1.1e-2 at most; float16 storage: 5e-3, test_float16_vectors_on_real_vectors;
    # int14: test_int14_vectors_on_real_vectors).
    assert max(diffs) < 2e-2


def test_recall_with_many_segments(real_vectors: Any, tmp_path: Path) -> None:
    """Incremental writes (sealed segments + merges + a live mutable segment) keep the recall."""
    backend = VoyagerBackend(tmp_path / "index", mutable_max_tokens=8_000, max_segments=2)
    try:
        for start in range(0, 250, 25):
            backend.upsert(real_vectors.doc_ids[start : start + 25], real_vectors.docs[start : start + 25])
            backend.wait_for_maintenance()  # a seal per full mutable segment, as a slow writer gets
        backend.upsert(real_vectors.doc_ids[250:252], real_vectors.docs[250:252])  # a live mutable segment too
        stats = backend.stats()
        assert 1 <= len(stats["segments"]) <= 2 and stats["mutable_tokens"] > 0
        assert stats["segments"][0]["id"] > len(stats["segments"])  # segments were sealed and folded
        oracle = MemoryBackend()
        oracle.upsert(real_vectors.doc_ids[:252], real_vectors.docs[:252])
        recalls = [_recall(backend.search(q, k=10), oracle.search(q, k=10)) for q in real_vectors.queries]
        assert float(np.mean(recalls)) >= 0.95
    finally:
        backend.close()


@pytest.mark.parametrize("storage", ["float32", "float8", "e4m3"])
def test_storage_data_types(real_vectors: Any, tmp_path: Path, storage: str) -> None:
    backend = VoyagerBackend(tmp_path / "index", storage_data_type=storage)
    try:
        backend.upsert(real_vectors.doc_ids[:150], real_vectors.docs[:150])
        backend.wait_for_maintenance()
        stats = backend.stats()
        assert stats["storage_data_type"] == storage
        (seg,) = stats["segments"]
        seg_bytes = (backend.path / seg["file"]).stat().st_size / seg["n_tokens"]
        # float32 keeps 4 bytes per graph dimension (128 of 384 by default), float8 / e4m3 one.
        assert seg["graph_dim"] == 128
        assert seg_bytes > 4 * 128 if storage == "float32" else seg_bytes < 2 * 128 + 160
        oracle = MemoryBackend()
        oracle.upsert(real_vectors.doc_ids[:150], real_vectors.docs[:150])
        recalls = [_recall(backend.search(q, k=10), oracle.search(q, k=10)) for q in real_vectors.queries[:20]]
        assert float(np.mean(recalls)) >= 0.95
    finally:
        backend.close()
    reopened = VoyagerBackend(tmp_path / "index")  # the setting is recorded in the index
    assert reopened.stats()["storage_data_type"] == storage
    reopened.close()


def test_int8_vectors_bound_and_layout(tmp_path: Path) -> None:
    """int8 storage: every component within half a step (max|x| / 254) of the input; blob = scales + codes."""
    rng = np.random.default_rng(3)
    ids, vecs = _corpus(40, 32)
    vecs[0] = np.zeros((2, 32), dtype=np.float32)  # an all-zero row quantises to zeros (scale 0)
    with VoyagerBackend(tmp_path / "index", dim=32, vector_dtype="int8") as backend:
        assert backend.stats()["vector_dtype"] == "int8"
        backend.upsert(ids, vecs)
        for rec, v in zip(backend.get(ids, with_vectors=True), vecs, strict=True):
            step = np.abs(v).max(axis=1, keepdims=True) / 127
            assert (np.abs(rec.vectors - v) <= step / 2 + 1e-7).all()
        np.testing.assert_array_equal(backend.get(["d0"], with_vectors=True)[0].vectors, 0.0)
        q = unit_multivector(rng, 5, 32)
        stored = {r.id: r.vectors for r in backend.get(ids, with_vectors=True)}
        for h in backend.search(q, k=10):  # scores are exact MaxSim of the stored (dequantised) vectors
            assert h.score == pytest.approx(float((q @ stored[h.id].T).max(axis=1).sum()), abs=1e-5)
        conn = sqlite3.connect(backend.path / "store.sqlite")
        n_tok, blob = conn.execute("SELECT n_tokens, vectors FROM docs WHERE id = 'd5'").fetchone()
        conn.close()
        assert len(blob) == n_tok * (4 + 32)  # per token: a float32 scale, then 32 int8 codes
        rec = np.frombuffer(blob, dtype=np.dtype([("scale", "<f4"), ("codes", np.int8, (32,))]))
        scales, codes = rec["scale"], rec["codes"]
        np.testing.assert_array_equal(backend.get(["d5"], with_vectors=True)[0].vectors, codes * scales[:, None])
        assert np.abs(codes).max() == 127


def test_int14_vectors_bound_and_layout(tmp_path: Path) -> None:
    """int14: int8 codes plus 6-bit residuals, every component within max|x| / 15,748 of the input;
    the int8 blob plus a residual blob; scores are exact MaxSim of what get() returns."""
    rng = np.random.default_rng(4)
    ids, vecs = _corpus(40, 30)  # 30 = not a multiple of 4: the last residual group is padded
    vecs[0] = np.zeros((2, 30), dtype=np.float32)
    with VoyagerBackend(tmp_path / "index", dim=30, mutable_max_tokens=64, vector_dtype="int14") as backend:
        assert backend.stats()["vector_dtype"] == "int14"
        backend.upsert(ids, vecs)
        backend.wait_for_maintenance()
        assert backend.stats()["segments"]  # sealed documents too (their vectors come from the store)
        stored = {r.id: r.vectors for r in backend.get(ids, with_vectors=True)}
        for i, v in zip(ids, vecs, strict=True):
            bound = np.abs(v).max(axis=1, keepdims=True) / (127 * 124)
            assert (np.abs(stored[i] - v) <= bound * 1.001 + 1e-9).all()
        np.testing.assert_array_equal(stored["d0"], 0.0)
        worst = max(float(np.abs(stored[i] - v).max()) for i, v in zip(ids, vecs, strict=True))
        assert worst > 1e-6  # it is a quantisation (not float32 kept as is)
        for exact_below in (0, 10**9):  # through the graph, and the small-index scan
            backend.exact_below_tokens = exact_below
            q = unit_multivector(rng, 5, 30)
            for h in backend.search(q, k=10):
                assert h.score == pytest.approx(float((q @ stored[h.id].T).max(axis=1).sum()), abs=1e-5)
        conn = sqlite3.connect(backend.path / "store.sqlite")
        n_tok, blob, res = conn.execute("SELECT n_tokens, vectors, residual FROM docs WHERE id = 'd5'").fetchone()
        conn.close()
    # vectors: per token a float32 scale and 30 int8 codes (the int8 layout); residual: 6-bit values of the 32
    # padded components, a plane of low nibbles (16 bytes per token) then one of high bit pairs (8 bytes per token),
    # components in order.
    assert len(blob) == n_tok * (4 + 30) and len(res) == n_tok * (16 + 8)
    rec = np.frombuffer(blob, dtype=np.dtype([("scale", "<f4"), ("codes", np.int8, (30,))]))
    planes = np.frombuffer(res, dtype=np.uint8)
    nib, two = planes[: n_tok * 16].reshape(n_tok, 16), planes[n_tok * 16 :].reshape(n_tok, 8)
    values = np.empty((n_tok, 32), dtype=np.uint8)
    values[:, 0::2], values[:, 1::2] = nib & 15, nib >> 4  # byte i: components 2i and 2i + 1
    for j in range(4):  # byte i: the high bit pairs of components 4i .. 4i + 3
        values[:, j::4] |= ((two >> (2 * j)) & 3) << 4
    assert values.max() <= 62 and (values[:, 30:] == 0).all()
    decoded = (rec["codes"] + (values[:, :30].astype(np.float32) - 31) / 62) * rec["scale"][:, None]
    np.testing.assert_allclose(stored["d5"], decoded, rtol=0, atol=1e-7)


def test_vector_dtype_is_recorded_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "index"
    ids, vecs = _corpus(20, 8)
    with VoyagerBackend(path, dim=8, vector_dtype="float16") as backend:
        backend.upsert(ids, vecs)
        before = _state(backend, ids)
    with pytest.raises(CollectionConfigError, match=r"stores its vectors as float16.*vector_dtype=None"):
        VoyagerBackend(path, vector_dtype="int8")
    with VoyagerBackend(path) as backend:  # None: the index's setting; nothing changed
        assert backend.stats()["vector_dtype"] == "float16"
        assert _state(backend, ids) == before
        np.testing.assert_allclose(backend.get(["d3"], with_vectors=True)[0].vectors, vecs[3], atol=2e-3)
    assert json.loads((path / "manifest.json").read_text())["vector_dtype"] == "float16"


def test_format_version_1_index_still_opens(tmp_path: Path) -> None:
    """Indexes written before vector_dtype existed (format version 1: float16 blobs, no setting) still open."""
    path = tmp_path / "index"
    ids, vecs = _corpus(30, 8)
    with VoyagerBackend(path, dim=8, vector_dtype="float16", mutable_max_tokens=50) as backend:
        backend.upsert(ids, vecs)
        q = unit_multivector(np.random.default_rng(1), 3, 8)
        want = [(h.id, h.score) for h in backend.search(q, k=5)]
    conn = sqlite3.connect(path / "store.sqlite")
    with conn:
        conn.execute("DELETE FROM meta WHERE key = 'vector_dtype'")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'format_version'")
    conn.close()
    with VoyagerBackend(path) as backend:
        assert backend.stats()["vector_dtype"] == "float16"
        assert [(h.id, h.score) for h in backend.search(q, k=5)] == want
        backend.upsert(["new"], [vecs[0]])  # still writable, in its own format
        assert backend.search(vecs[0], k=1)[0].id in {"d0", "new"}
    conn = sqlite3.connect(path / "store.sqlite")
    assert dict(conn.execute("SELECT key, value FROM meta").fetchall())["format_version"] == "1"
    conn.close()


@pytest.mark.voyager_default_exact
def test_float32_vectors_are_exact(tmp_path: Path) -> None:
    """vector_dtype='float32': vectors come back bit for bit and scores equal the float32 oracle's."""
    ids, vecs = _corpus(200, 16)
    oracle = MemoryBackend()
    oracle.upsert(ids, vecs)
    with VoyagerBackend(tmp_path / "index", vector_dtype="float32", mutable_max_tokens=300) as backend:
        backend.upsert(ids, vecs)
        backend.wait_for_maintenance()
        assert backend.stats()["segments"] and backend.stats()["vector_dtype"] == "float32"
        for rec, v in zip(backend.get(ids, with_vectors=True), vecs, strict=True):
            np.testing.assert_array_equal(rec.vectors, v)
        rng = np.random.default_rng(2)
        for exact_below in (0, 10**9):  # through the graph, and the exact small-index path
            backend.exact_below_tokens = exact_below
            q = unit_multivector(rng, 4, 16)
            truth = {h.id: h.score for h in oracle.search(q, k=200)}
            for h in backend.search(q, k=10):
                assert h.score == pytest.approx(truth[h.id], abs=1e-5)


def test_int14_vectors_on_real_vectors(real_vectors: Any, tmp_path: Path) -> None:
    """vector_dtype='int14': scores within 1e-3 of the float32 oracle on real vectors (int8: 1.1e-2), through the
    graph (residuals read for the reranked documents only) and through the small-index scan (cached)."""
    with VoyagerBackend(tmp_path / "index", vector_dtype="int14", exact_below_tokens=0) as backend:
        backend.upsert(real_vectors.doc_ids[:200], real_vectors.docs[:200])
        backend.wait_for_maintenance()
        assert backend.stats()["segments"] and backend.stats()["mutable_tokens"] == 0
        oracle = MemoryBackend()
        oracle.upsert(real_vectors.doc_ids[:200], real_vectors.docs[:200])
        diffs = []
        for exact_below in (0, 10**9):
            backend.exact_below_tokens = exact_below
            for q in real_vectors.queries[:20]:
                truth = {h.id: h.score for h in oracle.search(q, k=200)}
                diffs += [abs(h.score - truth[h.id]) for h in backend.search(q, k=10)]
        assert 0 < max(diffs) < 1e-3


def test_float16_vectors_on_real_vectors(real_vectors: Any, tmp_path: Path) -> None:
    """vector_dtype='float16': scores within 5e-3 of the float32 oracle on real vectors."""
    with VoyagerBackend(tmp_path / "index", vector_dtype="float16", exact_below_tokens=0) as backend:
        backend.upsert(real_vectors.doc_ids[:200], real_vectors.docs[:200])
        oracle = MemoryBackend()
        oracle.upsert(real_vectors.doc_ids[:200], real_vectors.docs[:200])
        for q in real_vectors.queries[:20]:
            truth = {h.id: h.score for h in oracle.search(q, k=200)}
            for h in backend.search(q, k=10):
                assert abs(h.score - truth[h.id]) < 5e-3


# ---------------------------------------------------------------------------------------------- filters


def test_very_selective_filter_on_real_vectors(real_index: Any, real_vectors: Any) -> None:
    backend, oracle = real_index
    for q in real_vectors.queries[:10]:
        got = backend.search(q, k=10, filter={"rare": True})  # 5 of 500 documents match
        want = oracle.search(q, k=10, filter={"rare": True})
        assert len(got) == len(want) == 5
        assert [h.id for h in got] == [h.id for h in want]
        got2 = backend.search(q, k=3, filter={"rare": True, "parity": 1})
        want2 = oracle.search(q, k=3, filter={"rare": True, "parity": 1})
        assert [h.id for h in got2] == [h.id for h in want2]


def test_broad_filter_keeps_recall(real_index: Any, real_vectors: Any) -> None:
    backend, oracle = real_index
    recalls = []
    for q in real_vectors.queries[:15]:
        got = backend.search(q, k=10, filter={"parity": 0})
        assert len(got) == 10 and all(h.metadata["parity"] == 0 for h in got)
        recalls.append(_recall(got, oracle.search(q, k=10, filter={"parity": 0})))
    assert float(np.mean(recalls)) >= 0.9


def test_k_hits_when_candidates_run_short(tmp_path: Path) -> None:
    """k far above k_token: the backend falls back to exact scoring and still returns k hits."""
    ids, vecs = _corpus(300, 16)
    backend = VoyagerBackend(
        tmp_path / "index", k_token=2, n_rerank=4, mutable_max_tokens=64, background_maintenance=False
    )
    try:
        backend.upsert(ids, vecs)
        q = unit_multivector(np.random.default_rng(5), 3, 16)
        oracle = MemoryBackend()
        oracle.upsert(ids, vecs)
        got = backend.search(q, k=250)
        assert len(got) == 250
        assert _recall(got, oracle.search(q, k=250)) >= 0.9
    finally:
        backend.close()


def _seq_of(path: Path) -> dict[str, int]:
    """``{id: seq}`` of the sealed documents of the index at ``path``, read from ``store.sqlite`` (the format
    documented in ``colbert_adapters/backends/voyager/_db.py``)."""
    conn = sqlite3.connect(path / "store.sqlite")
    try:
        return dict(conn.execute("SELECT id, seq FROM docs WHERE segment IS NOT NULL").fetchall())
    finally:
        conn.close()


@pytest.mark.voyager_default_exact
@pytest.mark.parametrize("vector_dtype", ["int14", "int8"])
def test_small_index_is_searched_exactly(tmp_path: Path, vector_dtype: str) -> None:
    """Below exact_below_tokens live sealed tokens the graph is skipped: every (matching) document is ranked by
    an int8 estimate (codes requantised per document, cached) and the best 2 k + 8 read from the store and scored
    exactly, so the hits are the exact scan's."""
    ids, vecs = _corpus(300, 16)
    metas = [{"parity": i % 2} for i in range(len(ids))]
    backend = VoyagerBackend(
        tmp_path / "index",
        k_token=1,
        n_rerank=1,
        mutable_max_tokens=64,
        vector_dtype=vector_dtype,
        background_maintenance=False,  # a deterministic layout: seals and merges inline
    )
    oracle = MemoryBackend()  # over the vectors as stored: exact scores then agree to float32 rounding
    stored = VoyagerBackend(tmp_path / "stored", vector_dtype=vector_dtype)
    stored.upsert(ids, vecs)
    oracle.upsert(ids, [r.vectors for r in stored.get(ids, with_vectors=True)], metadatas=metas)
    stored.close()
    assert backend.exact_below_tokens == VoyagerBackend.DEFAULT_EXACT_BELOW_TOKENS > 0
    try:
        backend.upsert(ids, vecs, metadatas=metas)
        assert backend.stats()["segments"], "the corpus should be sealed into a graph segment"
        mutable = backend.stats()["mutable_tokens"] // 16
        backend.delete(ids[:10])
        oracle.delete(ids[:10])
        rng = np.random.default_rng(11)
        for _ in range(5):
            q = unit_multivector(rng, 4, 16)
            for flt in (None, {"parity": 1}):
                got, trace = backend.explain(q, k=20, filter=flt)
                assert trace.path == "scan"  # no graph candidates
                # One estimate over every live sealed document (the deleted ones are gone), none of the rerank's
                # own (the documents kept are scored exactly as they are).
                assert trace.scanned == len(ids) - 10 - mutable and trace.estimated == []
                want = oracle.search(q, k=20, filter=flt)
                # Exact on the stored vectors: the same hits and scores as the oracle, up to float32 rounding.
                np.testing.assert_allclose([h.score for h in got], [h.score for h in want], atol=1e-4)
                truth = {h.id: h.score for h in oracle.search(q, k=300, filter=flt)}
                for h in got:
                    assert abs(truth[h.id] - h.score) < 1e-4
                assert len({h.id for h in got} & {h.id for h in want}) >= 19
                assert [(h.id, h.score) for h in backend.search(q, k=20, filter=flt)] == [(h.id, h.score) for h in got]
        backend.exact_below_tokens = 0  # the graph path from here on
        _, trace = backend.explain(unit_multivector(rng, 4, 16), k=5)
        assert trace.path == "graph" and trace.scanned == 0
    finally:
        backend.close()


@pytest.mark.parametrize("vector_dtype", ["int14", "int8"])
def test_int8_rerank_scores_the_estimated_best_exactly(tmp_path: Path, vector_dtype: str) -> None:
    """Graph path, int8 / int14 store: candidates are ranked by the int8 estimate, the best k + max(8, k // 4) of
    them scored exactly (int14: on the codes plus residuals); with every document a candidate the hits are the exact
    top k on the stored vectors, also for a filter and for the exhaustive fallback."""
    ids, vecs = _corpus(200, 16, seed=4)
    metas = [{"parity": i % 2} for i in range(len(ids))]
    backend = VoyagerBackend(
        tmp_path / "index",
        background_maintenance=False,  # a deterministic layout: seals and merges inline
        k_token=64,
        ef_search=128,
        n_rerank=500,
        exact_below_tokens=0,
        mutable_max_tokens=64,
        vector_dtype=vector_dtype,
    )
    try:
        backend.upsert(ids, vecs, metadatas=metas)
        assert backend.stats()["segments"], "the corpus should be sealed into a graph segment"
        oracle = MemoryBackend()  # the stored (int8 / int14) vectors, scored exactly
        oracle.upsert(ids, [r.vectors for r in backend.get(ids, with_vectors=True)], metadatas=metas)
        rng = np.random.default_rng(12)
        for _ in range(5):
            q = unit_multivector(rng, 4, 16)
            for flt in (None, {"parity": 0}):
                got, trace = backend.explain(q, k=5, filter=flt)
                want = oracle.search(q, k=5, filter=flt)
                assert [h.id for h in got] == [h.id for h in want]
                np.testing.assert_allclose([h.score for h in got], [h.score for h in want], atol=1e-4)
                assert trace.path == "graph"
                # Documents per int8 estimate and per exact scoring: more candidates than are scored exactly.
                assert trace.estimated and max(trace.estimated) > 5 + 8
                assert max(trace.exact) == 5 + 8  # sealed documents (the mutable segment is scored apart)
                assert [(h.id, h.score) for h in backend.search(q, k=5, filter=flt)] == [(h.id, h.score) for h in got]
        for k in (1, 40):
            got, trace = backend.explain(q, k=k)
            assert [h.id for h in got] == [h.id for h in oracle.search(q, k=k)]
            assert max(trace.exact) == k + max(8, k // 4)
        backend.k_token, backend.n_rerank = 1, 1  # too few candidates: the exhaustive fallback, still estimated
        q = unit_multivector(rng, 4, 16)
        got, trace = backend.explain(q, k=40)
        assert [h.id for h in got] == [h.id for h in oracle.search(q, k=40)]
        assert trace.fallback > 0 and trace.estimated
    finally:
        backend.close()


@pytest.mark.parametrize("vector_dtype", ["int14", "int8", "float16"])
@pytest.mark.parametrize("order", ["agrees", "reversed"])
def test_rerank_reads_further_batches_while_deep_candidates_win(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, vector_dtype: str, order: str
) -> None:
    """Candidates are reranked n_rerank at a time in approximate order; the next batch is read only while a
    document in the lower half of the first batch (or anywhere in a later one) ranks among the best estimates.
    An approximate score that agrees with the exact one stops after one batch; one that ranks the exact best
    last reads every batch and still returns the exact top k."""
    from colbert_adapters.backends.voyager import _search

    ids, vecs = _corpus(200, 16, seed=6)
    backend = VoyagerBackend(
        tmp_path / "index",
        n_rerank=40,
        exact_below_tokens=0,
        mutable_max_tokens=64,
        vector_dtype=vector_dtype,
        background_maintenance=False,  # a deterministic layout: seals and merges inline
    )
    oracle = MemoryBackend()  # the stored vectors, scored exactly
    try:
        backend.upsert(ids, vecs)
        oracle.upsert(ids, [r.vectors for r in backend.get(ids, with_vectors=True)])
        seq_of = _seq_of(backend.path)
        sealed = np.array(sorted(seq_of.values()), dtype=np.int64)
        assert sealed.size > 150
        rng = np.random.default_rng(13)
        q = unit_multivector(rng, 4, 16)
        want = oracle.search(q, k=len(ids))
        rank = {seq_of[h.id]: i for i, h in enumerate(want) if h.id in seq_of}
        sign = -1.0 if order == "agrees" else 1.0  # higher approx = better: "reversed" puts the exact best last

        def candidates(st: Any, q: Any, q8: Any = None, trace: Any = None) -> Any:
            # Every sealed document, in a chosen approximate order.
            return sealed, np.array([sign * rank[int(s)] for s in sealed], dtype=np.float64), False

        monkeypatch.setattr(_search, "candidates", candidates)
        got, trace = backend.explain(q, k=5)
        assert [h.id for h in got] == [h.id for h in want[:5]]
        np.testing.assert_allclose([h.score for h in got], [h.score for h in want[:5]], atol=1e-4)
        batches = trace.batches  # documents per batch read by the rerank
        if order == "agrees":
            assert batches == [40]
        else:
            assert batches == [40] * (sealed.size // 40) + ([sealed.size % 40] if sealed.size % 40 else [])
    finally:
        backend.close()


@pytest.mark.parametrize("bad", [-1, 1.5, True, "100"])
def test_exact_below_tokens_is_validated(tmp_path: Path, bad: Any) -> None:
    with pytest.raises(InvalidInputError, match="exact_below_tokens"):
        VoyagerBackend(tmp_path / "index", dim=4, exact_below_tokens=bad)


# ---------------------------------------------------------------------------------------------- blob cache


def test_search_arena_hands_out_disjoint_regions_kept_per_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rerank stacks its batches into a per-thread arena: regions of one search never overlap (each batch's
    views stay valid until the next search), a request that does not fit starts a new buffer without touching
    views of the old one, a reset reuses the buffer, a request over the cap is not kept, and threads do not share."""
    from colbert_adapters.backends.voyager import _rerank

    monkeypatch.setattr(_rerank, "ARENA_MAX_BYTES", 4 << 20)
    arena = _rerank.Arena()
    a, b = arena.take(1000), arena.take(3000)
    a[:] = b"a" * 1000
    b[:] = b"b" * 3000
    assert bytes(a) == b"a" * 1000  # disjoint
    first = arena.buf
    c = arena.take(3 << 20)  # does not fit the first buffer: a new one, the old views intact
    c[:4] = b"cccc"
    assert arena.buf is not first and bytes(a) == b"a" * 1000 and bytes(b) == b"b" * 3000
    kept = arena.buf
    arena.reset()
    assert arena.take(10).obj is kept  # reused after a reset
    big = arena.take(5 << 20)  # over the cap: a one-off buffer
    assert big.obj is not arena.buf and len(big) == 5 << 20 and arena.buf is kept
    seen: list[int] = []
    worker = threading.Thread(target=lambda: seen.append(len(_rerank.ARENA.buf)))
    _rerank.ARENA.take(100)
    worker.start()
    worker.join()
    assert seen == [0]  # another thread starts with its own, empty arena


def test_rerank_batches_stacked_in_the_arena_match_a_join(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stacking into the arena gives the same arrays as joining the blobs; searches that read several batches
    into it (and searches after them, reusing it) return the exact top k."""
    from colbert_adapters.backends.voyager import _rerank

    ids, vecs = _corpus(200, 16, seed=8)
    backend = VoyagerBackend(tmp_path / "index", n_rerank=20, exact_below_tokens=0, mutable_max_tokens=64)
    oracle = MemoryBackend()
    try:
        backend.upsert(ids, vecs)
        oracle.upsert(ids, [r.vectors for r in backend.get(ids, with_vectors=True)])
        conn = sqlite3.connect(backend.path / "store.sqlite")  # (seq, n_tokens, vectors) rows, as the rerank reads
        try:
            rows = conn.execute(
                "SELECT seq, n_tokens, vectors FROM docs WHERE segment IS NOT NULL ORDER BY seq LIMIT 50"
            ).fetchall()
        finally:
            conn.close()
        dim, vector_dtype = backend.dim or 0, backend.stats()["vector_dtype"]
        arena = _rerank.Arena()
        joined = _rerank.stack(rows, dim, vector_dtype)
        stacked = _rerank.stack(rows, dim, vector_dtype, arena=arena)
        for x, y in zip(joined, stacked, strict=True):
            np.testing.assert_array_equal(x, y)
        monkeypatch.setattr(_rerank, "ARENA_MAX_BYTES", 64 << 10)  # a few batches per buffer
        rng = np.random.default_rng(2)
        for _ in range(6):
            q = unit_multivector(rng, 4, 16)
            got, want = backend.search(q, k=5), oracle.search(q, k=5)
            assert [h.id for h in got] == [h.id for h in want]
            np.testing.assert_allclose([h.score for h in got], [h.score for h in want], atol=1e-4)
    finally:
        backend.close()


def test_blob_cache_serves_from_memory_within_its_budget(tmp_path: Path) -> None:
    """The cache returns a document's blob without the store once read, evicts least recently used entries past
    its budget, forgets discarded seqs, and ``remember=False`` / a zero budget read through without keeping."""
    from colbert_adapters.backends.voyager._docstore import BlobCache

    conn = sqlite3.connect(tmp_path / "docs.sqlite", isolation_level=None)
    conn.execute("CREATE TABLE docs (seq INTEGER PRIMARY KEY, n_tokens INTEGER, vectors BLOB, residual BLOB)")
    blobs = {seq: bytes([seq]) * (10 * seq) for seq in range(1, 9)}
    for seq, blob in blobs.items():
        conn.execute("INSERT INTO docs VALUES (?, ?, ?, ?)", (seq, seq, blob, blob[:seq]))
    cache = BlobCache(max_bytes=150)
    assert cache.fetch(conn, "vectors", [3, 1, 5]) == [(s, s, blobs[s]) for s in (1, 3, 5)]
    assert len(cache) == 3 and cache.nbytes == 90
    conn.execute("DELETE FROM docs WHERE seq IN (1, 3)")  # a cached entry never reads the store again
    assert cache.fetch(conn, "vectors", [1, 3, 7]) == [(s, s, blobs[s]) for s in (1, 3, 7)]
    # 160 bytes > 150: the least recently used (5) went first; 1, 3, 7 stay.
    assert cache.nbytes == 110 and cache.fetch(conn, "vectors", [5]) == [(5, 5, blobs[5])]
    assert cache.nbytes <= 150 and cache.fetch(conn, "vectors", [1]) == []  # 1 was evicted, and is gone
    assert cache.fetch(conn, "residual", [2]) == [(2, 2, blobs[2][:2])]  # columns are cached apart
    cache.discard([2, 5, 7])
    assert cache.fetch(conn, "vectors", [8], remember=False) == [(8, 8, blobs[8])]
    assert len(cache) == 0 and cache.nbytes == 0
    conn.execute("DELETE FROM docs WHERE seq = 8")
    assert cache.fetch(conn, "vectors", [8]) == []
    off = BlobCache(max_bytes=0)
    assert off.fetch(conn, "vectors", [2, 4]) == [(2, 2, blobs[2]), (4, 4, blobs[4])] and len(off) == 0
    conn.close()


@pytest.mark.parametrize("vector_dtype", ["int14", "float16"])
def test_blob_cache_gives_the_uncached_results(tmp_path: Path, vector_dtype: str) -> None:
    """A backend reading reranked documents through the cache (filled by its own writes too) returns what one
    without it returns, through deletes, re-added ids (new vectors), compaction and a reopen; its memory stays
    within cache_bytes, deleted documents leave it, and an exhaustive fallback does not fill it."""
    ids, vecs = _corpus(160, 16, seed=6)
    _, other = _corpus(160, 16, seed=7)
    opts: dict[str, Any] = {
        "k_token": 16,
        "exact_below_tokens": 0,
        "mutable_max_tokens": 64,
        "background_maintenance": False,  # a deterministic layout: seals and merges inline
    }
    budget = 40 * 16 * 40  # ~40 documents' blobs of either store
    cached = VoyagerBackend(tmp_path / "cached", vector_dtype=vector_dtype, cache_bytes=budget, **opts)
    plain = VoyagerBackend(tmp_path / "plain", vector_dtype=vector_dtype, cache_bytes=0, **opts)
    rng = np.random.default_rng(13)
    queries = [unit_multivector(rng, 4, 16) for _ in range(6)]

    def same() -> None:
        for b in (cached, plain):
            b.wait_for_maintenance()  # the same segments on both sides
        for q in queries:
            for k in (3, 10):
                got, want = cached.search(q, k=k), plain.search(q, k=k)
                assert [(h.id, h.score) for h in got] == [(h.id, h.score) for h in want]
        stats = cached.stats()
        assert 0 < stats["cache_bytes"] <= budget and stats["cache_entries"] > 0
        assert plain.stats()["cache_bytes"] == 0

    try:
        for b in (cached, plain):
            b.upsert(ids, vecs)
        assert cached.stats()["segments"]
        # Write-through: the documents just written are held before any search (the most recent, within budget).
        written = cached.stats()
        assert 0 < written["cache_bytes"] <= budget and written["cache_entries"] > 0
        same()
        for b in (cached, plain):
            b.delete(ids[::3])
            b.upsert(ids[1::3], [other[i] for i in range(1, 160, 3)])  # same ids, new vectors
        same()
        for b in (cached, plain):
            b.compact()
        same()
        entries = cached.stats()["cache_entries"]
        cached.delete(ids)
        assert cached.stats()["cache_entries"] < entries and cached.stats()["cache_bytes"] == 0
        cached.upsert(ids, vecs)
        plain.delete(ids)
        plain.upsert(ids, vecs)
        same()
        cached.close()
        cached = VoyagerBackend(tmp_path / "cached", cache_bytes=budget, **opts)
        assert cached.stats()["cache_entries"] == 0
        same()
        # Too few candidates for k: every document is scored, without pushing the reranked ones out.
        fresh = VoyagerBackend(
            tmp_path / "cached2", vector_dtype=vector_dtype, **{**opts, "k_token": 1}, n_rerank=1, cache_bytes=budget
        )
        try:
            fresh.upsert(ids, vecs)
            oracle = MemoryBackend()  # the stored vectors, scored exactly
            oracle.upsert(ids, [r.vectors for r in fresh.get(ids, with_vectors=True)])
            got = fresh.search(queries[0], k=40)
            assert [h.id for h in got] == [h.id for h in oracle.search(queries[0], k=40)]
            assert fresh.stats()["cache_entries"] <= 2 * (2 * 40 + 8)  # vectors and residuals of the reranked
        finally:
            fresh.close()
    finally:
        cached.close()
        plain.close()


def test_reader_cache_follows_another_process_writes(tmp_path: Path) -> None:
    """A read-only backend that cached reranked documents sees another writer's deletes and re-added ids (new
    vectors) on its next search: its hits equal the exact backend's on the stored vectors."""
    ids, vecs = _corpus(120, 16, seed=8)
    _, other = _corpus(120, 16, seed=9)
    opts: dict[str, Any] = {"k_token": 120, "ef_search": 240, "exact_below_tokens": 0, "mutable_max_tokens": 64}
    writer = VoyagerBackend(tmp_path / "index", vector_dtype="float32", **opts)
    writer.upsert(ids, vecs)
    writer.wait_for_maintenance()
    reader = VoyagerBackend(tmp_path / "index", read_only=True, **opts)
    rng = np.random.default_rng(14)
    queries = [unit_multivector(rng, 4, 16) for _ in range(5)]
    try:
        for q in queries:
            reader.search(q, k=10)
        assert reader.stats()["cache_entries"] > 0
        writer.delete(ids[:40])
        writer.upsert(ids[40:80], other[40:80])
        oracle = MemoryBackend()
        oracle.upsert(ids[40:], [*other[40:80], *vecs[80:]])
        for q in queries:
            assert [h.id for h in reader.search(q, k=10)] == [h.id for h in oracle.search(q, k=10)]
    finally:
        reader.close()
        writer.close()


@pytest.mark.parametrize("bad", [-1, 1.5, True, "1"])
def test_cache_bytes_is_validated(tmp_path: Path, bad: Any) -> None:
    with pytest.raises(InvalidInputError, match="cache_bytes"):
        VoyagerBackend(tmp_path / "index", dim=4, cache_bytes=bad)


# ---------------------------------------------------------------------------------------------- persistence


def test_reopen_after_segments_merges_and_deletes(tmp_path: Path) -> None:
    path = tmp_path / "index"
    ids, vecs = _corpus(120, 16)
    backend = VoyagerBackend(path, mutable_max_tokens=50, max_segments=2)
    for start in range(0, 120, 10):
        backend.upsert(
            ids[start : start + 10], vecs[start : start + 10], metadatas=[{"i": i} for i in range(start, start + 10)]
        )
    backend.delete(ids[::7])
    backend.upsert([ids[1]], [vecs[2]], texts=["replaced"])
    backend.wait_for_maintenance()
    q = unit_multivector(np.random.default_rng(1), 4, 16)
    before_hits = backend.search(q, k=20)
    before_state = _state(backend, ids)
    before_stats = backend.stats()
    backend.close()
    reopened = VoyagerBackend(path)
    try:
        assert _state(reopened, ids) == before_state
        assert reopened.count() == 120 - len(ids[::7])
        after_hits = reopened.search(q, k=20)
        assert [(h.id, round(h.score, 5)) for h in after_hits] == [(h.id, round(h.score, 5)) for h in before_hits]
        after_stats = reopened.stats()
        for key in ("n_docs", "n_live_tokens", "n_dead_tokens", "mutable_tokens", "segments", "generation"):
            assert after_stats[key] == before_stats[key]
        manifest = json.loads((path / "manifest.json").read_text())
        assert manifest["generation"] == after_stats["generation"]
        assert [s["file"] for s in manifest["segments"]] == [s["file"] for s in after_stats["segments"]]
    finally:
        reopened.close()


def test_store_is_readable_with_plain_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "index"
    with VoyagerBackend(path, dim=4) as backend:
        backend.upsert(["a"], [np.eye(4, dtype=np.float32)[:2]], texts=["hello"], metadatas=[{"lang": "en"}])
    conn = sqlite3.connect(path / "store.sqlite")
    try:
        row = conn.execute(
            "SELECT id, text, metadata, n_tokens, length(vectors), length(residual) FROM docs"
        ).fetchone()
        # int14 (the default): per token a float32 scale and 4 int8 codes, then the 6-bit residuals of its 4
        # components (a nibble plane, 2 bytes per token, and a bit-pair plane, 1 byte per token)
        assert row == ("a", "hello", '{"lang":"en"}', 2, 2 * (4 + 4), 2 * (2 + 1))
        meta = dict(conn.execute("SELECT key, value FROM meta"))
        assert meta["format"] == "colbert-adapters/voyager-index" and meta["dim"] == "4"
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()
    assert not any(p.suffix in {".pkl", ".pickle"} for p in path.iterdir())


def test_single_add_does_not_rewrite_the_index(tmp_path: Path) -> None:
    ids, vecs = _corpus(400, 32)
    backend = VoyagerBackend(tmp_path / "index")
    try:
        backend.upsert(ids, vecs)
        backend.compact()
        (seg,) = backend.stats()["segments"]
        seg_path = backend.path / seg["file"]
        before = (seg_path.stat().st_mtime_ns, seg_path.stat().st_ino)
        t0 = time.perf_counter()
        backend.upsert(["new"], [vecs[0]])
        elapsed = time.perf_counter() - t0
        assert (seg_path.stat().st_mtime_ns, seg_path.stat().st_ino) == before
        assert elapsed < 1.0  # typically a few ms (one SQLite commit)
        assert backend.search(vecs[0], k=2)[0].id in {"d0", "new"}
    finally:
        backend.close()


def test_temporary_index_is_deleted_on_close() -> None:
    backend = VoyagerBackend(dim=4)
    path = backend.path
    backend.upsert(["a"], [np.eye(4, dtype=np.float32)])
    assert (path / "store.sqlite").is_file()
    backend.close()
    assert not path.exists()


def test_registry_and_store_facade(tmp_path: Path) -> None:
    backend = resolve_backend("voyager", path=tmp_path / "index", dim=16)
    assert isinstance(backend, VoyagerBackend)
    enc = FakeEncoder(dim=16)
    with MultiVectorStore(enc, backend=backend) as store:
        store.add(["the cat sat", "dogs bark"], ids=["cat", "dog"])
        assert store.search("a cat", k=1)[0].id == "cat"
    reopened = VoyagerBackend(tmp_path / "index")
    assert reopened.model_id == enc.model_id  # recorded by the facade
    reopened.close()
    other = FakeEncoder(dim=16, seed=99)
    assert other.model_id != enc.model_id
    reopened = VoyagerBackend(tmp_path / "index")
    try:
        with pytest.raises(CollectionConfigError):
            MultiVectorStore(other, backend=reopened)
    finally:
        reopened.close()


# ---------------------------------------------------------------------------------------------- compaction


def test_compaction_reclaims_space_and_keeps_results(tmp_path: Path) -> None:
    dim = 64
    ids, vecs = _corpus(600, dim, seed=3)
    backend = VoyagerBackend(tmp_path / "index", mutable_max_tokens=400, max_segments=8, compact_deleted_ratio=1.0)
    try:
        for start in range(0, 600, 100):
            backend.upsert(ids[start : start + 100], vecs[start : start + 100], texts=["x" * 200] * 100)
        backend.wait_for_maintenance()
        backend.delete(ids[::2])
        stats = backend.stats()
        assert stats["n_dead_tokens"] > 0 and len(stats["segments"]) > 1
        queries = [vecs[i] for i in range(1, 600, 60)]
        before = [[h.id for h in backend.search(q, k=5)] for q in queries]
        disk_before = stats["disk_bytes"]
        backend.compact()
        stats = backend.stats()
        assert stats["n_dead_tokens"] == 0 and len(stats["segments"]) == 1 and stats["mutable_tokens"] == 0
        assert stats["disk_bytes"] < 0.8 * disk_before
        after = [[h.id for h in backend.search(q, k=5)] for q in queries]
        assert [a[0] for a in after] == [b[0] for b in before] == [ids[i] for i in range(1, 600, 60)]
        oracle = MemoryBackend()
        oracle.upsert(ids[1::2], vecs[1::2])
        assert np.mean([_recall(backend.search(q, k=5), oracle.search(q, k=5)) for q in queries]) >= 0.9
        assert backend.count() == 300
    finally:
        backend.close()
    assert sorted(p.name for p in (tmp_path / "index").glob("seg-*")) == [stats["segments"][0]["file"]]


def test_automatic_compaction_of_dead_tokens(tmp_path: Path) -> None:
    ids, vecs = _corpus(200, 16)
    backend = VoyagerBackend(tmp_path / "index", mutable_max_tokens=10_000, compact_deleted_ratio=0.3)
    try:
        backend.upsert(ids, vecs)
        backend.compact()
        (seg,) = backend.stats()["segments"]
        backend.delete(ids[:50])  # about 25% dead: kept
        backend.wait_for_maintenance()
        assert backend.stats()["segments"][0]["file"] == seg["file"]
        backend.delete(ids[50:70])  # above 30%: the segment is rewritten without them (in the background)
        backend.wait_for_maintenance()
        stats = backend.stats()
        assert stats["n_dead_tokens"] == 0 and stats["segments"][0]["file"] != seg["file"]
        assert not (backend.path / seg["file"]).exists()
        backend.delete(ids[70:])  # everything gone: the segment is dropped
        backend.wait_for_maintenance()
        assert backend.stats()["segments"] == [] and backend.count() == 0
    finally:
        backend.close()


# ---------------------------------------------------------------------------------------------- concurrency


def test_reader_threads_while_one_writer_writes(tmp_path: Path) -> None:
    dim = 16
    stable_ids, stable = _corpus(60, dim, seed=1, prefix="s")
    backend = VoyagerBackend(tmp_path / "index", mutable_max_tokens=200, max_segments=3)
    backend.upsert(stable_ids, stable)
    errors: list[BaseException] = []
    stop = threading.Event()
    searches = [0]

    def reader(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            while not stop.is_set():
                i = int(rng.integers(60))
                hits = backend.search(stable[i], k=5)
                assert hits[0].id == stable_ids[i], (hits[0].id, stable_ids[i])
                scores = [h.score for h in hits]
                assert scores == sorted(scores, reverse=True)
                assert len(backend.get([stable_ids[i]])) == 1
                searches[0] += 1
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=reader, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    try:
        rng = np.random.default_rng(9)
        for step in range(40):
            new_ids = [f"w{step}_{j}" for j in range(5)]
            backend.upsert(new_ids, [unit_multivector(rng, 6, dim) for _ in new_ids])
            if step % 3 == 0:
                backend.delete([f"w{step - 1}_{j}" for j in range(3)])
            if step % 15 == 14:
                backend.compact()
    finally:
        stop.set()
        for t in threads:
            t.join()
    try:
        assert not errors, errors[0]
        assert searches[0] > 0
        assert backend.count() == 60 + 40 * 5 - 13 * 3
    finally:
        backend.close()


_OPEN_SCRIPT = """
import sys
from colbert_adapters.backends.voyager import VoyagerBackend
from colbert_adapters.errors import IndexLockedError
try:
    b = VoyagerBackend(sys.argv[1], read_only=sys.argv[2] == "ro")
except IndexLockedError as err:
    print("LOCKED", err)
else:
    print("OPEN", b.count())
    b.close()
"""


def _open_in_subprocess(path: Path, mode: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", _OPEN_SCRIPT, str(path), mode],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_second_writer_is_locked_out(tmp_path: Path) -> None:
    path = tmp_path / "index"
    ids, vecs = _corpus(10, 8)
    backend = VoyagerBackend(path)
    try:
        backend.upsert(ids, vecs)
        out = _open_in_subprocess(path, "rw")
        assert out.startswith("LOCKED") and "read_only=True" in out
        with pytest.raises(IndexLockedError):
            VoyagerBackend(path)  # a second writer in the same process too
        assert _open_in_subprocess(path, "ro") == "OPEN 10"  # readers are welcome
    finally:
        backend.close()
    assert _open_in_subprocess(path, "rw") == "OPEN 10"  # the lock is released on close


def test_read_only_sees_new_commits(tmp_path: Path) -> None:
    path = tmp_path / "index"
    ids, vecs = _corpus(40, 8)
    writer = VoyagerBackend(path, mutable_max_tokens=30)
    writer.upsert(ids[:20], vecs[:20])
    reader = VoyagerBackend(path, read_only=True)
    try:
        assert reader.count() == 20
        with pytest.raises(ColBERTError, match="read-only"):
            reader.upsert(["x"], [vecs[0]])
        with pytest.raises(ColBERTError, match="read-only"):
            reader.delete(["d0"])
        writer.upsert(ids[20:], vecs[20:])
        writer.delete(ids[:5])
        writer.compact()
        assert reader.count() == 35
        assert reader.search(vecs[30], k=1)[0].id == ids[30]
        assert reader.get([ids[0]]) == []
    finally:
        reader.close()
        writer.close()


# ---------------------------------------------------------------------------------------------- bad input


def test_not_an_index(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CollectionConfigError, match="not a Voyager index"):
        VoyagerBackend(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # nothing written
    with pytest.raises(CollectionConfigError, match="not a directory"):
        VoyagerBackend(tmp_path / "notes.txt")
    bogus = tmp_path / "bogus"
    bogus.mkdir()
    (bogus / "store.sqlite").write_bytes(b"definitely not sqlite" * 100)
    with pytest.raises(CollectionConfigError):
        VoyagerBackend(bogus)
    with pytest.raises(CollectionConfigError):
        VoyagerBackend(tmp_path / "missing", read_only=True)
    # A directory holding another kind of SQLite database.
    other = tmp_path / "other"
    other.mkdir()
    conn = sqlite3.connect(other / "store.sqlite")
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(CollectionConfigError):
        VoyagerBackend(other)
    assert sorted(p.name for p in other.iterdir()) == ["store.sqlite"]  # untouched: no lock, no WAL
    conn = sqlite3.connect(other / "store.sqlite")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    conn.close()
    assert sorted(p.name for p in bogus.iterdir()) == ["store.sqlite"]


def test_other_dimension_or_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "index"
    ids, vecs = _corpus(5, 8)
    with VoyagerBackend(path, model_id="model-a") as backend:
        backend.upsert(ids, vecs)
    with pytest.raises(CollectionConfigError, match="8-d"):
        VoyagerBackend(path, dim=16)
    with pytest.raises(CollectionConfigError, match="model-a"):
        VoyagerBackend(path, model_id="model-b")
    with VoyagerBackend(path) as backend:  # still opens, unchanged
        assert (backend.dim, backend.model_id, backend.count()) == (8, "model-a", 5)
        with pytest.raises(CollectionConfigError):
            backend.model_id = "model-b"
        with pytest.raises(DimensionMismatchError):
            backend.upsert(["x"], [np.ones((2, 16), dtype=np.float32)])
        assert backend.count() == 5


def test_dim_fixed_by_first_upsert_is_persisted(tmp_path: Path) -> None:
    path = tmp_path / "index"
    with VoyagerBackend(path) as backend:
        assert backend.dim is None
        backend.upsert(["a"], [np.ones((2, 6), dtype=np.float32) / np.sqrt(6)])
    with VoyagerBackend(path) as backend:
        assert backend.dim == 6
        with pytest.raises(DimensionMismatchError):
            backend.search(np.ones((1, 5), dtype=np.float32), k=1)


def test_float16_overflow_and_bad_parameters(tmp_path: Path) -> None:
    with VoyagerBackend(tmp_path / "index", dim=4, vector_dtype="float16") as backend:
        with pytest.raises(InvalidInputError, match="float16"):
            backend.upsert(["a"], [np.full((1, 4), 1e6, dtype=np.float32)])
        assert backend.count() == 0
    for kwargs in (
        {"k_token": 0},
        {"M": -1},
        {"storage_data_type": "int4"},
        {"compact_deleted_ratio": 0.0},
        {"vector_dtype": "int4"},
        {"vector_dtype": 8},
    ):
        with pytest.raises(InvalidInputError):
            VoyagerBackend(tmp_path / "other", **kwargs)


def test_closed_backend_raises(tmp_path: Path) -> None:
    backend = VoyagerBackend(tmp_path / "index", dim=4)
    backend.close()
    with pytest.raises(ColBERTError, match="closed"):
        backend.upsert(["a"], [np.eye(4, dtype=np.float32)])
    with pytest.raises(ColBERTError, match="closed"):
        backend.search(np.eye(4, dtype=np.float32), k=1)


# ------------------------------------------------------------------------------------------ centroids


def _centroid_rows(path: Path) -> dict[int, tuple[bytes, bytes]]:
    conn = sqlite3.connect(path / "store.sqlite")
    try:
        return {seq: (scales, codes) for seq, scales, codes in conn.execute("SELECT seq, scales, codes FROM centroids")}
    finally:
        conn.close()


def _doc_seqs(path: Path) -> set[int]:
    conn = sqlite3.connect(path / "store.sqlite")
    try:
        return {r[0] for r in conn.execute("SELECT seq FROM docs")}
    finally:
        conn.close()


def test_doc_centroids_summarise_each_documents_tokens() -> None:
    """Four well-separated clusters give four centroids on their directions; a document of fewer tokens than
    centroids keeps its tokens (so the best centroid similarity is the exact MaxSim term); same input, same
    output; non-unit tokens keep their mean norm."""
    from colbert_adapters.backends.voyager._centroids import doc_centroids

    rng = np.random.default_rng(3)
    dim = 32
    centres = np.linalg.qr(rng.standard_normal((dim, 4)))[0].T.astype(np.float32)  # 4 orthonormal directions
    clustered = np.concatenate([c + 0.05 * rng.standard_normal((10, dim)) for c in centres]).astype(np.float32)
    clustered /= np.linalg.norm(clustered, axis=1, keepdims=True)
    short = unit_multivector(rng, 2, dim)
    scaled = 3.0 * unit_multivector(rng, 7, dim)
    codes, scales = doc_centroids([clustered, short, scaled])
    assert codes.shape == (3, 4, dim) and codes.dtype == np.int8 and scales.shape == (3, 4)
    cen = codes.astype(np.float32) * scales[..., None]
    np.testing.assert_allclose(np.sort((cen[0] @ centres.T).max(axis=0)), np.ones(4), atol=0.02)
    q = unit_multivector(rng, 5, dim)
    np.testing.assert_allclose((q @ cen[1].T).max(axis=1), (q @ short.T).max(axis=1), atol=0.02)
    np.testing.assert_allclose(np.linalg.norm(cen[2], axis=1), 3.0, rtol=0.2)
    again = doc_centroids([clustered, short, scaled])
    assert np.array_equal(again[0], codes) and np.array_equal(again[1], scales)


def _token_queries(backend: VoyagerBackend) -> np.ndarray:
    """One query token per live document (its first token): with a small ``k_token`` every sealed document is a
    candidate, retrieved by its own token only, so its approximate score is mostly its centroid similarities."""
    return np.stack([r.vectors[0] for r in backend.get(backend.ids(), with_vectors=True)])


def test_centroids_are_written_and_removed_with_their_documents(tmp_path: Path) -> None:
    """Each upsert stores its documents' centroids in the same transaction; replacing or deleting a document drops
    its row; compaction keeps them; a reopened index loads the same table."""
    path = tmp_path / "index"
    ids, vecs = _corpus(60, 16, seed=2)
    opts: dict[str, Any] = {"exact_below_tokens": 0, "k_token": 4}
    with VoyagerBackend(path, mutable_max_tokens=64, **opts) as backend:
        backend.upsert(ids, vecs)
        assert set(_centroid_rows(path)) == _doc_seqs(path)
        backend.upsert(ids[:10], _corpus(10, 16, seed=9)[1])  # re-added ids: new seqs, new vectors
        assert backend.delete(ids[10:20]) == 10
        assert set(_centroid_rows(path)) == _doc_seqs(path) and len(_doc_seqs(path)) == 50
        backend.compact()
        rows = _centroid_rows(path)
        assert set(rows) == _doc_seqs(path)
        # The centroids held in memory complete the approximate score of every live document (each a candidate).
        q = _token_queries(backend)
        _, held = backend.explain(q, k=5)
        assert held.centroids and set(held.approximate) == set(backend.ids())
    with VoyagerBackend(path, read_only=True, **opts) as reopened:
        _, again = reopened.explain(q, k=5)
        assert again.centroids
        # The same candidates from the same graph, completed by the same centroids: the same approximate scores.
        assert again.approximate.keys() == held.approximate.keys()
        for doc_id, score in held.approximate.items():
            assert again.approximate[doc_id] == pytest.approx(score, abs=1e-6)


def test_index_without_centroids_is_searched_then_backfilled(tmp_path: Path) -> None:
    """An index written before centroids (the table dropped, as an older version leaves it): a read-only open
    searches with the approximate score of retrieved similarities only; a writable open computes the missing
    centroids (the same ones an upsert writes) and searches as before."""
    path = tmp_path / "index"
    ids, vecs = _corpus(120, 16, seed=4)
    opts: dict[str, Any] = {"exact_below_tokens": 0, "mutable_max_tokens": 64, "n_rerank": 16}
    rng = np.random.default_rng(5)
    queries = [unit_multivector(rng, 4, 16) for _ in range(5)]
    with VoyagerBackend(path, **opts) as backend:
        backend.upsert(ids, vecs)
        backend.compact()
        before = [[(h.id, h.score) for h in backend.search(q, k=5)] for q in queries]
    stored = _centroid_rows(path)
    conn = sqlite3.connect(path / "store.sqlite")
    conn.execute("DROP TABLE centroids")
    conn.commit()
    conn.close()
    with VoyagerBackend(path, read_only=True, **opts) as old:
        _, trace = old.explain(queries[0], k=5)
        # Graph candidates, whose approximate scores no centroids completed (the index holds none).
        assert trace.candidates and not trace.centroids
        assert all(old.search(q, k=5) for q in queries)
    with VoyagerBackend(path, **opts) as backend:
        assert _centroid_rows(path) == stored
        assert [[(h.id, h.score) for h in backend.search(q, k=5)] for q in queries] == before
        assert backend.explain(queries[0], k=5)[1].centroids


def test_centroids_complete_the_approximate_score(tmp_path: Path) -> None:
    """A document close to every query token but no token's nearest (its other tokens' neighbours are decoys)
    is retrieved by one query token only. Counting a centroid similarity for the others ranks it first among
    the candidates; without centroids it ties with the decoys."""
    dim = 16
    eye = np.eye(dim, dtype=np.float32)
    ids, vecs = [], []
    for i in range(4):  # decoys: a perfect match for query token i, nothing close to the other tokens
        for j in range(3 if i else 1):
            ids.append(f"decoy{i}-{j}")
            vecs.append(np.stack([eye[i], eye[5 + (3 * i + j) % 10]]))
    # Query token 0's second neighbour (its floor) is 0.95: the target's retrieved 1.0 counts above it.
    vecs[0] = np.stack([0.95 * eye[0] + np.sqrt(1 - 0.95**2) * eye[14], eye[5]]).astype(np.float32)
    close = np.sqrt(1 - 0.9**2)
    target = np.stack([eye[0]] + [0.9 * eye[i] + close * eye[15] for i in (1, 2, 3)]).astype(np.float32)
    ids.append("target")
    vecs.append(target)
    q = eye[:4].copy()
    path = tmp_path / "index"
    opts: dict[str, Any] = {"exact_below_tokens": 0, "k_token": 2, "ef_search": 64, "mutable_max_tokens": 8}
    with VoyagerBackend(path, **opts) as backend:
        backend.upsert(ids, vecs)
        backend.compact()
        _, trace = backend.explain(q, k=1)
        score = trace.approximate  # the candidates' approximate scores, by id
        assert trace.centroids
        assert "target" in score
        assert max(score, key=score.__getitem__) == "target"
        assert score["target"] == pytest.approx(1.0 + 3 * 0.9, abs=0.02)
        assert backend.search(q, k=1)[0].id == "target"
    # As an index without centroids (written before them, opened read-only: not backfilled), same graph.
    conn = sqlite3.connect(path / "store.sqlite")
    conn.execute("DROP TABLE centroids")
    conn.commit()
    conn.close()
    with VoyagerBackend(path, read_only=True, **opts) as old:
        _, trace = old.explain(q, k=1)
        score = trace.approximate
        assert not trace.centroids
        assert score["target"] == pytest.approx(1.0, abs=1e-5)
        assert max(score.values()) == pytest.approx(1.0, abs=1e-5)
        assert score["decoy0-0"] == pytest.approx(0.95, abs=0.01)


def _read_centroids(path: Path, old: Any) -> Any:
    """``_centroids.read_centroids`` on the store of index ``path``, as a state reload calls it."""
    from colbert_adapters.backends.voyager._centroids import read_centroids

    conn = sqlite3.connect(path / "store.sqlite")
    try:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        n_docs = conn.execute("SELECT count(*) FROM docs").fetchone()[0]
        return read_centroids(conn, old, int(meta["dim"]), meta.get("centroids_epoch", "0"), n_docs, path)
    finally:
        conn.close()


def test_centroids_follow_other_writers_and_stay_bounded(tmp_path: Path) -> None:
    """A read-only reader adds the centroids of another writer's new documents to its table (only those), reloads
    it whole after a backfill, and the writer's table drops the rows of replaced documents once they make up
    half of it."""
    from colbert_adapters.backends.voyager._centroids import N_CENTROIDS

    path = tmp_path / "index"
    ids, vecs = _corpus(30, 16, seed=11)
    opts: dict[str, Any] = {"exact_below_tokens": 0, "k_token": 4}
    writer = VoyagerBackend(path, mutable_max_tokens=64, **opts)
    try:
        writer.upsert(ids[:20], vecs[:20])
        writer.wait_for_maintenance()
        reader = VoyagerBackend(path, read_only=True, **opts)
        try:
            table = _read_centroids(path, None)  # the reload of the table a reader holds
            assert table is not None and table.n == 20
            writer.upsert(ids[20:], vecs[20:])
            writer.wait_for_maintenance()
            assert reader.count() == 30  # refreshes
            _, trace = reader.explain(_token_queries(writer), k=5)
            # Every live document a candidate (or in the mutable segment), the new ones with their centroids too.
            assert trace.centroids and len(trace.approximate) + trace.mutable == 30
            assert _read_centroids(path, table) is table and table.n == 30  # the same table, 10 rows added
            assert table.rows(np.array(sorted(_centroid_rows(path)), dtype=np.int64)) is not None
            writer.close()
            conn = sqlite3.connect(path / "store.sqlite")
            conn.execute("DELETE FROM centroids WHERE seq IN (SELECT seq FROM docs ORDER BY seq LIMIT 5)")
            conn.commit()
            conn.close()
            writer = VoyagerBackend(path, mutable_max_tokens=64, **opts)  # backfills the 5 rows
            assert reader.count() == 30
            reloaded = _read_centroids(path, table)
            assert reloaded is not table
            assert reloaded.rows(np.array(sorted(_doc_seqs(path)), dtype=np.int64)) is not None
            assert reader.explain(_token_queries(writer), k=5)[1].centroids
        finally:
            reader.close()
        for i in range(75):  # 2,250 replaced documents' rows (each write sealed: at least 90 tokens)
            writer.upsert(ids, _corpus(30, 16, seed=100 + i)[1])
        writer.wait_for_maintenance()
        # The table holds at most 2 * 30 + 1,024 rows (seq, then int8 codes and float32 scales of N_CENTROIDS
        # centroids) in arrays grown by doubling; with the rows of every replaced document it would hold 2,280 rows
        # in arrays of 4,096.
        row_bytes = 8 + N_CENTROIDS * (writer.dim or 0) + 4 * N_CENTROIDS
        assert 0 < writer.stats()["centroid_bytes"] <= 2 * (2 * 30 + 1024) * row_bytes
        assert writer.explain(_token_queries(writer), k=5)[1].centroids  # every candidate's live row is held
    finally:
        writer.close()


def test_centroids_of_documents_replaced_in_the_mutable_segment_are_dropped(tmp_path: Path) -> None:
    """Replacing documents that are still in the mutable segment (never sealed) frees their centroid rows too: the
    writer's table stays bounded by the live documents, as it does for sealed ones."""
    from colbert_adapters.backends.voyager._centroids import N_CENTROIDS

    ids, _ = _corpus(30, 16, seed=12)
    with VoyagerBackend(tmp_path / "index", mutable_max_tokens=10**6) as writer:
        for i in range(75):  # 2,250 replaced documents, none sealed
            writer.upsert(ids, _corpus(30, 16, seed=200 + i)[1])
        assert writer.stats()["segments"] == []
        row_bytes = 8 + N_CENTROIDS * 16 + 4 * N_CENTROIDS
        assert 0 < writer.stats()["centroid_bytes"] <= 2 * (2 * 30 + 1024) * row_bytes


def test_doc_centroids_bound_their_memory_for_long_documents(monkeypatch: pytest.MonkeyPatch) -> None:
    """Groups are cut by padded size: a long document among short ones is processed apart, and each document's
    centroids are those it gets alone."""
    from colbert_adapters.backends.voyager import _centroids

    rng = np.random.default_rng(8)
    docs = [unit_multivector(rng, n, 8) for n in (3, 5, 400, 7, 2)]
    alone = [_centroids.doc_centroids([d]) for d in docs]
    monkeypatch.setattr(_centroids, "CENTROID_GROUP_ENTRIES", 8 * 400)  # room for the long one alone
    shapes: list[tuple[int, ...]] = []
    real_zeros = np.zeros

    def spy_zeros(shape: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(shape, tuple) and len(shape) == 3 and shape[2] == 8 and kwargs.get("dtype") is np.float32:
            shapes.append(shape)
        return real_zeros(shape, *args, **kwargs)

    monkeypatch.setattr(_centroids.np, "zeros", spy_zeros)
    codes, scales = _centroids.doc_centroids(docs)
    monkeypatch.setattr(_centroids.np, "zeros", real_zeros)
    assert max(b * w * d for b, w, d in shapes) <= 8 * 400
    assert (1, 400, 8) in shapes
    for i, (c1, s1) in enumerate(alone):
        np.testing.assert_allclose(codes[i].astype(np.float32) * scales[i][:, None], c1[0] * s1[0][:, None], atol=0.02)


# ---------------------------------------------------------------------------------------------- background merges


def _hold(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> tuple[threading.Event, threading.Event]:
    """Patch ``module.name`` to stop at its start until ``gate`` is set; ``inside`` is set once it got there."""
    gate, inside = threading.Event(), threading.Event()
    real = getattr(module, name)

    def held(*args: Any, **kwargs: Any) -> Any:
        inside.set()
        assert gate.wait(60)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, held)
    return gate, inside


def test_writes_and_searches_go_on_while_a_background_merge_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fold runs on the worker thread: while it is held inside its build, writes return, deletes of documents it
    is merging are honoured, searches are exact; once it commits, the layout is folded and nothing was lost."""
    from colbert_adapters.backends.voyager import _background

    gate, inside = _hold(monkeypatch, _background, "prepare_merge")
    ids, vecs = _corpus(200, 16, seed=21)
    rng = np.random.default_rng(22)
    queries = [unit_multivector(rng, 4, 16) for _ in range(5)]
    opts: dict[str, Any] = {"mutable_max_tokens": 64, "max_segments": 2, "exact_below_tokens": 0, "n_rerank": 500}
    with VoyagerBackend(tmp_path / "index", k_token=256, ef_search=256, **opts) as backend:
        for start in range(0, 100, 20):  # several seals: more than max_segments, a fold is asked for
            backend.upsert(ids[start : start + 20], vecs[start : start + 20])
            deadline = time.monotonic() + 60
            while backend.stats()["mutable_tokens"] >= 64 and time.monotonic() < deadline:
                time.sleep(0.01)  # the sealer's turn (the merger is held, so wait_for_maintenance() would block)
        assert inside.wait(60)  # the worker is inside the merge's build, held
        backend.upsert(ids[100:], vecs[100:])  # returns although the merge cannot finish
        assert backend.delete(ids[:10]) == 10  # documents the held merge read
        assert backend.stats()["maintenance_pending"]
        oracle = MemoryBackend()  # the stored vectors, scored exactly
        oracle.upsert(ids[10:], [r.vectors for r in backend.get(ids[10:], with_vectors=True)])

        def exact() -> None:
            for q in queries:
                got, want = backend.search(q, k=5), oracle.search(q, k=5)
                assert [h.id for h in got] == [h.id for h in want]

        exact()
        gate.set()
        assert backend.wait_for_maintenance(timeout=60)
        stats = backend.stats()
        assert len(stats["segments"]) <= 2 and not stats["maintenance_pending"]
        assert any(e["kind"] == "fold" for e in stats["maintenance"])
        assert backend.count() == 190 and set(backend.ids()) == set(ids[10:])
        assert stats["n_live_tokens"] == sum(v.shape[0] for v in vecs[10:])
        exact()
    with VoyagerBackend(tmp_path / "index", read_only=True, k_token=256, ef_search=256, **opts) as reopened:
        assert reopened.count() == 190 and reopened.stats()["n_live_tokens"] == stats["n_live_tokens"]


def test_writes_never_wait_for_a_seal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sealer builds a full mutable segment's graph on its thread: while it is held inside the build, writes
    return, a document being sealed can be deleted or replaced, searches are exact; at its commit only the
    documents still there move into the new segment, and nothing is lost."""
    from colbert_adapters.backends.voyager import _background

    gate, inside = _hold(monkeypatch, _background, "prepare_seal")
    ids, vecs = _corpus(60, 16, seed=31)
    _, other = _corpus(60, 16, seed=32)
    rng = np.random.default_rng(33)
    queries = [unit_multivector(rng, 4, 16) for _ in range(5)]
    with VoyagerBackend(tmp_path / "index", mutable_max_tokens=64, exact_below_tokens=0, n_rerank=500) as backend:
        backend.upsert(ids[:40], vecs[:40])
        assert inside.wait(60)  # the sealer is inside its build, held
        backend.upsert(ids[40:], vecs[40:])  # returns although the seal cannot finish
        assert backend.delete(ids[:5]) == 5
        backend.upsert(ids[5:10], other[5:10])  # replaced while being sealed
        assert backend.stats()["segments"] == [] and backend.stats()["maintenance_pending"]
        live = {i: v for i, v in zip(ids, vecs, strict=True)} | dict(zip(ids[5:10], other[5:10], strict=True))
        for i in ids[:5]:
            del live[i]
        oracle = MemoryBackend()
        oracle.upsert(list(live), list(live.values()))

        def exact() -> None:
            for q in queries:
                assert [h.id for h in backend.search(q, k=5)] == [h.id for h in oracle.search(q, k=5)]

        exact()
        gate.set()
        assert backend.wait_for_maintenance(timeout=60)
        stats = backend.stats()
        assert stats["segments"] and backend.count() == 55
        assert stats["n_live_tokens"] == sum(v.shape[0] for v in live.values())
        exact()
    with VoyagerBackend(tmp_path / "index", read_only=True) as reopened:
        assert reopened.count() == 55
        for rec in reopened.get(list(live), with_vectors=True):
            np.testing.assert_allclose(rec.vectors, live[rec.id], atol=1e-3)


def test_a_failed_background_merge_keeps_the_index_and_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from colbert_adapters.backends.voyager import _background

    real = _background.prepare_merge

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_background, "prepare_merge", fail)
    ids, vecs = _corpus(100, 16, seed=23)
    with VoyagerBackend(tmp_path / "index", mutable_max_tokens=64, max_segments=2) as backend:
        for start in range(0, 100, 20):
            backend.upsert(ids[start : start + 20], vecs[start : start + 20])
            with contextlib.suppress(ColBERTError):
                backend.wait_for_maintenance(timeout=60)  # one seal per write: more segments than max_segments
        with pytest.raises(ColBERTError, match="No space left"):
            backend.wait_for_maintenance(timeout=60)
        assert backend.count() == 100 and len(backend.stats()["segments"]) > 2  # nothing lost, not merged
        monkeypatch.setattr(_background, "prepare_merge", real)
        backend.upsert(ids[:1], vecs[:1])  # the next write asks again
        assert backend.wait_for_maintenance(timeout=60)
        assert len(backend.stats()["segments"]) <= 2 and backend.count() == 100


def test_inline_maintenance_merges_within_the_write(tmp_path: Path) -> None:
    ids, vecs = _corpus(100, 16, seed=24)
    with VoyagerBackend(
        tmp_path / "index", mutable_max_tokens=64, max_segments=2, background_maintenance=False
    ) as backend:
        for start in range(0, 100, 20):
            backend.upsert(ids[start : start + 20], vecs[start : start + 20])
            assert len(backend.stats()["segments"]) <= 2 and not backend.stats()["maintenance_pending"]
        assert backend.wait_for_maintenance(timeout=0)


# ------------------------------------------------------------------------------------------------ metadata indexes


def test_metadata_indexes_answer_like_a_scan(tmp_path: Path) -> None:
    """Filters through the metadata indexes (SQLite expression indexes) return what the scan returns, for every
    operator and for list fields; the indexes are kept by the directory and maintained by writes and deletes."""
    rng = np.random.default_rng(7)
    metas: list[Any] = BackendContract._OPERATOR_METAS
    cases = BackendContract._OPERATOR_CASES
    ids = [f"n{i}" for i in range(len(metas))]
    vecs = [unit_multivector(rng, 4, 8) for _ in ids]
    keys = ["year", "lang", "tags", "author.name", "draft", "score", "title"]
    with pytest.raises(InvalidInputError, match="metadata index key"):
        VoyagerBackend(tmp_path / "bad", metadata_indexes=["a[0]"])
    # exact_below_tokens=0: sealed documents are searched through the graph and filtered by filtered_seqs
    with (
        VoyagerBackend(tmp_path / "plain", exact_below_tokens=0, background_maintenance=False) as plain,
        VoyagerBackend(
            tmp_path / "idx", metadata_indexes=keys, exact_below_tokens=0, background_maintenance=False
        ) as indexed,
    ):
        assert indexed.metadata_indexes == sorted(keys) and plain.metadata_indexes == []
        for b in (plain, indexed):
            b.upsert(ids, vecs, metadatas=metas)
            b.compact()  # seal everything
        q = unit_multivector(rng, 3, 8)
        for flt, want in cases:
            got = {h.id for h in indexed.search(q, k=len(ids), filter=flt)}
            assert got == {f"n{i}" for i in want} == {h.id for h in plain.search(q, k=len(ids), filter=flt)}, flt
        assert indexed.delete_where({"year": {"$gte": 2021}}) == 4
        indexed.upsert(["late"], [vecs[0]], metadatas=[{"year": 2030, "tags": ["ir"]}])
        indexed.compact()
        assert {h.id for h in indexed.search(q, k=9, filter={"year": {"$gt": 2020}})} == {"late"}
        assert {h.id for h in indexed.search(q, k=9, filter={"tags": "ir"})} == {"n0", "late"}
    with VoyagerBackend(tmp_path / "idx", read_only=True) as reopened:
        assert reopened.metadata_indexes == sorted(keys)
        assert {h.id for h in reopened.search(q, k=9, filter={"tags": {"$in": ["ir", "nlp"]}})} == {"n0", "n3", "late"}
        with pytest.raises(ColBERTError, match="read-only"):
            reopened.create_metadata_index("lang2")
    with VoyagerBackend(tmp_path / "idx") as writer:
        writer.create_metadata_index("lang2")
        assert "lang2" in writer.metadata_indexes
