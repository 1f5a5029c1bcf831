"""Voyager backend: a durable, incremental multi-vector index on disk (token-level HNSW + SQLite).

Every document token vector goes into a Voyager HNSW graph (cosine space) under an integer *label*; the documents
themselves (id, text, JSON metadata, token vectors in int8, int14, float16 or float32) live in one SQLite database,
which is the source of truth. A search asks the graphs for each query token's nearest tokens, turns them into
candidate documents with a cheap approximate score, and reranks the best candidates with exact MaxSim on their
stored vectors.

This package's rooms (each a module of functions over one shared :class:`._state.IndexState`, bottom up):

==================  ================================================================================================
``_db``             SQLite connections, transactions and the schema (``store.sqlite``, the commit point)
``_docstore``       document rows: lookups, deletions, the cache of stored vector blobs
``_centroids``      per-document k-means centroids (k-means, storage, backfill of older indexes)
``_state``          the in-memory state and how it is loaded from (and refreshed after) the files
``_layout``         the directory's format: creation, settings check, format versions, manifest, orphans
``_segments``       segment life: seal the mutable segment, fold and rebuild segments, build HNSW files
``_writes``         upserts and deletes: one transaction each, applied to the state when committed
``_candidates``     candidate generation: HNSW queries per token and the approximate score
``_rerank``         the exact stage: read, estimate (int8) and score candidates exactly
``_search``         a search start to end: mutable segment, small-index scan or graph, filters, fallbacks
==================  ================================================================================================

The token codecs are :mod:`colbert_adapters._codecs` and the MaxSim kernels :mod:`colbert_adapters._kernels`
(shared with every other backend). ``docs/ARCHITECTURE.md`` draws how ``upsert`` and ``search`` flow through them.

Example:
    >>> import numpy as np, tempfile
    >>> from colbert_adapters.backends.voyager import VoyagerBackend
    >>> with VoyagerBackend(tempfile.mkdtemp(), dim=2) as backend:
    ...     backend.upsert(["a", "b"], [np.array([[1.0, 0.0]]), np.array([[0.0, 1.0], [0.6, 0.8]])],
    ...                    texts=["first", "second"], metadatas=[{"lang": "en"}, {"lang": "fr"}])
    ...     [(h.id, round(h.score, 2)) for h in backend.search(np.array([[0.0, 1.0]]), k=2)]
    [('b', 1.0), ('a', 0.0)]
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, TypeVar, cast, overload

from ..._filters import check_filter
from ..._identity import same_model
from ..._optional import require
from ..._residual import COMPRESSIONS
from ..._validation import as_multivector, check_ids, check_k, positive_int
from ...errors import ColBERTError, CollectionConfigError, InvalidInputError
from ...types import Filter, Hit, Metadata, MultiVector
from .._files import FileWriteLock, is_temp
from ..base import Record, VerifyReport
from . import _cstore, _layout, _options, _search, _segments, _writes
from ._background import start_workers
from ._centroids import backfill_centroids
from ._db import DB, Database
from ._docstore import BlobCache
from ._sqlfilter import check_index_key
from ._state import IndexState, MaintenanceEvent, SearchTrace, Tuning, load_state, refresh_if_stale, release
from ._verify import verify

__all__ = ["MaintenanceEvent", "SearchTrace", "VoyagerBackend"]

logger = logging.getLogger(__name__)


_T = TypeVar("_T")


class _Tuned(Generic[_T]):
    """A setting of ``IndexState.tuning`` exposed on the backend: read it, or set it (validated) on an open index."""

    def __init__(self, name: str, check: Callable[[Any, str], _T], doc: str) -> None:
        self._name, self._check, self.__doc__ = name, check, doc

    @overload
    def __get__(self, obj: None, objtype: type[Any]) -> _Tuned[_T]: ...
    @overload
    def __get__(self, obj: VoyagerBackend, objtype: type[Any] | None = None) -> _T: ...
    def __get__(self, obj: VoyagerBackend | None, objtype: type[Any] | None = None) -> _T | _Tuned[_T]:
        return self if obj is None else cast(_T, getattr(obj._st.tuning, self._name))

    def __set__(self, obj: VoyagerBackend, value: _T) -> None:
        setattr(obj._st.tuning, self._name, self._check(value, self._name))


class VoyagerBackend:
    """Approximate MaxSim search over a persistent, incrementally updated Voyager token index.

    Implements the :class:`~colbert_adapters.backends.base.Backend` protocol. Every write that returns is durable
    (SQLite ``synchronous=FULL``); after a crash (kill -9 included) at any point, reopening gives a consistent
    index holding every acknowledged write.

    Thread safety: any number of threads may search, get and count while one thread writes; writes are
    serialised. Across processes, one process at a time may open the directory for writing (others get
    :class:`~colbert_adapters.errors.IndexLockedError`); any number may open it with ``read_only=True``,
    and they see new commits on their next call.

    Search (knobs in parentheses): each query token asks every sealed segment for its ``k_token`` nearest
    token vectors (HNSW beam ``ef_search``). A candidate document's approximate score sums, over query
    tokens, its best retrieved similarity; a token that did not retrieve it counts its similarity to the nearest
    of the document's four stored centroids (k-means of its tokens), capped at what the token retrieved last
    (0 in an index written before centroids, until a writable open computes them). The candidates are reranked
    ``n_rerank`` at a time, best approximate score first: the next batch is read only while the approximate order
    proves unreliable for the query (a document in the lower half of the first batch, or in a later batch, ranks
    among the best ``k + max(8, k // 4)`` by the int8 estimate). The best of them, plus every document of the
    mutable segment, are scored exactly with MaxSim on their stored vectors (``vector_dtype``). A metadata filter
    is applied to the candidates before the rerank; when fewer than ``n_rerank`` candidates match, every matching
    document is scored exactly (so a selective filter returns exact results, and ``k`` hits whenever ``k``
    documents match).

    Defaults were chosen by measurement (``benchmarks/results/voyager.md``).

    Args:
        path: index directory: an existing index, an empty or missing directory (a new index is created),
            or ``None`` for a temporary index deleted by :meth:`close`.
        dim: token vector dimension; ``None`` takes it from an existing index, or from the first upsert.
        model_id: identifier of the encoder; recorded in the index, which then refuses another model.
        read_only: open without taking the write lock; writes raise :class:`ColBERTError`.
        M: HNSW out-degree of new segments (``None``: the index's setting, or :attr:`DEFAULT_M`).
        ef_construction: HNSW build beam of new segments, fixed for every segment size. ``None``: the index's
            setting; a new index then builds segments of up to :attr:`LARGE_SEGMENT_TOKENS` tokens with
            :attr:`DEFAULT_EF_CONSTRUCTION` (40) and larger ones with :attr:`DEFAULT_EF_CONSTRUCTION_LARGE` (64),
            which large graphs need for their recall.
        storage_data_type: ``"float32"``, ``"float8"`` or ``"e4m3"``: how new segments store vectors inside
            the graph (the exact rerank always uses the document store's copy). ``None``: the index's setting,
            or ``"float8"``.
        vector_dtype: how the document store keeps the token vectors that the exact rerank scores and
            :meth:`get` returns, fixed when the index is created: ``"int8"`` (per-token symmetric scale, 1 byte
            per component + 4 per token; each component within half a quantisation step, i.e. ``max|x| / 254``),
            ``"int14"`` (the int8 codes plus a 6-bit remainder per component, 1.75 bytes per component + 4 per
            token, each component within ``max|x| / 15,748``: the candidates' int8 estimate reads the codes only,
            the final exact scores read the remainders of the ``k + max(8, k // 4)`` best), ``"float16"`` (2 bytes
            per component, relative error ``2**-11``) or ``"float32"`` (4 bytes, exact: rankings identical to
            float32 MaxSim, near-ties included). int8 near-ties can swap places; int14 and float16 keep float32's
            top 10 on the benchmark's near-tie set (``benchmarks/results/voyager.md``). ``None``: the index's
            setting, or :attr:`DEFAULT_VECTOR_DTYPE` (int14).
        compression: how the index stores its tokens, fixed when it is created: ``"2bit"`` / ``"4bit"`` (a
            residual codec, no token graph: per token a centroid id and 2- or 4-bit residuals per component, about
            40 / 72 bytes per 128-d token with everything on disk; search probes a centroid table, scores
            candidates by centroid interaction and decompresses the best, see ``n_probe``), or a ``vector_dtype``
            name (``"int8"``, ``"int14"``, ...: the token-graph store). ``None``: the index's setting, or the
            token-graph store with ``vector_dtype``. Opening an index with another compression raises
            :class:`CollectionConfigError`; :meth:`compact` converts an index.
        graph_dim: build new segments' graphs over a projection of the token vectors on their first
            ``graph_dim`` principal directions (uncentred PCA fitted on up to 100,000 of the segment's tokens
            and stored with it); the int8 estimate and the exact rerank still score the full stored vectors.
            Smaller graphs build faster, query faster and take fewer bytes at the same recall (see
            :attr:`DEFAULT_GRAPH_DIM_MIN`). A fold extends a graph with its own projection; rebuilds and
            :meth:`compact` refit it. ``None``: the index's setting; a new index gets
            :meth:`default_graph_dim` (64 of 128 dimensions, 128 of 384), an index created before this default
            keeps full-dimension graphs. A value of at least ``dim`` means full-dimension graphs. An index with a
            projected segment is written in format version 3, which older versions refuse.
        ef_search: HNSW search beam (at least ``k_token`` is used).
        k_token: nearest token vectors retrieved per query token and segment.
        n_rerank: candidates reranked per batch (at least ``2 k + 8``), best approximate score first; a further
            batch is read while documents ranked low by the approximate score still rank among the best by the
            estimate, so a query whose approximate order is unreliable reads deeper. With the int8 / int14 store
            the candidates read are ranked by an int8 estimate of MaxSim and the best ``k + max(8, k // 4)``
            scored exactly; with float16 / float32 all are scored exactly. Their stored vectors are read through
            a cache (``cache_bytes``).
        exact_below_tokens: while the sealed segments hold at most this many live tokens, searches skip the
            graph and score every document, on vectors cached in memory until the next write: with the int8 /
            int14 store every document is ranked by an int8 estimate (the codes requantised with one scale per
            document, ``dim`` bytes per token) and the best ``2 k + 8`` are read from the store and scored exactly,
            with float16 / float32 every document is scored exactly. ``0`` always uses the graph. ``None``:
            :attr:`DEFAULT_EXACT_BELOW_TOKENS`.
        mutable_max_tokens: seal the mutable segment into an HNSW segment once it holds this many tokens.
        max_segments: when there are more sealed segments than this, the smaller ones are folded into a
            larger one: its graph is extended with their tokens (the file is rewritten, the graph is not
            rebuilt). The target is the largest segment whose smaller peers hold at least 1/:attr:`FOLD_RATIO`
            of its tokens, so a trickle of small writes does not rewrite a large segment's file each time.
        compact_deleted_ratio: rewrite a segment once this fraction of its tokens belongs to deleted or
            replaced documents.
        num_threads: threads Voyager uses to build and query (``-1``: one per CPU core).
        cache_bytes: memory for the stored vectors of recently written or reranked documents (their blobs as
            stored, least recently used first out; ``0`` reads every candidate from the store). Documents that
            come up again skip SQLite's reassembly of their blobs. :attr:`DEFAULT_CACHE_BYTES` (256 MiB) holds a
            million 128-d int14 tokens' int8 records plus the residuals of the documents scored exactly.
        background_maintenance: seal, fold and rebuild segments on two background threads (a writer only), so
            that no write waits for a graph build: a write commits to the mutable segment (searched exactly) and
            returns; it waits briefly (at most 0.25 s) only while the threads are far behind. ``False`` seals
            and merges in the write that triggers it. :meth:`wait_for_maintenance` waits for pending work;
            :meth:`close` lets a running build finish. A crash mid-build keeps the last committed state.
        metadata_indexes: metadata keys to index (created if missing; see :meth:`create_metadata_index`).
        n_probe: compressed indexes: centroids probed per query token for candidates.
        n_interact: compressed indexes: candidates (best first stage score) scored by centroid interaction.
        n_full: compressed indexes: candidates (best centroid interaction) decompressed and scored exactly (at
            least ``k``).
        train_tokens: compressed indexes: tokens collected (searched exactly) before the codec is trained on
            them; later documents are encoded against it, and centroids are appended when a seal finds tokens
            far from every centroid.

    Raises:
        CollectionConfigError: ``path`` is not an index (a file, or a non-empty directory without one), an
            unsupported format, or an index built with another ``dim`` or ``model_id``.
        IndexLockedError: another writer holds the index.
        InvalidInputError: a parameter is out of range.
        MissingDependencyError: ``voyager`` is not installed (``pip install "colbert-adapters[voyager]"``).
    """

    #: Default HNSW out-degree (level 0 keeps ``2 * M`` links per token).
    DEFAULT_M = 16
    #: Default HNSW construction beam of segments up to :attr:`LARGE_SEGMENT_TOKENS` tokens: it builds faster than
    #: a wider beam and loses little recall at that size.
    DEFAULT_EF_CONSTRUCTION = 40
    #: Default beam of larger segments (``ef_construction=None`` only; an explicit value applies to every size):
    #: past ~1M tokens a graph built with the smaller beam loses recall that no search setting recovers.
    DEFAULT_EF_CONSTRUCTION_LARGE = 64
    #: Segments with more tokens than this are built with :attr:`DEFAULT_EF_CONSTRUCTION_LARGE` (see there).
    LARGE_SEGMENT_TOKENS = 1_000_000
    #: Default storage of vectors inside the HNSW graph.
    DEFAULT_STORAGE = "float8"
    #: Default encoding of the stored token vectors used by the exact rerank (see ``vector_dtype``): int14, whose
    #: top 10 equals float32's where int8's near-ties can swap.
    DEFAULT_VECTOR_DTYPE = "int14"
    #: Default HNSW search beam (at least k_token is used).
    DEFAULT_EF_SEARCH = 96
    #: Default nearest tokens per query token and segment. With the int8 estimate ahead of the exact rerank,
    #: retrieving more per token and reranking fewer documents is both faster and better.
    DEFAULT_K_TOKEN = 96
    #: Default number of candidates reranked per batch (int8 estimate, then exact scores for the best; see k_token
    #: and ``n_rerank``).
    DEFAULT_N_RERANK = 96
    #: Default size below which searches skip the graph and score every document (see ``exact_below_tokens``),
    #: in live sealed tokens: below it the scan is faster than the graph and exact.
    DEFAULT_EXACT_BELOW_TOKENS = 100_000
    #: Default memory for the stored blobs of recently reranked documents (see ``cache_bytes``).
    DEFAULT_CACHE_BYTES = 256 * 2**20
    #: Default size of the exactly searched mutable segment, in tokens.
    DEFAULT_MUTABLE_MAX_TOKENS = 8192
    #: Smallest default graph dimension (see :meth:`default_graph_dim`): graphs over projections build faster,
    #: query faster and take fewer bytes at the same recall.
    DEFAULT_GRAPH_DIM_MIN = 64
    #: Default maximum number of sealed segments before the smaller ones are folded into a larger one.
    DEFAULT_MAX_SEGMENTS = 4
    #: A segment is extended with the smaller ones once they hold 1/FOLD_RATIO of its tokens (see ``max_segments``).
    FOLD_RATIO = 32
    #: Default centroids probed per query token, candidates scored by centroid interaction, and candidates
    #: decompressed and scored exactly, in a compressed index (see ``compression``).
    DEFAULT_N_PROBE = 8
    DEFAULT_N_INTERACT = 256
    DEFAULT_N_FULL = 64
    #: Default tokens a compressed index collects before it trains its codec (the first seal waits for them).
    DEFAULT_TRAIN_TOKENS = 65_536
    #: Default dead-token fraction that triggers a segment rewrite.
    DEFAULT_COMPACT_DELETED_RATIO = 0.25

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        dim: int | None = None,
        *,
        model_id: str | None = None,
        read_only: bool = False,
        M: int | None = None,
        ef_construction: int | None = None,
        storage_data_type: str | None = None,
        vector_dtype: str | None = None,
        compression: str | None = None,
        graph_dim: int | None = None,
        ef_search: int = DEFAULT_EF_SEARCH,
        k_token: int = DEFAULT_K_TOKEN,
        n_rerank: int = DEFAULT_N_RERANK,
        exact_below_tokens: int | None = None,
        mutable_max_tokens: int = DEFAULT_MUTABLE_MAX_TOKENS,
        max_segments: int = DEFAULT_MAX_SEGMENTS,
        compact_deleted_ratio: float = DEFAULT_COMPACT_DELETED_RATIO,
        num_threads: int = -1,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        background_maintenance: bool = True,
        metadata_indexes: Sequence[str] = (),
        n_probe: int = DEFAULT_N_PROBE,
        n_interact: int = DEFAULT_N_INTERACT,
        n_full: int = DEFAULT_N_FULL,
        train_tokens: int = DEFAULT_TRAIN_TOKENS,
    ) -> None:
        voyager = require("voyager", extra="voyager")
        if dim is not None:
            dim = positive_int(dim, "dim")
        if model_id is not None and not isinstance(model_id, str):
            raise InvalidInputError(f"model_id must be a str or None, got {type(model_id).__name__}")
        storage_data_type, vector_dtype, compression = _options.check_store_options(
            storage_data_type, vector_dtype, compression
        )
        if M is not None:
            M = positive_int(M, "M")
            if M < 2:
                raise InvalidInputError(f"M must be >= 2, got {M}")
        if ef_construction is not None:
            ef_construction = positive_int(ef_construction, "ef_construction")
        if graph_dim is not None:
            graph_dim = positive_int(graph_dim, "graph_dim")
        keys = [metadata_indexes] if isinstance(metadata_indexes, str) else list(metadata_indexes)
        index_keys = [check_index_key(key) for key in keys]
        if isinstance(cache_bytes, bool) or not isinstance(cache_bytes, int) or cache_bytes < 0:
            raise InvalidInputError(f"cache_bytes must be an int >= 0, got {cache_bytes!r}")
        tuning = Tuning(
            ef_search=positive_int(ef_search, "ef_search"),
            k_token=positive_int(k_token, "k_token"),
            n_rerank=positive_int(n_rerank, "n_rerank"),
            exact_below_tokens=_options.exact_below(
                self.DEFAULT_EXACT_BELOW_TOKENS if exact_below_tokens is None else exact_below_tokens
            ),
            mutable_max_tokens=positive_int(mutable_max_tokens, "mutable_max_tokens"),
            max_segments=positive_int(max_segments, "max_segments"),
            compact_deleted_ratio=_options.deleted_ratio(compact_deleted_ratio),
            num_threads=_options.num_threads(num_threads),
            n_probe=positive_int(n_probe, "n_probe"),
            n_interact=positive_int(n_interact, "n_interact"),
            n_full=positive_int(n_full, "n_full"),
            train_tokens=positive_int(train_tokens, "train_tokens"),
            graph_dim_min=self.DEFAULT_GRAPH_DIM_MIN,
            fold_ratio=self.FOLD_RATIO,
            large_segment_tokens=self.LARGE_SEGMENT_TOKENS,
        )

        ephemeral = False
        if path is None:
            if read_only:
                raise InvalidInputError("read_only=True needs the path of an existing index")
            path = tempfile.mkdtemp(prefix="colbert-voyager-")
            ephemeral = True
        root = Path(path)
        db_path = root / DB
        if root.exists() and not root.is_dir():
            raise CollectionConfigError(f"{root} exists and is not a directory; pass an index directory")
        if not db_path.is_file():
            if read_only:
                raise CollectionConfigError(
                    f"{root} is not a Voyager index (no {DB}); read_only=True opens an existing index only"
                )
            if root.is_dir():
                strays = [p.name for p in root.iterdir() if p.name != _layout.LOCK and not is_temp(p.name)]
                if strays:
                    raise CollectionConfigError(
                        f"{root} is a non-empty directory without {DB} (it holds {', '.join(sorted(strays)[:3])}"
                        f"{', ...' if len(strays) > 3 else ''}), so it is not a Voyager index; pass an empty or "
                        "new directory to create one"
                    )
            root.mkdir(parents=True, exist_ok=True)

        flock: FileWriteLock | None = None
        db: Database | None = None
        created_lock = False
        try:
            if not read_only:
                created_lock = not (root / _layout.LOCK).exists()
                flock = FileWriteLock(root / _layout.LOCK, f"index {root}")
                if not db_path.is_file():
                    _layout.create_db(
                        db_path,
                        {
                            "dim": "" if dim is None else str(dim),
                            "model_id": model_id,
                            "M": str(M or self.DEFAULT_M),
                            "ef_construction": str(ef_construction or self.DEFAULT_EF_CONSTRUCTION),
                            # Absent (older indexes, or an explicit ef_construction): one beam for every size.
                            "ef_construction_large": None
                            if ef_construction is not None
                            else str(self.DEFAULT_EF_CONSTRUCTION_LARGE),
                            "storage_data_type": (storage_data_type or self.DEFAULT_STORAGE).lower(),
                            # A compressed index keeps its unsealed documents as int8 rows.
                            "vector_dtype": "int8"
                            if compression in COMPRESSIONS
                            else (vector_dtype or self.DEFAULT_VECTOR_DTYPE),
                            "compression": compression if compression in COMPRESSIONS else None,
                        },
                    )
            db = Database(db_path, read_only)
            st = IndexState(
                root,
                read_only,
                voyager,
                tuning,
                BlobCache(cache_bytes),
                db,
                flock,
                ephemeral,
                dim=dim,
                model_id=model_id,
            )
            meta = _layout.read_meta(db.conn, root)  # before anything is written to a foreign database
            if not read_only:
                db.conn.execute("PRAGMA journal_mode = WAL")
            _layout.apply_meta(
                st, meta, dim, model_id, M, ef_construction, storage_data_type, vector_dtype, compression
            )
            _layout.apply_graph_dim(st, meta, graph_dim)
            if not read_only:
                _layout.migrate(st)
                _layout.remove_orphans(st)
            load_state(st)
            if not read_only:
                if st.compression is None and backfill_centroids(
                    db, st.dim, st.vector_dtype, st.vector_cols, root, st.crc_cols
                ):
                    with st.rw.write():
                        load_state(st)
                _layout.write_manifest(st)
        except BaseException as err:
            if db is not None:
                db.close()
            if flock is not None:
                flock.release()
            if ephemeral:
                shutil.rmtree(root, ignore_errors=True)
            if isinstance(err, CollectionConfigError) and created_lock:
                # Leave a directory that is not an index as we found it.
                with contextlib.suppress(OSError):
                    (root / _layout.LOCK).unlink()
            raise
        st.closed = False
        if background_maintenance and not read_only:
            start_workers(st)
        self._st = st
        try:
            for key in index_keys:
                if key not in st.metadata_indexes:
                    self.create_metadata_index(key)
        except BaseException:
            self.close()
            raise
        logger.info(
            "opened Voyager index %s (%d documents, %d segments, %s)",
            root,
            st.n_docs,
            len(st.segments),
            "read-only" if read_only else "read-write",
        )

    # ------------------------------------------------------------------------------------------ properties

    @property
    def dim(self) -> int | None:
        """Dimension of the stored token vectors, or ``None`` before the first upsert (when not given)."""
        return self._st.dim

    @property
    def path(self) -> Path:
        """The index directory."""
        return self._st.root

    @property
    def read_only(self) -> bool:
        """Whether this instance opened the index without the write lock (writes raise)."""
        return self._st.read_only

    @property
    def model_id(self) -> str | None:
        """Identifier of the encoder that produced the vectors, or ``None`` when not recorded yet."""
        return self._st.model_id

    @model_id.setter
    def model_id(self, value: str) -> None:
        st = self._st
        if not isinstance(value, str):
            raise InvalidInputError(f"model_id must be a str, got {type(value).__name__}")
        if value == st.model_id or (st.model_id is not None and same_model(st.model_id, value)):
            return
        if st.model_id is not None:
            raise CollectionConfigError(
                f"the index {st.root} was built with model {st.model_id!r}; it cannot be switched to "
                f"{value!r}. Use a new index for another model"
            )
        if st.read_only or st.closed:
            st.model_id = value
            return
        with st.write_mutex:
            st.db.execute_write([("INSERT OR REPLACE INTO meta VALUES ('model_id', ?)", (value,))])
            st.model_id = value
            _layout.write_manifest(st)

    # Search and maintenance settings: changeable on an open index (see the constructor's arguments).
    ef_search = _Tuned[int]("ef_search", positive_int, "HNSW search beam (at least ``k_token`` is used).")
    k_token = _Tuned[int]("k_token", positive_int, "Nearest token vectors retrieved per query token and segment.")
    n_rerank = _Tuned[int]("n_rerank", positive_int, "Candidates reranked per batch.")
    exact_below_tokens = _Tuned[int](
        "exact_below_tokens", _options.exact_below, "Live sealed tokens up to which searches scan everything."
    )
    mutable_max_tokens = _Tuned[int]("mutable_max_tokens", positive_int, "Mutable tokens that trigger a seal.")
    max_segments = _Tuned[int]("max_segments", positive_int, "Sealed segments beyond which smaller ones fold.")
    compact_deleted_ratio = _Tuned[float](
        "compact_deleted_ratio", _options.deleted_ratio, "Dead-token fraction that triggers a rewrite."
    )
    num_threads = _Tuned[int]("num_threads", _options.num_threads, "Voyager threads (``-1``: every core).")
    n_probe = _Tuned[int]("n_probe", positive_int, "Centroids probed per query token (compressed indexes).")
    n_interact = _Tuned[int]("n_interact", positive_int, "Candidates scored by centroid interaction (compressed).")
    n_full = _Tuned[int]("n_full", positive_int, "Candidates decompressed and scored exactly (compressed).")

    # ------------------------------------------------------------------------------------------ protocol

    def upsert(
        self,
        ids: Sequence[str],
        vectors: Sequence[MultiVector],
        texts: Sequence[str | None] | None = None,
        metadatas: Sequence[Metadata | None] | None = None,
    ) -> None:
        """Insert or replace documents in one transaction; the whole batch is validated first.

        Args:
            ids: ``n`` unique, non-empty ids. An existing id is replaced completely (its old tokens are
                dropped from search at once and reclaimed by compaction).
            vectors: ``n`` array-likes of shape ``(n_tokens_i, dim)``, finite (rows are expected L2-normalised);
                stored in the index's ``vector_dtype`` (int8 or int14 with a per-token scale, float16 or float32).
            texts: ``n`` texts (``str`` or ``None``), or ``None``.
            metadatas: ``n`` JSON-serialisable dicts (or ``None`` entries), or ``None``.

        Raises:
            InvalidInputError: bad ids, lengths, texts, metadata or vectors (empty, ragged, NaN/inf).
            DimensionMismatchError: a vector's dimension differs from the index's (or from the batch's).
            ColBERTError: the backend is closed or read-only.
        """
        _writes.upsert(self._st, ids, vectors, texts, metadatas)

    def delete(self, ids: Sequence[str]) -> int:
        """Remove documents by id in one transaction; unknown ids are ignored.

        Args:
            ids: ids to remove (duplicates are counted once).

        Returns:
            The number of documents removed.

        Raises:
            InvalidInputError: ``ids`` is not a sequence of non-empty ``str``.
            ColBERTError: the backend is closed or read-only.
        """
        return _writes.delete(self._st, ids)

    def delete_where(self, filter: Filter) -> int:
        """Remove every document matching a metadata filter (the forms of :meth:`search`) in one transaction.

        Returns the number removed. Raises InvalidInputError on an empty or malformed filter (:meth:`clear`
        deletes everything), ColBERTError when the backend is closed or read-only.
        """
        flt = check_filter(filter)
        if flt is None:
            raise InvalidInputError("delete_where needs a non-empty filter (clear() deletes everything)")
        return _writes.delete_where(self._st, flt)

    @property
    def metadata_indexes(self) -> list[str]:
        """Metadata keys with an index (see :meth:`create_metadata_index`), sorted."""
        return sorted(self._st.metadata_indexes)

    def create_metadata_index(self, key: str) -> None:
        """Index metadata field ``key`` (dotted: nested) so filters on it read the matching documents through the
        index instead of scanning every document; kept in the index directory. Existing documents are indexed in
        one transaction. Raises ColBERTError when read-only, InvalidInputError for a bad key."""
        _writes.create_metadata_index(self._st, key)

    def clear(self) -> None:
        """Remove every document in one transaction; the index keeps its settings and recorded model.

        Raises:
            ColBERTError: the backend is closed or read-only.
        """
        with self._st.seal_lock, self._st.maintenance_lock:  # not while a background seal or merge runs
            _writes.clear(self._st)

    def get(self, ids: Sequence[str], *, with_vectors: bool = False) -> list[Record]:
        """Fetch stored documents in the order asked, skipping unknown ids.

        Args:
            ids: ids to fetch.
            with_vectors: include each document's float32 ``(n_tokens, dim)`` vectors as stored (int8- or
                int14-quantised, float16-rounded or exact, see ``vector_dtype``).

        Returns:
            One :class:`~colbert_adapters.backends.base.Record` per known id.

        Raises:
            InvalidInputError: ``ids`` is not a sequence of non-empty ``str``.
        """
        return _search.get_records(self._st, check_ids(ids, allow_duplicates=True), with_vectors)

    def search(self, query_vectors: MultiVector, k: int = 10, filter: Filter | None = None) -> list[Hit]:
        """Approximate top-``k`` documents by MaxSim (exact scores for the returned hits).

        Args:
            query_vectors: float32 array-like ``(n_query_tokens, dim)``.
            k: number of hits (>= 1); more than the number of matching documents returns them all.
            filter: a metadata filter (``{"field": value}``, ``{"year": {"$gte": 2020}}``, ``{"$or": [...]}``;
                see ``MultiVectorStore.search``), applied before the top ``k`` is taken.

        Returns:
            Up to ``k`` hits by descending exact MaxSim score; ties keep insertion order.

        Raises:
            InvalidInputError: bad query, ``k`` or filter.
            DimensionMismatchError: the query's dimension differs from the stored vectors'.
        """
        st = self._st
        k = check_k(k)
        flt = check_filter(filter)
        st.check_open()
        refresh_if_stale(st)
        q = as_multivector(query_vectors, dim=st.dim, where="query_vectors")
        return _search.search(st, q, k, flt)

    def explain(
        self, query_vectors: MultiVector, k: int = 10, filter: Filter | None = None
    ) -> tuple[list[Hit], SearchTrace]:
        """Run :meth:`search` and say what it did: which path, how many candidates, batches and exact scores.

        For diagnosing latency and recall (a query that reads many batches has an approximate order that the exact
        stage had to correct; ``fallback`` counts documents scored exhaustively).

        Args:
            query_vectors: float32 array-like ``(n_query_tokens, dim)``.
            k: number of hits (>= 1).
            filter: as for :meth:`search`.

        Returns:
            ``(hits, trace)``: the hits :meth:`search` returns, and a :class:`SearchTrace`.

        Raises:
            InvalidInputError: bad query, ``k`` or filter.
            DimensionMismatchError: the query's dimension differs from the stored vectors'.
        """
        st = self._st
        k = check_k(k)
        flt = check_filter(filter)
        st.check_open()
        refresh_if_stale(st)
        q = as_multivector(query_vectors, dim=st.dim, where="query_vectors")
        trace = SearchTrace()
        return _search.search(st, q, k, flt, trace), trace

    def ids(self) -> list[str]:
        """Ids of every live document, in insertion order (a snapshot)."""
        st = self._st
        refresh_if_stale(st)
        with st.rw.read(), st.db.reader() as conn:
            st.check_open()
            return [r[0] for r in conn.execute("SELECT id FROM docs ORDER BY seq")]

    def count(self) -> int:
        """Number of live documents."""
        st = self._st
        st.check_open()
        refresh_if_stale(st)
        return st.n_docs

    def close(self) -> None:
        """Release the write lock, the SQLite connections and the in-memory graphs. Idempotent.

        A temporary index (``path=None``) is deleted.
        """
        st = self._st
        if st.closed:
            return
        for worker in (st.sealer, st.worker):
            if worker is not None:
                worker.close()  # a running seal or merge finishes (its commit needs the write mutex)
        with st.write_mutex, st.rw.write():
            if st.closed:
                return
            st.closed = True
            release(st)
        logger.debug("closed Voyager index %s", st.root)

    def __enter__(self) -> VoyagerBackend:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        st = self._st
        state = "closed" if st.closed else f"{st.n_docs} documents, {len(st.segments)} segments"
        return f"VoyagerBackend({str(st.root)!r}, dim={st.dim}, {state})"

    # ------------------------------------------------------------------------------------------ maintenance

    def compact(self, compression: str | None = None) -> None:
        """Seal the mutable segment, merge all segments into one without dead tokens, shrink the files.

        Safe at any time: readers keep searching the old segments until the new one is committed, and a
        crash leaves either the old or the new state.

        Args:
            compression: convert the index to ``"2bit"`` or ``"4bit"`` (see the constructor): a codec is trained
                on its stored vectors and every document is re-encoded into one compressed segment. ``None`` or
                the index's own compression: compact only.

        Raises:
            ColBERTError: the backend is closed or read-only.
            InvalidInputError: an unknown ``compression``, or a conversion this version cannot do (between
                compressed modes, or from a compressed index back to a vector store).
        """
        st = self._st
        target = _options.check_store_options(None, None, compression)
        st.check_writable()
        with st.seal_lock, st.maintenance_lock, st.write_mutex:
            st.check_writable()
            if _cstore.needs_conversion(st, target[1] or target[2]):
                _cstore.convert(st, target[1] or target[2])
            _segments.compact(st)
        logger.info("compacted %s: %d documents in %d segment(s)", st.root, st.n_docs, len(st.segments))

    def stats(self) -> dict[str, Any]:
        """Sizes of the index: documents, tokens, segments and bytes on disk.

        Returns:
            A dict with ``n_docs``, ``n_live_tokens``, ``n_dead_tokens``, ``mutable_tokens``, ``segments``
            (one dict per sealed segment, with the ``ef_construction`` its graph was built with), ``generation``,
            ``disk_bytes``, the HNSW settings, the blob cache's ``cache_bytes`` / ``cache_entries`` (in use),
            ``centroid_bytes``, the memory of the per-document centroids, and ``maintenance``: the latest segment
            maintenance this instance did (seals, folds, rebuilds; oldest first), as dicts of
            :class:`MaintenanceEvent`'s fields.
        """
        st = self._st
        st.check_open()
        refresh_if_stale(st)
        with st.rw.read():
            out = _options.stats(st)
        out["disk_bytes"] = _options.dir_bytes(st.root)
        return out

    def verify(self) -> VerifyReport:
        """Read every part of the index and report what is damaged; nothing is changed.

        Checks SQLite's structure, every segment file (name, presence, checksum, and that its graph holds its
        documents' tokens) and every document (checksums and sizes of its stored vectors, its metadata). Parts
        written before checksums existed are listed in ``notes``.

        Returns:
            A :class:`~colbert_adapters.backends.base.VerifyReport` (``ok`` when nothing is damaged).
        """
        st = self._st
        st.check_open()
        refresh_if_stale(st)
        with st.rw.read():
            return verify(st)

    def wait_for_maintenance(self, timeout: float | None = None) -> bool:
        """Wait until the background workers have no seal or merge requested or running.

        Args:
            timeout: seconds to wait at most (``None``: as long as it takes).

        Returns:
            ``True`` when idle, ``False`` when ``timeout`` passed first.

        Raises:
            ColBERTError: the last background seal or merge failed (the index kept its previous state; the
                message says why, and the next write retries).
        """
        st = self._st
        workers = [w for w in (st.sealer, st.worker) if w is not None]
        deadline = None if timeout is None else time.monotonic() + timeout
        idle = True
        while workers:
            for w in workers:  # a seal may request a merge: loop until both are idle at once
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                idle = bool(w.wait(left)) and idle
            if not idle or not any(w.pending() for w in workers):
                break
        for w in workers:
            if w.error is not None:
                raise ColBERTError(f"background segment maintenance of {st.root} failed: {w.error}") from w.error
        return idle and not any(w.pending() for w in workers)

    @classmethod
    def default_graph_dim(cls, dim: int) -> int:
        """Graph dimensions of a new index of ``dim``-d vectors: ``max(DEFAULT_GRAPH_DIM_MIN, dim // 3)`` (64 of
        128, 128 of 384; a value of at least ``dim``, i.e. ``dim <= 64``, means full-dimension graphs)."""
        return _layout.default_graph_dim(dim, cls.DEFAULT_GRAPH_DIM_MIN)
