#!/usr/bin/env python3
"""Voyager backend benchmark: ours vs PyLate 1.6.0's ``indexes.Voyager`` vs the exact MemoryBackend.

Every system gets the same precomputed token embeddings (``.npy`` files in ``benchmarks/_work/voyager``):

* **synthetic**: clustered random unit vectors, 128-d (each document mixes 8 of 4,096 random topics,
  tokens are noisy copies of topic centres; each query is drawn from the topics of one document), so that
  the top 10 is well defined and recall is meaningful. Used for the scale measurements.
* **real**: all-MiniLM-L6-v2 token vectors (384-d, ``document_length`` 128) of 1,000 Cranfield documents and
  100 of its queries (``../shared/data/cranfield`` beside the checkout), encoded once with our ColBERTEncoder.

Measured: (a) bulk add of 10,000 docs x 100 tokens; (b) adding one document to that index; (c) 100 queries
x 32 tokens, top-10, p50/p95; (d) recall@10 against exact MaxSim; (e) bytes per stored token on disk and
resident memory; query latency growth from 1k to 10k to 100k documents against the exact backend.
PyLate is measured at the issue's size (10,000 synthetic documents; ~12-15 minutes of its inserts), on the
first 1,000 of them, and on the 1,000 real documents; every comparison says which size it comes from.
Also measured: what the document store's vector encoding (int14 by default, int8, float16) costs in recall and
score error against float32, with exact MaxSim over every document.

PyLate runs in its own virtualenv (``--pylate-python``, default ``$PYLATE_PYTHON`` or ``../venvs/pylate/bin/python``
beside the checkout) through ``_voyager_pylate_worker.py``. Without it, the PyLate runs are skipped: the report
says so, and its PyLate cells read "not run".

Usage::

    python benchmarks/bench_voyager.py            # full run (~50 min on 2 shared cores)
    python benchmarks/bench_voyager.py --quick    # small sizes, to check the script
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# numpy's BLAS (OpenBLAS) runs single-threaded (override by setting the variable): on this shared 2-core machine a
# 2-thread OpenBLAS is 3-6x slower on the small products of a query. torch, which computes our MaxSim products,
# keeps its default threads, as a user's process would (the Voyager rerank uses one torch thread by itself).
# PyLate's worker gets the original environment (torch and voyager defaults).
_ORIGINAL_ENV = dict(os.environ)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks._common import (  # noqa: E402
    RESULTS,
    cpu_model,
    default_pylate_python,
    loadavg,
    percentile_ms,
    pylate_missing_note,
    pylate_python_found,
    read_json,
)
from benchmarks._voyager_report import write_report  # noqa: E402
from benchmarks._voyager_systems import (  # noqa: E402
    CHECKED_DTYPES,
    INT8,
    LIGHT,
    VOYAGER_WORK,
    incremental_system,
    memory_system,
    ours_system,
    pylate_system,
    real_minilm,
    recall,
    rss_probe_main,
    split,
    storage_check,
    subset,
    synthetic,
    variant,
)

#: PyLate's worker runs with the environment this process started with (its torch and voyager thread defaults).
PYLATE_ENV = {**_ORIGINAL_ENV, "TQDM_DISABLE": "1"}


@dataclass(frozen=True)
class Sizes:
    """Documents and queries of each phase (``--quick`` shrinks them all)."""

    n_big: int
    n_small: int
    n_queries: int
    growth: list[tuple[int, int]]
    n_real: int
    n_real_queries: int

    @classmethod
    def for_run(cls, quick: bool) -> Sizes:
        if quick:
            return cls(1000, 200, 20, [(500, 20), (2000, 20)], 200, 20)
        return cls(10_000, 1000, 100, [(1000, 20), (10_000, 20), (100_000, 20)], 1000, 100)


def progress(msg: str) -> None:
    """One progress line on stdout: time, 1-minute load average, what starts."""
    print(f"[{time.strftime('%H:%M:%S')}] load {os.getloadavg()[0]:.1f}  {msg}", flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (checks the script, numbers meaningless)")
    ap.add_argument(
        "--pylate-python",
        default=default_pylate_python(),
        help="python of a virtualenv with PyLate (default $PYLATE_PYTHON or %(default)s); '' skips PyLate",
    )
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--rss-probe", help=argparse.SUPPRESS)
    ap.add_argument("--report-only", metavar="JSON", help="rebuild the markdown report from a results JSON")
    a = ap.parse_args(argv)
    if a.report_only:
        R = read_json(Path(a.report_only))
        write_report(R, Path(a.out), quick=bool(R.get("quick")))
        return
    if a.rss_probe:
        rss_probe_main(a.rss_probe)
        return
    VOYAGER_WORK.mkdir(parents=True, exist_ok=True)
    sizes = Sizes.for_run(a.quick)
    pylate = a.pylate_python if pylate_python_found(a.pylate_python) else None
    if pylate is None:
        progress(f"WARNING: {pylate_missing_note(a.pylate_python)}: measuring ours and the exact backend only")
    R = start_results(a.quick)
    syn = measure_synthetic(R, sizes)
    measure_synthetic_1k(R, syn, sizes)
    measure_pylate_synthetic(R, syn, sizes, pylate, a.pylate_python)
    measure_real(R, sizes, pylate, a.pylate_python)
    measure_growth(R, sizes)
    R["machine"]["load_end"] = loadavg(None)
    R["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    write_report(R, Path(a.out), quick=a.quick)


def start_results(quick: bool) -> dict[str, Any]:
    return {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {
            "cpus": os.cpu_count(),
            "cpu_model": cpu_model(),
            "python": platform.python_version(),
            "load_start": loadavg(None),
            "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        },
        "quick": quick,
    }


# ---------------------------------------------------------------------------------------------- steps


def measure_synthetic(R: dict[str, Any], sizes: Sizes) -> dict[str, Any]:
    """10k synthetic documents x 100 tokens (128-d): the exact truth, ours with the defaults and each variant, the
    store encodings' ceilings, and the same documents written incrementally. Returns the data set."""
    progress("synthetic data")
    syn = synthetic(sizes.n_big, 100, 128, sizes.n_queries, 32, seed=0)
    queries = split(syn["qflat"], syn["qlens"])
    progress("memory backend, 10k docs")
    R["syn_memory"] = memory_system(syn, queries)
    truth = R["syn_memory"]["results"]
    progress("ours, 10k docs")
    R["syn_ours"] = ours_system(syn, queries, VOYAGER_WORK / "ours_10k", rss_probe=True, cache_off=True)
    R["syn_ours"]["recall_at_10"] = recall(R["syn_ours"]["results"], truth)
    progress("ours, 10k docs, float16 vectors in the store")
    R["syn_ours_fp16"] = variant(syn, queries, truth, "ours_10k_fp16", single_adds=1, vector_dtype="float16")
    for vdt in CHECKED_DTYPES:
        progress(f"exact MaxSim on {vdt}-stored vectors, 10k docs")
        R[f"syn_check_{vdt}"] = storage_check(syn, queries, truth, vdt)
    progress("ours, 10k docs, full-dimension graphs (graph_dim=128)")
    R["syn_ours_full"] = variant(syn, queries, truth, "ours_10k_proj", single_adds=1, graph_dim=128)
    progress("ours, 10k docs, int8 profile")
    R["syn_ours_int8"] = variant(syn, queries, truth, "ours_10k_int8", single_adds=1, **INT8)
    progress("ours, 10k docs, light settings")
    R["syn_ours_light"] = variant(syn, queries, truth, "ours_10k_light", **LIGHT)
    progress("ours, 10k docs written in upserts of 100 documents")
    inc = incremental_system(syn, queries, VOYAGER_WORK / "ours_10k_incremental", batch=100)
    inc["recall_at_10"] = recall(inc["results"], truth)
    R["syn_ours_incremental"] = inc
    gc.collect()
    return syn


