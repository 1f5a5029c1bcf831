"""First-stage layouts of the Qdrant backend (``QdrantCollectionConfig.first_stage``) on Edge and local mode.

The hard set: documents that each mix several topics, with token vectors in a narrow cone (mean cosine near 0.9,
as with modern ColBERT models). A mean vector per document cannot stand for several topics; per-document
centroids can. Recall@10 is measured against the exact :class:`MemoryBackend` oracle.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("qdrant_client")
pytest.importorskip("qdrant_edge")

from colbert_adapters.backends.memory import MemoryBackend
from colbert_adapters.backends.qdrant import QdrantBackend, QdrantCollectionConfig, copy_collection
from colbert_adapters.errors import CollectionConfigError, InvalidInputError

DIM = 32
LAYOUTS = ["centroids", "mean", "centred-mean", "muvera", "tokens"]
LEGACY_EDGE = Path(__file__).resolve().parent / "fixtures" / "legacy_indexes" / "b219739" / "edge"


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def hard_set(
    n_docs: int = 300, tokens: int = 32, n_topics: int = 150, per_doc: int = 4, n_queries: int = 20, seed: int = 3
) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    """Mixed-topic documents in a narrow cone: ``unit(0.95 * axis + 0.32 * unit(topic + noise))``."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng.standard_normal((n_topics, DIM - 1)))
    topics = rng.integers(n_topics, size=(n_docs, per_doc))
    noise = 0.6 / np.sqrt(DIM)

    def lift(t: np.ndarray) -> np.ndarray:
        out = np.empty((t.shape[0], DIM), dtype=np.float32)
        out[:, 0] = np.sqrt(0.9)
        out[:, 1:] = np.sqrt(0.1) * _unit(t)
        return out

    def draw(doc: int, n: int) -> np.ndarray:
        picked = centres[topics[doc][rng.integers(per_doc, size=n)]]
        return lift(picked + noise * rng.standard_normal((n, DIM - 1)))

    docs = [draw(d, tokens) for d in range(n_docs)]
    queries = [draw(int(rng.integers(n_docs)), 8) for _ in range(n_queries)]
    return [f"d{i}" for i in range(n_docs)], docs, queries


@pytest.fixture(scope="module")
def hard() -> tuple[list[str], list[np.ndarray], list[np.ndarray], list[set[str]]]:
    ids, docs, queries = hard_set()
    oracle = MemoryBackend(dim=DIM)
    oracle.upsert(ids, docs)
    truth = [{h.id for h in oracle.search(q, k=10)} for q in queries]
    return ids, docs, queries, truth


def _open(engine: str, tmp_path: Path, **config: Any) -> QdrantBackend:
    cfg = QdrantCollectionConfig(dim=DIM, **config)
    if engine == "edge":
        return QdrantBackend.edge(tmp_path / "edge", config=cfg)
    return QdrantBackend.local(":memory:", config=cfg)


def _recall(backend: QdrantBackend, queries: list[np.ndarray], truth: list[set[str]], prefetch: int) -> float:
    got = [{h.id for h in backend.search(q, k=10, prefetch_limit=prefetch)} for q in queries]
    return float(np.mean([len(g & t) / 10 for g, t in zip(got, truth, strict=True)]))


def test_the_hard_set_is_a_narrow_cone(hard: Any) -> None:
    flat = np.concatenate(hard[1])
    assert float(np.mean(flat[:2000] @ flat[:2000].T)) > 0.85


@pytest.mark.parametrize("engine", ["edge", "local"])
def test_default_layout_keeps_recall_where_the_mean_layout_fails(engine: str, hard: Any, tmp_path: Path) -> None:
    ids, docs, queries, truth = hard
    recalls = {}
    for first_stage in (None, "mean"):
        with _open(engine, tmp_path / str(first_stage), first_stage=first_stage) as backend:
            backend.upsert(ids, docs)
            assert backend.config is not None
            recalls[backend.config.first_stage] = _recall(backend, queries, truth, prefetch=20)
    assert set(recalls) == {"centroids", "mean"}  # None is the default: centroids
    assert recalls["centroids"] >= 0.95, recalls
    assert recalls["mean"] <= 0.8, recalls


