"""Metrics (hand-computed values, cross-checked against the shared reference library) and loaders."""

from __future__ import annotations

import importlib.util
import json
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from colbert_adapters import evaluation as ev
from colbert_adapters.errors import InvalidInputError

SHARED = Path(__file__).resolve().parents[2] / "shared"
LIB = SHARED / "tools" / "ir_eval_lib.py"
DATA = SHARED / "data"


def _lib() -> Any:
    if not LIB.is_file():
        pytest.skip(f"{LIB} not present")
    spec = importlib.util.spec_from_file_location("ir_eval_lib", LIB)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_hand_computed_metrics() -> None:
    scores = {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.6}
    rel = {"b": 2, "d": 1, "z": 1}  # z is never retrieved
    dcg = 2 / math.log2(3) + 1 / math.log2(5)
    idcg = 2 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert ev.ndcg_at_k(scores, rel, 10) == pytest.approx(dcg / idcg)
    assert ev.ndcg_at_k(scores, rel, 1) == 0.0
    assert ev.recall_at_k(scores, rel, 10) == pytest.approx(2 / 3)
    assert ev.recall_at_k(scores, rel, 2) == pytest.approx(1 / 3)
    assert ev.mrr_at_k(scores, rel, 10) == 0.5
    assert ev.mrr_at_k(scores, rel, 1) == 0.0
    # a perfect ranking
    assert ev.ndcg_at_k({"b": 3, "z": 2, "d": 1}, rel, 10) == pytest.approx(1.0)


def test_ties_broken_by_id_and_missing_queries_score_zero() -> None:
    run = {"q1": {"b": 1.0, "a": 1.0}}
    qrels = {"q1": {"b": 1}, "q2": {"x": 1}, "q3": {"y": 0}}  # q3 has no relevant doc: ignored
    res = ev.evaluate(run, qrels)
    assert res["n_queries"] == 2
    assert res["MRR@10"] == pytest.approx((0.5 + 0.0) / 2)
    assert res["Recall@10"] == pytest.approx(0.5)
    with pytest.raises(InvalidInputError):
        ev.evaluate(run, {"q": {"d": 0}})


def test_latency_summary() -> None:
    s = ev.latency_summary([0.001 * i for i in range(1, 101)])
    assert s["p50_ms"] == pytest.approx(50) and s["p95_ms"] == pytest.approx(95)
    assert s["mean_ms"] == pytest.approx(50.5)
    assert ev.latency_summary([])["mean_ms"] == 0.0


def test_matches_reference_library_on_random_runs() -> None:
    lib = _lib()
    rng = random.Random(7)
    docs = [f"d{i}" for i in range(150)]
    for _ in range(5):
        qrels = {f"q{j}": {d: rng.randint(1, 4) for d in rng.sample(docs, rng.randint(1, 12))} for j in range(20)}
        run = {q: {d: round(rng.random(), 2) for d in rng.sample(docs, 120)} for q in qrels if rng.random() < 0.9}
        ours, ref = ev.evaluate(run, qrels), lib.evaluate(run, qrels)
        for key in ("nDCG@10", "nDCG@100", "Recall@10", "Recall@100", "MRR@10", "n_queries"):
            assert ours[key] == pytest.approx(ref[key], abs=1e-12), key


def test_beir_loader_and_subset(tmp_path: Path) -> None:
    (tmp_path / "qrels").mkdir()
    (tmp_path / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": i, "title": "T" + i, "text": "body " + i}) + "\n" for i in "abcd")
    )
    (tmp_path / "queries.jsonl").write_text(
        json.dumps({"_id": "1", "text": "q one"}) + "\n" + json.dumps({"_id": "2", "text": "q two"}) + "\n"
    )
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n1\td\t1\n1\ta\t0\n")
    data = ev.load_dataset(tmp_path)
    assert data.format == "beir" and len(data.corpus) == 4
    assert data.queries == {"1": "q one"} and data.qrels == {"1": {"d": 1}}
    assert ev.document_text(data.corpus["a"]) == "Ta body a"
    sub = data.subset(max_docs=2)
    assert set(sub.corpus) == {"d", "a"}  # the judged doc is always kept
    with pytest.raises(InvalidInputError, match="split"):
        ev.load_dataset(tmp_path, split="dev")
    with pytest.raises(InvalidInputError, match="unknown collection format"):
        ev.load_dataset(tmp_path / "qrels")


