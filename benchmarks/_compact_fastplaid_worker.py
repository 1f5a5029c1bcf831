#!/usr/bin/env python3
"""fast-plaid side of ``bench_compact.py``; runs inside fast-plaid's own virtualenv (``pip install fast-plaid``).

Standard library, numpy, torch and fast-plaid only (plus ``_common.py`` and ``_compact_data.py`` beside it): it
must not import colbert_adapters. Same phases and JSON fields as ``_compact_ours_worker.py``, on ``device="cpu"``:

* ``build``: ``FastPlaid(index).create(documents, nbits=...)`` with its defaults otherwise (k-means on a sample,
  4 iterations). fast-plaid takes every document at once, so they are all in memory (float32 tensors) before the
  clock starts; the seconds are those of ``create``.
* ``query``: open (``FastPlaid(index, device="cpu")``: the index is read into memory), the warm-up queries, the
  timed queries one at a time (``n_processes=1``; one thread: the caller sets the thread variables, and torch is
  set to one thread here) with ``--n-full-scores``, resident memory, then a sweep of ``--sweep`` values of
  ``n_full_scores`` (recall and latency of each, after the memory readings).
* ``update``: ``update()`` with the extra 1%, ``delete()`` of 1% of the documents.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# Run as a script: this folder is on sys.path, so the shared helpers import as top-level modules.
from _common import dir_bytes, peak_memory, proc_status_kib, write_json
from _compact_data import Dataset

os.environ.setdefault("TQDM_DISABLE", "1")


def _cpu_s() -> float:
    """CPU seconds of this process so far (every thread, user + system)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _rss() -> int:
    return proc_status_kib("VmRSS") or 0


def _ids(res: list[tuple[int, float]]) -> list[str]:
    return [f"d{int(pid)}" for pid, _ in res]


def build(ds: Dataset, index: str, nbits: int) -> dict:
    import torch
    from fast_plaid import search

    t0 = time.perf_counter()
    docs = []
    for _, lens, flat in ds.chunks():
        docs.extend(torch.from_numpy(flat).split(lens.tolist()))
    gen_s = time.perf_counter() - t0
    cpu_start = _cpu_s()
    t0 = time.perf_counter()
    fp = search.FastPlaid(index=index, device="cpu")
    fp.create(documents_embeddings=docs, nbits=nbits)
    build_s = time.perf_counter() - t0
    return {
        "build_s": build_s,
        "generate_s": gen_s,
        "disk_bytes": dir_bytes(index),
        "files": {f: os.path.getsize(os.path.join(index, f)) for f in sorted(os.listdir(index))},
        "peak_memory": peak_memory(),
        "cpu_s": _cpu_s() - cpu_start,
        "torch_threads_build": torch.get_num_threads(),
    }


def _search(fp, q, k: int, n_full_scores: int) -> list[tuple[int, float]]:
    import torch

    return fp.search(
        queries_embeddings=torch.from_numpy(q)[None],
        top_k=k,
        n_full_scores=n_full_scores,
        show_progress=False,
        n_processes=1,
    )[0]


def query(ds: Dataset, index: str, k: int, n_full_scores: int, sweep: list[int]) -> dict:
    import torch
    from fast_plaid import search

    torch.set_num_threads(1)
    queries, warm = ds.queries(), ds.warmup_queries()
    rss_base = _rss()
    t0 = time.perf_counter()
    fp = search.FastPlaid(index=index, device="cpu")
    open_s = time.perf_counter() - t0
    rss_open = _rss()
    warm_s = []
    for q in warm:
        t0 = time.perf_counter()
        _search(fp, q, k, n_full_scores)
        warm_s.append(time.perf_counter() - t0)
    times, results, cpu_times = [], [], []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for q in queries:
        t0, c0 = time.perf_counter(), time.process_time()
        res = _search(fp, q, k, n_full_scores)
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
        results.append(_ids(res))
    cpu_s, wall_s = time.process_time() - cpu0, time.perf_counter() - wall0
    rss_after = _rss()
    out = {
        "open_s": open_s,
        "n_full_scores": n_full_scores,
        "query_times_s": times,
        "query_cpu_times_s": cpu_times,
        "warmup_times_s": warm_s,
        "results": results,
        "timed_cpu_s": cpu_s,
        "timed_wall_s": wall_s,
        "rss_base_kib": rss_base,
        "rss_open_kib": rss_open,
        "rss_after_queries_kib": rss_after,
        "rss_anon_after_queries_kib": proc_status_kib("RssAnon"),
        "rss_file_after_queries_kib": proc_status_kib("RssFile"),
        "torch_threads": torch.get_num_threads(),
        "sweep": [],
    }
    for n in sweep:
        s_times, s_results = [], []
        for q in queries:
            t0 = time.perf_counter()
            res = _search(fp, q, k, n)
            s_times.append(time.perf_counter() - t0)
            s_results.append(_ids(res))
        out["sweep"].append({"n_full_scores": n, "query_times_s": s_times, "results": s_results})
    return out


def update(ds: Dataset, index: str) -> dict:
    import torch
    from fast_plaid import search

    ids, docs = ds.extra()
    gone = ds.delete_indexes()
    fp = search.FastPlaid(index=index, device="cpu")
    t0 = time.perf_counter()
    fp.update(documents_embeddings=[torch.from_numpy(d) for d in docs])
    add_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    fp.delete(subset=gone)
    delete_s = time.perf_counter() - t0
    return {
        "add_docs": len(ids),
        "add_tokens": int(sum(d.shape[0] for d in docs)),
        "add_s": add_s,
        "delete_docs": len(gone),
        "delete_s": delete_s,
        "disk_bytes_after": dir_bytes(index),
    }


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("phase", choices=("build", "query", "update"))
    p.add_argument("--data", required=True)
    p.add_argument("--index", required=True)
    p.add_argument("--nbits", type=int, default=2)
    p.add_argument("--n-full-scores", type=int, default=256)
    p.add_argument("--sweep", default="", help="comma-separated n_full_scores values measured after the main run")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    ds = Dataset(a.data)
    if a.phase == "build":
        out = build(ds, a.index, a.nbits)
    elif a.phase == "query":
        sweep = [int(x) for x in a.sweep.split(",") if x.strip()]
        out = query(ds, a.index, a.k, a.n_full_scores, sweep)
    else:
        out = update(ds, a.index)
    try:
        import importlib.metadata as md

        out["versions"] = {"python": sys.version.split()[0], "fast_plaid": md.version("fast-plaid"),
                           "torch": md.version("torch")}  # fmt: skip
    except Exception:
        pass
    write_json(Path(a.out), out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
