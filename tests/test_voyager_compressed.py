"""The compressed Voyager store (``compression="2bit"`` / ``"4bit"``): recall against the exact oracle on a hard
set, writes after the codec is trained, codebook growth, conversion of older indexes, damage, bad input.

The shared contract runs on both modes in ``test_voyager_backend.py``; the codec's own properties are in
``test_residual_codec.py``; kill -9 durability in ``test_crash.py``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("voyager")

from colbert_adapters.backends.memory import MemoryBackend
from colbert_adapters.backends.voyager import VoyagerBackend
from colbert_adapters.cli import main
from colbert_adapters.errors import CollectionConfigError, InvalidInputError

DIM = 64
LEGACY = Path(__file__).resolve().parent / "fixtures" / "legacy_indexes"


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _hard_set(
    seed: int = 0, n_docs: int = 400, n_topics: int = 100, cone: float = 1.2
) -> tuple[list[str], list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Mixed-topic documents in a narrow cone: every token is a noisy copy of one of its document's 4 topics, and
    topics and queries share one dominant direction (mean cosine of the tokens about 0.6), so that documents
    differ by small angles."""
    rng = np.random.default_rng(seed)
    axis = _unit(rng.standard_normal(DIM))
    topics = _unit(cone * axis + rng.standard_normal((n_topics, DIM)) / np.sqrt(DIM))
    doc_topics = rng.integers(n_topics, size=(n_docs, 4))
    docs = []
    for d in range(n_docs):
        n = int(rng.integers(20, 50))
        centre = topics[doc_topics[d][rng.integers(4, size=n)]]
        docs.append(_unit(centre + 0.7 * rng.standard_normal((n, DIM)) / np.sqrt(DIM)))
    queries = []
    for t in rng.integers(n_docs, size=20):
        centre = topics[doc_topics[t][rng.integers(4, size=16)]]
        queries.append(_unit(centre + 0.7 * rng.standard_normal((16, DIM)) / np.sqrt(DIM)))
    return [f"d{i}" for i in range(n_docs)], docs, queries, axis


def _recall(backend: Any, oracle: MemoryBackend, queries: list[np.ndarray], k: int = 10) -> float:
    got = [{h.id for h in backend.search(q, k=k)} for q in queries]
    want = [{h.id for h in oracle.search(q, k=k)} for q in queries]
    return float(np.mean([len(g & w) / k for g, w in zip(got, want, strict=True)]))


@pytest.fixture(scope="module")
def hard() -> tuple[list[str], list[np.ndarray], list[np.ndarray], MemoryBackend]:
    ids, docs, queries, _ = _hard_set()
    oracle = MemoryBackend(dim=DIM)
    oracle.upsert(ids, docs)
    return ids, docs, queries, oracle


@pytest.mark.parametrize(("compression", "min_recall"), [("2bit", 0.8), ("4bit", 0.9)])
def test_recall_against_exact_maxsim_at_default_settings(
    hard: Any, tmp_path: Path, compression: str, min_recall: float
) -> None:
    ids, docs, queries, oracle = hard
    flat = np.concatenate(docs)
    assert float((flat @ _unit(flat.mean(axis=0))).mean()) > 0.5  # the narrow cone this set is about
    with VoyagerBackend(tmp_path / "index", dim=DIM, compression=compression) as backend:
        backend.upsert(ids, docs)
        backend.compact()  # seal everything: the codec is trained on all of it
        stats = backend.stats()
        assert stats["mutable_tokens"] == 0 and stats["compressed"]["tokens"] == flat.shape[0]
        recall = _recall(backend, oracle, queries)
    assert recall >= min_recall, recall


def test_stats_report_bytes_and_codec(hard: Any, tmp_path: Path) -> None:
    ids, docs, _, _ = hard
    sizes = {}
    for compression in ("2bit", "4bit", "int14"):
        with VoyagerBackend(tmp_path / compression, dim=DIM, compression=compression) as backend:
            backend.upsert(ids, docs, texts=["t"] * len(ids))
            backend.compact()
            stats = backend.stats()
            sizes[compression] = stats["disk_bytes"]
            assert stats["compression"] == compression
            if compression != "int14":
                c = stats["compressed"]
                assert c["nbits"] == int(compression[0])
                assert 16 <= c["n_centroids"] <= sum(d.shape[0] for d in docs) // 8
                assert c["tokens"] == stats["n_live_tokens"]
    assert sizes["2bit"] < sizes["4bit"] < sizes["int14"] / 2