def test_smart_and_trec_loaders_on_small_files(tmp_path: Path) -> None:
    cran = tmp_path / "cran"
    cran.mkdir()
    (cran / "cran.all.1400").write_text(
        ".I 1\n.T\nwing flow\n.A\nsmith\n.B\nj. ae\n.W\nthe wing\nflow.\n.I 2\n.T\nheat\n.W\nheat transfer\n"
    )
    (cran / "cran.qry").write_text(".I 001\n.W\nwhat about wings\n.I 004\n.W\nheat?\n")
    (cran / "cranqrel").write_text("1 1 2\n2 2 -1\n2 1 4\n")
    data = ev.load_dataset(cran)
    assert data.format == "cranfield" and data.corpus["1"] == {"title": "wing flow", "text": "the wing flow."}
    assert data.queries == {"1": "what about wings", "2": "heat?"}  # numbered by position
    assert data.qrels == {"1": {"1": 3}, "2": {"1": 1}}
    trec = tmp_path / "vas"
    trec.mkdir()
    (trec / "doc-text.trec").write_text("<DOC>\n<DOCNO>1</DOCNO>\nsome  text\n</DOC>\n")
    (trec / "query-text.trec").write_text("<top>\n<num>1</num><title>\nSOME QUERY\n</title>\n</top>\n")
    (trec / "qrels").write_text("1 0 1 1\n")
    data = ev.load_dataset(trec)
    assert data.corpus == {"1": {"title": "", "text": "some text"}} and data.queries == {"1": "some query"}


@pytest.mark.filterwarnings("ignore::ResourceWarning")  # the reference library leaves files open
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize(
    ("folder", "loader", "n_docs", "n_queries"),
    [
        ("cranfield", "load_cranfield", 1400, 225),
        ("cisi", "load_cisi", 1460, 76),
        ("vaswani", "load_vaswani", 11429, 93),
        ("scifact", "load_beir", 5183, 300),
    ],
)
def test_real_collections_match_reference(folder: str, loader: str, n_docs: int, n_queries: int) -> None:
    lib = _lib()
    path = DATA / folder
    if not path.is_dir():
        pytest.skip(f"{path} not present")
    data = ev.load_dataset(path)
    corpus, queries, qrels = getattr(lib, loader)(str(path))
    assert len(data.corpus) == n_docs and len(data.queries) == n_queries
    assert data.queries == queries
    assert data.qrels == {q: {d: g for d, g in r.items() if g > 0} for q, r in qrels.items() if q in queries}
    assert {d: ev.document_text(v) for d, v in data.corpus.items()} == {
        d: " ".join(f"{v['title']} {v['text']}".split()) for d, v in corpus.items()
    }


def test_benchmark_eval_report(tmp_path: Path) -> None:
    import sys

    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root))
    try:
        from benchmarks.report import build_eval_report
    finally:
        sys.path.remove(str(root))
    raw = tmp_path / "eval_raw"
    raw.mkdir()
    entry = {
        "nDCG@10": 0.5,
        "Recall@10": 0.4,
        "Recall@100": 0.9,
        "MRR@10": 0.6,
        "vs_exact": 1.0,
        "search_latency": {"p50_ms": 1.0, "p95_ms": 2.0},
    }
    run = {
        "dataset": "scifact",
        "documents": 10,
        "queries": 2,
        "tokens": 100,
        "encode_documents_s": 1.0,
        "backends": {"memory": entry, "voyager": {**entry, "nDCG@10": 0.49, "vs_exact": 0.98}},
    }
    (raw / "scifact.json").write_text(json.dumps(run))
    (tmp_path / "eval_dense").mkdir()
    (tmp_path / "eval_dense" / "scifact.json").write_text(json.dumps({"dataset": "scifact", "nDCG@10": 0.6449}))
    md = build_eval_report(raw, tmp_path)
    assert md is not None
    text = md.read_text()
    assert "| scifact | 10 | 2 | voyager | 0.4900 |" in text and "**no**" in text
    assert "0.6449 (MTEB: 0.6451)" in text
    assert json.loads((tmp_path / "eval.json").read_text())["runs"][0]["dataset"] == "scifact"


def test_dense_baseline_is_sentence_transformers_pipeline(minilm_path: Path) -> None:
    """benchmarks/eval_dense.py encodes exactly as sentence-transformers does for all-MiniLM-L6-v2."""
    import sys

    st = pytest.importorskip("sentence_transformers")
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root))
    try:
        from benchmarks.eval_dense import encode
    finally:
        sys.path.remove(str(root))
    texts = ["late interaction over token embeddings", "a short one", " ".join(["long"] * 400), "Paris, France."]
    ours = encode(texts, minilm_path, batch_size=3)
    ref = st.SentenceTransformer(str(minilm_path), device="cpu").encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
