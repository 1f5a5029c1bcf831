#!/usr/bin/env python3
"""Our side of ``bench_compact.py``: one phase of one ``VoyagerBackend`` configuration, in a fresh process.

``bench_compact.py`` runs it with our virtualenv's python; ``_compact_fastplaid_worker.py`` is its fast-plaid twin
(same phases, same JSON fields). Phases:

* ``build``: create the index at ``--index`` and write the data set into it in upserts of ``--chunk-docs``
  documents (with ``--stream`` the documents are generated chunk by chunk between the upserts, so memory stays
  bounded), wait for the background maintenance, close. Seconds to the end of ``close()``, peak resident memory,
  ``stats()``, bytes on disk.
* ``query``: open the index read-only with one thread (environment set by the caller, plus ``torch`` and Voyager
  set to one thread here), resident memory before and after the open, the warm-up queries, the timed queries
  (seconds and top-10 ids of each), resident memory after them.
* ``update``: open for writing, upsert the extra 1% in one call, delete 1% of the documents in one call (each
  timed until it returns, i.e. durable), close.

Options of the backend come as JSON (``--options``); ``compression`` is passed only when the installed backend
takes it, else the phase writes ``{"unavailable": ...}``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks._common import dir_bytes, peak_memory, proc_status_kib, write_json  # noqa: E402
from benchmarks._compact_data import Dataset  # noqa: E402


def backend_takes(name: str) -> bool:
    """Whether this revision's ``VoyagerBackend`` constructor has the keyword ``name``."""
    from colbert_adapters.backends.voyager import VoyagerBackend

    return name in inspect.signature(VoyagerBackend.__init__).parameters


def _cpu_s() -> float:
    """CPU seconds of this process so far (every thread, user + system)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _rss() -> int:
    return proc_status_kib("VmRSS") or 0


def build(ds: Dataset, index: Path, options: dict[str, Any], chunk_docs: int, stream: bool) -> dict[str, Any]:
    """Without ``stream`` every batch is in memory before the clock starts (as fast-plaid's are); with it, the
    batches are generated between the upserts and ``build_s`` counts the generator's seconds too (the background
    maintenance overlaps them), ``generate_s`` says how many."""
    from colbert_adapters.backends.voyager import VoyagerBackend

    batches = ds.documents(chunk_docs) if stream else iter(list(ds.documents(chunk_docs)))
    cpu_start = _cpu_s()
    t_start = t0 = time.perf_counter()
    backend = VoyagerBackend(index, dim=ds.dim, **options)
    open_s = time.perf_counter() - t0
    upsert_s = 0.0
    t0 = time.perf_counter()
    for ids, docs in batches:
        t1 = time.perf_counter()
        backend.upsert(ids, docs)
        upsert_s += time.perf_counter() - t1
    generate_s = time.perf_counter() - t0 - upsert_s
    t1 = time.perf_counter()
    backend.wait_for_maintenance()
    wait_s = time.perf_counter() - t1
    stats = backend.stats()
    t1 = time.perf_counter()
    backend.close()
    close_s = time.perf_counter() - t1
    return {
        "build_s": time.perf_counter() - t_start,
        "streamed": stream,
        "create_s": open_s,
        "generate_s": generate_s,
        "upsert_s": upsert_s,
        "wait_maintenance_s": wait_s,
        "close_s": close_s,
        "disk_bytes": dir_bytes(index),
        "files": {p.name: p.stat().st_size for p in sorted(index.rglob("*")) if p.is_file()},
        "stats": {k: v for k, v in stats.items() if k not in ("maintenance",)},
        "peak_memory": peak_memory(),
        "cpu_s": _cpu_s() - cpu_start,
    }


def query(ds: Dataset, index: Path, options: dict[str, Any], k: int) -> dict[str, Any]:
    import numpy as np
    import torch

    from colbert_adapters.backends.voyager import VoyagerBackend

    torch.set_num_threads(1)
    queries, warm = ds.queries(), ds.warmup_queries()
    search_opts = {key: v for key, v in options.items() if key not in ("compression", "vector_dtype")}
    rss_base = _rss()
    t0 = time.perf_counter()
    backend = VoyagerBackend(index, read_only=True, num_threads=1, **search_opts)
    open_s = time.perf_counter() - t0
    rss_open = _rss()
    warm_s = []
    for q in warm:
        t0 = time.perf_counter()
        backend.search(q, k=k)
        warm_s.append(time.perf_counter() - t0)
    times, results, cpu_times = [], [], []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for q in queries:
        t0, c0 = time.perf_counter(), time.process_time()
        hits = backend.search(np.ascontiguousarray(q), k=k)
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
        results.append([h.id for h in hits])
    cpu_s, wall_s = time.process_time() - cpu0, time.perf_counter() - wall0
    rss_after = _rss()
    backend.close()
    return {
        "open_s": open_s,
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
    }


def update(ds: Dataset, index: Path, options: dict[str, Any]) -> dict[str, Any]:
    from colbert_adapters.backends.voyager import VoyagerBackend

    search_opts = {key: v for key, v in options.items() if key not in ("compression", "vector_dtype")}
    ids, docs = ds.extra()
    gone = [f"d{i}" for i in ds.delete_indexes()]
    backend = VoyagerBackend(index, **search_opts)
    t0 = time.perf_counter()
    backend.upsert(ids, docs)
    add_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    deleted = backend.delete(gone)
    delete_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    backend.wait_for_maintenance()
    backend.close()
    settle_s = time.perf_counter() - t0
    return {
        "add_docs": len(ids),
        "add_tokens": int(sum(d.shape[0] for d in docs)),
        "add_s": add_s,
        "delete_docs": len(gone),
        "deleted": deleted,
        "delete_s": delete_s,
        "settle_close_s": settle_s,
        "disk_bytes_after": dir_bytes(index),
    }


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("phase", choices=("build", "query", "update"))
    p.add_argument("--data", required=True)
    p.add_argument("--index", required=True)
    p.add_argument("--options", default="{}", help="VoyagerBackend keyword arguments, as JSON")
    p.add_argument("--chunk-docs", type=int, default=2000)
    p.add_argument("--stream", action="store_true", help="generate the batches between the upserts")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    options = json.loads(a.options)
    missing = [key for key in options if not backend_takes(key)]
    if missing:
        write_json(Path(a.out), {"unavailable": f"VoyagerBackend has no {', '.join(missing)}= in this revision"})
        return 0
    ds, index = Dataset(a.data), Path(a.index)
    if a.phase == "build":
        out = build(ds, index, options, a.chunk_docs, a.stream)
    elif a.phase == "query":
        out = query(ds, index, options, a.k)
    else:
        out = update(ds, index, options)
    write_json(Path(a.out), out, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
