"""Two versions of the library side by side in one process: the same index, the same queries, interleaved.

A refactoring or a performance change should leave answers identical and latency unchanged (or better). This
script imports the working tree's ``colbert_adapters`` and a copy of another git revision's (renamed
``colbert_adapters_ab``), builds one index per vector set with the *old* revision's ``VoyagerBackend``, then answers
the same queries through both versions, alternating query by query, and prints p50 latency of each, their ratio
and whether every hit (id and score) agrees::

    python benchmarks/ab_versions.py --ref b219739               # 10k synthetic docs x 100 tokens, 128-d
    python benchmarks/ab_versions.py --ref b219739 --quick       # a smoke run

Both versions read the same index files, so it also checks that the new code opens indexes written by the old.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OLD = "colbert_adapters_ab"


def export_revision(ref: str, into: Path) -> None:
    """Write revision ``ref``'s ``colbert_adapters`` into ``into / OLD``, its imports renamed."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", ref, "colbert_adapters", "integrations"],
        check=True,
        capture_output=True,
    ).stdout
    raw = into / "raw"
    raw.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(raw)], input=archive, check=True)
    shutil.move(str(raw / "colbert_adapters"), str(into / OLD))
    for path in (into / OLD).rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        path.write_text(re.sub(r"\bcolbert_adapters\b", OLD, text), encoding="utf-8")


def clustered_corpus(n_docs: int, n_tok: int, dim: int, seed: int) -> tuple[list[str], list[np.ndarray]]:
    """Documents mixing two of 256 topics each (unit vectors), as bench_voyager's synthetic set."""
    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((256, dim)).astype(np.float32)
    topics /= np.linalg.norm(topics, axis=1, keepdims=True)
    docs = []
    for _ in range(n_docs):
        pair = rng.choice(256, size=2, replace=False)
        x = topics[pair[rng.integers(0, 2, size=n_tok)]] + 0.6 * rng.standard_normal((n_tok, dim)).astype(np.float32)
        docs.append((x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32))
    return [f"d{i}" for i in range(n_docs)], docs


def queries_from(docs: list[np.ndarray], n: int, n_tok: int, seed: int) -> list[np.ndarray]:
    """Queries made of noisy tokens of random documents."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        d = docs[int(rng.integers(len(docs)))]
        x = d[rng.integers(0, d.shape[0], size=n_tok)] + 0.3 * rng.standard_normal((n_tok, d.shape[1]))
        out.append((x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32))
    return out


def interleave(old: Any, new: Any, queries: list[np.ndarray], k: int) -> dict[str, Any]:
    """Answer every query with both backends, alternating which goes first; latency and agreement."""
    lat: dict[str, list[float]] = {"old": [], "new": []}
    same = 0
    max_diff = 0.0
    for i, q in enumerate(queries):
        order = [("old", old), ("new", new)] if i % 2 == 0 else [("new", new), ("old", old)]
        hits = {}
        for name, backend in order:
            t0 = time.perf_counter()
            hits[name] = backend.search(q, k=k)
            lat[name].append(time.perf_counter() - t0)
        a = [(h.id, h.score) for h in hits["old"]]
        b = [(h.id, h.score) for h in hits["new"]]
        same += [x[0] for x in a] == [x[0] for x in b]
        if a and b and len(a) == len(b):
            max_diff = max(max_diff, max(abs(x[1] - y[1]) for x, y in zip(a, b, strict=True)))
    p50 = {name: float(np.percentile(v, 50)) * 1000 for name, v in lat.items()}
    return {"p50_old_ms": p50["old"], "p50_new_ms": p50["new"], "same_ids": same, "queries": len(queries),
            "max_score_diff": max_diff}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", required=True, help="the other git revision (e.g. b219739)")
    ap.add_argument("--quick", action="store_true", help="1,000 documents, 40 queries")
    ap.add_argument("--docs", type=int, default=10_000)
    ap.add_argument("--tokens", type=int, default=100)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("-k", type=int, default=10)
    args = ap.parse_args(argv)
    n_docs, n_queries = (1000, 40) if args.quick else (args.docs, args.queries)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    work = Path(tempfile.mkdtemp(prefix="ab-versions-"))
    try:
        export_revision(args.ref, work)
        sys.path.insert(0, str(work))
        old_mod = __import__(f"{OLD}.backends.voyager", fromlist=["VoyagerBackend"])
        from colbert_adapters.backends.voyager import VoyagerBackend

        ids, docs = clustered_corpus(n_docs, args.tokens, 128, seed=1)
        queries = queries_from(docs, n_queries, 32, seed=2)
        rows = []
        for label, opts in (("graph", {"exact_below_tokens": 0}), ("default", {})):
            path = work / f"index-{label}"
            t0 = time.perf_counter()
            with old_mod.VoyagerBackend(path, dim=128, **opts) as writer:
                for s in range(0, n_docs, 1000):
                    writer.upsert(ids[s : s + 1000], docs[s : s + 1000])
            build_s = time.perf_counter() - t0
            with (
                old_mod.VoyagerBackend(path, read_only=True, **opts) as old,
                VoyagerBackend(path, read_only=True, **opts) as new,
            ):
                interleave(old, new, queries[: min(20, len(queries))], args.k)  # warm-up
                row = interleave(old, new, queries, args.k)
            rows.append((label, build_s, row))
        print(f"{args.ref} (old) vs working tree (new), {n_docs} docs x {args.tokens} tokens, 128-d, k={args.k}")
        header = ("search", "p50 old ms", "p50 new ms", "new/old", "same top-k", "max |d score|")
        print(f"{header[0]:<8} {header[1]:>10} {header[2]:>10} {header[3]:>8} {header[4]:>11} {header[5]:>13}")
        for label, _, r in rows:
            print(
                f"{label:<8} {r['p50_old_ms']:>10.2f} {r['p50_new_ms']:>10.2f} "
                f"{r['p50_new_ms'] / r['p50_old_ms']:>8.3f} "
                f"{r['same_ids']:>5}/{r['queries']:<5} {r['max_score_diff']:>13.2e}"
            )
        print(f"load average: {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
