"""Engines behind :class:`~colbert_adapters.backends.qdrant.QdrantBackend` (private).

One small interface, :class:`_Engine`, with two implementations:

* :class:`ClientEngine` drives a ``qdrant_client.QdrantClient`` (a server, a cluster, or local mode);
* :class:`EdgeEngine` drives a ``qdrant_edge.EdgeShard`` (the Qdrant engine embedded in-process).

Both speak in plain Python values (point ids as UUID strings, numpy arrays, payload dicts) and
``qdrant_client.models.Filter`` filters; Edge filters are converted by :func:`to_edge_filter`. Also here:
the request-size estimate and splitter (:func:`estimate_point_bytes`, :func:`split_by_bytes`), the retry
policy for transient server errors, and the mapping of Qdrant exceptions to ours. ``qdrant_client`` and
``qdrant_edge`` are imported inside functions only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from ..._optional import require
from ...errors import (
    ColBERTError,
    CollectionConfigError,
    InvalidInputError,
    QdrantRequestError,
    QdrantUnavailableError,
)

__all__ = [
    "MAX_MULTIVECTOR_FLOATS",
    "REST_LIMIT_BYTES",
    "ClientEngine",
    "EdgeEngine",
    "QdrantCollectionConfig",
    "QdrantRequestError",
    "QdrantUnavailableError",
    "StoredPoint",
    "estimate_point_bytes",
    "split_by_bytes",
    "to_edge_filter",
]

logger = logging.getLogger(__name__)

#: Qdrant refuses a multivector of this many floats or more (``MAX_MULTIVECTOR_FLATTENED_LEN``, hard-coded in
#: the server): at most 8,191 token vectors at 128 dims. Edge does not check it, so we do.
MAX_MULTIVECTOR_FLOATS = 1024 * 1024
#: Default REST request body limit of a Qdrant server (``service.max_request_size_mb: 32``).
REST_LIMIT_BYTES = 32 * 1024 * 1024
#: Upper bound of one float in qdrant-client's JSON: ``repr`` of a float32 widened to float64 is at most
#: 23 characters (``-1.1754943508222875e-38``), plus the separator.
_JSON_BYTES_PER_FLOAT = 25
_GRPC_BYTES_PER_FLOAT = 5
_POINT_OVERHEAD_BYTES = 256
_REQUEST_OVERHEAD_BYTES = 1024

_T = TypeVar("_T")


@dataclass(frozen=True)
class QdrantCollectionConfig:
    """Layout and storage options of a ColBERT collection in Qdrant (or a Qdrant Edge shard).

    The collection holds two named vectors per point: a multivector ``multivector_name`` (the document's
    ``(n_tokens, dim)`` token vectors, DOT product with MaxSim, no HNSW graph: it is used to rerank) and a
    single vector ``summary_name`` (the L2-normalised mean of the token vectors, cosine, HNSW) used by the
    first stage of a two-stage search.

    Attributes:
        dim: token vector dimension.
        multivector_name: name of the multivector.
        summary_name: name of the summary vector.
        datatype: ``"float32"`` or ``"float16"`` storage of the multivector (float16 halves disk and RAM,
            scores move by about 5e-4).
        quantization: ``None`` or ``"int8"`` (scalar quantization of the multivector, kept in RAM, with
            rescoring on the originals at query time).
        quantization_quantile: quantile for int8 scalar quantization.
        on_disk: keep the original multivectors on disk (mmap, page cache) instead of in RAM; the summary
            vectors and their HNSW stay in RAM.
        summary_m: HNSW ``m`` of the summary vector.
        summary_ef_construct: HNSW ``ef_construct`` of the summary vector.
        payload_indexes: ``{metadata_field: type}`` payload indexes to create, type one of ``keyword``,
            ``integer``, ``float``, ``bool``, ``text``, ``datetime``, ``uuid``, ``geo``. Fields are
            metadata keys (stored under ``metadata.<field>``). Ignored by local mode.
        shard_number: server/cluster only: number of shards (default: the server's, one per node).
        replication_factor: server/cluster only: copies of each shard (fixed at creation).
        write_consistency_factor: server/cluster only: replicas that must acknowledge a write.
        shard_keys: server/cluster only: create the collection with custom sharding and these shard keys;
            a backend then writes to and reads from the ``shard_key`` it is given.
    """

    dim: int
    multivector_name: str = "colbert"
    summary_name: str = "summary"
    datatype: str = "float32"
    quantization: str | None = None
    quantization_quantile: float = 0.99
    on_disk: bool = False
    summary_m: int = 16
    summary_ef_construct: int = 100
    payload_indexes: Mapping[str, str] = field(default_factory=dict)
    shard_number: int | None = None
    replication_factor: int | None = None
    write_consistency_factor: int | None = None
    shard_keys: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.dim, bool) or not isinstance(self.dim, (int, np.integer)) or not 1 <= self.dim <= 65535:
            raise InvalidInputError(f"dim must be an int in [1, 65535], got {self.dim!r}")
        for name in (self.multivector_name, self.summary_name):
            if not isinstance(name, str) or not name:
                raise InvalidInputError(f"vector names must be non-empty str, got {name!r}")
        if self.multivector_name == self.summary_name:
            raise InvalidInputError("multivector_name and summary_name must differ")
        if self.datatype not in ("float32", "float16"):
            raise InvalidInputError(f"datatype must be 'float32' or 'float16', got {self.datatype!r}")
        if self.quantization not in (None, "int8"):
            raise InvalidInputError(f"quantization must be None or 'int8', got {self.quantization!r}")
        for key, kind in self.payload_indexes.items():
            if not isinstance(key, str) or not key or kind not in _PAYLOAD_TYPES:
                raise InvalidInputError(
                    f"payload_indexes[{key!r}] = {kind!r}: keys are metadata fields, types one of "
                    f"{', '.join(_PAYLOAD_TYPES)}"
                )
        for name in ("shard_number", "replication_factor", "write_consistency_factor"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise InvalidInputError(f"{name} must be a positive int or None, got {v!r}")
        object.__setattr__(self, "dim", int(self.dim))
        object.__setattr__(self, "payload_indexes", dict(self.payload_indexes))
        object.__setattr__(self, "shard_keys", tuple(self.shard_keys))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> QdrantCollectionConfig:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["payload_indexes"] = dict(self.payload_indexes)
        out["shard_keys"] = list(self.shard_keys)
        return out


@dataclass(frozen=True)
class Schema:
    """What an existing collection or shard actually holds, for validation."""

    vectors: dict[str, dict[str, Any]]  # name -> {"size", "distance", "multivector", "datatype", "quantized"}


@dataclass(slots=True)
class StoredPoint:
    """A point as the engines exchange it."""

    pid: str
    payload: dict[str, Any]
    multivector: npt.NDArray[np.float32] | None = None
    summary: npt.NDArray[np.float32] | None = None
    score: float = 0.0


# --------------------------------------------------------------------------------------------- batching


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


# --------------------------------------------------------------------------------------------- errors


def _is_transient(exc: BaseException) -> bool:
    http_exc = sys.modules.get("qdrant_client.http.exceptions")
    if http_exc is not None:
        if isinstance(exc, http_exc.ResponseHandlingException):  # connection refused, timeouts, DNS
            return True
        if isinstance(exc, http_exc.UnexpectedResponse):
            return exc.status_code in (408, 429, 500, 502, 503, 504)
    grpc = sys.modules.get("grpc")
    if grpc is not None and isinstance(exc, grpc.RpcError):
        code = exc.code() if callable(getattr(exc, "code", None)) else None
        return code in (
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.DEADLINE_EXCEEDED,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            grpc.StatusCode.ABORTED,
        )
    return isinstance(exc, (ConnectionError, TimeoutError))


def _map_error(exc: Exception, where: str, what: str) -> ColBERTError:
    if _is_transient(exc):
        return QdrantUnavailableError(
            f"cannot reach Qdrant at {where} while trying to {what} ({type(exc).__name__}: {exc}). "
            "Check the URL and port, that the server is running and reachable, the API key, and the timeout"
        )
    http_exc = sys.modules.get("qdrant_client.http.exceptions")
    if http_exc is not None and isinstance(exc, http_exc.UnexpectedResponse):
        status = exc.status_code
        detail = exc.content.decode("utf-8", "replace")[:500] if exc.content else exc.reason_phrase
        if status in (401, 403):
            return QdrantRequestError(f"Qdrant at {where} refused to {what} ({status}: {detail}); check the api_key")
        if status == 413:
            return QdrantRequestError(
                f"Qdrant at {where} refused a request as too large while trying to {what} ({detail}); "
                "lower max_request_bytes, or use prefer_grpc=True"
            )
        if status == 404:
            return CollectionConfigError(
                f"{where} answered 404 Not Found while trying to {what} ({detail}); check that the URL points at "
                "a Qdrant server (REST port 6333, path prefix) and that the collection exists"
            )
        return QdrantRequestError(f"Qdrant at {where} rejected the request to {what} ({status}: {detail})")
    grpc = sys.modules.get("grpc")
    if grpc is not None and isinstance(exc, grpc.RpcError):
        return QdrantRequestError(f"Qdrant at {where} rejected the request to {what} (gRPC: {exc})")
    return QdrantRequestError(f"Qdrant ({where}) failed to {what}: {type(exc).__name__}: {exc}")


def _is_panic(exc: BaseException) -> bool:
    return type(exc).__name__ == "PanicException"


# --------------------------------------------------------------------------------------------- engines


class _Engine:
    """Operations the backend needs; implemented for qdrant-client and for Qdrant Edge."""

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

    def delete_filter(self, flt: Any) -> None:
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
    ) -> list[StoredPoint]:
        raise NotImplementedError

    def scroll(
        self, offset: Any, limit: int, names: tuple[str, str], *, flt: Any = None, with_vectors: bool = True
    ) -> tuple[list[StoredPoint], Any]:
        raise NotImplementedError

    def create_payload_index(self, key: str, kind: str) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        """Make acknowledged writes durable (no-op where the server does it)."""

    def optimize(self) -> bool:
        """Run the optimizers (Edge); servers optimize in the background."""
        return False

    def close(self) -> None:
        raise NotImplementedError


_PAYLOAD_TYPES = ("keyword", "integer", "float", "bool", "text", "datetime", "uuid", "geo")


class ClientEngine(_Engine):
    """A collection reached through ``qdrant_client.QdrantClient``."""

    def __init__(
        self,
        client: Any,
        collection: str,
        *,
        where: str,
        owns_client: bool,
        grpc: bool,
        local: bool,
        max_retries: int,
        retry_backoff: float,
        timeout: float | None,
        shard_key: str | None = None,
    ) -> None:
        self.client = client
        self.collection = collection
        self.where = where
        self.kind = "local" if local else "server"
        self.owns_client = owns_client
        self.grpc = grpc
        self.local = local
        self.max_retries = max_retries
        self.retry_backoff = retry_backoff
        self.timeout = None if timeout is None else max(1, round(timeout))
        self.shard_key = shard_key
        self.models = require("qdrant_client.models", extra="qdrant", package="qdrant-client")

    # ---- plumbing

    def call(self, what: str, fn: Callable[[], _T], *, retries: int | None = None) -> _T:
        """Run ``fn``; retry transient errors with exponential backoff; map errors to ours."""
        attempts = (self.max_retries if retries is None else retries) + 1
        for attempt in range(attempts):
            try:
                return fn()
            except ColBERTError:
                raise
            except Exception as exc:
                if attempt + 1 < attempts and _is_transient(exc):
                    delay = self.retry_backoff * (2**attempt) * (1 + 0.25 * random.random())
                    logger.warning(
                        "Qdrant at %s: %s failed (%s: %s); retry %d/%d in %.1fs",
                        self.where,
                        what,
                        type(exc).__name__,
                        exc,
                        attempt + 1,
                        attempts - 1,
                        delay,
                    )
                    time.sleep(delay)
                    continue
                raise _map_error(exc, self.where, what) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _shard_selector(self) -> Any:
        return self.shard_key

    # ---- collection

    def exists(self) -> bool:
        return bool(
            self.call(
                f"check collection {self.collection!r}",
                lambda: self.client.collection_exists(self.collection),
                retries=0,
            )
        )

    def create(self, spec: QdrantCollectionConfig, meta: dict[str, Any]) -> None:
        m = self.models
        mv_params = m.VectorParams(
            size=spec.dim,
            distance=m.Distance.DOT,
            multivector_config=m.MultiVectorConfig(comparator=m.MultiVectorComparator.MAX_SIM),
            hnsw_config=m.HnswConfigDiff(m=0),  # reranking only: no graph (hours of indexing otherwise)
            datatype=m.Datatype.FLOAT16 if spec.datatype == "float16" else m.Datatype.FLOAT32,
            on_disk=spec.on_disk or None,
            quantization_config=(
                m.ScalarQuantization(
                    scalar=m.ScalarQuantizationConfig(
                        type=m.ScalarType.INT8, quantile=spec.quantization_quantile, always_ram=True
                    )
                )
                if spec.quantization == "int8"
                else None
            ),
        )
        summary_params = m.VectorParams(
            size=spec.dim,
            distance=m.Distance.COSINE,
            hnsw_config=m.HnswConfigDiff(m=spec.summary_m, ef_construct=spec.summary_ef_construct),
        )
        kwargs: dict[str, Any] = {}
        if not self.local:  # local mode ignores (and some versions reject) cluster parameters
            kwargs.update(
                shard_number=spec.shard_number,
                replication_factor=spec.replication_factor,
                write_consistency_factor=spec.write_consistency_factor,
            )
            if spec.shard_keys:
                kwargs["sharding_method"] = m.ShardingMethod.CUSTOM
        self.call(
            f"create collection {self.collection!r}",
            lambda: self.client.create_collection(
                self.collection,
                vectors_config={spec.multivector_name: mv_params, spec.summary_name: summary_params},
                metadata={"colbert_adapters": meta},
                timeout=self.timeout,
                **kwargs,
            ),
        )
        if spec.shard_keys and not self.local:
            for key in spec.shard_keys:
                self.call(
                    f"create shard key {key!r}",
                    lambda key=key: self.client.create_shard_key(self.collection, key),  # type: ignore[misc]
                )
        for key, kind in spec.payload_indexes.items():
            self.create_payload_index(key, kind)

    def create_payload_index(self, key: str, kind: str) -> None:
        if self.local:
            # Local mode has no payload indexes (it warns and ignores them); nothing to do.
            logger.debug("local mode: payload index on %s skipped (no effect in local mode)", key)
            return
        schema = getattr(self.models.PayloadSchemaType, kind.upper())
        self.call(
            f"create payload index on {key!r}",
            lambda: self.client.create_payload_index(self.collection, key, field_schema=schema, wait=True),
        )

    def drop(self) -> None:
        self.call(f"delete collection {self.collection!r}", lambda: self.client.delete_collection(self.collection))

    def schema(self) -> Schema:
        info = self.call(f"read collection {self.collection!r}", lambda: self.client.get_collection(self.collection))
        vectors = info.config.params.vectors
        out: dict[str, dict[str, Any]] = {}
        if isinstance(vectors, Mapping):
            for name, p in vectors.items():
                out[name] = {
                    "size": p.size,
                    "distance": str(getattr(p.distance, "value", p.distance)).lower(),
                    "multivector": (
                        str(getattr(p.multivector_config.comparator, "value", p.multivector_config.comparator)).lower()
                        if p.multivector_config is not None
                        else None
                    ),
                    "quantized": p.quantization_config is not None or info.config.quantization_config is not None,
                }
        elif vectors is not None:
            out[""] = {"size": vectors.size, "distance": str(vectors.distance), "multivector": None, "quantized": False}
        return Schema(vectors=out)

    def read_meta(self) -> dict[str, Any] | None:
        info = self.call(f"read collection {self.collection!r}", lambda: self.client.get_collection(self.collection))
        meta = getattr(info.config, "metadata", None) or {}
        value = meta.get("colbert_adapters") if isinstance(meta, Mapping) else None
        return dict(value) if isinstance(value, Mapping) else None

    def write_meta(self, meta: dict[str, Any]) -> None:
        self.call(
            f"update metadata of {self.collection!r}",
            lambda: self.client.update_collection(self.collection, metadata={"colbert_adapters": meta}),
        )

    # ---- points

    def upsert(self, points: Sequence[StoredPoint], spec_names: tuple[str, str]) -> None:
        m = self.models
        mv_name, sum_name = spec_names
        structs = [
            m.PointStruct(
                id=p.pid,
                vector={mv_name: p.multivector.tolist(), sum_name: p.summary.tolist()},  # type: ignore[union-attr]
                payload=p.payload,
            )
            for p in points
        ]
        self.call(
            f"upsert {len(structs)} points",
            lambda: self.client.upsert(
                self.collection, points=structs, wait=True, shard_key_selector=self._shard_selector()
            ),
        )

    def retrieve(
        self, pids: Sequence[str], *, with_payload: bool, with_vectors: bool, names: tuple[str, str]
    ) -> list[StoredPoint]:
        recs = self.call(
            f"retrieve {len(pids)} points",
            lambda: self.client.retrieve(
                self.collection,
                ids=list(pids),
                with_payload=with_payload,
                with_vectors=[names[0]] if with_vectors else False,
                shard_key_selector=self._shard_selector(),
            ),
        )
        return [self._point(r, names) for r in recs]

    def _point(self, r: Any, names: tuple[str, str], score: float = 0.0) -> StoredPoint:
        vec = r.vector if isinstance(getattr(r, "vector", None), Mapping) else {}
        mv = vec.get(names[0])
        sm = vec.get(names[1])
        return StoredPoint(
            pid=str(r.id),
            payload=dict(r.payload or {}),
            multivector=None if mv is None else np.asarray(mv, dtype=np.float32),
            summary=None if sm is None else np.asarray(sm, dtype=np.float32),
            score=score,
        )

    def delete(self, pids: Sequence[str]) -> None:
        m = self.models
        self.call(
            f"delete {len(pids)} points",
            lambda: self.client.delete(
                self.collection,
                points_selector=m.PointIdsList(points=list(pids)),
                wait=True,
                shard_key_selector=self._shard_selector(),
            ),
        )

    def delete_filter(self, flt: Any) -> None:
        m = self.models
        self.call(
            "delete points by filter",
            lambda: self.client.delete(
                self.collection,
                points_selector=m.FilterSelector(filter=flt),
                wait=True,
                shard_key_selector=self._shard_selector(),
            ),
        )

    def count(self, flt: Any = None) -> int:
        res = self.call(
            "count points",
            lambda: self.client.count(
                self.collection, count_filter=flt, exact=True, shard_key_selector=self._shard_selector()
            ),
        )
        return int(res.count)

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
    ) -> list[StoredPoint]:
        m = self.models
        quant = None
        if quantized:
            quant = (
                m.QuantizationSearchParams(ignore=True)
                if exact
                else m.QuantizationSearchParams(rescore=True, oversampling=oversampling)
            )
        # Local mode is always an exact brute force and warns about search params: send none there.
        params = None if self.local else m.SearchParams(exact=exact, quantization=quant)
        prefetch = None
        if summary is not None:
            prefetch = m.Prefetch(query=summary.tolist(), using=names[1], limit=prefetch_limit, filter=flt)
        res = self.call(
            "query points",
            lambda: self.client.query_points(
                self.collection,
                query=q.tolist(),
                using=names[0],
                prefetch=prefetch,
                query_filter=flt,
                limit=limit,
                with_payload=True,
                with_vectors=False,
                search_params=params,
                shard_key_selector=self._shard_selector(),
                timeout=self.timeout,
            ),
        )
        return [self._point(p, names, score=float(p.score)) for p in res.points]

    def scroll(
        self, offset: Any, limit: int, names: tuple[str, str], *, flt: Any = None, with_vectors: bool = True
    ) -> tuple[list[StoredPoint], Any]:
        recs, nxt = self.call(
            "scroll points",
            lambda: self.client.scroll(
                self.collection,
                scroll_filter=flt,
                offset=offset,
                limit=limit,
                with_payload=True,
                with_vectors=list(names) if with_vectors else False,
                shard_key_selector=self._shard_selector(),
            ),
        )
        return [self._point(r, names) for r in recs], nxt

    def close(self) -> None:
        if self.owns_client:
            with contextlib.suppress(Exception):
                self.client.close()


# --------------------------------------------------------------------------------------------- edge

EDGE_META_FILE = "colbert_adapters.json"
EDGE_SHARD_DIR = "shard"
EDGE_FORMAT = "colbert-adapters/qdrant-edge"
EDGE_FORMAT_VERSION = 1


class EdgeEngine(_Engine):
    """A Qdrant Edge shard in ``root/shard`` with our metadata in ``root/colbert_adapters.json``.

    Every call into Edge is guarded: Rust panics (``pyo3_runtime.PanicException``, a ``BaseException``) and
    Edge errors become :class:`QdrantRequestError`. Inputs are validated by the backend before they get here,
    because a malformed update that reaches Edge is written to its WAL and then panics again on every load.
    """

    kind = "edge"

    def __init__(self, root: str | os.PathLike[str], *, wal: bool = True) -> None:
        self.root = Path(root)
        self.where = f"Qdrant Edge shard {self.root}"
        self.wal = wal
        self.qe = require("qdrant_edge", extra="qdrant", package="qdrant-edge-py")
        self.shard: Any = None
        if self.root.exists() and not self.root.is_dir():
            raise CollectionConfigError(f"{self.root} exists and is not a directory; pass a directory path")
        if self.exists():
            self.shard = self._guard("open the shard", lambda: self.qe.EdgeShard.load(str(self.shard_path)))

    @property
    def shard_path(self) -> Path:
        return self.root / EDGE_SHARD_DIR

    @property
    def meta_path(self) -> Path:
        return self.root / EDGE_META_FILE

    def _guard(self, what: str, fn: Callable[[], _T]) -> _T:
        try:
            return fn()
        except ColBERTError:
            raise
        except BaseException as exc:
            if _is_panic(exc):
                raise QdrantRequestError(
                    f"{self.where}: Qdrant Edge panicked while trying to {what} ({exc}). The input passed "
                    "colbert-adapters validation, so this is a bug: please report it"
                ) from exc
            if not isinstance(exc, Exception):
                raise
            msg = str(exc)
            if "WouldBlock" in msg or "lock" in msg.lower():
                from ...errors import IndexLockedError

                raise IndexLockedError(
                    f"{self.where} is open in another QdrantBackend or process ({msg}); close it first"
                ) from exc
            raise QdrantRequestError(f"{self.where}: failed to {what}: {msg}") from exc

    def _open(self) -> Any:
        if self.shard is None:
            raise ColBERTError(f"{self.where} is closed or was not created")
        return self.shard

    def exists(self) -> bool:
        return (self.shard_path / "edge_config.json").is_file()

    def create(self, spec: QdrantCollectionConfig, meta: dict[str, Any]) -> None:
        qe = self.qe
        memory = qe.Memory.Cold if spec.on_disk else qe.Memory.Cached
        mv_params = qe.EdgeVectorParams(
            size=spec.dim,
            distance=qe.Distance.Dot,
            multivector_config=qe.MultiVectorConfig(comparator=qe.MultiVectorComparator.MaxSim),
            hnsw_config=qe.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10_000),
            datatype=qe.VectorStorageDatatype.Float16 if spec.datatype == "float16" else None,
            quantization_config=(
                qe.ScalarQuantizationConfig(
                    type=qe.ScalarType.Int8, quantile=spec.quantization_quantile, always_ram=True
                )
                if spec.quantization == "int8"
                else None
            ),
            memory=memory,
        )
        summary_params = qe.EdgeVectorParams(
            size=spec.dim,
            distance=qe.Distance.Cosine,
            hnsw_config=qe.HnswIndexConfig(
                m=spec.summary_m, ef_construct=spec.summary_ef_construct, full_scan_threshold=10_000
            ),
        )
        cfg = qe.EdgeConfig(
            vectors={spec.multivector_name: mv_params, spec.summary_name: summary_params},
            wal_enabled=self.wal,
        )
        if self.root.is_dir() and not self.meta_path.exists():
            foreign = sorted(p.name for p in self.root.iterdir() if p.name != EDGE_SHARD_DIR)
            if foreign or self.shard_path.exists():
                raise CollectionConfigError(
                    f"{self.root} is a non-empty directory ({', '.join(foreign[:3]) or EDGE_SHARD_DIR} ...) that is "
                    "not a colbert-adapters Qdrant Edge index; pass an empty or new directory"
                )
        self.root.mkdir(parents=True, exist_ok=True)
        self.write_meta(meta)
        self.shard = self._guard("create the shard", lambda: qe.EdgeShard.create(str(self.shard_path), cfg))
        for key, kind in spec.payload_indexes.items():
            self.create_payload_index(key, kind)
        self.flush()

    def create_payload_index(self, key: str, kind: str) -> None:
        schema = getattr(self.qe.PayloadSchemaType, kind.capitalize())
        shard = self._open()
        self._guard(
            f"create payload index on {key!r}",
            lambda: shard.update(self.qe.UpdateOperation.create_field_index(key, schema)),
        )

    def drop(self) -> None:
        import shutil

        self.close()
        if self.shard_path.exists():
            shutil.rmtree(self.shard_path)
        with contextlib.suppress(FileNotFoundError):
            self.meta_path.unlink()

    def schema(self) -> Schema:
        try:
            cfg = json.loads((self.shard_path / "edge_config.json").read_text(encoding="utf-8"))
            vectors = cfg.get("vectors") or {}
        except (OSError, ValueError) as err:
            raise CollectionConfigError(f"{self.where}: unreadable edge_config.json ({err})") from err
        out: dict[str, dict[str, Any]] = {}
        for name, p in vectors.items():
            mvc = p.get("multivector_config") or None
            out[name] = {
                "size": p.get("size"),
                "distance": str(p.get("distance", "")).lower(),
                "multivector": str(mvc.get("comparator")).lower() if mvc else None,
                "quantized": bool(p.get("quantization_config") or cfg.get("quantization_config")),
            }
        return Schema(vectors=out)

    def read_meta(self) -> dict[str, Any] | None:
        if not self.meta_path.is_file():
            return None
        try:
            meta = json.loads(self.meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise CollectionConfigError(f"{self.meta_path} is not valid JSON ({err})") from err
        if not isinstance(meta, dict) or meta.get("format") != EDGE_FORMAT:
            raise CollectionConfigError(f"{self.meta_path} is not a colbert-adapters Edge manifest")
        if meta.get("format_version") != EDGE_FORMAT_VERSION:
            raise CollectionConfigError(
                f"{self.meta_path} has format version {meta.get('format_version')!r}; this colbert-adapters "
                f"reads version {EDGE_FORMAT_VERSION}. Upgrade colbert-adapters"
            )
        return meta

    def write_meta(self, meta: dict[str, Any]) -> None:
        full = {"format": EDGE_FORMAT, "format_version": EDGE_FORMAT_VERSION, **meta}
        data = json.dumps(full, ensure_ascii=False, indent=1).encode("utf-8")
        tmp = self.meta_path.with_name(f".{EDGE_META_FILE}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.meta_path)
        finally:
            if tmp.exists():
                tmp.unlink()

    def _pid(self, pid: str) -> Any:
        return uuid.UUID(pid)

    def upsert(self, points: Sequence[StoredPoint], spec_names: tuple[str, str]) -> None:
        qe = self.qe
        mv_name, sum_name = spec_names
        shard = self._open()
        # Nested lists convert to Edge's Rust vectors about 2x faster than numpy arrays do.
        batch = [
            qe.Point(
                id=self._pid(p.pid),
                vector={mv_name: p.multivector.tolist(), sum_name: p.summary.tolist()},  # type: ignore[union-attr]
                payload=p.payload,
            )
            for p in points
        ]
        self._guard(f"upsert {len(batch)} points", lambda: shard.update(qe.UpdateOperation.upsert_points(batch)))

    def retrieve(
        self, pids: Sequence[str], *, with_payload: bool, with_vectors: bool, names: tuple[str, str]
    ) -> list[StoredPoint]:
        shard = self._open()
        recs = self._guard(
            f"retrieve {len(pids)} points",
            # Edge requires both flags, although its stub marks them optional.
            lambda: shard.retrieve([self._pid(p) for p in pids], with_payload, [names[0]] if with_vectors else False),
        )
        return [self._point(r, names) for r in recs]

    @staticmethod
    def _point(r: Any, names: tuple[str, str], score: float = 0.0) -> StoredPoint:
        vec = r.vector if isinstance(getattr(r, "vector", None), Mapping) else {}
        mv = vec.get(names[0])
        sm = vec.get(names[1])
        return StoredPoint(
            pid=str(r.id),
            payload=dict(r.payload or {}),
            multivector=None if mv is None else np.asarray(mv, dtype=np.float32),
            summary=None if sm is None else np.asarray(sm, dtype=np.float32),
            score=score,
        )

    def delete(self, pids: Sequence[str]) -> None:
        shard = self._open()
        ids = [self._pid(p) for p in pids]
        self._guard(f"delete {len(ids)} points", lambda: shard.update(self.qe.UpdateOperation.delete_points(ids)))

    def delete_filter(self, flt: Any) -> None:
        shard = self._open()
        ef = to_edge_filter(flt, self.qe)
        self._guard(
            "delete points by filter", lambda: shard.update(self.qe.UpdateOperation.delete_points_by_filter(ef))
        )

    def count(self, flt: Any = None) -> int:
        shard = self._open()
        ef = None if flt is None else to_edge_filter(flt, self.qe)
        return int(self._guard("count points", lambda: shard.count(self.qe.CountRequest(exact=True, filter=ef))))

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
    ) -> list[StoredPoint]:
        qe = self.qe
        shard = self._open()
        ef = None if flt is None else to_edge_filter(flt, qe)
        quant = None
        if quantized:
            quant = (
                qe.QuantizationSearchParams(ignore=True)
                if exact
                # Edge returns quantized scores unless told to rescore.
                else qe.QuantizationSearchParams(rescore=True, oversampling=oversampling)
            )
        params = qe.SearchParams(exact=exact, quantization=quant)
        prefetches = []
        if summary is not None:
            prefetches = [qe.Prefetch(limit=prefetch_limit, query=qe.Query.Nearest(summary, using=names[1]), filter=ef)]
        req = qe.QueryRequest(
            prefetches=prefetches,
            query=qe.Query.Nearest(q, using=names[0]),
            limit=limit,
            filter=ef,
            with_payload=True,
            with_vector=False,
            params=params,
        )
        res = self._guard("query points", lambda: shard.query(req))
        return [self._point(p, names, score=float(p.score)) for p in res]

    def scroll(
        self, offset: Any, limit: int, names: tuple[str, str], *, flt: Any = None, with_vectors: bool = True
    ) -> tuple[list[StoredPoint], Any]:
        shard = self._open()
        ef = None if flt is None else to_edge_filter(flt, self.qe)
        recs, nxt = self._guard(
            "scroll points",
            lambda: shard.scroll(
                self.qe.ScrollRequest(
                    offset=offset,
                    limit=limit,
                    filter=ef,
                    with_payload=True,
                    with_vector=list(names) if with_vectors else False,
                )
            ),
        )
        return [self._point(r, names) for r in recs], nxt

    def flush(self) -> None:
        if self.shard is not None:
            shard = self.shard
            self._guard("flush", shard.flush)

    def optimize(self) -> bool:
        shard = self._open()
        return bool(self._guard("optimize", shard.optimize))

    def close(self) -> None:
        shard, self.shard = self.shard, None
        if shard is not None:
            self._guard("flush", shard.flush)
            self._guard("close", shard.close)


# --------------------------------------------------------------------------------------------- filters


def to_edge_filter(flt: Any, qe: Any) -> Any:
    """Convert a ``qdrant_client.models.Filter`` (or an Edge ``Filter``, returned as is) to an Edge filter.

    Supported: ``must``/``should``/``must_not``, nested filters, ``FieldCondition`` with ``MatchValue``,
    ``MatchAny``, ``MatchExcept``, ``MatchText`` or ``Range``, ``IsEmptyCondition``, ``IsNullCondition`` and
    ``HasIdCondition``.

    Raises:
        InvalidInputError: a condition Edge (or this converter) does not support.
    """
    if isinstance(flt, qe.Filter):
        return flt
    m = require("qdrant_client.models", extra="qdrant", package="qdrant-client")
    if not isinstance(flt, m.Filter):
        raise InvalidInputError(
            f"filter must be a dict, a qdrant_client.models.Filter or a qdrant_edge.Filter, got {type(flt).__name__}"
        )

    def conds(items: Any) -> list[Any] | None:
        if items is None:
            return None
        seq = items if isinstance(items, list) else [items]
        return [cond(c) for c in seq]

    def cond(c: Any) -> Any:
        if isinstance(c, m.Filter):
            return to_edge_filter(c, qe)
        if isinstance(c, m.FieldCondition):
            if c.match is not None:
                mt = c.match
                if isinstance(mt, m.MatchValue):
                    return qe.FieldCondition(key=c.key, match=qe.MatchValue(mt.value))
                if isinstance(mt, m.MatchAny):
                    return qe.FieldCondition(key=c.key, match=qe.MatchAny(list(mt.any)))
                if isinstance(mt, m.MatchExcept):
                    return qe.FieldCondition(key=c.key, match=qe.MatchExcept(list(mt.except_)))
                if isinstance(mt, m.MatchText):
                    return qe.FieldCondition(key=c.key, match=qe.MatchText(mt.text))
            if c.range is not None and isinstance(c.range, m.Range):
                r = c.range
                return qe.FieldCondition(key=c.key, range=qe.RangeFloat(gte=r.gte, gt=r.gt, lte=r.lte, lt=r.lt))
        if isinstance(c, m.IsEmptyCondition):
            return qe.IsEmptyCondition(c.is_empty.key)
        if isinstance(c, m.IsNullCondition):
            return qe.IsNullCondition(c.is_null.key)
        if isinstance(c, m.HasIdCondition):
            return qe.HasIdCondition({uuid.UUID(str(x)) if isinstance(x, str) else x for x in c.has_id})
        raise InvalidInputError(
            f"filter condition {c!r:.120} is not supported on Qdrant Edge by colbert-adapters; pass a "
            "qdrant_edge.Filter instead"
        )

    if getattr(flt, "min_should", None) is not None:
        raise InvalidInputError("min_should filters are not supported on Qdrant Edge by colbert-adapters")
    return qe.Filter(must=conds(flt.must), should=conds(flt.should), must_not=conds(flt.must_not))


def iter_batches(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
