"""The facade's argument checks and its ``stats()`` report (kept out of ``VoyagerBackend`` itself).

``check_store_options`` validates the constructor's storage arguments (``storage_data_type``, ``vector_dtype``,
``compression``) and resolves ``compression`` into the stored encoding: ``"2bit"`` / ``"4bit"`` select the
compressed store (``_compressed``: residual codes, no token graph), the other names are the token-graph store
with that ``vector_dtype``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Any

from ..._codecs import VECTOR_DTYPES
from ..._residual import COMPRESSIONS
from ...errors import InvalidInputError
from ._compressed import is_compressed_file
from ._segments import STORAGE_TYPES, target_graph_dim
from ._state import IndexState

__all__ = [
    "COMPRESSION_NAMES",
    "check_store_options",
    "deleted_ratio",
    "dir_bytes",
    "exact_below",
    "num_threads",
    "stats",
]

#: Every value ``compression=`` accepts: the compressed modes, then the token-graph store's vector encodings.
COMPRESSION_NAMES = (*COMPRESSIONS, *VECTOR_DTYPES)


def check_store_options(
    storage_data_type: object, vector_dtype: object, compression: object
) -> tuple[str | None, str | None, str | None]:
    """Checked ``(storage_data_type, vector_dtype, compression)``, lower-cased; ``compression`` naming a vector
    encoding (``"int8"``, ``"int14"``, ...) becomes ``vector_dtype``, a compressed mode keeps ``vector_dtype``
    ``None``.

    Raises:
        InvalidInputError: an unknown name, or ``vector_dtype`` and ``compression`` that disagree.
    """
    if storage_data_type is not None and (
        not isinstance(storage_data_type, str) or storage_data_type.lower() not in STORAGE_TYPES
    ):
        raise InvalidInputError(
            f"storage_data_type must be one of {', '.join(STORAGE_TYPES)}, got {storage_data_type!r}"
        )
    if vector_dtype is not None and (not isinstance(vector_dtype, str) or vector_dtype.lower() not in VECTOR_DTYPES):
        raise InvalidInputError(f"vector_dtype must be one of {', '.join(VECTOR_DTYPES)}, got {vector_dtype!r}")
    if compression is not None and (not isinstance(compression, str) or compression.lower() not in COMPRESSION_NAMES):
        raise InvalidInputError(
            f"compression must be one of {', '.join(repr(c) for c in COMPRESSION_NAMES)}, got {compression!r}"
        )
    sdt = storage_data_type.lower() if isinstance(storage_data_type, str) else None
    vdt = vector_dtype.lower() if isinstance(vector_dtype, str) else None
    comp = compression.lower() if isinstance(compression, str) else None
    if comp is not None and comp in VECTOR_DTYPES:
        if vdt is not None and vdt != comp:
            raise InvalidInputError(
                f"vector_dtype={vector_dtype!r} and compression={compression!r} disagree; pass only compression"
            )
        return sdt, comp, None
    if comp is not None and vdt is not None:
        raise InvalidInputError(
            f"compression={compression!r} stores residual codes, not {vdt} vectors; leave vector_dtype out"
        )
    return sdt, vdt, comp


def exact_below(value: object, _name: str = "exact_below_tokens") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInputError(f"exact_below_tokens must be an int >= 0, got {value!r}")
    return value


def deleted_ratio(value: object, _name: str = "compact_deleted_ratio") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0.0 < value <= 1.0):
        raise InvalidInputError(f"compact_deleted_ratio must be in (0, 1], got {value!r}")
    return float(value)


def num_threads(value: object, _name: str = "num_threads") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value == 0 or value < -1:
        raise InvalidInputError(f"num_threads must be -1 or a positive int, got {value!r}")
    return value


def dir_bytes(root: Path) -> int:
    """Bytes of the files under ``root`` (segment and codec directories included); a background seal's
    temporary file may be renamed away while it is read."""
    total = 0
    for p in root.rglob("*"):
        with contextlib.suppress(FileNotFoundError):
            if p.is_file():
                total += p.stat().st_size
    return total


def stats(st: IndexState) -> dict[str, Any]:
    """``VoyagerBackend.stats()`` (shared lock held by the caller); ``disk_bytes`` is added by the caller."""
    segs = []
    for s in st.segments.values():
        graph = not is_compressed_file(s.file)
        segs.append(
            {
                "id": s.id,
                "file": s.file,
                "n_tokens": s.n_tokens,
                "n_live_tokens": s.n_live_tokens,
                "n_docs": s.n_docs,
                "ef_construction": int(s.index.ef_construction) if graph else None,
                "graph_dim": int(s.index.num_dimensions) if graph else None,
            }
        )
    live = sum(s.n_live_tokens for s in st.segments.values()) + st.mutable_tokens
    dead = sum(s.n_tokens - s.n_live_tokens for s in st.segments.values())
    codec = st.codec
    return {
        "n_docs": st.n_docs,
        "n_live_tokens": live,
        "n_dead_tokens": dead,
        "mutable_tokens": st.mutable_tokens,
        "segments": segs,
        "generation": st.generation,
        "M": st.M,
        "ef_construction": st.ef_construction,
        "ef_construction_large": st.ef_construction_large,
        "storage_data_type": st.storage,
        "vector_dtype": st.vector_dtype,
        "compression": st.compression or st.vector_dtype,
        "compressed": None
        if st.compression is None
        else {
            "nbits": COMPRESSIONS[st.compression],
            "n_centroids": 0 if codec is None else codec.n_centroids,
            "tokens": sum(s.n_tokens for s in st.segments.values()),
            "train_error": None if codec is None else codec.train_error,
            "seal_errors": list(st.seal_errors),
        },
        "graph_dim": target_graph_dim(st),
        "format_version": st.format_version,
        "cache_bytes": st.blobs.nbytes,
        "cache_entries": len(st.blobs),
        "centroid_bytes": st.centroids.nbytes if st.centroids is not None else 0,
        "maintenance": [dataclasses.asdict(e) for e in st.maintenance],
        "maintenance_pending": any(w is not None and w.pending() for w in (st.sealer, st.worker)),
    }
