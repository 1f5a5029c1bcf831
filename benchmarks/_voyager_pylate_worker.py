#!/usr/bin/env python3
"""PyLate side of ``bench_voyager.py``; runs inside PyLate's own virtualenv (PyLate 1.6.0, voyager<2.2).

Standard library + numpy + PyLate only (and ``_common.py`` beside it, standard library only): it must not import
colbert_adapters. It reads precomputed token
embeddings (``.npy``: flat ``(n_tokens, dim)`` float32 plus per-document lengths), builds PyLate's
``indexes.Voyager`` with its defaults, times the bulk add, a one-document add and per-query
``retrieve.ColBERT.retrieve`` calls (after the warm-up queries, when given, answered the same way), and writes a
JSON result.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

# Run as a script: this folder is on sys.path, so the shared helpers import as a top-level module.
from _common import dir_bytes, proc_status_kib

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--docs", required=True)
    p.add_argument("--lens", required=True)
    p.add_argument("--queries", required=True)
    p.add_argument("--qlens", required=True)
    p.add_argument("--warmup", help="warm-up queries (flat .npy), answered untimed before the timed ones")
    p.add_argument("--wlens", help="token counts of the warm-up queries (.npy)")
    p.add_argument("--n-docs", type=int, required=True)
    p.add_argument("--n-queries", type=int, required=True)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--workdir", required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args()

    import numpy as np
    import voyager
    from pylate import indexes, retrieve

    lens = np.load(a.lens)[: a.n_docs]
    flat = np.load(a.docs, mmap_mode="r")[: int(lens.sum())]
    docs = [np.ascontiguousarray(x) for x in np.split(np.asarray(flat), np.cumsum(lens)[:-1])]
    qlens = np.load(a.qlens)[: a.n_queries]
    qflat = np.load(a.queries)[: int(qlens.sum())]
    queries = np.split(qflat, np.cumsum(qlens)[:-1])
    ids = [f"d{i}" for i in range(len(docs))]
    rss_base = proc_status_kib("VmRSS")

    shutil.rmtree(os.path.join(a.workdir, "pylate"), ignore_errors=True)
    index = indexes.Voyager(index_folder=a.workdir, index_name="pylate", override=True, embedding_size=docs[0].shape[1])
    t0 = time.perf_counter()
    index.add_documents(documents_ids=ids, documents_embeddings=docs)
    bulk_s = time.perf_counter() - t0
    folder = os.path.join(a.workdir, "pylate")
    disk = dir_bytes(folder)

    retriever = retrieve.ColBERT(index=index)
    warm_times = []
    if a.warmup:
        wlens = np.load(a.wlens)
        for q in np.split(np.load(a.warmup), np.cumsum(wlens)[:-1]):
            t0 = time.perf_counter()
            retriever.retrieve(queries_embeddings=[q], k=a.k)
            warm_times.append(time.perf_counter() - t0)
    times, results = [], []
    for q in queries:
        t0 = time.perf_counter()
        res = retriever.retrieve(queries_embeddings=[q], k=a.k)
        times.append(time.perf_counter() - t0)
        results.append([r["id"] for r in res[0]])
    rss = proc_status_kib("VmRSS")

    t0 = time.perf_counter()
    index.add_documents(documents_ids=["extra-doc"], documents_embeddings=[docs[0]])
    single_s = time.perf_counter() - t0

    out = {
        "n_docs": len(docs),
        "n_tokens": int(lens.sum()),
        "bulk_add_s": bulk_s,
        "single_add_s": single_s,
        "query_times_s": times,
        "warmup_times_s": warm_times,
        "results": results,
        "disk_bytes": disk,
        "rss_kib": rss,
        "rss_base_kib": rss_base,
        "versions": {"python": sys.version.split()[0], "voyager": getattr(voyager, "__version__", "?")},
    }
    try:
        import importlib.metadata as md

        out["versions"].update({"pylate": md.version("pylate"), "voyager": md.version("voyager")})
    except Exception:
        pass
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(out, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
