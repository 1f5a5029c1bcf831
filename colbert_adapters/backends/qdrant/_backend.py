"""The :class:`QdrantBackend` facade: argument checks, the public methods, and the write path to an engine."""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

import numpy as np

from ..._filters import match_filter
from ..._identity import same_model
from ..._validation import as_multivector, check_ids, check_k, check_upsert_batch, positive_int
from ...errors import ColBERTError, CollectionConfigError, InvalidInputError, QdrantRequestError
from ...types import Filter, Hit, Metadata, MultiVector
from ..base import Record, VerifyReport
from . import _sparse
from ._client import ClientEngine, open_client_engine
from ._edge import EdgeEngine
from ._engines import (
    REST_LIMIT_BYTES,
    Engine,
    StoredPoint,
    ensure_payload_indexes,
    ranked_hits,
    upsert_in_requests,
)
from ._filters import resolve_filter
from ._first_stage import DEFAULT_PREFETCH, Layout, corpus_centre
from ._points import (
    DOC_ID_KEY,
    MAX_MULTIVECTOR_FLOATS,
    METADATA_KEY,
    SEQ_KEY,
    TEXT_KEY,
    check_vectors,
    point_id,
)
from ._sparse import LexicalSearch
from ._verify import verify_points
from .config import QdrantCollectionConfig, check_schema

__all__ = ["QdrantBackend"]

logger = logging.getLogger(__name__)

_META_VERSION = 1
_SEARCH_MODES = ("two_stage", "exact")
#: Points per scroll page and per delete request.
_PAGE = 1024