@pytest.mark.parametrize("engine", ["edge", "local"])
@pytest.mark.parametrize("first_stage", LAYOUTS)
def test_every_layout_is_exact_when_the_prefetch_covers_the_corpus(
    first_stage: str, engine: str, hard: Any, tmp_path: Path
) -> None:
    ids, docs, queries, _ = hard
    n = 60  # the tokens layout builds an HNSW over every token: keep it small
    oracle = MemoryBackend(dim=DIM)
    oracle.upsert(ids[:n], docs[:n])
    with _open(engine, tmp_path, first_stage=first_stage, datatype="float32") as backend:
        backend.upsert(ids[:n], docs[:n])
        backend.optimize()
        for q in queries[:5]:
            want = oracle.search(q, k=5)
            got = backend.search(q, k=5, prefetch_limit=n)
            assert [h.id for h in got] == [h.id for h in want]
            np.testing.assert_allclose([h.score for h in got], [h.score for h in want], atol=1e-4)


@pytest.mark.parametrize("first_stage", LAYOUTS)
def test_reopened_collection_knows_its_layout(first_stage: str, hard: Any, tmp_path: Path) -> None:
    ids, docs, queries, _ = hard
    with _open("edge", tmp_path, first_stage=first_stage, n_centroids=3) as backend:
        backend.upsert(ids[:50], docs[:50])
        before = [[(h.id, h.score) for h in backend.search(q, k=5, prefetch_limit=10)] for q in queries[:5]]
    with QdrantBackend.edge(tmp_path / "edge") as reopened:  # no config: the recorded layout
        assert reopened.config is not None
        assert (reopened.config.first_stage, reopened.config.n_centroids) == (first_stage, 3)
        after = [[(h.id, h.score) for h in reopened.search(q, k=5, prefetch_limit=10)] for q in queries[:5]]
        assert after == before
        reopened.upsert(ids[50:60], docs[50:60])  # writes keep the layout (and a centred layout its centre)
        assert reopened.search(docs[55], k=1, prefetch_limit=10)[0].id == ids[55]


def test_centred_layouts_record_the_centre_of_the_first_write(hard: Any) -> None:
    from qdrant_client import QdrantClient

    ids, docs, queries, _ = hard
    client = QdrantClient(":memory:")
    a = QdrantBackend.from_client(client, config=QdrantCollectionConfig(dim=DIM, first_stage="centred-mean"))
    assert a.search(queries[0], k=3) == []  # nothing written, no centre yet
    a.upsert(ids[:40], docs[:40])
    b = QdrantBackend.from_client(client)  # the same collection, opened again
    assert b.config is not None and b.config.first_stage == "centred-mean"
    assert [h.id for h in b.search(queries[0], k=5, prefetch_limit=8)] == [
        h.id for h in a.search(queries[0], k=5, prefetch_limit=8)
    ]


def test_opening_with_another_first_stage_is_refused_with_the_fix(tmp_path: Path) -> None:
    with _open("edge", tmp_path, first_stage="centroids") as backend:
        backend.upsert(["a"], [np.eye(2, DIM, dtype=np.float32)])
    with pytest.raises(CollectionConfigError, match=r"first_stage='centroids'.*recreate=True"):
        QdrantBackend.edge(tmp_path / "edge", config=QdrantCollectionConfig(dim=DIM, first_stage="mean"))
    # recreate=True builds the requested layout (and drops the documents).
    with QdrantBackend.edge(
        tmp_path / "edge", config=QdrantCollectionConfig(dim=DIM, first_stage="mean"), recreate=True
    ) as backend:
        assert backend.config is not None and backend.config.first_stage == "mean"
        assert backend.count() == 0


def test_a_collection_whose_vectors_do_not_hold_the_recorded_layout_is_refused() -> None:
    from qdrant_client import QdrantClient, models

    client = QdrantClient(":memory:")
    client.create_collection(
        "docs",
        vectors_config={
            "colbert": models.VectorParams(
                size=DIM,
                distance=models.Distance.DOT,
                multivector_config=models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM),
            ),
            "summary": models.VectorParams(size=DIM, distance=models.Distance.COSINE),
        },
        metadata={"colbert_adapters": {"version": 1, "config": {"dim": DIM, "first_stage": "centroids"}}},
    )
    with pytest.raises(CollectionConfigError, match=r"first-stage vector 'summary' of the 'centroids' layout"):
        QdrantBackend.from_client(client, collection_name="docs")


