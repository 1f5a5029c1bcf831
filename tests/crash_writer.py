"""Writer process for ``test_crash.py``: applies a deterministic stream of writes until killed.

Usage: ``python crash_writer.py BACKEND INDEX_DIR SEED FIRST_OP LOG_FILE`` with BACKEND ``voyager`` or
``qdrant-edge``. After each write returns, its number is appended to ``LOG_FILE`` (fsync'ed), with ``bg`` when
Voyager's background workers then had a seal or merge requested or running: the parent knows which writes were
acknowledged, and that some kills landed during background maintenance. The same module gives the parent the
backends (:func:`open_backend`), the operations (:func:`make_op`) and their expected effect (:func:`apply_op`).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np

DIM = 8
POOL = [f"k{i}" for i in range(40)]
#: Small segments, so that sealing, folding and rebuilding all happen within a few writes.
OPTIONS: dict[str, Any] = {"mutable_max_tokens": 24, "max_segments": 3, "compact_deleted_ratio": 0.4}
BACKENDS = ("voyager", "qdrant-edge")
#: The Voyager kind with projected graphs and int8 vectors (the other kind: the defaults, int14).
PROFILE = "voyager-int8-projected"
#: The Voyager kind with the compressed store: the codec is trained after a few writes, and seals empty the rows.
COMPRESSED = "voyager-2bit"


def open_backend(kind: str, path: str) -> Any:
    """The backend under test, opened for writing on ``path``."""
    if kind.startswith("voyager"):
        from colbert_adapters.backends.voyager import VoyagerBackend

        if kind == COMPRESSED:
            return VoyagerBackend(path, dim=DIM, compression="2bit", train_tokens=48, **OPTIONS)
        if kind == PROFILE:
            # Graphs over half-dimension projections (committed with their segments) and the int8 store (the
            # default is int14, residuals in a column of the same rows): the int8 profile of the benchmark.
            return VoyagerBackend(path, dim=DIM, graph_dim=DIM // 2, vector_dtype="int8", **OPTIONS)
        return VoyagerBackend(path, dim=DIM, **OPTIONS)
    from colbert_adapters.backends.qdrant import QdrantBackend

    # optimize_every: Edge's optimizer runs inside the write stream too (segment merges at random kill points).
    return QdrantBackend.edge(path, dim=DIM, optimize_every=40)


def stored_vectors(kind: str, v: np.ndarray) -> np.ndarray:
    """What ``get(..., with_vectors=True)`` returns for ``v``: Voyager its encoding (the default int14, or int8 codes
    times a per-token scale), Edge float16 (its default storage). (This test is about durability; the encodings have
    their own tests.)"""
    if not kind.startswith("voyager"):
        return v.astype(np.float16).astype(np.float32)
    from colbert_adapters._codecs import encode_vectors
    from colbert_adapters.backends.voyager import VoyagerBackend

    # A compressed index returns its int8 rows until a seal, then the decompressed codes (compared with a tolerance).
    return encode_vectors(v, "int8" if kind in (PROFILE, COMPRESSED) else VoyagerBackend.DEFAULT_VECTOR_DTYPE)[2]


def make_op(seed: int, n: int) -> tuple[Any, ...]:
    """Operation ``n`` of stream ``seed``: ("upsert", ids, vecs, texts, metas), ("delete", ids) or ("compact",)
    (Voyager: ``compact()``; Edge: ``optimize()``)."""
    rng = np.random.default_rng([seed, n])
    if n % 13 == 12:
        return ("compact",)
    if rng.random() < 0.7:
        m = int(rng.integers(1, 6))
        ids = [str(x) for x in rng.choice(POOL, m, replace=False)]
        vecs = []
        for _ in ids:
            x = rng.standard_normal((int(rng.integers(1, 9)), DIM))
            vecs.append((x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32))
        return ("upsert", ids, vecs, [f"t{n}_{j}" for j in range(m)], [{"op": n, "j": j} for j in range(m)])
    ids = [str(x) for x in rng.choice(POOL, int(rng.integers(1, 4)), replace=False)]
    return ("delete", [*ids, "never-there"])


def apply_op(model: dict[str, tuple[Any, ...]], op: tuple[Any, ...], kind: str) -> None:
    """Apply ``op`` to ``model`` (id -> (text, metadata, vectors as the backend stores them))."""
    if op[0] == "upsert":
        for doc_id, v, t, m in zip(op[1], op[2], op[3], op[4], strict=True):
            model[doc_id] = (t, m, stored_vectors(kind, v))
    elif op[0] == "delete":
        for doc_id in op[1]:
            model.pop(doc_id, None)


def main() -> None:
    kind, path, seed, first, log_path = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    backend = open_backend(kind, path)
    print("ready", flush=True)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    n = first
    while True:
        op = make_op(seed, n)
        if op[0] == "upsert":
            backend.upsert(op[1], op[2], texts=op[3], metadatas=op[4])
        elif op[0] == "delete":
            backend.delete(op[1])
        elif kind.startswith("voyager"):
            backend.compact()
        else:
            backend.optimize()
        busy = kind.startswith("voyager") and backend.stats()["maintenance_pending"]
        os.write(fd, f"{n}{' bg' if busy else ''}\n".encode())
        os.fsync(fd)
        n += 1


if __name__ == "__main__":
    main()