def measure_synthetic_1k(R: dict[str, Any], syn: dict[str, Any], sizes: Sizes) -> None:
    """The first 1k of the synthetic documents: the exact truth, ours with the defaults and the int8 profile."""
    small = subset(syn, sizes.n_small)
    queries = split(syn["qflat"], syn["qlens"])
    progress("memory backend, 1k docs")
    R["syn1k_memory"] = memory_system(small, queries)
    truth1k = R["syn1k_memory"]["results"]
    progress("ours, 1k docs")
    R["syn1k_ours"] = ours_system(small, queries, VOYAGER_WORK / "ours_1k", cache_off=True)
    R["syn1k_ours"]["recall_at_10"] = recall(R["syn1k_ours"]["results"], truth1k)
    progress("ours, 1k docs, int8 profile")
    R["syn1k_ours_int8"] = variant(small, queries, truth1k, "ours_1k_int8", single_adds=1, **INT8)


def measure_pylate_synthetic(
    R: dict[str, Any], syn: dict[str, Any], sizes: Sizes, pylate: str | None, requested: str
) -> None:
    """PyLate on the 10k and the 1k synthetic documents (a stub saying why where PyLate is missing)."""
    progress("PyLate, 10k docs")
    R["syn_pylate"] = pylate_run(syn, sizes.n_big, sizes.n_queries, pylate, requested, "syn", "syn10k")
    if "skipped" not in R["syn_pylate"]:
        R["syn_pylate"]["recall_at_10"] = recall(R["syn_pylate"]["results"], R["syn_memory"]["results"])
    progress("PyLate, 1k docs")
    R["syn1k_pylate"] = pylate_run(syn, sizes.n_small, sizes.n_queries, pylate, requested, "syn")
    if "skipped" not in R["syn1k_pylate"]:
        R["syn1k_pylate"]["recall_at_10"] = recall(R["syn1k_pylate"]["results"], R["syn1k_memory"]["results"])


