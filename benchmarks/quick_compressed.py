"""Quick side-by-side of the Voyager stores on the synthetic set (one thread): int14 vs compression 2bit / 4bit.

Builds each index by upserting chunks of 200 documents, waits for the background seals, then reports build time,
bytes per token on disk (before and after ``compact()``), recall@10 against exact float32 MaxSim, and query p50,
for the default search settings and for the ``n_probe,n_interact,n_full`` triples given. The full benchmark
(fast-plaid side by side, 1.64M tokens, SciFact) is ``bench_voyager``'s; this one sizes the defaults in minutes.

Usage: ``python -m benchmarks.quick_compressed N_DOCS int14,2bit,4bit [n_probe,n_interact,n_full ...]``
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks._voyager_systems import split, synthetic  # noqa: E402
from colbert_adapters.backends.voyager import VoyagerBackend  # noqa: E402
from colbert_adapters.scoring import maxsim_flat  # noqa: E402


def main() -> None:
    n_docs, modes = int(sys.argv[1]), sys.argv[2].split(",")
    settings = [tuple(int(v) for v in arg.split(",")) for arg in sys.argv[3:]]
    # 16 documents per topic, as the 1.64M-token set (10k documents, 5,000 topics).
    g = synthetic(n_docs, 164, 128, 40, 32, seed=1, n_topics=max(n_docs // 2, 64))
    flat, lens = g["flat"], g["lens"]
    docs, queries, ids = split(flat, lens), np.split(g["qflat"], 40), [f"d{i}" for i in range(n_docs)]
    offsets = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    truth = [set(np.argsort(-maxsim_flat(q, flat, offsets, validate=False))[:10].tolist()) for q in queries]
    print(f"{flat.shape[0]} tokens, load {os.getloadavg()[0]:.1f}")
    for mode in modes:
        t0 = time.perf_counter()
        backend = VoyagerBackend(tempfile.mkdtemp() + "/index", dim=128, compression=mode, num_threads=1)
        for start in range(0, n_docs, 200):
            backend.upsert(ids[start : start + 200], docs[start : start + 200])
        backend.wait_for_maintenance()
        build = time.perf_counter() - t0

        def run(b: VoyagerBackend = backend) -> tuple[float, float]:
            recall, times = [], []
            for q, want in zip(queries, truth, strict=True):
                t = time.perf_counter()
                hits = b.search(q, k=10)
                times.append(time.perf_counter() - t)
                recall.append(len({int(h.id[1:]) for h in hits} & want) / 10)
            return float(np.mean(recall)), 1000 * float(np.median(times))

        stats = backend.stats()
        recall, p50 = run()
        print(
            f"{mode}: build {build:.1f}s, {stats['disk_bytes'] / stats['n_live_tokens']:.1f} B/token, "
            f"recall@10 {recall:.3f}, p50 {p50:.1f} ms (load {os.getloadavg()[0]:.1f})"
        )
        if mode in ("2bit", "4bit"):
            for n_probe, n_interact, n_full in settings:
                backend.n_probe, backend.n_interact, backend.n_full = n_probe, n_interact, n_full
                recall, p50 = run()
                print(f"  n_probe {n_probe} n_interact {n_interact} n_full {n_full}: recall {recall:.3f}, {p50:.1f} ms")
        backend.compact()
        stats = backend.stats()
        print(f"  after compact(): {stats['disk_bytes'] / stats['n_live_tokens']:.1f} B/token")
        backend.close()


if __name__ == "__main__":
    main()