def test_writes_after_training_are_encoded_searched_and_deleted(tmp_path: Path) -> None:
    ids, docs, queries, _ = _hard_set(seed=1, n_docs=200)
    backend = VoyagerBackend(tmp_path / "index", dim=DIM, compression="4bit", train_tokens=2000, mutable_max_tokens=500)
    try:
        backend.upsert(ids[:100], docs[:100], metadatas=[{"i": i} for i in range(100)])
        backend.wait_for_maintenance()
        assert backend.stats()["compressed"]["n_centroids"] > 0  # trained on the first 2,000+ tokens
        for start in range(100, 200, 20):  # later writes: encoded against the codec by the sealer
            backend.upsert(
                ids[start : start + 20],
                docs[start : start + 20],
                metadatas=[{"i": i} for i in range(start, start + 20)],
            )
        backend.wait_for_maintenance()
        stats = backend.stats()
        assert stats["compressed"]["tokens"] + stats["mutable_tokens"] == sum(d.shape[0] for d in docs)
        assert stats["compressed"]["seal_errors"] and max(stats["compressed"]["seal_errors"]) < 2.0
        # Deleted and replaced documents disappear from the compressed segments' results at once.
        target = docs[150]
        assert backend.search(target, k=1)[0].id == "d150"
        backend.delete(["d150"])
        assert "d150" not in {h.id for h in backend.search(target, k=10)}
        backend.upsert(["d151"], [docs[7]], metadatas=[{"i": -1}])
        hit = backend.search(docs[7], k=2)
        assert {h.id for h in hit} == {"d7", "d151"}
        assert backend.get(["d151"])[0].metadata == {"i": -1}
        # A selective filter over sealed documents returns k hits, scored as decompressed.
        got = backend.search(queries[0], k=5, filter={"i": {"$lt": 10}})
        assert len(got) == 5 and all(h.metadata["i"] < 10 for h in got)
        rec = backend.get(["d3"], with_vectors=True)[0]
        assert rec.vectors is not None and rec.vectors.shape == docs[3].shape
        assert float(np.abs(rec.vectors - docs[3]).max()) < 0.15
        assert backend.count() == 199
    finally:
        backend.close()
    # Reopened, and read by a second (read-only) process-like instance: the same answers.
    with VoyagerBackend(tmp_path / "index") as again, VoyagerBackend(tmp_path / "index", read_only=True) as reader:
        assert again.count() == reader.count() == 199
        assert [h.id for h in again.search(queries[1], k=5)] == [h.id for h in reader.search(queries[1], k=5)]
        assert again.verify().ok


def test_clear_removes_compressed_segments_and_keeps_the_codec(tmp_path: Path) -> None:
    ids, docs, _, _ = _hard_set(seed=6, n_docs=80)
    with VoyagerBackend(tmp_path / "index", dim=DIM, compression="2bit") as backend:
        backend.upsert(ids, docs)
        backend.compact()
        n_centroids = backend.stats()["compressed"]["n_centroids"]
        backend.clear()
        assert backend.count() == 0 and backend.search(docs[0], k=3) == []
        assert not list((tmp_path / "index").glob("seg-*"))
        backend.upsert(ids[:40], docs[:40])
        backend.compact()  # encoded against the codec the index kept
        assert backend.stats()["compressed"]["n_centroids"] == n_centroids
        assert backend.search(docs[3], k=1)[0].id == "d3"


