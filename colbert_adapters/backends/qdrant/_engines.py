"""The engine interface behind :class:`~colbert_adapters.backends.qdrant.QdrantBackend`, and what engines share.

One small interface, :class:`Engine`, with two implementations:

* :class:`~colbert_adapters.backends.qdrant._client.ClientEngine` drives a ``qdrant_client.QdrantClient``
  (a server, a cluster, or local mode), with retries of transient errors;
* :class:`~colbert_adapters.backends.qdrant._edge.EdgeEngine` drives a ``qdrant_edge.EdgeShard`` (the Qdrant
  engine embedded in-process).

Both speak in plain Python values (point ids as UUID strings, numpy arrays, payload dicts, as
:class:`StoredPoint`) and ``qdrant_client.models.Filter`` filters. Also here: the request-size estimate and
splitter for upserts to a server (:func:`estimate_point_bytes`, :func:`split_by_bytes`).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ...errors import InvalidInputError
from ...types import Hit
from ._points import DOC_ID_KEY, METADATA_KEY, SEQ_KEY, TEXT_KEY, metadata_path, payload_bytes
from .config import QdrantCollectionConfig, Schema

__all__ = [
    "REST_LIMIT_BYTES",
    "Engine",
    "StoredPoint",
    "ensure_payload_indexes",
    "estimate_point_bytes",
    "ranked_hits",
    "split_by_bytes",
    "stored_point",
    "upsert_in_requests",
]

logger = logging.getLogger(__name__)

#: Default REST request body limit of a Qdrant server (``service.max_request_size_mb: 32``).
REST_LIMIT_BYTES = 32 * 1024 * 1024
#: Upper bound of one float in qdrant-client's JSON: ``repr`` of a float32 widened to float64 is at most
#: 23 characters (``-1.1754943508222875e-38``), plus the separator.
_JSON_BYTES_PER_FLOAT = 25
_GRPC_BYTES_PER_FLOAT = 5
_POINT_OVERHEAD_BYTES = 256
_REQUEST_OVERHEAD_BYTES = 1024


@dataclass(slots=True)
class StoredPoint:
    """A point as the engines exchange it."""

    pid: str
    payload: dict[str, Any]
    multivector: npt.NDArray[np.float32] | None = None
    summary: npt.NDArray[np.float32] | None = None
    score: float = 0.0
    #: The BM25 sparse vector ``(term ids, weights)`` of the text (``_sparse.py``), written when set.
    sparse: tuple[list[int], list[float]] | None = None


def ranked_hits(points: Sequence[StoredPoint], k: int) -> list[Hit]:
    """The best ``k`` of ``points`` as hits, by descending score, ties in write order (the sequence number)."""
    ranked = sorted(points, key=lambda p: (-p.score, p.payload.get(SEQ_KEY, 0)))
    return [
        Hit(
            id=p.payload.get(DOC_ID_KEY, p.pid),
            score=p.score,
            text=p.payload.get(TEXT_KEY),
            metadata=copy.deepcopy(p.payload.get(METADATA_KEY) or {}),
        )
        for p in ranked[:k]
    ]


def stored_point(record: Any, names: tuple[str, str], score: float = 0.0) -> StoredPoint:
    """A :class:`StoredPoint` from a point or record of either engine (vectors ``names``, when returned)."""
    vec = record.vector if isinstance(getattr(record, "vector", None), Mapping) else {}
    mv = vec.get(names[0])
    sm = vec.get(names[1])
    return StoredPoint(
        pid=str(record.id),
        payload=dict(record.payload or {}),
        multivector=None if mv is None else np.asarray(mv, dtype=np.float32),
        summary=None if sm is None else np.asarray(sm, dtype=np.float32),
        score=score,
    )


def estimate_point_bytes(n_floats: int, payload_json_bytes: int, *, grpc: bool = False) -> int:
    """Upper bound of the bytes one point adds to an upsert request.

    Args:
        n_floats: floats in all of the point's vectors (multivector plus summary).
        payload_json_bytes: length of the payload serialised as UTF-8 JSON.
        grpc: estimate for protobuf (about 4 bytes a float) instead of REST JSON (up to 25 bytes a float).

    Returns:
        The estimate in bytes.
    """
    if grpc:
        return n_floats * _GRPC_BYTES_PER_FLOAT + 2 * payload_json_bytes + _POINT_OVERHEAD_BYTES
    return n_floats * _JSON_BYTES_PER_FLOAT + payload_json_bytes + _POINT_OVERHEAD_BYTES


def split_by_bytes(sizes: Sequence[int], max_bytes: int, max_points: int) -> list[tuple[int, int]]:
    """Split consecutive items into ``[start, stop)`` batches of at most ``max_bytes`` and ``max_points``.

    Every batch also counts 1 KiB of request envelope. An item larger than ``max_bytes`` on its own gets a
    batch of its own (callers check hard limits first).

    Example:
        >>> split_by_bytes([4000, 4000, 4000, 9500, 100], max_bytes=10_000, max_points=100)
        [(0, 2), (2, 3), (3, 4), (4, 5)]
    """
    if max_bytes < 1 or max_points < 1:
        raise InvalidInputError("max_bytes and max_points must be >= 1")
    out: list[tuple[int, int]] = []
    start, acc = 0, _REQUEST_OVERHEAD_BYTES
    for i, size in enumerate(sizes):
        if i > start and (acc + size > max_bytes or i - start >= max_points):
            out.append((start, i))
            start, acc = i, _REQUEST_OVERHEAD_BYTES
        acc += size
    if start < len(sizes):
        out.append((start, len(sizes)))
    return out


class Engine:
    """Operations the backend needs; implemented for qdrant-client and for Qdrant Edge.

    Attributes:
        kind: ``"edge"``, ``"local"`` or ``"server"``.
        where: where the data lives, for messages.
    """

    kind: str = ""
    where: str = ""

    def exists(self) -> bool:
        raise NotImplementedError

    def create(self, spec: QdrantCollectionConfig, meta: dict[str, Any]) -> None:
        raise NotImplementedError

    def drop(self) -> None:
        raise NotImplementedError

    def schema(self) -> Schema:
        raise NotImplementedError

    def create_payload_index(self, key: str, kind: str) -> None:
        """Index metadata field ``key`` (stored at payload path ``metadata.<key>``) as ``kind``."""
        raise NotImplementedError

    def payload_index_paths(self) -> set[str] | None:
        """Payload paths that carry an index, or ``None`` where the engine keeps no payload indexes."""
        raise NotImplementedError

    def read_meta(self) -> dict[str, Any] | None:
        raise NotImplementedError

    def write_meta(self, meta: dict[str, Any]) -> None:
        raise NotImplementedError

    def upsert(self, points: Sequence[StoredPoint], spec_names: tuple[str, str]) -> None:
        raise NotImplementedError

    def retrieve(
        self, pids: Sequence[str], *, with_payload: bool, with_vectors: bool, names: tuple[str, str]
    ) -> list[StoredPoint]:
        raise NotImplementedError

    def delete(self, pids: Sequence[str]) -> None:
        raise NotImplementedError

    def count(self, flt: Any = None) -> int:
        raise NotImplementedError

    def query(
        self,
        q: npt.NDArray[np.float32],
        summary: npt.NDArray[np.float32] | None,
        *,
        limit: int,
        prefetch_limit: int,
        flt: Any,
        exact: bool,
        quantized: bool,
        oversampling: float,
        names: tuple[str, str],
        using: str | None = None,
        summary_quantized: bool = False,
        prefetch_exact: bool = False,
    ) -> list[StoredPoint]:
        """Top ``limit`` points by MaxSim of ``q`` on ``names[0]``; with ``summary``, only among the
        ``prefetch_limit`` nearest to it on vector ``using`` (default ``names[1]``), through HNSW or, with
        ``prefetch_exact``, by scoring every point's vector ``using``."""
        raise NotImplementedError

    def scroll(
        self, offset: Any, limit: int, names: tuple[str, str], *, flt: Any = None, with_vectors: bool = True
    ) -> tuple[list[StoredPoint], Any]:
        raise NotImplementedError

    def flush(self) -> None:
        """Make acknowledged writes durable (no-op where the server does it)."""

    def optimize(self) -> bool:
        """Run the optimizers (Edge); servers optimize in the background."""
        return False

    def close(self) -> None:
        raise NotImplementedError


