"""Metadata filters on VoyagerBackend: evaluated in Python, in SQLite, and through a metadata index, side by side.

One index of N documents with metadata ``{"year": 1990 + i % 40, "lang": one of 8, "tags": [two of 50]}``; three
filters of different selectivity. For each: the time to find every matching document (what a filtered search
does on the first query after a write, and what ``delete_where`` does), three ways on the same database:

- ``python``: every row's JSON decoded and matched by ``match_filter`` (how filters were evaluated before);
- ``sqlite``: the compiled ``WHERE`` clause, no index (SQLite's JSON functions, a scan in C);
- ``indexed``: the same through the metadata indexes (``VoyagerBackend(metadata_indexes=[...])``).

Then an end-to-end filtered ``search`` right after a one-document write (cache cold), plain vs indexed::

    python benchmarks/bench_filters.py               # 200k documents
    python benchmarks/bench_filters.py --docs 20000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._common import RESULTS, loadavg_text, write_json
from colbert_adapters._filters import check_filter, match_filter
from colbert_adapters.backends.voyager import VoyagerBackend
from colbert_adapters.backends.voyager._sqlfilter import where_clause

DIM = 16
LANGS = ["en", "fr", "de", "es", "it", "nl", "pt", "pl"]
FILTERS: dict[str, dict[str, Any]] = {
    "year == 2001 (2.5%)": {"year": 2001},
    "year >= 2020 and lang != en (22%)": {"year": {"$gte": 2020}, "lang": {"$ne": "en"}},
    "tags has t7 (4%)": {"tags": "t7"},
}


def metas(n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    tags = rng.integers(0, 50, size=(n, 2))
    return [{"year": 1990 + i % 40, "lang": LANGS[i % 8], "tags": [f"t{a}", f"t{b}"]} for i, (a, b) in enumerate(tags)]


def build(path: Path, n: int, indexed: bool) -> float:
    rng = np.random.default_rng(0)
    meta = metas(n, rng)
    keys = ["year", "lang", "tags"] if indexed else []
    t0 = time.perf_counter()
    with VoyagerBackend(path, dim=DIM, metadata_indexes=keys, background_maintenance=False) as b:
        for start in range(0, n, 10_000):
            stop = min(n, start + 10_000)
            vecs = rng.standard_normal((stop - start, 2, DIM)).astype(np.float32)
            vecs /= np.linalg.norm(vecs, axis=-1, keepdims=True)
            b.upsert([f"d{i}" for i in range(start, stop)], list(vecs), metadatas=meta[start:stop])
        b.compact()
    return time.perf_counter() - t0


def best_of(fn: Any, repeat: int = 3) -> tuple[float, int]:
    best, n = float("inf"), 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        n = fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1000, n


def markdown(result: dict[str, Any]) -> str:
    """``results/filters.md`` from a run's result."""
    lines = [
        "# Metadata filters on Voyager: Python vs SQLite vs metadata index",
        "",
        f"`python benchmarks/bench_filters.py --docs {result['docs']}`: {result['docs']:,} documents "
        f"(2 tokens x {DIM}-d),",
        f"load {result['load']}. Times: best of 3, to find every matching document (a filtered search's first query",
        "after a write, and `delete_where`); then a filtered `search` right after a one-document write (cold cache).",
        "",
        "| filter | matches | python ms | sqlite ms | indexed ms | search plain ms | search indexed ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['filter']} | {r['matches']:,} | {r['python_ms']:.1f} | {r['sqlite_ms']:.1f} | {r['indexed_ms']:.1f} "
            f"| {r['search_plain_ms']:.1f} | {r['search_indexed_ms']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=200_000)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-filters-"))
    try:
        plain, indexed = work / "plain", work / "indexed"
        build_s = {"plain": build(plain, args.docs, False), "indexed": build(indexed, args.docs, True)}
        rows: list[dict[str, Any]] = []
        for name, flt in FILTERS.items():
            expr = check_filter(flt)
            row: dict[str, Any] = {"filter": name}
            conn = sqlite3.connect(plain / "store.sqlite")

            def python_scan(conn: sqlite3.Connection = conn, expr: Any = expr) -> int:
                rows = conn.execute("SELECT seq, metadata FROM docs")
                return sum(1 for _, m in rows if match_filter(json.loads(m), expr))

            row["python_ms"], n_py = best_of(python_scan)
            clause, params = where_clause(expr)  # type: ignore[arg-type]
            sql = f"SELECT seq FROM docs WHERE {clause}"
            row["sqlite_ms"], n_sql = best_of(lambda c=conn, q=sql, p=params: len(c.execute(q, p).fetchall()))
            conn.close()
            conn = sqlite3.connect(indexed / "store.sqlite")
            clause, params = where_clause(expr, {"year", "lang", "tags"})  # type: ignore[arg-type]
            sql = f"SELECT seq FROM docs WHERE {clause}"
            row["indexed_ms"], n_idx = best_of(lambda c=conn, q=sql, p=params: len(c.execute(q, p).fetchall()))
            conn.close()
            assert n_py == n_sql == n_idx, (n_py, n_sql, n_idx)
            row["matches"] = n_py
            q = np.random.default_rng(1).standard_normal((4, DIM)).astype(np.float32)
            for label, path in (("plain", plain), ("indexed", indexed)):
                with VoyagerBackend(path, background_maintenance=False) as b:
                    times = []
                    for i in range(3):
                        b.upsert([f"w{i}"], [q[:1] / np.linalg.norm(q[:1])], metadatas=[{"year": 0}])  # cold cache
                        t0 = time.perf_counter()
                        b.search(q, k=10, filter=flt)
                        times.append(time.perf_counter() - t0)
                    row[f"search_{label}_ms"] = min(times) * 1000
            rows.append(row)
        print(f"{args.docs:,} documents, 2 tokens x {DIM}-d; load {loadavg_text()}; best of 3")
        print(f"build s: plain {build_s['plain']:.1f}, indexed {build_s['indexed']:.1f}")
        print(f"{'filter':36} {'matches':>8} {'python ms':>10} {'sqlite ms':>10} {'indexed ms':>10}", end="")
        print(f" {'search plain':>13} {'search idx':>11}")
        for r in rows:
            print(
                f"{r['filter']:36} {r['matches']:>8,} {r['python_ms']:>10.1f} {r['sqlite_ms']:>10.1f} "
                f"{r['indexed_ms']:>10.1f} {r['search_plain_ms']:>13.1f} {r['search_indexed_ms']:>11.1f}"
            )
        result = {"docs": args.docs, "build_s": build_s, "rows": rows, "load": loadavg_text()}
        write_json(RESULTS / "filters.json", result)
        (RESULTS / "filters.md").write_text(markdown(result), encoding="utf-8")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