def test_new_topics_grow_the_codebook(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    ids, docs, _, axis = _hard_set(seed=2, n_docs=150)
    with VoyagerBackend(tmp_path / "index", dim=DIM, compression="2bit", background_maintenance=False) as backend:
        backend.upsert(ids, docs)
        backend.compact()
        before = backend.stats()["compressed"]["n_centroids"]
        # Documents on the far side of the cone: every token is far from every trained centroid.
        far = [_unit(-axis + 0.3 * rng.standard_normal((30, DIM)) / np.sqrt(DIM)) for _ in range(40)]
        backend.upsert([f"far{i}" for i in range(40)], far)
        backend.compact()
        stats = backend.stats()["compressed"]
        assert stats["n_centroids"] > before
        assert stats["seal_errors"][-1] < 2.0  # the grown codebook encodes them as well as the training set
        assert backend.search(far[5], k=1)[0].id == "far5"
        assert backend.search(docs[5], k=1)[0].id == "d5"  # old codes still decode against the grown codebook


def test_convert_a_legacy_index(tmp_path: Path) -> None:
    generation = sorted(p for p in LEGACY.iterdir() if (p / "expected.json").is_file())[-1]
    shutil.copytree(generation / "voyager", tmp_path / "index")
    with VoyagerBackend(tmp_path / "index", read_only=True) as old:
        ids = old.ids()
        records = old.get(ids, with_vectors=True)
        before = old.stats()["disk_bytes"]
        assert old.stats()["compression"] == "int14"
    oracle = MemoryBackend(dim=records[0].vectors.shape[1])
    oracle.upsert(ids, [r.vectors for r in records])
    with pytest.raises(CollectionConfigError, match=r"compact\(compression='4bit'\)"):
        VoyagerBackend(tmp_path / "index", compression="4bit")
    with VoyagerBackend(tmp_path / "index") as backend:
        backend.compact(compression="4bit")
        stats = backend.stats()
        assert stats["compression"] == "4bit" and stats["n_live_tokens"] == sum(len(r.vectors) for r in records)
        assert [(r.id, r.text, r.metadata) for r in backend.get(ids)] == [(r.id, r.text, r.metadata) for r in records]
        assert stats["disk_bytes"] < before
    with VoyagerBackend(tmp_path / "index", compression="4bit", read_only=True) as backend:
        assert not [p for p in (tmp_path / "index").iterdir() if p.name.endswith(".voyager")]  # old graphs gone
        queries = [r.vectors[:4] for r in records[:10]]
        assert _recall(backend, oracle, queries, k=3) >= 0.8
        assert backend.verify().ok


def test_cli_compact_converts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ids, docs, _, _ = _hard_set(seed=4, n_docs=60)
    with VoyagerBackend(tmp_path / "index", dim=DIM) as backend:
        backend.upsert(ids, docs)
    assert main(["compact", str(tmp_path / "index"), "--compression", "2bit"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["before"]["compression"] == "int14" and out["after"]["compression"] == "2bit"
    assert out["after"]["disk_bytes"] < out["before"]["disk_bytes"]
    with VoyagerBackend(tmp_path / "index") as backend:
        assert backend.stats()["compression"] == "2bit"
        assert backend.search(docs[0], k=1)[0].id == "d0"


def test_damaged_compressed_segment_is_reported(tmp_path: Path) -> None:
    ids, docs, _, _ = _hard_set(seed=5, n_docs=60)
    with VoyagerBackend(tmp_path / "index", dim=DIM, compression="2bit") as backend:
        backend.upsert(ids, docs)
        backend.compact()
        seg = tmp_path / "index" / backend.stats()["segments"][0]["file"]
    data = bytearray((seg / "residuals.npy").read_bytes())
    data[-1] ^= 0xFF
    (seg / "residuals.npy").write_bytes(bytes(data))
    with VoyagerBackend(tmp_path / "index", read_only=True) as backend:
        report = backend.verify()
    assert not report.ok and any("does not match its checksum" in p for p in report.problems)


def test_bad_compression_arguments(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="compression must be one of"):
        VoyagerBackend(tmp_path / "a", dim=8, compression="3bit")
    with pytest.raises(InvalidInputError, match="disagree"):
        VoyagerBackend(tmp_path / "a", dim=8, compression="int8", vector_dtype="int14")
    with pytest.raises(InvalidInputError, match="leave vector_dtype out"):
        VoyagerBackend(tmp_path / "a", dim=8, compression="2bit", vector_dtype="int8")
    with pytest.raises(InvalidInputError, match="dim must be a multiple of 4"):
        VoyagerBackend(tmp_path / "b", dim=6, compression="2bit")
    with (
        VoyagerBackend(tmp_path / "c", compression="4bit") as backend,
        pytest.raises(InvalidInputError, match="dim must be a multiple of 2"),
    ):
        backend.upsert(["x"], [np.ones((2, 7), dtype=np.float32)])
    with VoyagerBackend(tmp_path / "d", dim=8, compression="2bit") as backend:
        backend.upsert(["x"], [_unit(np.ones((2, 8)))])
        with pytest.raises(InvalidInputError, match="converts a vector store"):
            backend.compact(compression="4bit")
    with pytest.raises(CollectionConfigError, match="compression '2bit'"):
        VoyagerBackend(tmp_path / "d", compression="int14")
    with pytest.raises(CollectionConfigError, match=r"compact\(compression='2bit'\)"):
        VoyagerBackend(tmp_path / "e", dim=8).close()
        VoyagerBackend(tmp_path / "e", compression="2bit")
