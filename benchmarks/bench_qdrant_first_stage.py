"""Qdrant first-stage layouts and storage options: recall@10 vs exact, p50, bytes/token, ingest, on Qdrant Edge.

Side by side in one run, on the same vectors:

* every first-stage layout of ``QdrantCollectionConfig.first_stage`` (``mean``: the layout before this benchmark;
  ``centroids``, ``centred-mean``, ``muvera``; ``tokens`` on a 1,000-document subset, as its HNSW build over every
  token is slow) and storage options of the token multivector (float32, float16, turbo8, int8 scalar quantization
  with rescoring, on_disk) and of the first stage (binary quantization);
* full-scan exact MaxSim on Edge (``mode="exact"``) on today's layout and on the default;
* our Voyager backend (``VoyagerBackend``, defaults).

Data sets: SciFact (every document, ``--scifact-queries`` test queries) encoded with all-MiniLM-L6-v2 (cached in
``benchmarks/_work/``), and a clustered mixed-topic narrow-cone synthetic set of ``--synthetic-docs`` x 100 tokens x
128 dims (see ``_qdrant_first_stage_data.py``). Recall@10 is against exact float64-accumulated numpy MaxSim over
the float32 vectors; p50/p95 are per query, top 10, default ``prefetch_limit`` (200) unless a row says otherwise;
bytes/token is the Edge directory's allocated size (segments, HNSW, payload, WAL) after close, over stored tokens;
ingest is ``upsert`` in calls of 1,024 documents plus ``optimize()``.

Usage::

    python benchmarks/bench_qdrant_first_stage.py --quick       # smoke run, ~2 min
    nice -n 5 python benchmarks/bench_qdrant_first_stage.py     # full run

Writes ``benchmarks/results/qdrant-first-stage.md`` and ``.json`` (``--out`` changes the stem).
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._common import RESULTS, SHARED, WORK, Stopwatch, loadavg_text, percentile, write_json  # noqa: E402
from benchmarks._qdrant_first_stage_data import mean_cosine, narrow_cone, scifact  # noqa: E402
from colbert_adapters.backends.qdrant import QdrantBackend, QdrantCollectionConfig  # noqa: E402
from colbert_adapters.scoring import maxsim_flat  # noqa: E402

logger = logging.getLogger("bench_qdrant_first_stage")

WRITE_CALL = 1024
#: (label, QdrantCollectionConfig keyword arguments, full scan timed too)
SYSTEMS: list[tuple[str, dict[str, Any], bool]] = [
    ("mean, float32 (before)", {"first_stage": "mean", "datatype": "float32", "summary_datatype": "float32"}, True),
    ("centroids(8), float16 (default)", {}, True),
    ("centroids(4), float16", {"n_centroids": 4}, False),
    ("centroids(8), turbo8", {"datatype": "turbo8"}, False),
    ("centroids(4), turbo8, wal=False (compact)", {"datatype": "turbo8", "n_centroids": 4, "wal": False}, False),
    ("centroids(8), float16 + int8 SQ", {"quantization": "int8"}, False),
    ("centroids(8), float16, binary first stage", {"summary_quantization": "binary"}, False),
    ("centred-mean, float16", {"first_stage": "centred-mean"}, False),
    ("muvera, float16", {"first_stage": "muvera"}, False),
]
TOKENS_SYSTEM = ("tokens (HNSW over token multivectors), float16", {"first_stage": "tokens"}, False)
NOTES = [
    "- Loaded machine (2 shared cores, load average 15-21 through the runs): latencies are noisy; compare rows of "
    "one run, and each row's own load average in the .json.",
    "- Runs made before the centroids layout's default `prefetch_limit` became 400 measured it as an extra "
    "prefetch; the report shows that measurement as the default row (the prefetch-200 row is the same run).",
    "- An HNSW graph over the centroid multivectors (`summary_m=16`, MaxSim between centroid sets) measured "
    "recall@10 0.247 at prefetch 200 on 16,400 synthetic documents (1.64M tokens; float32 centroids: 0.252), against "
    "0.538 for the mean layout in the same run: the graph does not navigate this data, so the default scans the "
    "centroids exactly (`summary_m=0`). That run was stopped before it finished; its rows are not in this report.",
    "- `binary first stage` changes nothing with the exact centroid scan (the prefetch scores the originals).",
    "- The `tokens` layout builds Qdrant's HNSW over every token multivector: a few documents per second, so it is "
    "measured on a subset only.",
    "- Bytes/token: the Edge directory's allocated blocks after close, WAL included (Edge's WAL has a fixed size, "
    "about 35 MB, hence the column without it); the compact row runs without WAL (`QdrantBackend(..., wal=False)`).",
    "- Voyager on SciFact was not run here (the first SciFact run was killed by the kernel's OOM killer while other "
    "jobs shared the machine); see results/voyager.md and results/eval.md for it.",
]
TARGET_RECALL = 0.95
TARGET_SPEEDUP = 5.0


def docs_of(ds: dict[str, Any]) -> list[np.ndarray]:
    f, o = ds["flat"], ds["offsets"]
    return [f[o[i] : o[i + 1]] for i in range(len(o) - 1)]


def subset(ds: dict[str, Any], n_docs: int) -> dict[str, Any]:
    o = ds["offsets"][: n_docs + 1]
    return {**ds, "flat": ds["flat"][: o[-1]], "offsets": o}


def exact_top10(ds: dict[str, Any]) -> list[list[int]]:
    out = []
    for q in ds["queries"]:
        scores = maxsim_flat(q, ds["flat"], ds["offsets"], validate=False)
        out.append([int(i) for i in np.argsort(-scores, kind="stable")[:10]])
    return out


def allocated_bytes(path: Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())


def ingest(backend: Any, docs: list[np.ndarray]) -> float:
    ids = [str(i) for i in range(len(docs))]
    with Stopwatch() as sw:
        for s in range(0, len(docs), WRITE_CALL):
            backend.upsert(ids[s : s + WRITE_CALL], docs[s : s + WRITE_CALL])
    return sw.wall


def timed_queries(backend: Any, queries: list[np.ndarray], truth: list[list[int]], **kw: Any) -> dict[str, Any]:
    times, recalls = [], []
    for q, want in zip(queries, truth, strict=True):
        t0 = time.perf_counter()
        hits = backend.search(q, k=10, **kw)
        times.append(time.perf_counter() - t0)
        recalls.append(len({int(h.id) for h in hits} & set(want)) / 10)
    return {
        "p50_ms": 1000 * percentile(times, 50),
        "p95_ms": 1000 * percentile(times, 95),
        "recall_at_10": float(np.mean(recalls)),
        "queries": len(queries),
    }


def run_edge(
    name: str, label: str, kw: dict[str, Any], full: bool, ds: dict[str, Any], truth: list[list[int]], args: Any
) -> dict[str, Any]:
    docs = docs_of(ds)
    path = WORK / "qdrant_first_stage" / f"{name}-{abs(hash(label)) % 10**8}"
    shutil.rmtree(path, ignore_errors=True)
    row: dict[str, Any] = {"system": label, "config": kw, "docs": len(docs), "tokens": int(ds["offsets"][-1])}
    row["load_before"] = loadavg_text()
    opts = {k: v for k, v in kw.items() if k == "wal"}  # backend options; the rest is the collection layout
    cfg = QdrantCollectionConfig(dim=ds["dim"], **{k: v for k, v in kw.items() if k not in opts})
    backend = QdrantBackend.edge(path, config=cfg, optimize_every=None, **opts)
    row["ingest_s"] = ingest(backend, docs)
    with Stopwatch() as sw:
        backend.optimize()
    row["optimize_s"] = sw.wall
    row["ingest_docs_per_s"] = len(docs) / (row["ingest_s"] + row["optimize_s"])
    backend.close()
    row["bytes_per_token"] = allocated_bytes(path) / row["tokens"]
    wal = path / "shard" / "wal"
    row["bytes_per_token_without_wal"] = (allocated_bytes(path) - (allocated_bytes(wal) if wal.exists() else 0)) / row[
        "tokens"
    ]
    backend = QdrantBackend.edge(path, optimize_every=None, **opts)
    queries = ds["queries"]
    backend.search(queries[0], k=10)  # warm the page cache and the engine
    row["prefetch_limit"] = backend.prefetch_limit
    row["two_stage"] = timed_queries(backend, queries, truth)
    for pl in args.extra_prefetch if "(default)" in label else []:
        row[f"two_stage_prefetch_{pl}"] = timed_queries(backend, queries, truth, prefetch_limit=pl)
    if full:
        n = min(len(queries), args.full_scan_queries)
        row["full_scan"] = timed_queries(backend, queries[:n], truth[:n], mode="exact")
    backend.close()
    row["load_after"] = loadavg_text()
    logger.info("[%s] %s: %s", name, label, {k: v for k, v in row.items() if k not in ("config",)})
    if not args.keep:
        shutil.rmtree(path, ignore_errors=True)
    return row


def run_voyager(name: str, ds: dict[str, Any], truth: list[list[int]], args: Any) -> dict[str, Any]:
    from colbert_adapters.backends.voyager import VoyagerBackend

    docs = docs_of(ds)
    path = WORK / "qdrant_first_stage" / f"{name}-voyager"
    shutil.rmtree(path, ignore_errors=True)
    row: dict[str, Any] = {"system": "Voyager backend (defaults)", "docs": len(docs), "tokens": int(ds["offsets"][-1])}
    row["load_before"] = loadavg_text()
    backend = VoyagerBackend(path, dim=ds["dim"])
    row["ingest_s"] = ingest(backend, docs)
    row["optimize_s"] = 0.0
    row["ingest_docs_per_s"] = len(docs) / row["ingest_s"]
    backend.close()
    row["bytes_per_token"] = allocated_bytes(path) / row["tokens"]
    backend = VoyagerBackend(path)
    backend.search(ds["queries"][0], k=10)
    row["two_stage"] = timed_queries(backend, ds["queries"], truth)
    backend.close()
    row["load_after"] = loadavg_text()
    logger.info("[%s] voyager: %s", name, row)
    if not args.keep:
        shutil.rmtree(path, ignore_errors=True)
    return row


def run_dataset(name: str, ds: dict[str, Any], args: Any) -> dict[str, Any]:
    res: dict[str, Any] = {
        "dataset": name,
        "source": ds["source"],
        "docs": len(ds["offsets"]) - 1,
        "tokens": int(ds["offsets"][-1]),
        "dim": ds["dim"],
        "queries": len(ds["queries"]),
        "mean_cosine": mean_cosine(ds["flat"]),
    }
    logger.info("[%s] %d docs, %d tokens, mean cosine %.3f", name, res["docs"], res["tokens"], res["mean_cosine"])
    truth = exact_top10(ds)
    systems = [s for s in SYSTEMS if args.systems is None or any(s[0].startswith(x) for x in args.systems)]
    rows = [run_edge(name, label, kw, full, ds, truth, args) for label, kw, full in systems]
    gc.collect()
    if not args.no_voyager:
        rows.append(run_voyager(name, ds, truth, args))
    res["rows"] = rows
    if args.tokens_docs:
        small = subset(ds, min(args.tokens_docs, res["docs"]))
        small_truth = exact_top10(small)
        label, kw, _ = TOKENS_SYSTEM
        res["subset_docs"] = len(small["offsets"]) - 1
        res["subset_rows"] = [
            run_edge(name + "-subset", lab, k, False, small, small_truth, args)
            for lab, k, _ in (SYSTEMS[1], (label, kw, False))
        ]
    return res


def merge_results(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per data set: rows of later runs on the same data set are appended, marked "(separate run)".

    A default row measured at ``prefetch_limit`` 200 with a prefetch-400 measurement (runs made before the
    ``"centroids"`` layout's default became 400) reports the prefetch-400 measurement as its default.
    """
    out: dict[str, dict[str, Any]] = {}
    for res in results:
        for r in res["rows"]:
            r["system"] = r["system"].replace("centroids(8), turbo8 (compact)", "centroids(8), turbo8")  # old label
            if "(default)" in r["system"] and r.get("prefetch_limit") == 400:
                r["system"] = r["system"].replace("(default)", "(default, prefetch 400)")
            elif "(default)" in r["system"] and "two_stage_prefetch_400" in r:
                r["two_stage_prefetch_200"] = r["two_stage"]
                r["two_stage"] = r.pop("two_stage_prefetch_400")
                r["system"] = r["system"].replace("(default)", "(default, prefetch 400)")
        if res["dataset"] in out:
            for r in res["rows"]:
                if "full_scan" in r and "(default" not in r["system"] and "(before)" not in r["system"]:
                    continue
                out[res["dataset"]]["rows"].append({**r, "system": r["system"] + " (separate run)"})
        else:
            out[res["dataset"]] = res
    return list(out.values())


