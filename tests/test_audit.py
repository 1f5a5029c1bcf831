"""The recall audit (evaluation.audit and ``colbert-adapters audit``) on every backend, with hard synthetic vectors.

The corpus is hard for approximate search on purpose: every token lies in a narrow cone (all pairwise cosines
high, so the nearest neighbours are close calls) and every document mixes three of the cone's topics.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from colbert_adapters.backends import MemoryBackend
from colbert_adapters.cli import main
from colbert_adapters.errors import InvalidInputError
from colbert_adapters.evaluation import AuditReport, audit
from colbert_adapters.store import MultiVectorStore
from colbert_adapters.testing import FakeEncoder

DIM = 32


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def hard_corpus(n_docs: int = 600, n_tokens: int = 16, seed: int = 0) -> tuple[list[str], list[np.ndarray]]:
    """Documents mixing 3 of 24 topics that all lie within a narrow cone around one axis."""
    rng = np.random.default_rng(seed)
    axis = _unit(rng.standard_normal(DIM))
    topics = _unit(axis + 0.35 * _unit(rng.standard_normal((24, DIM))))
    docs = []
    for _ in range(n_docs):
        mix = topics[rng.choice(24, size=3, replace=False)][rng.integers(0, 3, size=n_tokens)]
        docs.append(_unit(mix + 0.25 / np.sqrt(DIM) * rng.standard_normal((n_tokens, DIM))))
    return [f"doc{i}" for i in range(n_docs)], docs


def exact_recall(ids: list[str], docs: list[np.ndarray], backend: Any, queries: list[np.ndarray], k: int) -> float:
    """Mean recall@k of ``backend`` against a MemoryBackend holding the same vectors (exact scores, no ties)."""
    oracle = MemoryBackend(dim=DIM)
    oracle.upsert(ids, docs)
    per_query = []
    for q in queries:
        want = {h.id for h in oracle.search(q, k=k)}
        per_query.append(len(want & {h.id for h in backend.search(q, k=k)}) / k)
    return float(np.mean(per_query))


def _check_report(report: AuditReport, k: int) -> None:
    assert report.k == k and report.results[0].current and report.results[0].label == "current"
    assert sum(r.current for r in report.results) == 1
    for r in report.results:
        assert 0.0 <= r.worst_recall <= r.recall <= 1.0
        assert 0.0 < r.p50_ms <= r.p95_ms
        assert r.reaches_target == (r.recall >= report.target_recall)
    data = json.loads(json.dumps(report.to_json()))
    assert data["results"][0]["recall"] == report.current.recall
    assert "recall@" in report.table()


def test_memory_backend_is_exact() -> None:
    ids, docs = hard_corpus(300)
    backend = MemoryBackend(dim=DIM)
    backend.upsert(ids, docs)
    report = audit(backend, k=10, n_queries=20, show_progress=False)
    _check_report(report, 10)
    assert report.exact and report.backend == "memory" and report.n_docs == 300 and report.n_queries == 20
    assert [r.recall for r in report.results] == [1.0]
    assert report.suggestion is report.current
    assert any("exactly" in n for n in report.notes)
    assert "32 tokens of a random stored document" in report.queries
    assert audit(backend, k=500, n_queries=3, show_progress=False).current.recall == 1.0  # k beyond the documents
    with pytest.raises(InvalidInputError, match="accepted: none"):
        audit(backend, settings=[{"k_token": 4}])


def test_voyager_starved_setting_loses_recall_and_a_larger_one_is_suggested(tmp_path: Path) -> None:
    pytest.importorskip("voyager")
    from colbert_adapters.backends.voyager import VoyagerBackend

    ids, docs = hard_corpus()
    with VoyagerBackend(
        tmp_path / "v", dim=DIM, k_token=1, ef_search=1, exact_below_tokens=0, background_maintenance=False
    ) as backend:
        backend.upsert(ids, docs)
        backend.compact()  # every document in a graph (none left in the exactly searched mutable segment)
        report = audit(backend, k=10, n_queries=30, show_progress=False)
        _check_report(report, 10)
        assert report.backend == "voyager" and not report.exact
        assert report.current_setting == {"k_token": 1, "ef_search": 1, "n_rerank": 96, "exact_below_tokens": 0}
        assert report.current.recall < 0.9
        assert report.suggestion is not None and not report.suggestion.current
        assert report.suggestion.setting["k_token"] > 1 and report.suggestion.recall >= 0.95
        assert backend.k_token == 1 and backend.ef_search == 1  # restored after the audit

        # Given query vectors: the audit's recall is the recall against an exact oracle.
        rng = np.random.default_rng(1)
        queries = [docs[i][rng.choice(16, 8, replace=False)] for i in rng.choice(len(docs), 15, replace=False)]
        given = audit(backend, queries, k=10, settings=[{"k_token": 64}], show_progress=False)
        assert given.queries == "given query vectors" and len(given.results) == 2
        assert given.results[1].label == "k_token=64"
        assert given.current.recall == pytest.approx(exact_recall(ids, docs, backend, queries, 10))
        backend.k_token, backend.ef_search = 64, 64
        assert given.results[1].recall == pytest.approx(exact_recall(ids, docs, backend, queries, 10))


@pytest.mark.voyager_default_exact
def test_voyager_small_index_scans_and_shows_the_graph(tmp_path: Path) -> None:
    pytest.importorskip("voyager")
    from colbert_adapters.backends.voyager import VoyagerBackend

    ids, docs = hard_corpus(200)
    with VoyagerBackend(tmp_path / "v", dim=DIM, background_maintenance=False) as backend:
        backend.upsert(ids, docs)
        backend.compact()
        report = audit(backend, k=5, n_queries=10, show_progress=False)
    _check_report(report, 5)
    assert report.current.recall == 1.0
    assert any("exact_below_tokens" in n for n in report.notes)
    assert all(r.setting.get("exact_below_tokens") == 0 for r in report.results[1:])


def test_qdrant_edge_starved_prefetch_loses_recall(tmp_path: Path) -> None:
    pytest.importorskip("qdrant_edge")
    from colbert_adapters.backends.qdrant import QdrantBackend

    ids, docs = hard_corpus()
    with QdrantBackend.edge(tmp_path / "edge", dim=DIM, prefetch_limit=11) as backend:
        backend.upsert(ids, docs)
        backend.optimize()
        report = audit(backend, k=10, n_queries=30, show_progress=False)
        _check_report(report, 10)
        assert report.backend == "qdrant-edge" and not report.exact
        assert report.current_setting == {"mode": "two_stage", "prefetch_limit": 11}
        assert report.current.recall < 0.9
        exact_row = next(r for r in report.results if r.setting == {"mode": "exact"})
        assert exact_row.recall == 1.0
        suggestion = report.suggestion
        assert suggestion is not None and not suggestion.current and suggestion.recall >= 0.95
        assert suggestion.setting.get("mode") == "exact" or suggestion.setting["prefetch_limit"] > 11
        assert backend.prefetch_limit == 11

        only = audit(backend, k=10, n_queries=5, settings=[], show_progress=False)
        assert len(only.results) == 1
        with pytest.raises(InvalidInputError, match="prefetch_limit, mode"):
            audit(backend, settings=[{"k_token": 4}])
        with pytest.raises(InvalidInputError, match="two_stage"):
            audit(backend, settings=[{"mode": "fast"}])


def test_query_texts_need_an_encoder_and_a_store_brings_one() -> None:
    encoder = FakeEncoder(dim=16)
    with MultiVectorStore(encoder) as store:
        store.add([f"text number {i} about topic {i % 7}" for i in range(40)], ids=[f"t{i}" for i in range(40)])
        report = audit(store, ["topic 3", "number 12"], k=5, show_progress=False)
        assert report.queries == "given query texts" and report.n_queries == 2 and report.current.recall == 1.0
        with pytest.raises(InvalidInputError, match="need an encoder"):
            audit(store.backend, ["topic 3"])
        with pytest.raises(InvalidInputError, match="mixes texts and vectors"):
            audit(store, ["topic 3", np.ones((2, 16), dtype=np.float32)])
        with pytest.raises(InvalidInputError, match="list of query texts"):
            audit(store, "topic 3")  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match="blank"):
            audit(store, ["  "])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k": 0}, "k must be"),
        ({"n_queries": 0}, "n_queries"),
        ({"target_recall": 1.5}, "target_recall"),
        ({"query_tokens": 0}, "query_tokens"),
        ({"settings": {"k_token": 4}}, "list of dicts"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, Any], match: str) -> None:
    backend = MemoryBackend(dim=DIM)
    backend.upsert(["a"], [np.ones((2, DIM), dtype=np.float32)])
    with pytest.raises(InvalidInputError, match=match):
        audit(backend, **kwargs)


def test_an_empty_backend_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="no documents"):
        audit(MemoryBackend(dim=DIM))


# ------------------------------------------------------------------------------------------------ CLI


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("backend", ["voyager", "qdrant-edge"])
def test_cli_audits_an_index_directory(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny_checkpoint: Path, backend: str
) -> None:
    pytest.importorskip("voyager" if backend == "voyager" else "qdrant_edge")
    src = tmp_path / "docs.jsonl"
    words = ["cats purr", "dogs bark", "rockets fly", "fish swim", "birds sing", "trees grow"]
    with open(src, "w", encoding="utf-8") as f:
        for i in range(30):
            f.write(json.dumps({"id": f"d{i}", "text": f"{words[i % 6]} and {words[(i * 5) % 6]} number {i}"}) + "\n")
    idx = tmp_path / "idx"
    model = str(tiny_checkpoint)
    code, _, err = _run(capsys, "index", str(src), str(idx), "--model", model, "--backend", backend, "-q")
    assert code == 0, err

    code, out, err = _run(capsys, "audit", str(idx), "-k", "3", "--n-queries", "8", "--json", "-q")
    assert code == 0, err
    data = json.loads(out)
    assert data["k"] == 3 and data["n_queries"] == 8 and data["n_docs"] == 30
    # 30 documents: Voyager holds them in its exactly searched mutable segment, Qdrant prefetches all of them.
    assert data["results"][0]["current"] and data["results"][0]["recall"] == 1.0
    assert data["exact"] == (backend == "voyager")

    queries = tmp_path / "queries.txt"
    queries.write_text("cats purr\n\nrockets fly\n", encoding="utf-8")
    code, out, err = _run(
        capsys,
        "audit",
        str(idx),
        "--queries",
        str(queries),
        "-k",
        "2",
        "--setting",
        "k_token=4,ef_search=8" if backend == "voyager" else "prefetch_limit=4",
        "-q",
    )
    assert code == 0, err
    assert "given query texts" in out and "* current" in out and "suggestion:" in out
    assert ("k_token=4 ef_search=8" if backend == "voyager" else "prefetch_limit=4") in out
    assert len([line for line in out.splitlines() if line.startswith(("* ", "  ")) and "recall" not in line]) == 2

    # The backend's own directory, without the manifest: pseudo-queries need no model.
    code, out, err = _run(capsys, "audit", str(idx / "data"), "--n-queries", "4", "-q")
    assert code == 0, err
    assert "recall@10" in out
    code, _, err = _run(capsys, "audit", str(idx / "data"), "--queries", str(queries), "-q")
    assert code == 2 and "--model" in err


def test_cli_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    backend = MemoryBackend(dim=DIM)
    ids, docs = hard_corpus(50)
    backend.upsert(ids, docs)
    backend.save(tmp_path / "mem")
    code, out, err = _run(capsys, "audit", str(tmp_path / "mem"), "--n-queries", "5", "-q")
    assert code == 0, err
    assert "memory: 50 documents" in out and "exactly" in out
    for argv, match in [
        (["-k", "0"], "-k must be"),
        (["--target", "0"], "--target"),
        (["--setting", "k_token"], "NAME=VALUE"),
        (["--setting", "k_token=4"], "accepted: none"),
        (["--queries", str(tmp_path / "missing.txt")], "no such file"),
    ]:
        code, _, err = _run(capsys, "audit", str(tmp_path / "mem"), *argv)
        assert code == 2 and match in err, (argv, err)
    bad = tmp_path / "q.jsonl"
    bad.write_text('{"text": "fine"}\n{"title": "no text"}\n', encoding="utf-8")
    code, _, err = _run(capsys, "audit", str(tmp_path / "mem"), "--queries", str(bad), "--model", "x")
    assert code == 2 and "q.jsonl:2" in err
