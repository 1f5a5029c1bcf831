"""How long a single write can stall: a stream of upserts into VoyagerBackend, merges inline vs in the background.

One run, the same vectors, two systems side by side: ``background_maintenance=False`` (every seal, fold and rebuild
inside the write that triggers it, as before the background workers existed) and the default (seals, folds and
rebuilds on the sealer and merger threads; a write only commits, and waits briefly when they are far behind).
Reported: the slowest single upsert, p99, p50, the stream's throughput (including the wait for the last merges),
the final layout and a query p50 after the stream::

    python benchmarks/bench_writer_stall.py                 # 1M tokens: 500 upserts of 2,000 tokens, 128-d
    python benchmarks/bench_writer_stall.py --quick         # 100k tokens
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._common import RESULTS, loadavg_text, percentile_ms, write_json
from colbert_adapters.backends.voyager import VoyagerBackend

DIM = 128
TOKENS_PER_DOC = 100
DOCS_PER_UPSERT = 20  # 2,000 tokens per upsert


def stream(n_upserts: int, seed: int) -> list[tuple[list[str], list[np.ndarray]]]:
    """``n_upserts`` batches of 20 documents x 100 tokens mixing two of 512 topics each (unit vectors)."""
    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((512, DIM)).astype(np.float32)
    topics /= np.linalg.norm(topics, axis=1, keepdims=True)
    out = []
    for u in range(n_upserts):
        docs = []
        for _ in range(DOCS_PER_UPSERT):
            pair = rng.choice(512, size=2, replace=False)
            x = topics[pair[rng.integers(0, 2, size=TOKENS_PER_DOC)]]
            x = x + 0.5 * rng.standard_normal(x.shape).astype(np.float32)
            docs.append((x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32))
        out.append(([f"u{u}-{j}" for j in range(DOCS_PER_UPSERT)], docs))
    return out


def run(label: str, batches: list[tuple[list[str], list[np.ndarray]]], path: Path, background: bool) -> dict[str, Any]:
    """Write every batch, one upsert each, timing each; then wait for pending merges and time 50 queries."""
    times: list[float] = []
    t0 = time.perf_counter()
    with VoyagerBackend(path, dim=DIM, background_maintenance=background) as backend:
        for ids, docs in batches:
            t1 = time.perf_counter()
            backend.upsert(ids, docs)
            times.append(time.perf_counter() - t1)
        backend.wait_for_maintenance()
        total = time.perf_counter() - t0
        stats = backend.stats()
        rng = np.random.default_rng(5)
        lat = []
        for _ in range(50):
            ids, docs = batches[int(rng.integers(len(batches)))]
            q = docs[0][rng.integers(0, TOKENS_PER_DOC, size=32)]
            t1 = time.perf_counter()
            backend.search(q, k=10)
            lat.append(time.perf_counter() - t1)
    tokens = sum(sum(d.shape[0] for d in docs) for _, docs in batches)
    kinds = [e["kind"] for e in stats["maintenance"]]
    return {
        "system": label,
        "upserts": len(times),
        "tokens": tokens,
        "max_ms": max(times) * 1000,
        "p99_ms": percentile_ms(times, 99),
        "p50_ms": percentile_ms(times, 50),
        "tokens_per_s": tokens / total,
        "total_s": total,
        "segments": len(stats["segments"]),
        "seals": kinds.count("seal"),
        "folds": kinds.count("fold"),
        "rebuilds": kinds.count("rebuild"),
        "slowest_merge_s": max((e["seconds"] for e in stats["maintenance"] if e["kind"] != "seal"), default=0.0),
        "query_p50_ms": percentile_ms(lat, 50),
        "load": loadavg_text(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="100k tokens instead of 1M")
    ap.add_argument("--out", default=str(RESULTS / "writer-stall"), help="output path without suffix")
    args = ap.parse_args(argv)
    batches = stream(50 if args.quick else 500, seed=1)
    work = Path(tempfile.mkdtemp(prefix="writer-stall-"))
    rows = []
    try:
        for label, background in (("inline merges (before)", False), ("background merges (default)", True)):
            rows.append(run(label, batches, work / label.split()[0], background))
            print(f"{label}: {rows[-1]}", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = [
        "# Writer stalls: one upsert's latency in a stream, Voyager merges inline vs in the background",
        "",
        f"{rows[0]['upserts']} upserts of {DOCS_PER_UPSERT} documents x {TOKENS_PER_DOC} tokens ({DIM}-d, "
        f"{rows[0]['tokens']:,} tokens), default settings otherwise; one run, the same vectors. Command: "
        "`python benchmarks/bench_writer_stall.py`.",
        "",
        "| system | slowest upsert ms | p99 ms | p50 ms | stream tokens/s | seals / folds / rebuilds | slowest merge s "
        "| segments at end | query p50 ms | load |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['system']} | {r['max_ms']:,.0f} | {r['p99_ms']:,.0f} | {r['p50_ms']:,.1f} "
            f"| {r['tokens_per_s']:,.0f} "
            f"| {r['seals']} / {r['folds']} / {r['rebuilds']} | {r['slowest_merge_s']:.1f} | {r['segments']} "
            f"| {r['query_p50_ms']:.1f} | {r['load']} |"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_json(Path(f"{args.out}.json"), rows)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