class QdrantBackend(LexicalSearch):
    """Multi-vector store on Qdrant: Edge (embedded, on disk), local mode, or a server/cluster.

    Pass exactly one of ``path``, ``local``, ``url`` or ``client`` (or use the classmethods :meth:`edge`,
    :meth:`local`, :meth:`from_url`, :meth:`from_client`). All public methods are thread-safe.

    Opening an existing collection (or Edge directory) validates its schema (dimension, distance, MaxSim
    comparator, vector names) and its recorded ``model_id``, and refuses a mismatch with
    :class:`~colbert_adapters.errors.CollectionConfigError`. With ``dim=None`` and no existing collection,
    the collection is created at the first :meth:`upsert`.

    Args:
        path: Qdrant Edge directory (created if missing): the shard lives in ``path/shard`` and our manifest
            (dimension, layout, ``model_id``) in ``path/colbert_adapters.json``.
        dim: token vector dimension; ``None`` takes it from the existing collection or the first upsert.
        local: qdrant-client local mode: ``":memory:"`` or a directory.
        url: Qdrant server URL, e.g. ``"http://localhost:6333"`` or a Qdrant Cloud URL.
        client: an existing ``qdrant_client.QdrantClient`` (not closed by :meth:`close`).
        collection_name: collection to use (client engines; ignored by Edge).
        config: collection layout and storage options (:class:`QdrantCollectionConfig`); ``dim`` may be
            given instead for the defaults.
        api_key: server API key.
        https: force HTTPS on or off (default: from the URL).
        prefer_grpc: talk gRPC (binary floats: requests several times smaller than REST JSON, and no 32 MiB
            REST request limit).
        timeout: seconds per request (connect and read) for server engines; an unreachable server fails
            within about this time with :class:`QdrantUnavailableError` naming the URL.
        recreate: drop an existing collection (or Edge directory content) and create it anew. Deletes data.
        model_id: encoder identifier to record; an existing collection recording another one is refused.
            :class:`~colbert_adapters.store.MultiVectorStore` sets it from its encoder.
        search_mode: ``"two_stage"`` (summary prefetch + MaxSim rerank) or ``"exact"`` (full MaxSim scan).
        prefetch_limit: first-stage candidates of a two-stage search (more: better recall, slower); ``None``: the
            layout's default (400 for ``"centroids"``, whose exact centroid scan costs the same for any limit;
            200 for the others).
        oversampling: oversampling of quantized rescoring (int8 collections).
        max_request_bytes: upper bound of one upsert request (estimated JSON or protobuf size); batches are
            split to stay under it. The default is half the REST limit of 32 MiB.
        max_batch_points: upper bound of points per upsert request.
        max_retries: retries of a request that failed transiently (connection errors, timeouts, 429, 5xx),
            with exponential backoff from ``retry_backoff`` seconds. Writes are idempotent (deterministic
            ids), so retrying is safe.
        retry_backoff: first backoff delay in seconds.
        shard_key: custom-sharded collections: the shard key to write to and read from (``None`` reads all).
        wal: Edge only: keep a write-ahead log (default). Without it writes are durable only after
            :meth:`flush` (but a loaded shard needs less RAM: it maps no WAL segments).
        flush_on_write: Edge only: ``flush()`` at the end of every write call, so an acknowledged write is on
            disk (every write call then waits for the disk; write in batches).
        optimize_every: Edge only: run :meth:`optimize` after this many points were written since the last
            optimization (``None``: only on :meth:`close` and when called).
        optimize_on_close: Edge only: optimize in :meth:`close` when something was written.

    Raises:
        InvalidInputError: bad arguments (none or several engines, bad ``dim``, mode or limits).
        CollectionConfigError: the existing collection has another schema or model; pass ``recreate=True``
            or use another collection/path.
        QdrantUnavailableError: the server cannot be reached.
        MissingDependencyError: ``qdrant-client`` / ``qdrant-edge-py`` are not installed
            (``pip install "colbert-adapters[qdrant]"``).
        IndexLockedError: the Edge directory is open elsewhere.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        dim: int | None = None,
        local: str | os.PathLike[str] | None = None,
        url: str | None = None,
        client: Any = None,
        collection_name: str = "colbert",
        config: QdrantCollectionConfig | None = None,
        api_key: str | None = None,
        https: bool | None = None,
        prefer_grpc: bool = False,
        timeout: float = 10.0,
        recreate: bool = False,
        model_id: str | None = None,
        search_mode: str = "two_stage",
        prefetch_limit: int | None = None,
        oversampling: float = 2.0,
        max_request_bytes: int = REST_LIMIT_BYTES // 2,
        max_batch_points: int = 256,
        max_retries: int = 3,
        retry_backoff: float = 0.5,
        shard_key: str | None = None,
        wal: bool = True,
        flush_on_write: bool = True,
        optimize_every: int | None = 50_000,
        optimize_on_close: bool = True,
    ) -> None:
        chosen = [n for n, v in (("path", path), ("local", local), ("url", url), ("client", client)) if v is not None]
        if len(chosen) != 1:
            raise InvalidInputError(
                "pass exactly one of path= (Qdrant Edge directory, embedded, no server), local= (':memory:' "
                "or a directory: qdrant-client local mode), url= (a Qdrant server) or client= (a QdrantClient)"
                + (f"; got {', '.join(chosen)}" if chosen else "")
            )
        if not isinstance(collection_name, str) or not collection_name:
            raise InvalidInputError(f"collection_name must be a non-empty str, got {collection_name!r}")
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1):
            raise InvalidInputError(f"dim must be a positive int or None, got {dim!r}")
        if config is not None and not isinstance(config, QdrantCollectionConfig):
            raise InvalidInputError(f"config must be a QdrantCollectionConfig, got {type(config).__name__}")
        if config is not None and dim is not None and config.dim != dim:
            raise InvalidInputError(f"dim={dim} disagrees with config.dim={config.dim}; pass one of them")
        if model_id is not None and not isinstance(model_id, str):
            raise InvalidInputError(f"model_id must be a str or None, got {type(model_id).__name__}")
        self.search_mode = _check_mode(search_mode)
        self._prefetch_limit = None if prefetch_limit is None else positive_int(prefetch_limit, "prefetch_limit")
        if not isinstance(oversampling, (int, float)) or oversampling < 1:
            raise InvalidInputError(f"oversampling must be a number >= 1, got {oversampling!r}")
        self.oversampling = float(oversampling)
        self.max_request_bytes = positive_int(max_request_bytes, "max_request_bytes")
        self.max_batch_points = positive_int(max_batch_points, "max_batch_points")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise InvalidInputError(f"max_retries must be an int >= 0, got {max_retries!r}")
        self.flush_on_write = bool(flush_on_write)
        self.optimize_every = None if optimize_every is None else positive_int(optimize_every, "optimize_every")
        self.optimize_on_close = bool(optimize_on_close)
        self._lock = threading.RLock()
        self._closed = False
        self._written_since_optimize = 0
        self._last_seq = 0
        self._config: QdrantCollectionConfig | None = None
        self._layout: Layout | None = None
        self._quantized = False
        self._model_id: str | None = None
        self._lexical: dict[str, Any] | None = None  # the BM25 sparse vector's layout (_sparse.py), if any

        engine: Engine
        if path is not None:
            if shard_key is not None:
                raise InvalidInputError("shard_key applies to custom-sharded server collections, not to Edge")
            engine = EdgeEngine(path, wal=wal)
        else:
            engine = open_client_engine(
                local=local,
                url=url,
                client=client,
                collection_name=collection_name,
                api_key=api_key,
                https=https,
                prefer_grpc=prefer_grpc,
                timeout=timeout,
                max_retries=max_retries,
                retry_backoff=retry_backoff,
                shard_key=shard_key,
            )
        self._engine = engine
        try:
            self._open(config if config is not None else None, None if dim is None else int(dim), recreate, model_id)
        except BaseException:
            engine.close()
            raise

    # ------------------------------------------------------------------------------------ constructors

    @classmethod
    def edge(cls, path: str | os.PathLike[str], dim: int | None = None, **kwargs: Any) -> QdrantBackend:
        """Qdrant Edge (embedded engine, on disk, no server) in directory ``path``; see the class for kwargs."""
        return cls(path, dim=dim, **kwargs)

    @classmethod
    def local(
        cls, location: str | os.PathLike[str] = ":memory:", dim: int | None = None, **kwargs: Any
    ) -> QdrantBackend:
        """qdrant-client local mode (``":memory:"`` or a directory): pure Python, for trials and tests."""
        return cls(local=location, dim=dim, **kwargs)

    @classmethod
    def from_url(cls, url: str, dim: int | None = None, **kwargs: Any) -> QdrantBackend:
        """A Qdrant server or cluster at ``url`` (``api_key=``, ``prefer_grpc=``, ``timeout=`` ...)."""
        return cls(url=url, dim=dim, **kwargs)

    @classmethod
    def from_client(
        cls, client: Any, collection_name: str = "colbert", dim: int | None = None, **kwargs: Any
    ) -> QdrantBackend:
        """An existing ``QdrantClient`` (any engine); the caller keeps ownership of the client."""
        return cls(client=client, collection_name=collection_name, dim=dim, **kwargs)

    # ------------------------------------------------------------------------------------ properties

    @property
    def dim(self) -> int | None:
        """Token vector dimension, or ``None`` before the collection exists (``dim`` not given)."""
        return None if self._config is None else self._config.dim

    @property
    def config(self) -> QdrantCollectionConfig | None:
        """The collection layout, or ``None`` before the collection exists."""
        return self._config

    @property
    def prefetch_limit(self) -> int:
        """First-stage candidates of a two-stage search: as set, else the layout's default."""
        if self._prefetch_limit is not None:
            return self._prefetch_limit
        return DEFAULT_PREFETCH.get("" if self._config is None else str(self._config.first_stage), 200)

    @prefetch_limit.setter
    def prefetch_limit(self, value: int) -> None:
        self._prefetch_limit = positive_int(value, "prefetch_limit")

    @property
    def engine(self) -> str:
        """``"edge"``, ``"local"`` or ``"server"``."""
        return self._engine.kind

    @property
    def location(self) -> str:
        """Where the data lives, for messages (URL, directory or ``:memory:``)."""
        return self._engine.where

    @property
    def model_id(self) -> str | None:
        """Identifier of the encoder recorded in the collection, or ``None``."""
        return self._model_id

    @model_id.setter
    def model_id(self, value: str | None) -> None:
        if value is not None and not isinstance(value, str):
            raise InvalidInputError(f"model_id must be a str or None, got {type(value).__name__}")
        with self._lock:
            stored = self._model_id
            if value == stored or (value is not None and stored is not None and same_model(stored, value)):
                return
            if self._model_id is not None and value is not None:
                raise CollectionConfigError(
                    f"{self._describe()} was built with model {self._model_id!r}, not {value!r}; use the same "
                    "model, or recreate=True / another collection"
                )
            self._model_id = value
            if self._config is not None:
                self._save_meta()

    # ------------------------------------------------------------------------------------ protocol

    def upsert(
        self,
        ids: Sequence[str],
        vectors: Sequence[MultiVector],
        texts: Sequence[str | None] | None = None,
        metadatas: Sequence[Metadata | None] | None = None,
    ) -> None:
        """Insert or replace documents; the whole batch is validated before anything is written.

        Args:
            ids: ``n`` unique, non-empty ids (mapped to point ids with :func:`point_id`).
            vectors: ``n`` array-likes ``(n_tokens_i, dim)``, finite, ``n_tokens_i * dim`` below
                1,048,576 (:data:`MAX_MULTIVECTOR_FLOATS`, Qdrant's cap: 8,191 tokens at 128 dims).
            texts: ``n`` texts (``str`` or ``None``), or ``None``.
            metadatas: ``n`` JSON-serialisable dicts (or ``None`` entries), or ``None``.

        Raises:
            InvalidInputError: bad ids, lengths, texts, metadata or vectors (empty, ragged, NaN/inf, over the
                per-document cap; policy: refuse, split long documents into passages before encoding).
            DimensionMismatchError: a vector's dimension differs from the collection's (or the batch's).
            QdrantUnavailableError / QdrantRequestError: the server failed (after retries). Earlier requests
                of a large batch may then be stored; re-running the same upsert is safe (idempotent).
        """
        with self._lock:
            self._check_open()
            id_list, text_list, meta_list = check_upsert_batch(ids, vectors, texts, metadatas)
            n = len(id_list)
            arrays = check_vectors(vectors, self.dim, id_list)
            if n == 0:
                return
            if self._config is None:
                self._create(QdrantCollectionConfig(dim=arrays[0].shape[1]))
            summaries = self._doc_vectors(arrays)
            seqs = self._next_seqs(n)
            points = [
                StoredPoint(
                    pid=point_id(doc_id),
                    payload={
                        DOC_ID_KEY: doc_id,
                        TEXT_KEY: text,
                        METADATA_KEY: copy.deepcopy(meta),
                        SEQ_KEY: seq,
                    },
                    multivector=arr,
                    summary=summ,
                )
                for doc_id, arr, summ, text, meta, seq in zip(
                    id_list, arrays, summaries, text_list, meta_list, seqs, strict=True
                )
            ]
            self._write(points)

    def delete(self, ids: Sequence[str], *, missing_ok: bool = True) -> int:
        """Remove documents by id.

        Args:
            ids: ids to remove (duplicates are counted once).
            missing_ok: ignore unknown ids (the protocol's behaviour). ``False`` raises on unknown ids and
                deletes nothing.

        Returns:
            The number of documents removed.

        Raises:
            InvalidInputError: bad ids, or unknown ids with ``missing_ok=False``.
        """
        with self._lock:
            self._check_open()
            unique = list(dict.fromkeys(check_ids(ids, allow_duplicates=True)))
            if not unique or self._config is None:
                if unique and not missing_ok:
                    raise InvalidInputError(f"unknown ids {unique[:5]!r}: the collection is empty")
                return 0
            found = {p.payload.get(DOC_ID_KEY) for p in self._retrieve([point_id(i) for i in unique], False)}
            missing = [i for i in unique if i not in found]
            if missing and not missing_ok:
                raise InvalidInputError(
                    f"{len(missing)} unknown id(s), e.g. {missing[:5]!r}; nothing was deleted "
                    "(pass missing_ok=True to ignore unknown ids)"
                )
            pids = [point_id(i) for i in unique if i in found]
            self._delete_points(pids)
            return len(pids)

    def delete_where(self, filter: Filter | Any) -> int:
        """Remove every document matching a filter; returns how many were removed.

        Args:
            filter: the dict form (``{"field": value}``, ``{"year": {"$gte": 2020}}``, ``{"$or": [...]}``, same
                semantics as :meth:`search`) or a native ``qdrant_client.models.Filter`` on payload keys
                (``metadata.<field>``, ``doc_id``, ``text``).

        Raises:
            InvalidInputError: an empty or malformed filter (:meth:`clear` deletes everything).
        """
        native, post = resolve_filter(filter, self._engine.kind)
        if native is None and post is None:
            raise InvalidInputError("delete_where needs a non-empty filter (clear() deletes everything)")
        with self._lock:
            self._check_open()
            if self._config is None:
                return 0
            pids = [
                p.pid
                for page in self._pages(_PAGE, flt=native)
                for p in page
                if post is None or match_filter(p.payload.get(METADATA_KEY) or {}, post)
            ]
            self._delete_points(pids)
            return len(pids)

    def clear(self) -> None:
        """Remove every document; the collection, its layout and its recorded ``model_id`` stay.

        It scrolls the point ids and deletes them in pages, the same requests as :meth:`delete_where`, so it
        works alike on Edge, local mode and a server (with ``shard_key``: the points of that shard key).
        """
        with self._lock:
            self._check_open()
            if self._config is None:
                return
            self._delete_points([p.pid for page in self._pages(_PAGE) for p in page])

    def get(self, ids: Sequence[str], *, with_vectors: bool = False) -> list[Record]:
        """Fetch stored documents in the order asked, skipping unknown ids.

        Args:
            ids: ids to fetch.
            with_vectors: include each document's float32 ``(n_tokens, dim)`` token vectors.

        Returns:
            One :class:`~colbert_adapters.backends.base.Record` per known id.
        """
        with self._lock:
            self._check_open()
            id_list = check_ids(ids, allow_duplicates=True)
            if not id_list or self._config is None:
                return []
            unique = list(dict.fromkeys(id_list))
            by_id = {p.payload.get(DOC_ID_KEY): p for p in self._retrieve([point_id(i) for i in unique], with_vectors)}
            out = []
            for doc_id in id_list:
                p = by_id.get(doc_id)
                if p is not None:
                    out.append(
                        Record(
                            id=doc_id,
                            text=p.payload.get(TEXT_KEY),
                            metadata=copy.deepcopy(p.payload.get(METADATA_KEY) or {}),
                            vectors=None if not with_vectors or p.multivector is None else p.multivector.copy(),
                        )
                    )
            return out

    def search(
        self,
        query_vectors: MultiVector,
        k: int = 10,
        filter: Filter | Any | None = None,
        *,
        mode: str | None = None,
        prefetch_limit: int | None = None,
    ) -> list[Hit]:
        """Top ``k`` documents by MaxSim.

        Args:
            query_vectors: float32 array-like ``(n_query_tokens, dim)``.
            k: number of hits (>= 1).
            filter: a metadata filter (``{"field": value}``, ``{"year": {"$gte": 2020}}``, ``{"$or": [...]}``;
                exact :class:`MemoryBackend` semantics, see ``MultiVectorStore.search``), or a native
                ``qdrant_client.models.Filter`` (on Edge also a ``qdrant_edge.Filter``) on ``metadata.<field>``.
            mode: ``"two_stage"`` or ``"exact"``; default: the backend's ``search_mode``.
            prefetch_limit: first-stage candidates for this call (two-stage); default: the backend's.

        Returns:
            Up to ``k`` hits by descending MaxSim; ties keep insertion order.

        Raises:
            InvalidInputError: bad query, ``k``, filter or mode.
            DimensionMismatchError: the query's dimension differs from the collection's.
        """
        k = check_k(k)
        native, post = resolve_filter(filter, self._engine.kind)
        mode = self.search_mode if mode is None else _check_mode(mode)
        pl = self.prefetch_limit if prefetch_limit is None else positive_int(prefetch_limit, "prefetch_limit")
        # Edge holds the GIL and one shard: serialise. A QdrantClient is thread-safe: let searches overlap.
        guard = self._lock if self._engine.kind == "edge" else contextlib.nullcontext()
        with guard:
            self._check_open()
            q = as_multivector(query_vectors, dim=self.dim, where="query_vectors")
            if q.size >= MAX_MULTIVECTOR_FLOATS:
                raise InvalidInputError(
                    f"query_vectors has {q.shape[0]} x {q.shape[1]} = {q.size} floats; Qdrant caps a multivector "
                    f"below {MAX_MULTIVECTOR_FLOATS}"
                )
            if self._config is None or self._layout is None:
                return []
            layout = self._layout
            if layout.needs_centre:  # a centred layout with no document written yet
                return []
            summary = layout.query_vector(q) if mode == "two_stage" else None
            limit = k + 1  # one more than asked, to see whether the k-th score is tied
            while True:
                raw = self._engine.query(
                    q,
                    summary,
                    limit=limit,
                    prefetch_limit=max(pl, limit),
                    flt=native,
                    exact=mode == "exact",
                    quantized=self._quantized,
                    oversampling=self.oversampling,
                    names=self._names,
                    using=layout.prefetch_using,
                    summary_quantized=self._config.summary_quantization is not None,
                    prefetch_exact=self._config.summary_m == 0,
                )
                hits = [p for p in raw if post is None or match_filter(p.payload.get(METADATA_KEY) or {}, post)]
                if len(raw) < limit:
                    break  # every candidate seen
                if len(hits) > k and hits[k].score < hits[k - 1].score:
                    break  # k hits and no tie across the cut
                # Too few hits after the exact re-check, or a tie across the cut: widen and ask again.
                limit *= 4
            return ranked_hits(hits, k)

    def ids(self) -> list[str]:
        """Ids of every stored document (a snapshot, in storage order)."""
        with self._lock:
            self._check_open()
            if self._config is None:
                return []
            return [str(p.payload[DOC_ID_KEY]) for page in self._pages(_PAGE) for p in page]

    def count(self) -> int:
        """Number of stored documents."""
        with self._lock:
            self._check_open()
            return 0 if self._config is None else self._engine.count()

    def verify(self) -> VerifyReport:
        """Read every point and report what is damaged; nothing is changed.

        Each point must carry its document id (and the id must map to the point's uuid), a finite multivector of the
        collection's dimension, and the count must match. On Edge, the shard files a clean close recorded and this
        process has not rewritten since it opened them are checked against their CRC-32.

        Returns:
            A :class:`~colbert_adapters.backends.base.VerifyReport` (``ok`` when nothing is damaged).
        """
        with self._lock:
            self._check_open()
            return verify_points(self._engine, self._config, self._pages(_PAGE, with_vectors=True), self._describe())

    def flush(self) -> None:
        """Make every acknowledged write durable (Edge: flush segments; servers persist on their own)."""
        with self._lock:
            self._check_open()
            self._engine.flush()

    def optimize(self) -> bool:
        """Edge: run the segment optimizers now (merge segments, build the summary HNSW); blocks until done.

        It holds the GIL for its whole run, which grows with the shard; call it after bulk loads, not in a
        latency-sensitive thread. Server engines optimize in the background: this is a no-op there.

        Returns:
            ``True`` when segments were optimized.
        """
        with self._lock:
            self._check_open()
            if self._config is None:
                return False
            return self._optimize_now()

    def close(self) -> None:
        """Optimize (Edge, after writes, if ``optimize_on_close``), flush and release files/locks. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                if (
                    self._engine.kind == "edge"
                    and self.optimize_on_close
                    and self._written_since_optimize
                    and self._config is not None
                ):
                    self._engine.optimize()
            finally:
                self._engine.close()

    def __enter__(self) -> QdrantBackend:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"QdrantBackend(engine={self.engine!r}, location={self.location!r}, dim={self.dim}, "
            f"search_mode={self.search_mode!r})"
        )

    # ------------------------------------------------------------------------------------ internals

    @property
    def _names(self) -> tuple[str, str]:
        cfg = self._config
        assert cfg is not None
        # The "tokens" layout has no first-stage vector: its prefetch searches the multivector itself.
        return cfg.multivector_name, cfg.summary_name if cfg.first_stage != "tokens" else cfg.multivector_name

    def _describe(self) -> str:
        if isinstance(self._engine, ClientEngine):
            return f"collection {self._engine.collection!r} at {self._engine.where}"
        return self._engine.where

    def _check_open(self) -> None:
        if self._closed:
            raise ColBERTError(f"this QdrantBackend ({self._engine.where}) is closed; open a new one")

    def _open(
        self, config: QdrantCollectionConfig | None, dim: int | None, recreate: bool, model_id: str | None
    ) -> None:
        exists = self._engine.exists()
        if exists and recreate:
            logger.warning("recreate=True: dropping %s", self._describe())
            self._engine.drop()
            exists = False
        if exists:
            meta = self._engine.read_meta() or {}
            stored = meta.get("config")
            fix = "pass recreate=True to drop and re-create it (this deletes its documents), or use another " + (
                "path" if self._engine.kind == "edge" else "collection_name"
            )
            self._config, self._quantized = check_schema(
                self._engine.schema(),
                stored if isinstance(stored, Mapping) else None,
                config,
                dim,
                where=self._describe(),
                fix=fix,
            )
            self._lexical = _sparse.layout(meta)
            centre = meta.get("centre")
            self._layout = self._config.layout(
                np.asarray(centre, dtype=np.float32) if isinstance(centre, list) and centre else None
            )
            stored_model = meta.get("model_id")
            self._model_id = stored_model if isinstance(stored_model, str) else None
            wanted = ensure_payload_indexes(self._engine, self._config, config, where=self._describe())
            if wanted is not None:  # new keys requested: recorded in the layout
                self._config = wanted
                self._save_meta()
            if model_id is not None:
                self.model_id = model_id  # refuses another model, records it when none was
        else:
            self._model_id = model_id
            if config is not None or dim is not None:
                self._create(config if config is not None else QdrantCollectionConfig(dim=dim))  # type: ignore[arg-type]

    def _create(self, config: QdrantCollectionConfig) -> None:
        if config.shard_keys and self._engine.kind == "edge":
            raise InvalidInputError("shard_keys need a server collection; Qdrant Edge is a single shard")
        self._lexical = _sparse.new_layout()
        config = config.resolved()
        self._layout = config.layout()
        self._engine.create(config, self._meta_dict(config))
        self._config = config
        self._quantized = config.quantization is not None
        logger.info("created %s (dim %d, first stage %s)", self._describe(), config.dim, config.first_stage)

    def _meta_dict(self, config: QdrantCollectionConfig) -> dict[str, Any]:
        meta: dict[str, Any] = {"version": _META_VERSION, "model_id": self._model_id, "config": config.to_json()}
        if self._layout is not None and self._layout.centre is not None:
            meta["centre"] = [float(x) for x in self._layout.centre]
        return meta if self._lexical is None else {**meta, "lexical": self._lexical}

    def _doc_vectors(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray | None]:
        """The first-stage vectors of ``arrays``; a centred layout's first write fixes (and records) the centre."""
        layout = self._layout
        assert layout is not None
        if layout.needs_centre:
            layout.centre = corpus_centre(arrays)
            self._save_meta()
        return layout.doc_vectors(arrays)

    def _save_meta(self) -> None:
        assert self._config is not None
        try:
            self._engine.write_meta(self._meta_dict(self._config))
        except QdrantRequestError as err:  # e.g. a server older than 1.16 without collection metadata
            logger.warning("could not record model_id in %s: %s", self._describe(), err)

    def _next_seqs(self, n: int) -> list[int]:
        # Insertion order for tie-breaking: microseconds since the epoch, strictly increasing in-process.
        start = max(self._last_seq + 1, time.time_ns() // 1000)
        self._last_seq = start + n - 1
        return list(range(start, start + n))

    def _retrieve(self, pids: Sequence[str], with_vectors: bool) -> list[StoredPoint]:
        out: list[StoredPoint] = []
        for start in range(0, len(pids), 256):
            out += self._engine.retrieve(
                pids[start : start + 256], with_payload=True, with_vectors=with_vectors, names=self._names
            )
        return out

    def _write(self, points: Sequence[StoredPoint]) -> None:
        _sparse.add_sparse_vectors(self, points)
        if not isinstance(self._engine, ClientEngine):  # Edge: in-process, no request size limit
            for start in range(0, len(points), self.max_batch_points):
                self._engine.upsert(points[start : start + self.max_batch_points], self._names)
            self._after_write(len(points))
            return
        n_requests = upsert_in_requests(
            self._engine, points, self._names, self.max_request_bytes, self.max_batch_points, grpc=self._engine.grpc
        )
        logger.debug("upserted %d points in %d request(s) to %s", len(points), n_requests, self._describe())
        self._after_write(len(points))

    def _after_write(self, n_points: int) -> None:
        if self._engine.kind != "edge":
            return
        self._written_since_optimize += max(n_points, 1)
        if self.optimize_every is not None and self._written_since_optimize >= self.optimize_every:
            logger.debug(
                "%d points written since the last optimization (optimize_every=%d): optimizing %s",
                self._written_since_optimize,
                self.optimize_every,
                self._describe(),
            )
            self._optimize_now()
        if self.flush_on_write:
            self._engine.flush()

    def _optimize_now(self) -> bool:
        t0 = time.perf_counter()
        done = self._engine.optimize()
        self._written_since_optimize = 0
        if done:
            logger.info("optimized %s in %.2fs", self._describe(), time.perf_counter() - t0)
        return done

    def _pages(self, size: int, *, flt: Any = None, with_vectors: bool = False) -> Iterator[list[StoredPoint]]:
        """Every stored point (matching the native filter ``flt``), a scroll page of up to ``size`` at a time."""
        offset = None
        while True:
            points, offset = self._engine.scroll(offset, size, self._names, flt=flt, with_vectors=with_vectors)
            yield points
            if offset is None:
                return

    def _delete_points(self, pids: Sequence[str]) -> None:
        for start in range(0, len(pids), _PAGE):
            self._engine.delete(pids[start : start + _PAGE])
        self._after_write(0)

    # ---- used by admin.copy_collection

    def _ensure_created(self, config: QdrantCollectionConfig) -> None:
        if self._config is None:
            self._create(config)

    def _write_stored(self, points: Sequence[StoredPoint]) -> None:
        """Write points read from another Qdrant collection, validating them like :meth:`upsert` does."""
        dim = self.dim
        for p in points:
            if p.multivector is None:
                raise CollectionConfigError(f"point {p.pid} has no multivector; cannot copy it")
            doc = p.payload.get(DOC_ID_KEY, p.pid)
            p.multivector = check_vectors([p.multivector], dim, [str(doc)])[0]
        # The first-stage vectors follow the target's layout, whatever the source's was.
        for p, summ in zip(points, self._doc_vectors([p.multivector for p in points]), strict=True):  # type: ignore[misc]
            p.summary = summ
        self._write(points)


# ------------------------------------------------------------------------------------------------ helpers


def _check_mode(mode: object) -> str:
    if mode not in _SEARCH_MODES:
        raise InvalidInputError(f"search mode must be one of {_SEARCH_MODES}, got {mode!r}")
    return str(mode)
