"""Resident memory of a Voyager ingest: RSS (anonymous and file-backed) and its peak after upserting N documents and
waiting for the background seals, and after ``close()``.

    python benchmarks/mem_voyager_ingest.py                      # 1,200 docs x 250 tokens x 384-d (461 MB float32)
    python benchmarks/mem_voyager_ingest.py --cache-bytes 0
    MALLOC_ARENA_MAX=1 python benchmarks/mem_voyager_ingest.py   # glibc: one malloc arena for every thread

Run it once per setting (peak RSS is per process).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from colbert_adapters.backends.voyager import VoyagerBackend

logger = logging.getLogger("mem_voyager_ingest")


def memory() -> dict[str, int]:
    """``VmHWM``, ``VmRSS``, ``RssAnon``, ``RssFile`` of this process, in MB."""
    out = {}
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0]) // 1024
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=1200)
    ap.add_argument("--tokens", type=int, default=250)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--cache-bytes", type=int, default=VoyagerBackend.DEFAULT_CACHE_BYTES)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rng = np.random.default_rng(0)
    work = tempfile.mkdtemp(prefix="mem-voyager-")
    try:
        size_mb = args.docs * args.tokens * args.dim * 4 // 10**6
        logger.info("%d docs x %d tokens x %d-d: %d MB of float32; cache_bytes=%d", args.docs, args.tokens, args.dim,
                    size_mb, args.cache_bytes)  # fmt: skip
        backend = VoyagerBackend(work, dim=args.dim, cache_bytes=args.cache_bytes)
        logger.info("opened:       %s", memory())
        for start in range(0, args.docs, 100):
            stop = min(args.docs, start + 100)
            v = rng.standard_normal((stop - start, args.tokens, args.dim)).astype(np.float32)
            v /= np.linalg.norm(v, axis=-1, keepdims=True)
            backend.upsert([f"d{i}" for i in range(start, stop)], list(v))
        backend.wait_for_maintenance()
        logger.info("after ingest: %s", memory())
        backend.close()
        logger.info("after close:  %s", memory())
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
