"""The qdrant-client engine: a collection on a Qdrant server or cluster, or in qdrant-client's local mode.

Every request goes through :meth:`ClientEngine.call`: transient failures (connection errors, timeouts, 408,
429, 5xx, gRPC UNAVAILABLE ...) are retried with exponential backoff, and what is left is mapped to
:class:`~colbert_adapters.errors.QdrantUnavailableError`, :class:`~colbert_adapters.errors.QdrantRequestError`
or :class:`~colbert_adapters.errors.CollectionConfigError` with the fix in the message. Writes are idempotent
(deterministic point ids), so retrying them is safe. ``qdrant_client`` is imported on use.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from ..._optional import require
from ...errors import (
    ColBERTError,
    CollectionConfigError,
    IndexLockedError,
    InvalidInputError,
    QdrantRequestError,
    QdrantUnavailableError,
)
from ._engines import Engine, StoredPoint, stored_point
from ._points import metadata_path
from ._sparse import SPARSE_NAME, client_sparse_config
from .config import QdrantCollectionConfig, Schema

__all__ = ["ClientEngine", "open_client_engine"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


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


class ClientEngine(Engine):
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
        spec = spec.resolved()
        datatypes = {"float32": m.Datatype.FLOAT32, "float16": m.Datatype.FLOAT16, "turbo8": m.Datatype.TURBO8}
        tokens_hnsw = spec.first_stage == "tokens"
        mv_params = m.VectorParams(
            size=spec.dim,
            distance=m.Distance.DOT,
            multivector_config=m.MultiVectorConfig(comparator=m.MultiVectorComparator.MAX_SIM),
            # Reranking only: no graph over every token vector, unless the first stage is their own HNSW.
            hnsw_config=(
                m.HnswConfigDiff(m=spec.summary_m or 0, ef_construct=spec.summary_ef_construct)
                if tokens_hnsw
                else m.HnswConfigDiff(m=0)
            ),
            datatype=datatypes[spec.datatype],
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
        vectors = {spec.multivector_name: mv_params}
        first = spec.layout().spec
        if first is not None:
            vectors[first.name] = m.VectorParams(
                size=first.size,
                distance=m.Distance.COSINE if first.distance == "cosine" else m.Distance.DOT,
                multivector_config=(
                    m.MultiVectorConfig(comparator=m.MultiVectorComparator.MAX_SIM) if first.multivector else None
                ),
                hnsw_config=m.HnswConfigDiff(m=spec.summary_m or 0, ef_construct=spec.summary_ef_construct),
                datatype=datatypes[spec.summary_datatype],
                quantization_config=(
                    m.BinaryQuantization(binary=m.BinaryQuantizationConfig(always_ram=True))
                    if spec.summary_quantization == "binary"
                    else m.ScalarQuantization(
                        scalar=m.ScalarQuantizationConfig(type=m.ScalarType.INT8, quantile=0.99, always_ram=True)
                    )
                    if spec.summary_quantization == "int8"
                    else None
                ),
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
                vectors_config=vectors,
                sparse_vectors_config=client_sparse_config(m, meta),
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
        path = metadata_path(key)
        self.call(
            f"create payload index on {path!r}",
            lambda: self.client.create_payload_index(self.collection, path, field_schema=schema, wait=True),
        )

    def payload_index_paths(self) -> set[str] | None:
        if self.local:
            return None
        info = self.call(f"read collection {self.collection!r}", lambda: self.client.get_collection(self.collection))
        return set((getattr(info, "payload_schema", None) or {}).keys())

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
                vector={
                    mv_name: p.multivector.tolist(),  # type: ignore[union-attr]
                    **({} if p.summary is None else {sum_name: p.summary.tolist()}),
                    **(
                        {}
                        if p.sparse is None
                        else {SPARSE_NAME: m.SparseVector(indices=p.sparse[0], values=p.sparse[1])}
                    ),
                },
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
        return [stored_point(r, names) for r in recs]

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
        using: str | None = None,
        summary_quantized: bool = False,
        prefetch_exact: bool = False,
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
            # Local mode always scans exactly and warns about search params: send none there.
            pre_params = (
                None
                if self.local
                else m.SearchParams(
                    exact=prefetch_exact,
                    quantization=(
                        m.QuantizationSearchParams(rescore=True, oversampling=oversampling)
                        if summary_quantized
                        else None
                    ),
                )
            )
            prefetch = m.Prefetch(
                query=summary.tolist(), using=using or names[1], limit=prefetch_limit, filter=flt, params=pre_params
            )
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
        return [stored_point(p, names, score=float(p.score)) for p in res.points]

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
                with_vectors=list(dict.fromkeys(names)) if with_vectors else False,
                shard_key_selector=self._shard_selector(),
            ),
        )
        return [stored_point(r, names) for r in recs], nxt

    def close(self) -> None:
        if self.owns_client:
            with contextlib.suppress(Exception):
                self.client.close()


def open_client_engine(
    *,
    local: Any,
    url: str | None,
    client: Any,
    collection_name: str,
    api_key: str | None,
    https: bool | None,
    prefer_grpc: bool,
    timeout: float,
    max_retries: int,
    retry_backoff: float,
    shard_key: str | None,
) -> ClientEngine:
    """Build the :class:`ClientEngine` for local mode (``local``), a server (``url``) or a given ``client``.

    Raises:
        InvalidInputError: a bad ``url``, ``timeout`` or ``client``.
        IndexLockedError: the local-mode directory is open in another client.
    """
    qc = require("qdrant_client", extra="qdrant", package="qdrant-client")
    if not isinstance(timeout, (int, float)) or timeout <= 0:
        raise InvalidInputError(f"timeout must be a positive number of seconds, got {timeout!r}")
    owns = client is None
    if client is None:
        if local is not None:
            loc = os.fspath(local)
            try:
                client = qc.QdrantClient(location=":memory:") if loc == ":memory:" else qc.QdrantClient(path=loc)
            except RuntimeError as err:  # "Storage folder ... is already accessed by another instance"
                raise IndexLockedError(
                    f"local-mode directory {loc} is open in another QdrantClient or process ({err}); close it first"
                ) from err
        else:
            if not isinstance(url, str) or not url:
                raise InvalidInputError(f"url must be a non-empty str, got {url!r}")
            client = qc.QdrantClient(
                url=url,
                api_key=api_key,
                https=https,
                prefer_grpc=prefer_grpc,
                timeout=max(1, round(timeout)),
                check_compatibility=False,
            )
    elif not isinstance(client, qc.QdrantClient):
        raise InvalidInputError(f"client must be a qdrant_client.QdrantClient, got {type(client).__name__}")
    inner = getattr(client, "_client", None)
    is_local = type(inner).__name__ == "QdrantLocal"
    if is_local:
        where = f"local mode {getattr(inner, 'location', None) or ':memory:'}"
    else:
        where = url or getattr(inner, "rest_uri", None) or "the Qdrant server"
    grpc = bool(getattr(inner, "_prefer_grpc", prefer_grpc)) and not is_local
    return ClientEngine(
        client,
        collection_name,
        where=str(where),
        owns_client=owns,
        grpc=grpc,
        local=is_local,
        max_retries=max_retries,
        retry_backoff=retry_backoff,
        timeout=timeout,
        shard_key=shard_key,
    )