def test_a_legacy_collection_opens_as_the_mean_layout(tmp_path: Path) -> None:
    shutil.copytree(LEGACY_EDGE, tmp_path / "edge")
    with QdrantBackend.edge(tmp_path / "edge") as backend:
        assert backend.config is not None
        assert (backend.config.first_stage, backend.config.datatype) == ("mean", "float32")
        n = backend.count()
        assert n > 0
        some = backend.get(backend.ids()[:1], with_vectors=True)[0]
        assert some.vectors is not None
        assert backend.search(some.vectors, k=1)[0].id == some.id


def test_copy_migrates_a_legacy_collection_to_the_default_layout(tmp_path: Path) -> None:
    shutil.copytree(LEGACY_EDGE, tmp_path / "edge")
    with QdrantBackend.edge(tmp_path / "edge") as source:
        assert source.config is not None
        target = QdrantBackend.local(":memory:", config=QdrantCollectionConfig(dim=source.config.dim))
        assert copy_collection(source, target) == source.count()
        assert target.config is not None and target.config.first_stage == "centroids"
        for rec in source.get(source.ids()[:3], with_vectors=True):
            assert rec.vectors is not None
            assert target.search(rec.vectors, k=1, prefetch_limit=5)[0].id == rec.id


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"first_stage": "pq"}, "first_stage must be one of"),
        ({"n_centroids": 0}, r"n_centroids must be an int in \[1, 256\]"),
        ({"n_centroids": True}, "n_centroids"),
        ({"datatype": "int4"}, "datatype must be one of"),
        ({"summary_datatype": "turbo8"}, "summary_datatype"),
        ({"summary_quantization": "pq"}, "summary_quantization must be None, 'int8' or 'binary'"),
        ({"datatype": "turbo8", "quantization": "int8"}, "already quantized"),
        ({"dim": 8192, "n_centroids": 128}, "cap of 1048576 per multivector"),
    ],
)
def test_bad_layout_options_are_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        QdrantCollectionConfig(**{"dim": DIM, **kwargs})


@pytest.mark.parametrize(
    "options",
    [{"datatype": "turbo8"}, {"quantization": "int8"}, {"summary_quantization": "binary"}, {"on_disk": True}],
)
def test_storage_options_search_on_edge(options: dict[str, Any], hard: Any, tmp_path: Path) -> None:
    ids, docs, _, _ = hard
    with _open("edge", tmp_path, **options) as backend:
        backend.upsert(ids[:80], docs[:80])
        backend.optimize()
        for i in (0, 41, 79):
            assert backend.search(docs[i], k=1, prefetch_limit=20)[0].id == ids[i]
    with QdrantBackend.edge(tmp_path / "edge") as reopened:
        assert reopened.config is not None
        assert {k: getattr(reopened.config, k) for k in options} == options


def test_cli_setup_creates_the_default_layout_and_copy_migrates(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import json

    from colbert_adapters.cli import main

    assert main(["qdrant", "setup", str(tmp_path / "new"), "--dim", str(DIM)]) == 0
    created = json.loads(capsys.readouterr().out)
    assert (created["config"]["first_stage"], created["config"]["datatype"]) == ("centroids", "float16")
    assert main(["qdrant", "setup", str(tmp_path / "old"), "--dim", str(DIM), "--first-stage", "mean"]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["first_stage"] == "mean"
    # A legacy collection copied with --first-stage gets the new layout, its first-stage vectors recomputed.
    shutil.copytree(LEGACY_EDGE, tmp_path / "legacy")
    code = main(["qdrant", "copy", str(tmp_path / "legacy"), str(tmp_path / "migrated"), "--first-stage", "centroids"])
    assert code == 0
    capsys.readouterr()
    with QdrantBackend.edge(tmp_path / "legacy") as old, QdrantBackend.edge(tmp_path / "migrated") as new:
        assert old.config is not None and new.config is not None
        assert (old.config.first_stage, new.config.first_stage) == ("mean", "centroids")
        assert new.count() == old.count()
        for rec in old.get(old.ids()[:3], with_vectors=True):
            assert rec.vectors is not None
            assert new.search(rec.vectors, k=1)[0].id == rec.id