def ensure_payload_indexes(
    engine: Engine, layout: QdrantCollectionConfig, requested: QdrantCollectionConfig | None, *, where: str
) -> QdrantCollectionConfig | None:
    """Create the payload indexes ``layout`` (and ``requested``) names that the collection lacks.

    Indexes live on ``metadata.<key>``, where the metadata is; a collection whose indexes were made on another
    path (top-level keys) gets them on the right one. Payload indexes are additive and change no stored point.

    Returns:
        The layout with the keys ``requested`` adds, to record; ``None`` when it adds none.
    """
    wanted = dict(layout.payload_indexes)
    extra = {k: v for k, v in (requested.payload_indexes if requested else {}).items() if k not in wanted}
    wanted.update(extra)
    have = engine.payload_index_paths() if wanted else None
    if have is None:  # nothing wanted, or local mode (no payload indexes)
        return None
    for key, kind in wanted.items():
        if metadata_path(key) not in have:
            logger.info("%s: creating payload index on %s (%s)", where, metadata_path(key), kind)
            engine.create_payload_index(key, kind)
    if not extra:
        return None
    return QdrantCollectionConfig.from_json({**layout.to_json(), "payload_indexes": wanted})


def upsert_in_requests(
    engine: Engine,
    points: Sequence[StoredPoint],
    names: tuple[str, str],
    max_bytes: int,
    max_points: int,
    *,
    grpc: bool,
) -> int:
    """Upsert ``points`` to a server in requests of at most ``max_bytes`` (estimated) and ``max_points``.

    Both vectors of a point count (the multivector and the first-stage vector). A point larger than ``max_bytes``
    on its own is sent alone, with a warning.

    Returns:
        The number of requests sent.
    """
    sizes = [
        estimate_point_bytes(
            (0 if p.multivector is None else p.multivector.size) + (0 if p.summary is None else p.summary.size),
            payload_bytes(p.payload),
            grpc=grpc,
        )
        for p in points
    ]
    batches = split_by_bytes(sizes, max_bytes, max_points)
    for start, stop in batches:
        if stop - start == 1 and sizes[start] > max_bytes:
            logger.warning(
                "document %r alone is ~%d bytes, above max_request_bytes=%d; sending it alone",
                points[start].payload.get(DOC_ID_KEY),
                sizes[start],
                max_bytes,
            )
        engine.upsert(points[start:stop], names)
    return len(batches)
