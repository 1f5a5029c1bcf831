#!/usr/bin/env python3
"""Do the recall audit's pseudo-queries predict the recall of real queries? One index, both kinds, same settings.

``colbert-adapters audit`` without ``--queries`` draws pseudo-queries from the stored documents (32 tokens of one
document, each turned to cosine 0.8 off the stored token: :func:`colbert_adapters._audit.pseudo_queries`). This
script runs the audit on one index directory (made by ``colbert-adapters index``) with the real queries of a BEIR
collection and with pseudo-queries of three shapes, over the same search settings, and prints recall@10 per
setting for each:

* ``real``: the collection's queries, encoded with the index's model;
* ``audit``: the audit's own pseudo-queries;
* ``copies``: 32 stored token vectors of one document, as stored (exact copies of indexed tokens);
* ``two-docs``: 16 stored token vectors of each of two random documents.

Usage::

    python benchmarks/audit_queries.py INDEX_DIR ../shared/data/scifact/queries.jsonl --n-queries 100 \\
        --out benchmarks/results/audit-queries

Writes ``<out>.json`` (every row) and ``<out>.md`` (the table).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks._common import loadavg_text, write_json  # noqa: E402
from colbert_adapters.evaluation import audit  # noqa: E402
from colbert_adapters.store import MultiVectorStore  # noqa: E402


def _settings(backend: Any) -> tuple[str, list[dict[str, Any]]]:
    if type(backend).__name__ == "VoyagerBackend":
        return "k_token", [{"k_token": v, "ef_search": v} for v in (2, 4, 8, 16, 32, 96)]
    return "prefetch_limit", [{"prefetch_limit": v} for v in (20, 40, 80, 160, 320)]


def _copies(backend: Any, ids: list[str], n: int, rng: np.random.Generator, per_doc: int, docs: int) -> list[Any]:
    out = []
    for _ in range(n):
        recs = backend.get([ids[i] for i in rng.choice(len(ids), docs, replace=False)], with_vectors=True)
        parts = [r.vectors[np.sort(rng.choice(len(r.vectors), min(per_doc, len(r.vectors)), False))] for r in recs]
        out.append(np.concatenate(parts))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("index", help="an index directory made by colbert-adapters index")
    ap.add_argument("queries", help="a BEIR queries.jsonl")
    ap.add_argument("--n-queries", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(HERE / "results" / "audit-queries"))
    args = ap.parse_args()

    store = MultiVectorStore.open(args.index, read_only=True)
    backend = store.backend
    knob, settings = _settings(backend)
    with open(args.queries, encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f if line.strip()][: args.n_queries]
    ids = backend.ids()
    rng = np.random.default_rng(args.seed)
    kinds: dict[str, Any] = {
        "real": store.encoder.encode_queries(texts),
        "audit": None,
        "copies": _copies(backend, ids, args.n_queries, rng, 32, 1),
        "two-docs": _copies(backend, ids, args.n_queries, rng, 16, 2),
    }
    rows: dict[str, Any] = {}
    for name, queries in kinds.items():
        t0 = time.perf_counter()
        report = audit(
            backend, queries, k=10, n_queries=args.n_queries, settings=settings, seed=args.seed, show_progress=False
        )
        rows[name] = [{"setting": dict(r.setting), "recall": r.recall, "p50_ms": r.p50_ms} for r in report.results[1:]]
        print(f"{name:<9}", " ".join(f"{x['recall']:.3f}" for x in rows[name]), f"({time.perf_counter() - t0:.0f} s)")
    store.close()
    header = [str(s[knob]) for s in settings]
    lines = [
        f"# Audit pseudo-queries against real queries: {Path(args.index).name}, {type(backend).__name__}",
        "",
        f"{len(ids)} documents, {args.n_queries} queries per kind, recall@10 against exact MaxSim, load "
        f"{loadavg_text()}. Command: `python benchmarks/audit_queries.py {args.index} {args.queries} "
        f"--n-queries {args.n_queries}`",
        "",
        f"| queries | {' | '.join(f'{knob}={h}' for h in header)} |",
        f"|---|{'---:|' * len(header)}",
    ]
    for name, r in rows.items():
        cells = " | ".join(f"{x['recall']:.3f}" for x in r)
        lines.append(f"| {name} | {cells} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out.with_suffix(".json"), {"index": args.index, "backend": type(backend).__name__, "rows": rows})
    out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