def pylate_run(
    data: dict[str, Any], n_docs: int, n_queries: int, pylate: str | None, requested: str, tag: str, name: str = ""
) -> dict[str, Any]:
    """:func:`pylate_system`, or where PyLate is missing the sizes it would have indexed and why it did not."""
    if pylate is None:
        n_tokens = int(data["lens"][:n_docs].sum())
        return {"skipped": pylate_missing_note(requested), "n_docs": n_docs, "n_tokens": n_tokens}
    return pylate_system(data, n_docs, n_queries, pylate, tag, name or None, env=PYLATE_ENV)


def measure_real(R: dict[str, Any], sizes: Sizes, pylate: str | None, requested: str) -> None:
    """MiniLM token vectors of Cranfield (384-d): the exact truth and ceilings, ours with each graph storage and
    variant, and PyLate."""
    progress("real vectors (MiniLM on Cranfield)")
    real = real_minilm(sizes.n_real, sizes.n_real_queries)
    rq = split(real["qflat"], real["qlens"])
    R["real_info"] = {
        "n_docs": len(real["lens"]),
        "n_tokens": int(real["lens"].sum()),
        "n_queries": len(rq),
        "mean_query_tokens": float(real["qlens"].mean()),
        "dim": int(real["flat"].shape[1]),
    }
    R["real_memory"] = memory_system(real, rq)
    rtruth = R["real_memory"]["results"]
    for vdt in CHECKED_DTYPES:
        R[f"real_check_{vdt}"] = storage_check(real, rq, rtruth, vdt)
    progress("ours on real vectors, float16 vectors in the store")
    R["real_ours_fp16"] = ours_system(real, rq, VOYAGER_WORK / "ours_real_fp16", vector_dtype="float16")
    R["real_ours_fp16"]["recall_at_10"] = recall(R["real_ours_fp16"]["results"], rtruth)
    for storage in ("float8", "float32", "e4m3"):
        progress(f"ours on real vectors, storage {storage}")
        res = ours_system(
            real,
            rq,
            VOYAGER_WORK / f"ours_real_{storage}",
            storage_data_type=storage,
            rss_probe=storage == "float8",
            cache_off=storage == "float8",
        )
        res["recall_at_10"] = recall(res["results"], rtruth)
        R[f"real_ours_{storage}"] = res
    progress("ours on real vectors, light settings")
    R["real_ours_light"] = ours_system(real, rq, VOYAGER_WORK / "ours_real_light", **LIGHT)
    R["real_ours_light"]["recall_at_10"] = recall(R["real_ours_light"]["results"], rtruth)
    progress("ours on real vectors, full-dimension graphs (graph_dim=384)")
    R["real_ours_full"] = variant(real, rq, rtruth, "ours_real_proj", graph_dim=384)
    progress("ours on real vectors, int8 profile")
    R["real_ours_int8"] = variant(real, rq, rtruth, "ours_real_int8", **INT8)
    progress("PyLate on real vectors")
    R["real_pylate"] = pylate_run(real, sizes.n_real, sizes.n_real_queries, pylate, requested, "real")
    if "skipped" not in R["real_pylate"]:
        R["real_pylate"]["recall_at_10"] = recall(R["real_pylate"]["results"], rtruth)


def measure_growth(R: dict[str, Any], sizes: Sizes) -> None:
    """Query latency and recall of ours against the exact backend as the collection grows (20-token documents)."""
    R["growth"] = []
    for n_docs, tokens in sizes.growth:
        progress(f"growth: {n_docs} docs x {tokens} tokens")
        g = synthetic(n_docs, tokens, 128, 30, 32, seed=1, n_topics=max(4096, n_docs // 2))
        gq = split(g["qflat"], g["qlens"])
        mem = memory_system(g, gq)
        path = VOYAGER_WORK / f"growth_{n_docs}"
        ours = ours_system(g, gq, path, single_adds=1, rss_probe=n_docs == sizes.growth[-1][0])
        R["growth"].append(growth_row(n_docs, tokens, ours, mem))
        shutil.rmtree(path, ignore_errors=True)
        del g, mem, ours
        gc.collect()


def growth_row(n_docs: int, tokens: int, ours: dict[str, Any], mem: dict[str, Any]) -> dict[str, Any]:
    ms = percentile_ms
    return {
        "n_docs": n_docs, "tokens_per_doc": tokens, "n_vectors": n_docs * tokens,
        "ours_p50_ms": ms(ours["query_times_s"], 50), "ours_p95_ms": ms(ours["query_times_s"], 95),
        "memory_p50_ms": ms(mem["query_times_s"], 50), "memory_p95_ms": ms(mem["query_times_s"], 95),
        "ours_recall_at_10": recall(ours["results"], mem["results"]),
        "ours_bulk_add_vectors_per_s": n_docs * tokens / ours["bulk_add_s"],
        "ours_rss": ours.get("rss"),
        "ours_segment_beams": ours.get("segment_beams"),
    }  # fmt: skip


if __name__ == "__main__":
    main()