def fmt(v: float, nd: int = 1) -> str:
    return f"{v:,.{nd}f}"


def report(results: list[dict[str, Any]], args: Any, load: tuple[str, str]) -> str:
    from importlib.metadata import version

    lines = [
        "# Qdrant first stage: layouts and storage (Qdrant Edge)",
        "",
        f"Command: `{' '.join(['python', *sys.argv])}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; load average "
        f"before / after: {load[0]} / {load[1]} (every row also records its own)  ",
        f"Versions: qdrant-client {version('qdrant-client')}, qdrant-edge-py {version('qdrant-edge-py')}, "
        f"numpy {np.__version__}",
        "",
    ]
    for res in results:
        lines += [
            f"## {res['dataset']}: {res['docs']:,} docs, {res['tokens']:,} tokens, {res['dim']}-d, "
            f"{res['queries']} queries",
            "",
            f"{res['source']}. Mean cosine between token vectors: {res['mean_cosine']:.3f}.",
            "",
            "| system | recall@10 | p50 ms | p95 ms | bytes/token (no WAL) | ingest docs/s | ingest s + optimize s |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in res["rows"]:
            ts = r["two_stage"]
            bpt = fmt(r["bytes_per_token"], 0)
            if "bytes_per_token_without_wal" in r:
                bpt += f" ({fmt(r['bytes_per_token_without_wal'], 0)})"
            lines.append(
                f"| {r['system']} | {ts['recall_at_10']:.3f} | {fmt(ts['p50_ms'])} | {fmt(ts['p95_ms'])} | {bpt} | "
                f"{fmt(r['ingest_docs_per_s'], 0)} | {fmt(r['ingest_s'])} + {fmt(r['optimize_s'])} |"
            )
            for key in sorted(k for k in r if k.startswith("two_stage_prefetch_")):
                x = r[key]
                lines.append(
                    f"| {r['system']}, prefetch {key.rsplit('_', 1)[1]} | {x['recall_at_10']:.3f} | "
                    f"{fmt(x['p50_ms'])} | {fmt(x['p95_ms'])} | | | |"
                )
            if "full_scan" in r:
                x = r["full_scan"]
                lines.append(
                    f"| full-scan exact MaxSim on {r['system']} ({x['queries']} queries) | {x['recall_at_10']:.3f} | "
                    f"{fmt(x['p50_ms'])} | {fmt(x['p95_ms'])} | | | |"
                )
        if res.get("subset_rows"):
            lines += [
                "",
                f"First {res['subset_docs']:,} documents only (the `tokens` layout's HNSW build is slow):",
                "",
            ]
            lines += ["| system | recall@10 | p50 ms | bytes/token | ingest docs/s | ingest s + optimize s |"]
            lines += ["|---|---|---|---|---|---|"]
            for r in res["subset_rows"]:
                ts = r["two_stage"]
                lines.append(
                    f"| {r['system']} | {ts['recall_at_10']:.3f} | {fmt(ts['p50_ms'])} | "
                    f"{fmt(r['bytes_per_token'], 0)} | {fmt(r['ingest_docs_per_s'], 0)} | "
                    f"{fmt(r['ingest_s'])} + {fmt(r['optimize_s'])} |"
                )
        lines.append("")
    lines += ["## Targets (default layout and storage)", ""]
    for res in results:
        rows = {r["system"]: r for r in res["rows"]}
        defaults = [r for r in res["rows"] if r["system"].startswith("centroids(8), float16 (default")]
        d = next((r for r in defaults if "prefetch 400" in r["system"]), defaults[0] if defaults else None)
        b = rows.get("mean, float32 (before)")
        c = next((r for r in res["rows"] if "(compact)" in r["system"]), None)
        if d is None or b is None:
            continue
        rec, p50, full = d["two_stage"]["recall_at_10"], d["two_stage"]["p50_ms"], d["full_scan"]["p50_ms"]
        checks = [
            (f"recall@10 >= {TARGET_RECALL}", rec >= TARGET_RECALL, f"{rec:.3f}"),
            (
                "p50 <= 1/5 of full scan's",
                p50 * TARGET_SPEEDUP <= full,
                f"{p50:.1f} ms vs {full:.1f} ms ({full / p50:.1f}x)",
            ),
            (
                "ingest no worse than 2x before",
                d["ingest_docs_per_s"] * 2 >= b["ingest_docs_per_s"],
                f"{d['ingest_docs_per_s']:.0f} vs {b['ingest_docs_per_s']:.0f} docs/s",
            ),
        ]
        if res["dim"] == 128:
            checks.append(("<= 300 bytes/token (default)", d["bytes_per_token"] <= 300, f"{d['bytes_per_token']:.0f}"))
            if c is not None:
                checks.append(
                    ("<= 150 bytes/token (compact)", c["bytes_per_token"] <= 150, f"{c['bytes_per_token']:.0f}")
                )
        for what, ok, detail in checks:
            lines.append(f"- {res['dataset']}: **{'MET' if ok else 'NOT MET'}** {what}: {detail}")
    lines += ["", "## Notes", "", *NOTES, ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, to check the script")
    ap.add_argument("--synthetic-docs", type=int, default=16_400, help="synthetic documents (100 tokens each)")
    ap.add_argument("--synthetic-queries", type=int, default=100)
    ap.add_argument("--scifact-queries", type=int, default=300)
    ap.add_argument("--no-scifact", action="store_true")
    ap.add_argument("--no-synthetic", action="store_true")
    ap.add_argument("--systems", nargs="*", help="only the systems whose label starts with one of these")
    ap.add_argument("--merge", type=Path, nargs="*", help="only write the report of these result .json files, merged")
    ap.add_argument("--no-voyager", action="store_true")
    ap.add_argument("--tokens-docs", type=int, default=500, help="documents of the `tokens` layout subset (0: skip)")
    ap.add_argument("--full-scan-queries", type=int, default=20)
    ap.add_argument("--extra-prefetch", type=int, nargs="*", default=[100, 400])
    ap.add_argument("--shared", type=Path, default=SHARED, help="the project's shared folder (data/, tools/)")
    ap.add_argument("--keep", action="store_true", help="keep the indexes under benchmarks/_work")
    ap.add_argument("--out", default="qdrant-first-stage")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.quick:
        args.synthetic_docs, args.synthetic_queries, args.scifact_queries = 1500, 10, 10
        args.tokens_docs, args.full_scan_queries = 200, 3
    if args.merge:
        import json

        parts = [json.loads(p.read_text(encoding="utf-8")) for p in args.merge]
        merged = merge_results([r for part in parts for r in part["results"]])
        loads = (parts[0]["load_before"], parts[-1]["load_after"])
        out = RESULTS / args.out
        write_json(out.with_suffix(".json"), {"results": merged, "load_before": loads[0], "load_after": loads[1]})
        out.with_suffix(".md").write_text(report(merged, args, loads), encoding="utf-8")
        return
    load0 = loadavg_text()
    results = []
    if not args.no_synthetic:
        results.append(run_dataset("synthetic", narrow_cone(args.synthetic_docs, args.synthetic_queries), args))
    if not args.no_scifact:
        ds = scifact(args.shared, 300)
        ds["queries"] = ds["queries"][: args.scifact_queries]
        if args.quick:
            ds = subset(ds, 1000)
        results.append(run_dataset("scifact-minilm", ds, args))
    load1 = loadavg_text()
    out = RESULTS / (args.out + ("-quick" if args.quick else ""))
    write_json(out.with_suffix(".json"), {"results": results, "load_before": load0, "load_after": load1})
    out.with_suffix(".md").write_text(report(results, args, (load0, load1)), encoding="utf-8")
    logger.info("wrote %s.md / .json", out)


if __name__ == "__main__":
    main()
