"""Copy throughput: ``colbert-adapters copy`` of a Voyager index into another backend (default Qdrant Edge).

The source is a Voyager index of synthetic documents: ``--docs`` documents of ``--min-tokens`` to ``--max-tokens``
unit token vectors (``--dim`` dimensions, seeded; each document's tokens scatter around three of 64 topic directions,
so that documents have neighbours), with a short text and metadata each, written with ``VoyagerBackend.upsert``
(not timed as part of the copy). To keep the run short, the source is written without building HNSW graphs (one
mutable segment, ``mutable_max_tokens`` above its size): a copy reads documents from Voyager's SQLite store, which
is the same with or without graphs, but opening the source decodes the mutable segment's vectors, and the
verification's searches on the source scan it exactly. The copy runs as a user runs it, in a fresh process::

    python -m colbert_adapters.cli copy SRC DST --to qdrant-edge -q

and reports, from the command's JSON: the streaming rate (documents and token vectors read from Voyager and written
to the target per second, ``seconds`` of the report), and the command's wall time end to end (start-up, the
verification's sample searches, the target's close: Qdrant Edge optimizes its segments there).

Usage::

    python benchmarks/bench_copy.py                       # ~300k tokens, Voyager -> Qdrant Edge
    python benchmarks/bench_copy.py --to voyager --docs 500

Writes ``benchmarks/results/copy.md`` and ``copy.json`` (``--out`` changes the stem).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._common import (  # noqa: E402
    RESULTS,
    Stopwatch,
    cpu_model,
    dir_bytes,
    loadavg_text,
    output_stem,
    write_json,
)
from colbert_adapters.backends.voyager import VoyagerBackend  # noqa: E402


def build_source(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The Voyager index copied from; returns its size and build time."""
    rng = np.random.default_rng(args.seed)
    lengths = rng.integers(args.min_tokens, args.max_tokens + 1, size=args.docs)
    topics = rng.standard_normal((64, args.dim))
    backend = VoyagerBackend(path, dim=args.dim, model_id="synthetic", mutable_max_tokens=int(lengths.sum()) + 1)
    with Stopwatch() as sw, backend:
        for lo in range(0, args.docs, 512):
            hi = min(args.docs, lo + 512)
            vecs = []
            for n in lengths[lo:hi]:
                centres = topics[rng.choice(64, size=3, replace=False)][rng.integers(0, 3, size=int(n))]
                v = (centres + 1.5 * rng.standard_normal((int(n), args.dim))).astype(np.float32)
                vecs.append(v / np.linalg.norm(v, axis=1, keepdims=True))
            backend.upsert(
                [f"doc-{i}" for i in range(lo, hi)],
                vecs,
                texts=[f"synthetic document {i}" for i in range(lo, hi)],
                metadatas=[{"i": i, "group": i % 10} for i in range(lo, hi)],
            )
    return {"documents": args.docs, "tokens": int(lengths.sum()), "build_s": sw.wall, "bytes": dir_bytes(path)}


def run_copy(src: Path, dst: Path, args: argparse.Namespace) -> tuple[list[str], dict[str, Any], float]:
    """The command, its JSON report, and its wall time."""
    cmd = [sys.executable, "-m", "colbert_adapters.cli", "copy", str(src), str(dst), "--to", args.to, "-q"]
    cmd += ["--batch-size", str(args.batch_size)]
    with Stopwatch() as sw:
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"copy failed ({proc.returncode}): {proc.stderr}")
    return cmd, json.loads(proc.stdout), sw.wall


def report_md(result: dict[str, Any]) -> str:
    r, s = result["report"], result["source"]
    invocation = f"python benchmarks/bench_copy.py {result['args']}".strip()
    return "\n".join(
        [
            f"# Copy throughput: Voyager -> {result['to']}",
            "",
            f"Source: {s['documents']:,} documents, {s['tokens']:,} synthetic unit token vectors of {result['dim']} "
            f"dimensions (Voyager int14 store, one mutable segment, {s['bytes'] / 2**20:.1f} MiB).",
            f"Command: `{result['command']}` (from `{invocation}`).",
            f"Machine: {result['machine']}.",
            "",
            "| measure | value |",
            "|---|---|",
            f"| streaming (read from Voyager, write to {result['to']}) | {r['seconds']:.2f} s: "
            f"{r['docs_per_second']:,.0f} docs/s, {r['tokens_per_second']:,.0f} tokens/s |",
            f"| command wall time (start-up, copy, verification, close) | {result['wall_s']:.2f} s: "
            f"{r['copied'] / result['wall_s']:,.0f} docs/s, {r['tokens'] / result['wall_s']:,.0f} tokens/s |",
            f"| verification | {r['verify_seconds']:.2f} s: {r['target_count']:,} documents counted, {r['sample']} "
            f"sampled documents equal, top-{r['k']} agreement {r['agreement']:.3f} (exact on both sides: "
            f"{r['exact']}) |",
            f"| target on disk | {result['target_bytes'] / 2**20:.1f} MiB |",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=2500)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--min-tokens", type=int, default=60)
    ap.add_argument("--max-tokens", type=int, default=180)
    ap.add_argument("--to", default="qdrant-edge")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(RESULTS / "copy"))
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-copy-") as tmp:
        src, dst = Path(tmp) / "voyager", Path(tmp) / "copy"
        source = build_source(src, args)
        cmd, report, wall = run_copy(src, dst, args)
        result = {
            "to": args.to,
            "dim": args.dim,
            "args": " ".join(argv if argv is not None else sys.argv[1:]),
            "command": " ".join(["python -m colbert_adapters.cli copy SRC DST", *cmd[6:]]),
            "machine": f"{cpu_model()}, {os.cpu_count()} cores, load average {loadavg_text()} at the end",
            "source": source,
            "report": report,
            "wall_s": wall,
            "target_bytes": dir_bytes(dst),
        }
    stem = output_stem(args.out)
    write_json(stem.with_suffix(".json"), result)
    stem.with_suffix(".md").write_text(report_md(result), encoding="utf-8")
    print(report_md(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
