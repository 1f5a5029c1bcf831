"""Voyager backend: a durable, incremental multi-vector index on disk (token-level HNSW + SQLite).

Every document token vector goes into a Voyager HNSW graph (cosine space) under an integer *label*; the
documents themselves (id, text, JSON metadata, token vectors in int8, int14, float16 or float32) live in one SQLite
database, which is the source of truth. A search asks the graphs for each query token's nearest tokens, turns them into
candidate documents with a cheap approximate score, and reranks the best candidates with the exact MaxSim
of :func:`colbert_adapters.scoring.maxsim_flat` on their stored vectors.

On-disk layout of an index directory::

    store.sqlite       documents, segments and settings (WAL journal, synchronous=FULL); the commit point
    seg-000001.voyager sealed HNSW segments, immutable once written (temp file + fsync + rename)
    manifest.json      read-only mirror of the segment list and generation, for humans and tools
    write.lock         flock'ed by the one process that has the index open for writing

SQLite tables (inspect them with ``sqlite3 store.sqlite``)::

    meta(key, value)                         format, format_version, dim, model_id, HNSW settings, vector_dtype,
                                             next_label, next_segment, generation
    docs(seq, id, text, metadata, n_tokens,  one row per live document: ``seq`` orders insertions, labels
         first_label, segment, vectors,      ``first_label .. first_label + n_tokens - 1`` are its tokens in
         residual)                           segment ``segment`` (NULL: the mutable segment); ``vectors`` is
                                             a little-endian blob of ``n_tokens`` rows: vector_dtype int8 and
                                             int14: per token a float32 scale then ``dim`` int8 codes (the
                                             vector is codes * scale); float16 / float32: ``dim`` values per
                                             token. ``residual`` (int14 only, else NULL; indexes created before
                                             int14 lack the column): 6-bit remainders of the codes, 0.75 byte
                                             per component (layout: ``_quantise_int14``)
    centroids(seq, scales, codes)            per document (``seq`` of docs) 4 centroids of its tokens (spherical
                                             k-means): ``codes`` int8 ``(4, dim)``, ``scales`` float32 ``(4,)``;
                                             written in the document's transaction (indexes created before them
                                             get the table, and the rows, at their next writable open)
    segments(id, file, n_tokens,             the sealed segments and how many of their tokens are still live
             n_live_tokens, n_docs)
    projections(segment, matrix)             only with ``graph_dim``: the float32 ``(graph_dim, dim)`` projection
                                             whose image of the tokens the segment's graph indexes (format 3)

Writes are segmented (a log-structured design): an upsert commits its rows to SQLite in one transaction and
puts the documents in a small in-memory *mutable segment* that is searched exactly. When the mutable segment
reaches ``mutable_max_tokens`` tokens it is *sealed*: its vectors are built into a new HNSW file, and one
SQLite transaction assigns the documents to it. When there are more than ``max_segments`` sealed segments,
the smaller ones are *folded* into a larger one: their tokens are added to a copy of its graph (HNSW inserts
are incremental) and its file is rewritten. The target is the largest segment that the others are not
negligible against (they hold 1/``FOLD_RATIO`` of its tokens), so a token is inserted into a graph a number of
times that grows only logarithmically with the number of writes (rebuilding merged segments from scratch
made it grow linearly), and a trickle of small writes does not rewrite a large file each time. A segment is
rebuilt without its dead tokens once ``compact_deleted_ratio`` of them belong to deleted or replaced
documents; an explicit :meth:`VoyagerBackend.compact` rebuilds everything into one segment and shrinks the
SQLite file. Nothing ever rebuilds the whole index for a small write.

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
import dataclasses
import json
import logging
import os
import re
import shutil
import sqlite3
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt

from .._optional import require
from .._validation import (
    as_multivector,
    check_filter,
    check_ids,
    check_k,
    check_upsert_batch,
    match_filter,
)
from ..errors import ColBERTError, CollectionConfigError, DimensionMismatchError, InvalidInputError
from ..scoring import _doc_groups, _torch_module, _torch_threads, maxsim_flat, maxsim_int8_estimate, quantise_int8
from ..types import Filter, Hit, Metadata, MultiVector
from ._locks import FileWriteLock, RWLock
from .base import Record
from .memory import _fsync_dir, _write_atomic

__all__ = ["VoyagerBackend"]

logger = logging.getLogger(__name__)

_FORMAT = "colbert-adapters/voyager-index"
#: Version written by new indexes. Version 1 (no ``vector_dtype`` setting, float16 vectors) is still read;
#: version 2 adds ``vector_dtype`` (int8 vectors), which version-1 readers must refuse rather than misread.
_FORMAT_VERSION = 2
_READABLE_VERSIONS = ("1", "2", "3")
#: Format version of an index holding a segment whose graph indexes a projection (``graph_dim``): older readers,
#: which would query such a graph with full-dimension vectors, refuse it.
_PROJECTED_FORMAT_VERSION = 3
#: Tokens sampled to fit a segment's projection.
_PROJECTION_SAMPLE = 100_000
_DB = "store.sqlite"
_MANIFEST = "manifest.json"
_LOCK = "write.lock"
_SEGMENT_FILE = re.compile(r"^seg-\d{6,}\.voyager$")
_STORAGE_TYPES = ("float32", "float8", "e4m3")
_F16 = np.dtype("<f2")
_F16_MAX = float(np.finfo(np.float16).max)
_F32 = np.dtype("<f4")
#: Encodings of the stored token vectors (the ``vectors`` blobs): see :class:`VoyagerBackend` ``vector_dtype``.
_VECTOR_DTYPES = ("int14", "int8", "float16", "float32")
#: int14: the residual of each component after its int8 code is kept in ``2 * _RESIDUAL_LEVELS + 1`` (63) steps,
#: 6 bits (see :func:`_quantise_int14`).
_RESIDUAL_LEVELS = 31
# Rows per group of the int14 exact product (bounds its float32 copies: 16 MB at 384-d).
_INT14_ROWS = 1 << 13
# Smallest dimension at which _maxsim_int14 prunes tokens and multiplies int8 parts rather than decoding every
# token to float32 (28 documents of ~110 tokens: 2.0-2.4 vs 3.2-3.7 ms at 384-d, 2.6 vs 2.3 at 192-d, 1.5-1.9 vs
# 1.0-1.5 at 128-d; the fixed cost of the pruning only pays off on wide tokens).
_INT14_WINDOW_MIN_DIM = 256
# A write of at least this many vector bytes checkpoints the WAL right away (keeps the WAL small).
_CHECKPOINT_BYTES = 8 << 20
# Rows fetched per SQLite round trip when scanning many documents.
_FETCH_CHUNK = 2048
#: Centroids summarising each document's tokens (spherical k-means, see :func:`_doc_centroids`), which complete
#: the approximate score of a candidate for the query tokens that did not retrieve it (see ``_candidates``).
_N_CENTROIDS = 4
#: Lloyd iterations of the per-document k-means.
_CENTROID_ITERS = 6
#: Padded components per group of documents in the k-means (bounds its memory: 64 MiB per float32 copy).
_CENTROID_GROUP_ENTRIES = 1 << 24

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE segments (
    id INTEGER PRIMARY KEY,
    file TEXT NOT NULL,
    n_tokens INTEGER NOT NULL,
    n_live_tokens INTEGER NOT NULL,
    n_docs INTEGER NOT NULL
);
CREATE TABLE docs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    text TEXT,
    metadata TEXT NOT NULL,
    n_tokens INTEGER NOT NULL,
    first_label INTEGER NOT NULL,
    segment INTEGER,
    vectors BLOB NOT NULL,
    residual BLOB
);
CREATE INDEX docs_segment ON docs(segment);
CREATE TABLE centroids (seq INTEGER PRIMARY KEY, scales BLOB NOT NULL, codes BLOB NOT NULL);
"""
#: The centroids table (see _doc_centroids), created by a writable open of an index created before it.
_CENTROIDS_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS centroids (seq INTEGER PRIMARY KEY, scales BLOB NOT NULL, codes BLOB NOT NULL)"
)


#: An int14 store's residual planes of stacked tokens: nibbles ``(T, d' / 2)`` and high bits ``(T, d' / 4)``
#: (see :func:`_quantise_int14`).
_Planes = tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]
#: (seqs ``(m,)``, stored rows ``(T, dim)`` (float16 / float32, or int8 codes), offsets ``(m + 1,)``, row scales
#: ``(T,)`` for int8 / int14 else ``None``): stacked documents as stored (see :func:`_score_stacked`; an int14
#: store's residuals are read for the documents scored exactly only).
_Stacked = tuple[npt.NDArray[np.int64], npt.NDArray[Any], npt.NDArray[np.int64], npt.NDArray[np.float32] | None]
#: Largest buffer a thread keeps between searches for the rerank's stacked batches (see _Arena).
_ARENA_MAX_BYTES = 32 << 20


class _Arena(threading.local):
    """Per-thread scratch memory for one search's stacked batches, kept for the next search.

    A fresh buffer of a few MB per batch costs its pages' first-touch faults every time (about 300 of the 450
    minor faults per query measured on 1,000 MiniLM documents, 384-d); a kept one is already mapped. Regions are
    handed out one after the other (:meth:`take`) and all given back at once (:meth:`reset`, at the start of a
    search: the previous search's views are gone by then). A request that does not fit starts a new buffer (the
    old one lives on while views of it do); one over ``_ARENA_MAX_BYTES`` is not kept.
    """

    def __init__(self) -> None:
        self.buf = bytearray()
        self.pos = 0

    def reset(self) -> None:
        self.pos = 0

    def take(self, n: int) -> memoryview:
        """A writable region of ``n`` bytes, valid until the next :meth:`reset` of this thread."""
        if n > _ARENA_MAX_BYTES:
            return memoryview(bytearray(n))
        if self.pos + n > len(self.buf):
            self.buf = bytearray(min(_ARENA_MAX_BYTES, max(2 * len(self.buf), 2 * n, 1 << 20)))
            self.pos = 0
        view = memoryview(self.buf)[self.pos : self.pos + n]
        self.pos += n
        return view


_ARENA = _Arena()


@dataclass(slots=True)
class _Segment:
    id: int
    file: str
    index: Any  # voyager.Index
    n_tokens: int
    n_live_tokens: int
    n_docs: int
    #: ``(graph_dim, dim)`` float32 rows the graph's vectors are projected on, or ``None`` (full vectors).
    proj: npt.NDArray[np.float32] | None = None


@dataclass(slots=True)
class _Row:
    seq: int
    segment: int | None
    first_label: int
    n_tokens: int


class VoyagerBackend:
    """Approximate MaxSim search over a persistent, incrementally updated Voyager token index.

    Implements the :class:`~colbert_adapters.backends.base.Backend` protocol; see the module docstring for
    the on-disk layout. Every write that returns is durable (SQLite ``synchronous=FULL``); after a crash
    (kill -9 included) at any point, reopening gives a consistent index holding every acknowledged write.

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
            the final exact scores read the remainders of the ``k + max(8, k // 4)`` best), ``"float16"`` (2 bytes per
            component, relative error ``2**-11``) or ``"float32"`` (4 bytes, exact: rankings identical to float32
            MaxSim, near-ties included). Top-10 agreement of an exact scan on the stored vectors with float32 on
            the benchmark's near-tie synthetic set: int8 0.991, int14 1.000, float16 0.999 (real MiniLM vectors:
            1.000 for all). ``None``: the index's setting, or :attr:`DEFAULT_VECTOR_DTYPE` (int14). Measured in
            ``benchmarks/results/voyager.md``.
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
            scored exactly (the exact top k ranked at most 3 places lower by the estimate on 1,225 queries); with
            float16 / float32 all are scored exactly. Their stored vectors are read through a cache
            (``cache_bytes``).
        exact_below_tokens: while the sealed segments hold at most this many live tokens, searches skip the
            graph and score every document, on vectors cached in memory until the next write: with the int8 /
            int14 store every document is ranked by an int8 estimate (the codes requantised with one scale per
            document, ``dim`` bytes per token) and the best ``2 k + 8`` are read from the store and scored exactly
            (the hits agreed with an exact scan of the stored vectors on every query measured), with float16 /
            float32 every document is scored exactly. ``0`` always uses the graph. ``None``:
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

    Raises:
        CollectionConfigError: ``path`` is not an index (a file, or a non-empty directory without one), an
            unsupported format, or an index built with another ``dim`` or ``model_id``.
        IndexLockedError: another writer holds the index.
        InvalidInputError: a parameter is out of range.
        MissingDependencyError: ``voyager`` is not installed (``pip install "colbert-adapters[voyager]"``).
    """

    #: Default HNSW out-degree (level 0 keeps ``2 * M`` links per token).
    DEFAULT_M = 16
    #: Default HNSW construction beam of segments up to :attr:`LARGE_SEGMENT_TOKENS` tokens: 40 builds 1.4-1.9x
    #: faster than 64 and loses little recall there (1M tokens: 0.990 with 100-token documents, ceiling 0.991;
    #: 0.983 vs 0.997 with 20-token documents).
    DEFAULT_EF_CONSTRUCTION = 40
    #: Default beam of larger segments (``ef_construction=None`` only; an explicit value applies to every size).
    #: Past ~1M tokens a graph built with 40 loses recall that no search setting recovers: at 1.5M tokens
    #: (20-token documents) 64 gives recall@10 0.993 where 40 gives 0.907, at 2M 0.987 vs 0.90-0.94, with
    #: k_token / ef_search up to 64 / 128 (benchmarks/README.md).
    DEFAULT_EF_CONSTRUCTION_LARGE = 64
    #: Segments with more tokens than this are built with :attr:`DEFAULT_EF_CONSTRUCTION_LARGE` (see there).
    LARGE_SEGMENT_TOKENS = 1_000_000
    #: Default storage of vectors inside the HNSW graph.
    DEFAULT_STORAGE = "float8"
    #: Default encoding of the stored token vectors used by the exact rerank (see ``vector_dtype``): int14, whose
    #: top 10 equals float32's where int8's does not (near ties: 1.000 vs 0.991 on the benchmark's synthetic set)
    #: at 47-48% of PyLate's bytes per token with the default graphs. With :attr:`DEFAULT_K_TOKEN` 96 it reached
    #: recall@10 1.000 / 0.999 where int8 with k_token 64 reached 0.990 / 0.996 (10,000 synthetic 128-d
    #: documents / 1,000 MiniLM 384-d ones, same graphs, 100 queries), for p50 8.2 vs 6.7 ms and 9.8-10.5 vs
    #: 8.5-8.8 ms (interleaved in one process); the small-index scan 6.0 vs 4.5 ms (1,000 synthetic documents).
    DEFAULT_VECTOR_DTYPE = "int14"
    #: Default HNSW search beam (at least k_token is used).
    DEFAULT_EF_SEARCH = 96
    #: Default nearest tokens per query token and segment. With the int8 estimate ahead of the exact rerank,
    #: retrieving more per token and reranking fewer documents is both faster and better: k_token / n_rerank
    #: 64 / 128 vs 32 / 160 measured p50 8.4 vs 9.1 ms, recall@10 0.997 vs 0.988 (1,000 MiniLM documents, 384-d)
    #: and 6.8 vs 7.1 ms, 0.989 vs 0.988 (10,000 synthetic documents x 100 tokens, 128-d). 96 instead of 64 puts
    #: the exact top 10 among the 128 candidates reranked in 1.000 / 0.999 of cases instead of 0.993 / 0.996
    #: (same sets; no better approximate score was found: a missing token counted as 0.5-1x the last similarity
    #: retrieved ranked them no better) for ~1 ms more graph search.
    DEFAULT_K_TOKEN = 96
    #: Default number of candidates reranked per batch (int8 estimate, then exact scores for the best; see k_token
    #: and ``n_rerank``). With the centroid-completed approximate score (``_candidates``), batches of 96 that read
    #: on while the approximate order fails (``_rerank``) miss fewer hits than the former batches of 128 without
    #: centroids while reading fewer candidates (simulated on MiniLM: 3 of 18,000 top-10 hits on eight graphs vs
    #: 5 of 9,000 on four, 119 vs 167 candidates read on average). Batches of 64 with a narrower trigger were
    #: 1.1 ms faster (interleaved, 100 queries) but missed two hits of the benchmark's 2,000 (approximate ranks
    #: 72 and 73) where 96 missed none.
    DEFAULT_N_RERANK = 96
    #: Default size below which searches skip the graph and score every document (see ``exact_below_tokens``),
    #: in live sealed tokens. Measured (128-d, 32 query tokens, int8 store, synthetic clustered vectors, p50 /
    #: recall@10): 50k tokens scan 7.7 ms / 0.990 vs graph 13 ms / 0.939; 100k tokens scan 15 ms / 0.997 vs graph
    #: 13 ms / 0.974. Above it the graph is faster (10k documents: scan 160 ms). Ranking the scan by the int8
    #: estimate (instead of scoring every document in float32) keeps it as fast at 128-d (100k tokens: 9.0 vs
    #: 8.4 ms), is 1.7x faster at 384-d (110k MiniLM tokens: 11.3 vs 18.8 ms) and caches a quarter of the bytes
    #: (41 vs 161 MiB there); on 100 queries of either set its top 10 / 50 / 100 equalled the exact scan's. Codes
    #: requantised per document then cut the scan from 7.1 to 4.5 ms (int8) and 8.0 to 6.0 ms (int14) at 100k
    #: 128-d tokens, same top 10 on all 100 queries.
    DEFAULT_EXACT_BELOW_TOKENS = 100_000
    #: Default memory for the stored blobs of recently reranked documents (see ``cache_bytes``).
    DEFAULT_CACHE_BYTES = 256 * 2**20
    #: Default size of the exactly searched mutable segment, in tokens.
    DEFAULT_MUTABLE_MAX_TOKENS = 8192
    #: Smallest default graph dimension (see :meth:`default_graph_dim`): graphs over projections build faster,
    #: query faster and take fewer bytes at the same recall (two full benchmark runs, 10k synthetic 128-d documents
    #: with 64 dimensions: 20,147-20,304 vs 10,033-12,833 vectors/s, p50 6.4-7.5 vs 9.1-11.3 ms, recall@10
    #: 0.985-0.988 vs 0.981, 357 vs 421 B/token; 1k real MiniLM documents with 128 of 384: 19,311-23,870 vs
    #: 18,078 vectors/s, 7.4-10.9 vs 9.3-10.6 ms, 0.996-0.997 vs 0.996-0.998, 697 vs 951 B/token).
    DEFAULT_GRAPH_DIM_MIN = 64
    #: Default maximum number of sealed segments before the smaller ones are folded into a larger one.
    DEFAULT_MAX_SEGMENTS = 4
    #: A segment is extended with the smaller ones once they hold 1/FOLD_RATIO of its tokens (see ``max_segments``).
    FOLD_RATIO = 32
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
    ) -> None:
        self._voyager = require("voyager", extra="voyager")
        self._closed = True  # until fully opened: close() is then a no-op
        self._flock: FileWriteLock | None = None
        self._ephemeral = False
        if dim is not None:
            dim = _positive_int(dim, "dim")
        if model_id is not None and not isinstance(model_id, str):
            raise InvalidInputError(f"model_id must be a str or None, got {type(model_id).__name__}")
        if storage_data_type is not None and (
            not isinstance(storage_data_type, str) or storage_data_type.lower() not in _STORAGE_TYPES
        ):
            raise InvalidInputError(
                f"storage_data_type must be one of {', '.join(_STORAGE_TYPES)}, got {storage_data_type!r}"
            )
        if vector_dtype is not None and (
            not isinstance(vector_dtype, str) or vector_dtype.lower() not in _VECTOR_DTYPES
        ):
            raise InvalidInputError(f"vector_dtype must be one of {', '.join(_VECTOR_DTYPES)}, got {vector_dtype!r}")
        if M is not None:
            M = _positive_int(M, "M")
            if M < 2:
                raise InvalidInputError(f"M must be >= 2, got {M}")
        if ef_construction is not None:
            ef_construction = _positive_int(ef_construction, "ef_construction")
        if graph_dim is not None:
            graph_dim = _positive_int(graph_dim, "graph_dim")
        self.ef_search = _positive_int(ef_search, "ef_search")
        self.k_token = _positive_int(k_token, "k_token")
        self.n_rerank = _positive_int(n_rerank, "n_rerank")
        if exact_below_tokens is None:
            exact_below_tokens = self.DEFAULT_EXACT_BELOW_TOKENS
        if isinstance(exact_below_tokens, bool) or not isinstance(exact_below_tokens, int) or exact_below_tokens < 0:
            raise InvalidInputError(f"exact_below_tokens must be an int >= 0, got {exact_below_tokens!r}")
        self.exact_below_tokens = exact_below_tokens
        self.mutable_max_tokens = _positive_int(mutable_max_tokens, "mutable_max_tokens")
        self.max_segments = _positive_int(max_segments, "max_segments")
        if (
            isinstance(compact_deleted_ratio, bool)
            or not isinstance(compact_deleted_ratio, (int, float))
            or not (0.0 < compact_deleted_ratio <= 1.0)
        ):
            raise InvalidInputError(f"compact_deleted_ratio must be in (0, 1], got {compact_deleted_ratio!r}")
        self.compact_deleted_ratio = float(compact_deleted_ratio)
        if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads == 0 or num_threads < -1:
            raise InvalidInputError(f"num_threads must be -1 or a positive int, got {num_threads!r}")
        self.num_threads = num_threads
        if isinstance(cache_bytes, bool) or not isinstance(cache_bytes, int) or cache_bytes < 0:
            raise InvalidInputError(f"cache_bytes must be an int >= 0, got {cache_bytes!r}")
        self.read_only = bool(read_only)

        if path is None:
            if read_only:
                raise InvalidInputError("read_only=True needs the path of an existing index")
            path = tempfile.mkdtemp(prefix="colbert-voyager-")
            self._ephemeral = True
        self._root = Path(path)
        root = self._root
        db_path = root / _DB
        if root.exists() and not root.is_dir():
            raise CollectionConfigError(f"{root} exists and is not a directory; pass an index directory")
        if not db_path.is_file():
            if read_only:
                raise CollectionConfigError(
                    f"{root} is not a Voyager index (no {_DB}); read_only=True opens an existing index only"
                )
            if root.is_dir():
                strays = [p.name for p in root.iterdir() if p.name != _LOCK and not _is_temp(p.name)]
                if strays:
                    raise CollectionConfigError(
                        f"{root} is a non-empty directory without {_DB} (it holds {', '.join(sorted(strays)[:3])}"
                        f"{', ...' if len(strays) > 3 else ''}), so it is not a Voyager index; pass an empty or "
                        "new directory to create one"
                    )
            root.mkdir(parents=True, exist_ok=True)

        # State (filled by _load_state).
        self._rw = RWLock()  # in-memory state: readers share, appliers of commits exclude
        self._write_mutex = threading.Lock()  # serialises writers (held across a whole write)
        self._cache_lock = threading.Lock()
        self._segments: dict[int, _Segment] = {}
        self._label_seq: npt.NDArray[np.int64] = np.full(0, -1, dtype=np.int64)
        self._next_label = 0
        self._next_segment = 1
        self._generation = 0
        self._mutable: dict[int, tuple[int, npt.NDArray[np.float32]]] = {}
        self._mutable_tokens = 0
        self._mutable_cache: tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.int64]] | None = None
        #: All sealed documents as the full scan reads them (see _sealed_view), while below exact_below_tokens.
        self._sealed_cache: _ScanView | None = None
        self._filter_cache: dict[str, npt.NDArray[np.int64]] = {}
        #: Stored blobs of recently reranked documents (see _BlobCache).
        self._blobs = _BlobCache(cache_bytes)
        #: Per-document centroids completing the approximate score (None until the dimension is known).
        self._centroids: _CentroidTable | None = None
        self._n_docs = 0
        self._dim: int | None = dim
        self._graph_dim: int | None = None  # set from graph_dim / the index by _apply_graph_dim
        self._graph_dim_pending = False  # a new index without a dimension yet: the default is set with it
        self._model_id: str | None = model_id
        self._readers: list[sqlite3.Connection] = []
        self._all_conns: list[sqlite3.Connection] = []
        self._conn_lock = threading.Lock()
        self._data_version: int | None = None
        created_lock = False

        try:
            if not read_only:
                created_lock = not (root / _LOCK).exists()
                self._flock = FileWriteLock(root / _LOCK, f"index {root}")
                if not db_path.is_file():
                    self._create(db_path, dim, model_id, M, ef_construction, storage_data_type, vector_dtype)
            self._conn = self._connect(read_only)
            meta = self._read_meta(self._conn)  # before anything is written to a foreign database
            if not read_only:
                self._conn.execute("PRAGMA journal_mode = WAL")
            self._check_and_apply_meta(meta, dim, model_id, M, ef_construction, storage_data_type, vector_dtype)
            self._apply_graph_dim(meta, graph_dim)
            if not read_only:
                self._remove_orphans()
            self._load_state()
            if not read_only:
                self._backfill_centroids()
                self._write_manifest()
        except CollectionConfigError:
            self._release_resources()
            if created_lock:  # leave a directory that is not an index as we found it
                with contextlib.suppress(OSError):
                    (root / _LOCK).unlink()
            raise
        except BaseException:
            self._release_resources()
            raise
        self._closed = False
        logger.info(
            "opened Voyager index %s (%d documents, %d segments, %s)",
            root,
            self._n_docs,
            len(self._segments),
            "read-only" if read_only else "read-write",
        )

    # ------------------------------------------------------------------------------------------ properties

    @property
    def dim(self) -> int | None:
        """Dimension of the stored token vectors, or ``None`` before the first upsert (when not given)."""
        return self._dim

    @property
    def path(self) -> Path:
        """The index directory."""
        return self._root

    @property
    def model_id(self) -> str | None:
        """Identifier of the encoder that produced the vectors, or ``None`` when not recorded yet."""
        return self._model_id

    @model_id.setter
    def model_id(self, value: str) -> None:
        if not isinstance(value, str):
            raise InvalidInputError(f"model_id must be a str, got {type(value).__name__}")
        if value == self._model_id:
            return
        if self._model_id is not None:
            raise CollectionConfigError(
                f"the index {self._root} was built with model {self._model_id!r}; it cannot be switched to "
                f"{value!r}. Use a new index for another model"
            )
        if self.read_only or self._closed:
            self._model_id = value
            return
        with self._write_mutex:
            self._execute_write([("INSERT OR REPLACE INTO meta VALUES ('model_id', ?)", (value,))])
            self._model_id = value
            self._write_manifest()

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
        self._check_writable()
        id_list, text_list, meta_list = check_upsert_batch(ids, vectors, texts, metadatas)
        n = len(id_list)
        meta_json = [_json_text(m) for m in meta_list]
        with self._write_mutex:
            self._check_writable()
            dim = self._dim
            encoded: list[tuple[bytes, bytes | None, npt.NDArray[np.float32]]] = []
            for i, v in enumerate(vectors):
                try:
                    arr = as_multivector(v, dim=dim, where=f"vectors[{i}]")
                except DimensionMismatchError as err:
                    if self._dim is None:
                        raise DimensionMismatchError(
                            f"vectors[{i}] has dimension {np.shape(v)[-1]} but vectors[0] has {dim}; "
                            "all documents must come from the same encoder"
                        ) from err
                    raise
                dim = arr.shape[1]
                if self._vector_dtype == "float16" and float(np.abs(arr).max()) > _F16_MAX:
                    raise InvalidInputError(
                        f"vectors[{i}] holds values beyond the float16 range (|x| > 65504) of this index's "
                        "vector_dtype='float16'; token vectors are expected to be L2-normalised"
                    )
                encoded.append(_encode_vectors(arr, self._vector_dtype))
            if n == 0:
                return
            assert dim is not None
            self._write_docs(id_list, encoded, text_list, meta_json, dim)
            if sum(len(blob) + len(res or b"") for blob, res, _ in encoded) >= _CHECKPOINT_BYTES:
                self._checkpoint()
            self._maintain()

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
        self._check_writable()
        unique = list(dict.fromkeys(check_ids(ids, allow_duplicates=True)))
        if not unique:
            return 0
        with self._write_mutex:
            self._check_writable()
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                old = self._lookup_rows(conn, unique)
                self._delete_rows(conn, list(old.values()))
                with self._rw.write():
                    conn.execute("COMMIT")
                    self._apply_removed(list(old.values()))
            except BaseException:
                _rollback(conn)
                raise
            if old:
                self._maintain()
            return len(old)

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
        id_list = check_ids(ids, allow_duplicates=True)
        self._refresh_if_stale()
        with self._rw.read(), self._reader() as conn:
            self._check_open()
            cols = f"id, text, metadata, n_tokens, {self._vector_cols}" if with_vectors else "id, text, metadata"
            found: dict[str, tuple[Any, ...]] = {}
            unique = list(dict.fromkeys(id_list))
            for start in range(0, len(unique), _FETCH_CHUNK):
                chunk = unique[start : start + _FETCH_CHUNK]
                for row in conn.execute(
                    f"SELECT {cols} FROM docs WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(chunk),)
                ):
                    found[row[0]] = row
            dim = self._dim or 0
        out: list[Record] = []
        for doc_id in id_list:
            row = found.get(doc_id)
            if row is None:
                continue
            vecs = None
            if with_vectors:
                vecs = _decode_vectors(row[4], row[3], dim, self._vector_dtype, row[5])
            out.append(Record(id=doc_id, text=row[1], metadata=json.loads(row[2]), vectors=vecs))
        return out

    def search(self, query_vectors: MultiVector, k: int = 10, filter: Filter | None = None) -> list[Hit]:
        """Approximate top-``k`` documents by MaxSim (exact scores for the returned hits).

        Args:
            query_vectors: float32 array-like ``(n_query_tokens, dim)``.
            k: number of hits (>= 1); more than the number of matching documents returns them all.
            filter: ``{"field": value}`` or ``{"field": [v1, v2]}`` restricting candidates (AND over fields),
                applied before the top ``k`` is taken.

        Returns:
            Up to ``k`` hits by descending exact MaxSim score; ties keep insertion order.

        Raises:
            InvalidInputError: bad query, ``k`` or filter.
            DimensionMismatchError: the query's dimension differs from the stored vectors'.
        """
        k = check_k(k)
        flt = check_filter(filter)
        self._check_open()
        self._refresh_if_stale()
        q = as_multivector(query_vectors, dim=self._dim, where="query_vectors")
        with self._rw.read(), self._reader() as conn:
            self._check_open()
            if self._n_docs == 0:
                return []
            # One read transaction: the search's reads (vectors, then residuals, then texts) see one snapshot even
            # while another process writes.
            conn.execute("BEGIN")
            try:
                scores = self._score(conn, q, k, flt)
                if not scores:
                    return []
                seqs = np.fromiter(scores.keys(), dtype=np.int64, count=len(scores))
                vals = np.fromiter(scores.values(), dtype=np.float64, count=len(scores))
                order = np.lexsort((seqs, -vals))[:k]
                top = seqs[order].tolist()
                rows = {
                    r[0]: r
                    for r in conn.execute(
                        "SELECT seq, id, text, metadata FROM docs WHERE seq IN (SELECT value FROM json_each(?))",
                        (json.dumps(top),),
                    )
                }
            finally:
                _rollback(conn)
        return [
            Hit(id=rows[s][1], score=float(scores[s]), text=rows[s][2], metadata=json.loads(rows[s][3]))
            for s in top
            if s in rows
        ]

    def ids(self) -> list[str]:
        """Ids of every live document, in insertion order (a snapshot)."""
        self._refresh_if_stale()
        with self._rw.read(), self._reader() as conn:
            self._check_open()
            return [r[0] for r in conn.execute("SELECT id FROM docs ORDER BY seq")]

    def count(self) -> int:
        """Number of live documents."""
        self._check_open()
        self._refresh_if_stale()
        return self._n_docs

    def close(self) -> None:
        """Release the write lock, the SQLite connections and the in-memory graphs. Idempotent.

        A temporary index (``path=None``) is deleted.
        """
        if self._closed:
            return
        with self._write_mutex, self._rw.write():
            if self._closed:
                return
            self._closed = True
            self._release_resources()
        logger.debug("closed Voyager index %s", self._root)

    def __enter__(self) -> VoyagerBackend:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self._n_docs} documents, {len(self._segments)} segments"
        return f"VoyagerBackend({str(self._root)!r}, dim={self._dim}, {state})"

    # ------------------------------------------------------------------------------------------ maintenance

    def compact(self) -> None:
        """Seal the mutable segment, merge all segments into one without dead tokens, shrink the files.

        Safe at any time: readers keep searching the old segments until the new one is committed, and a
        crash leaves either the old or the new state.

        Raises:
            ColBERTError: the backend is closed or read-only.
        """
        self._check_writable()
        with self._write_mutex:
            self._check_writable()
            if self._mutable:
                self._seal()
            segs = list(self._segments.values())
            if len(segs) > 1 or any(s.n_live_tokens < s.n_tokens for s in segs):
                self._merge([s.id for s in segs])
            conn = self._conn
            conn.execute("PRAGMA incremental_vacuum")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._remove_orphans()
        logger.info("compacted %s: %d documents in %d segment(s)", self._root, self._n_docs, len(self._segments))

    def stats(self) -> dict[str, Any]:
        """Sizes of the index: documents, tokens, segments and bytes on disk.

        Returns:
            A dict with ``n_docs``, ``n_live_tokens``, ``n_dead_tokens``, ``mutable_tokens``, ``segments``
            (one dict per sealed segment, with the ``ef_construction`` its graph was built with), ``generation``,
            ``disk_bytes``, the HNSW settings, the blob cache's ``cache_bytes`` / ``cache_entries`` (in use), and
            ``centroid_bytes``, the memory of the per-document centroids (see ``_candidates``).
        """
        self._check_open()
        self._refresh_if_stale()
        with self._rw.read():
            segs = [
                {
                    "id": s.id,
                    "file": s.file,
                    "n_tokens": s.n_tokens,
                    "n_live_tokens": s.n_live_tokens,
                    "n_docs": s.n_docs,
                    "ef_construction": int(s.index.ef_construction),
                    "graph_dim": int(s.index.num_dimensions),
                }
                for s in self._segments.values()
            ]
            live = sum(s.n_live_tokens for s in self._segments.values()) + self._mutable_tokens
            dead = sum(s.n_tokens - s.n_live_tokens for s in self._segments.values())
            out: dict[str, Any] = {
                "n_docs": self._n_docs,
                "n_live_tokens": live,
                "n_dead_tokens": dead,
                "mutable_tokens": self._mutable_tokens,
                "segments": segs,
                "generation": self._generation,
                "M": self._M,
                "ef_construction": self._ef_construction,
                "ef_construction_large": self._ef_construction_large,
                "storage_data_type": self._storage,
                "vector_dtype": self._vector_dtype,
                "graph_dim": self._target_graph_dim(),
                "format_version": self._format_version,
                "cache_bytes": self._blobs.nbytes,
                "cache_entries": len(self._blobs),
                "centroid_bytes": self._centroids.nbytes if self._centroids is not None else 0,
            }
        out["disk_bytes"] = sum(p.stat().st_size for p in self._root.iterdir() if p.is_file())
        return out

    # ------------------------------------------------------------------------------------------ opening

    def _create(
        self,
        db_path: Path,
        dim: int | None,
        model_id: str | None,
        M: int | None,
        ef_construction: int | None,
        storage: str | None,
        vector_dtype: str | None,
    ) -> None:
        """Create an empty database under a temporary name and rename it into place (atomic creation)."""
        tmp = db_path.with_name(f".{_DB}.{uuid.uuid4().hex}.tmp")
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            conn.execute("PRAGMA journal_mode = DELETE")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("BEGIN")
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    conn.execute(stmt)
            meta = {
                "format": _FORMAT,
                "format_version": str(_FORMAT_VERSION),
                "dim": "" if dim is None else str(dim),
                "model_id": model_id,
                "space": "cosine",
                "M": str(M or self.DEFAULT_M),
                "ef_construction": str(ef_construction or self.DEFAULT_EF_CONSTRUCTION),
                # Absent (older indexes, or an explicit ef_construction): one beam for every segment size.
                "ef_construction_large": None
                if ef_construction is not None
                else str(self.DEFAULT_EF_CONSTRUCTION_LARGE),
                "storage_data_type": (storage or self.DEFAULT_STORAGE).lower(),
                "vector_dtype": (vector_dtype or self.DEFAULT_VECTOR_DTYPE).lower(),
                "next_label": "0",
                "next_segment": "1",
                "generation": "0",
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            conn.executemany("INSERT INTO meta VALUES (?, ?)", [(k, v) for k, v in meta.items() if v is not None])
            conn.execute("COMMIT")
        finally:
            conn.close()
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, db_path)
        _fsync_dir(db_path.parent)
        logger.info("created Voyager index %s", db_path.parent)

    def _connect(self, read_only: bool) -> sqlite3.Connection:
        db = self._root / _DB
        try:
            if read_only:
                conn = sqlite3.connect(
                    f"{db.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
                )
            else:
                conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA busy_timeout = 10000")
            conn.execute("PRAGMA cache_size = -65536")  # 64 MiB page cache per connection
            # Read pages through a memory map (up to SQLite's compiled-in cap, 2 GiB by default): the exact rerank
            # reads hundreds of ~25 KB vector blobs per query, and mapped reads skip a pread() per page
            # (measured: the fetch takes ~40% less time). Writes still go through write() and the journal.
            conn.execute("PRAGMA mmap_size = 2147418112")
            conn.execute("PRAGMA journal_size_limit = 4194304")
        except sqlite3.DatabaseError as err:
            raise CollectionConfigError(f"{db} is not a readable SQLite database ({err}); not a Voyager index") from err
        with self._conn_lock:
            self._all_conns.append(conn)
        return conn

    @contextlib.contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        """A pooled connection for one reading thread."""
        with self._conn_lock:
            conn = self._readers.pop() if self._readers else None
        if conn is None:
            conn = self._connect(self.read_only)
        try:
            yield conn
        finally:
            with self._conn_lock:
                if self._closed:
                    conn.close()
                else:
                    self._readers.append(conn)

    def _read_meta(self, conn: sqlite3.Connection) -> dict[str, str]:
        root = self._root
        try:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as err:
            raise CollectionConfigError(
                f"{root / _DB} is not a Voyager index database ({err}); pass a directory created by VoyagerBackend"
            ) from err
        if meta.get("format") != _FORMAT:
            raise CollectionConfigError(
                f"{root / _DB} is not a Voyager index (format {meta.get('format')!r}, expected {_FORMAT!r})"
            )
        if meta.get("format_version") not in _READABLE_VERSIONS:
            raise CollectionConfigError(
                f"{root} uses Voyager index format version {meta.get('format_version')!r}; this version of "
                f"colbert-adapters reads versions {', '.join(_READABLE_VERSIONS)}. Upgrade colbert-adapters or "
                "rebuild the index"
            )
        return meta

    def _check_and_apply_meta(
        self,
        meta: dict[str, str],
        dim: int | None,
        model_id: str | None,
        M: int | None,
        ef_construction: int | None,
        storage: str | None,
        vector_dtype: str | None,
    ) -> None:
        stored_dim = int(meta["dim"]) if meta.get("dim") else None
        stored_vdt = meta.get("vector_dtype", "float16")  # format version 1 stored float16 only
        if stored_vdt not in _VECTOR_DTYPES:
            raise CollectionConfigError(
                f"{self._root} stores vectors as {stored_vdt!r}, which this version cannot read; "
                "upgrade colbert-adapters"
            )
        if vector_dtype is not None and vector_dtype.lower() != stored_vdt:
            raise CollectionConfigError(
                f"the index {self._root} stores its vectors as {stored_vdt} but vector_dtype={vector_dtype!r} was "
                f"given; open it with vector_dtype=None (or {stored_vdt!r}), or use a new directory"
            )
        self._vector_dtype = stored_vdt
        #: The stored columns a document's vectors decode from (the residual column exists since int14).
        self._vector_cols = "vectors, residual" if stored_vdt == "int14" else "vectors, NULL"
        self._format_version = int(meta["format_version"])
        stored_model = meta.get("model_id")
        if dim is not None and stored_dim is not None and dim != stored_dim:
            raise CollectionConfigError(
                f"the index {self._root} stores {stored_dim}-d vectors but dim={dim} was given; open it with "
                f"dim={stored_dim} (or None), or use a new directory for {dim}-d vectors"
            )
        if model_id is not None and stored_model is not None and model_id != stored_model:
            raise CollectionConfigError(
                f"the index {self._root} was built with model {stored_model!r} but model_id={model_id!r} was "
                "given; use the same model, or a new directory"
            )
        self._dim = stored_dim if stored_dim is not None else dim
        self._model_id = stored_model if stored_model is not None else model_id
        self._M = M or int(meta["M"])
        self._ef_construction = ef_construction or int(meta["ef_construction"])
        large = meta.get("ef_construction_large")
        self._ef_construction_large = int(large) if large and ef_construction is None else None
        self._storage = (storage or meta["storage_data_type"]).lower()
        if self.read_only:
            return
        updates = {
            "dim": None if stored_dim is not None or dim is None else str(dim),
            "model_id": None if stored_model is not None or model_id is None else model_id,
            "M": str(self._M) if str(self._M) != meta["M"] else None,
            "ef_construction": str(self._ef_construction)
            if str(self._ef_construction) != meta["ef_construction"]
            else None,
            "storage_data_type": self._storage if self._storage != meta["storage_data_type"] else None,
        }
        stmts: list[tuple[str, tuple[Any, ...]]] = [
            ("INSERT OR REPLACE INTO meta VALUES (?, ?)", (k, v)) for k, v in updates.items() if v is not None
        ]
        if ef_construction is not None and meta.get("ef_construction_large"):
            # An explicit beam replaces the size-dependent default for good (as any explicit setting does).
            stmts.append(("DELETE FROM meta WHERE key = ?", ("ef_construction_large",)))
        if stmts:
            self._execute_write(stmts)

    def _apply_graph_dim(self, meta: dict[str, str], graph_dim: int | None) -> None:
        """Take ``graph_dim`` (or the index's stored setting) for new segments; persist an explicit one.

        An index that has never held a document and has no setting gets :meth:`default_graph_dim` of its
        dimension, persisted (at once when the dimension is known, else with the first upsert, see
        :meth:`_write_docs`); an older index without the setting keeps full-dimension graphs.
        """
        stored = int(meta["graph_dim"]) if meta.get("graph_dim") else None
        self._graph_dim = graph_dim if graph_dim is not None else stored
        self._graph_dim_pending = False
        if self.read_only:
            return
        if graph_dim is None and stored is None and meta.get("next_label") == "0":
            if self._dim is None:
                self._graph_dim_pending = True
                return
            graph_dim = self._graph_dim = self.default_graph_dim(self._dim)
        if graph_dim is not None and graph_dim != stored:
            self._execute_write([("INSERT OR REPLACE INTO meta VALUES (?, ?)", ("graph_dim", str(graph_dim)))])

    @classmethod
    def default_graph_dim(cls, dim: int) -> int:
        """Graph dimensions of a new index of ``dim``-d vectors: ``max(DEFAULT_GRAPH_DIM_MIN, dim // 3)`` (64 of
        128, 128 of 384; a value of at least ``dim``, i.e. ``dim <= 64``, means full-dimension graphs)."""
        return max(cls.DEFAULT_GRAPH_DIM_MIN, dim // 3)

    def _load_state(self) -> None:
        """(Re)build the in-memory state from SQLite: segments, label map, mutable segment."""
        conn = self._conn
        conn.execute("BEGIN")  # one read snapshot for all the queries below
        try:
            self._load_state_in(conn)
        finally:
            _rollback(conn)

    def _load_state_in(self, conn: sqlite3.Connection) -> None:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        seg_rows = conn.execute("SELECT id, file, n_tokens, n_live_tokens, n_docs FROM segments ORDER BY id").fetchall()
        dim = int(meta["dim"]) if meta.get("dim") else self._dim
        projections: dict[int, npt.NDArray[np.float32] | None] = {}
        files = {r[0]: r[1] for r in seg_rows}
        known = {sid: seg for sid, seg in self._segments.items() if files.get(sid) == seg.file}
        if (
            len(known) < len(seg_rows)
            and conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'projections'").fetchone()
        ):
            # Only segments not loaded yet: a loaded segment keeps its graph and projection (files are immutable).
            for sid, blob in conn.execute("SELECT segment, matrix FROM projections"):
                if sid not in known:
                    projections[sid] = np.frombuffer(blob, dtype=_F32).reshape(-1, dim or 1).copy()
        segments: dict[int, _Segment] = {}
        for sid, file, n_tok, n_live, n_docs in seg_rows:
            old = known.get(sid)
            if old is not None:
                index = old.index
                projections[sid] = old.proj
            else:
                seg_path = self._root / file
                try:
                    index = self._voyager.Index.load(str(seg_path))
                except (OSError, RuntimeError, ValueError) as err:
                    raise CollectionConfigError(f"segment {seg_path} of {self._root} cannot be loaded: {err}") from err
            segments[sid] = _Segment(sid, file, index, n_tok, n_live, n_docs, projections.get(sid))
        next_label = int(meta["next_label"])
        rows = np.array(conn.execute("SELECT seq, first_label, n_tokens FROM docs").fetchall(), dtype=np.int64)
        label_seq = np.full(max(next_label, 1024), -1, dtype=np.int64)
        if rows.size:
            seqs, firsts, counts = rows[:, 0], rows[:, 1], rows[:, 2]
            offs = np.zeros(len(counts) + 1, dtype=np.int64)
            np.cumsum(counts, out=offs[1:])
            labels = np.repeat(firsts - offs[:-1], counts) + np.arange(offs[-1], dtype=np.int64)
            label_seq[labels] = np.repeat(seqs, counts)
        mutable: dict[int, tuple[int, npt.NDArray[np.float32]]] = {}
        mutable_tokens = 0
        for seq, first, n_tok, blob, residual in conn.execute(
            f"SELECT seq, first_label, n_tokens, {self._vector_cols} FROM docs WHERE segment IS NULL ORDER BY seq"
        ):
            mutable[seq] = (first, _decode_vectors(blob, n_tok, dim or 0, self._vector_dtype, residual))
            mutable_tokens += n_tok
        self._segments = segments
        self._label_seq = label_seq
        self._next_label = next_label
        self._next_segment = int(meta["next_segment"])
        self._generation = int(meta["generation"])
        self._mutable = mutable
        self._mutable_tokens = mutable_tokens
        self._mutable_cache = None
        self._sealed_cache = None
        self._filter_cache = {}
        self._blobs.clear()
        self._centroids = self._read_centroids(conn, dim, meta.get("centroids_epoch", "0"), len(rows))
        self._n_docs = len(rows)
        self._dim = dim
        if meta.get("model_id"):
            self._model_id = meta["model_id"]
        self._data_version = conn.execute("PRAGMA data_version").fetchone()[0]

    def _read_centroids(
        self, conn: sqlite3.Connection, dim: int | None, epoch: str, n_docs: int
    ) -> _CentroidTable | None:
        """The stored per-document centroids (an index written before them has none: the approximate score then
        counts only retrieved similarities, see :meth:`_candidates`).

        A reload after another process's commit reads only the rows added since (seqs only grow), unless a
        backfill (``centroids_epoch``) added older ones, or rows of deleted documents make up half the table.
        """
        if not dim:
            return None
        old = self._centroids
        incremental = old is not None and old.dim == dim and old.epoch == epoch and old.n <= 2 * n_docs + 1024
        table = old if incremental and old is not None else _CentroidTable(dim)
        table.epoch = epoch
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'centroids'").fetchone():
            return table
        last = int(table.seqs[table.n - 1]) if table.n else -1
        rows = conn.execute("SELECT seq, scales, codes FROM centroids WHERE seq > ? ORDER BY seq", (last,)).fetchall()
        if not rows:
            return table
        c = table.codes.shape[1]
        scales = bytearray().join(r[1] for r in rows)
        codes = bytearray().join(r[2] for r in rows)
        if len(scales) != len(rows) * c * 4 or len(codes) != len(rows) * c * dim:
            logger.warning("centroids of %s have an unexpected size; the approximate score ignores them", self._root)
            return table
        table.append(
            np.array([r[0] for r in rows], dtype=np.int64),
            np.frombuffer(codes, dtype=np.int8).reshape(len(rows), c, dim),
            np.frombuffer(scales, dtype=_F32).reshape(len(rows), c),
        )
        return table

    def _backfill_centroids(self) -> None:
        """Writable open: compute the centroids of documents stored without them (an index written by an older
        version, or by one since), one transaction per chunk (a crash keeps what was committed), and drop those of
        documents that no longer exist."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(_CENTROIDS_SCHEMA)
            conn.execute("DELETE FROM centroids WHERE seq NOT IN (SELECT seq FROM docs)")
            missing = [
                r[0]
                for r in conn.execute("SELECT seq FROM docs WHERE seq NOT IN (SELECT seq FROM centroids) ORDER BY seq")
            ]
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
        if not missing or not self._dim:
            return
        dim = self._dim
        logger.info("computing the centroids of %d documents stored without them in %s", len(missing), self._root)
        for start in range(0, len(missing), _FETCH_CHUNK):
            chunk = json.dumps(missing[start : start + _FETCH_CHUNK])
            rows = conn.execute(
                f"SELECT seq, n_tokens, {self._vector_cols} FROM docs WHERE seq IN (SELECT value FROM json_each(?))",
                (chunk,),
            ).fetchall()
            arrays = [_decode_vectors(blob, n_tok, dim, self._vector_dtype, res) for _, n_tok, blob, res in rows]
            codes, scales = _doc_centroids(arrays)
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(
                    "INSERT INTO centroids VALUES (?, ?, ?)",
                    [(r[0], scales[i].tobytes(), codes[i].tobytes()) for i, r in enumerate(rows)],
                )
                # Rows below the newest seq: readers reload the whole table rather than what follows their last.
                epoch = conn.execute("SELECT value FROM meta WHERE key = 'centroids_epoch'").fetchone()
                bumped = str(int(epoch[0]) + 1 if epoch else 1)
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('centroids_epoch', ?)", (bumped,))
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
        with self._rw.write():
            self._load_state()

    def _refresh_if_stale(self) -> None:
        """Read-only mode: reload the state when another process committed since the last look."""
        if not self.read_only or self._closed:
            return
        with self._rw.write():
            if self._closed:
                return
            version = self._conn.execute("PRAGMA data_version").fetchone()[0]
            if version == self._data_version:
                return
            for attempt in range(5):
                try:
                    self._load_state()
                    return
                except CollectionConfigError:  # a segment was merged away between two reads: retry
                    if attempt == 4:
                        raise
                    time.sleep(0.05 * (attempt + 1))

    def _remove_orphans(self) -> None:
        """Delete segment files no committed state references and temporary files of crashed writes."""
        live = {r[0] for r in self._conn.execute("SELECT file FROM segments")}
        for p in self._root.iterdir():
            if (_SEGMENT_FILE.match(p.name) and p.name not in live) or _is_temp(p.name):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                    logger.debug("removed orphan %s", p)

    def _release_resources(self) -> None:
        with self._conn_lock:
            for conn in self._all_conns:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._all_conns = []
            self._readers = []
        self._segments = {}
        self._mutable = {}
        self._mutable_cache = None
        self._sealed_cache = None
        self._blobs.clear()
        if self._flock is not None:
            self._flock.release()
            self._flock = None
        if self._ephemeral:
            shutil.rmtree(self._root, ignore_errors=True)

    def _check_open(self) -> None:
        if self._closed:
            raise ColBERTError(f"this VoyagerBackend ({self._root}) is closed; open the directory again")

    def _check_writable(self) -> None:
        self._check_open()
        if self.read_only:
            raise ColBERTError(
                f"this VoyagerBackend ({self._root}) is read-only; open it with read_only=False to write "
                "(one writer process at a time)"
            )

    # ------------------------------------------------------------------------------------------ writing

    def _execute_write(self, stmts: list[tuple[str, tuple[Any, ...]]]) -> None:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in stmts:
                conn.execute(sql, params)
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise

    def _lookup_rows(self, conn: sqlite3.Connection, ids: list[str]) -> dict[str, _Row]:
        out: dict[str, _Row] = {}
        for start in range(0, len(ids), _FETCH_CHUNK):
            chunk = ids[start : start + _FETCH_CHUNK]
            for doc_id, seq, seg, first, n_tok in conn.execute(
                "SELECT id, seq, segment, first_label, n_tokens FROM docs WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(chunk),),
            ):
                out[doc_id] = _Row(seq, seg, first, n_tok)
        return out

    def _delete_rows(self, conn: sqlite3.Connection, rows: list[_Row]) -> None:
        if not rows:
            return
        seqs = [r.seq for r in rows]
        for start in range(0, len(seqs), _FETCH_CHUNK):
            chunk = json.dumps(seqs[start : start + _FETCH_CHUNK])
            conn.execute("DELETE FROM docs WHERE seq IN (SELECT value FROM json_each(?))", (chunk,))
            conn.execute("DELETE FROM centroids WHERE seq IN (SELECT value FROM json_each(?))", (chunk,))
        per_seg: dict[int, list[int]] = {}
        for r in rows:
            if r.segment is not None:
                acc = per_seg.setdefault(r.segment, [0, 0])
                acc[0] += r.n_tokens
                acc[1] += 1
        for sid, (n_tok, n_docs) in per_seg.items():
            conn.execute(
                "UPDATE segments SET n_live_tokens = n_live_tokens - ?, n_docs = n_docs - ? WHERE id = ?",
                (n_tok, n_docs, sid),
            )

    def _apply_removed(self, rows: list[_Row]) -> None:
        """Reflect committed deletions in memory (exclusive lock held)."""
        if not rows:
            return
        segments = dict(self._segments)
        for r in rows:
            if r.segment is None:
                if self._mutable.pop(r.seq, None) is not None:
                    self._mutable_tokens -= r.n_tokens
            else:
                self._label_seq[r.first_label : r.first_label + r.n_tokens] = -1
                s = segments[r.segment]
                segments[r.segment] = dataclasses.replace(
                    s, n_live_tokens=s.n_live_tokens - r.n_tokens, n_docs=s.n_docs - 1
                )
        self._segments = segments
        self._n_docs -= len(rows)
        self._mutable_cache = None
        self._sealed_cache = None
        self._filter_cache = {}
        self._blobs.discard(r.seq for r in rows)

    def _write_docs(
        self,
        ids: list[str],
        encoded: list[tuple[bytes, bytes | None, npt.NDArray[np.float32]]],
        texts: list[str | None],
        metas: list[str],
        dim: int,
    ) -> None:
        conn = self._conn
        first = self._next_label
        cent_codes, cent_scales = _doc_centroids([decoded for _, _, decoded in encoded])
        conn.execute("BEGIN IMMEDIATE")
        try:
            old = self._lookup_rows(conn, ids)
            self._delete_rows(conn, list(old.values()))
            new: list[tuple[int, int, npt.NDArray[np.float32]]] = []
            written: list[tuple[int, int, bytes]] = []  # (seq, n_tokens, vectors blob) for the blob cache
            label = first
            # The residual column exists in indexes created since int14 (the only ones that store residuals).
            cols, marks = ("vectors, residual", "?, ?") if self._vector_dtype == "int14" else ("vectors", "?")
            for doc_id, (blob, residual, decoded), text, meta in zip(ids, encoded, texts, metas, strict=True):
                cur = conn.execute(
                    f"INSERT INTO docs (id, text, metadata, n_tokens, first_label, segment, {cols}) "
                    f"VALUES (?, ?, ?, ?, ?, NULL, {marks})",
                    (doc_id, text, meta, decoded.shape[0], label, blob, *(() if residual is None else (residual,))),
                )
                assert cur.lastrowid is not None
                i = len(new)
                conn.execute(
                    "INSERT INTO centroids VALUES (?, ?, ?)",
                    (cur.lastrowid, cent_scales[i].tobytes(), cent_codes[i].tobytes()),
                )
                new.append((cur.lastrowid, label, decoded))
                written.append((cur.lastrowid, decoded.shape[0], blob))
                label += decoded.shape[0]
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('next_label', ?)", (str(label),))
            if self._dim is None:
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('dim', ?)", (str(dim),))
            pending_graph_dim = self.default_graph_dim(dim) if self._graph_dim_pending else None
            if pending_graph_dim is not None:
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('graph_dim', ?)", (str(pending_graph_dim),))
            with self._rw.write():
                conn.execute("COMMIT")
                self._apply_removed(list(old.values()))
                if label > self._label_seq.shape[0]:
                    grown = np.full(max(label, 2 * self._label_seq.shape[0]), -1, dtype=np.int64)
                    grown[: self._label_seq.shape[0]] = self._label_seq
                    self._label_seq = grown
                for seq, lab, decoded in new:
                    self._label_seq[lab : lab + decoded.shape[0]] = seq
                    self._mutable[seq] = (lab, decoded)
                    self._mutable_tokens += decoded.shape[0]
                self._next_label = label
                self._n_docs += len(new)
                self._mutable_cache = None
                self._sealed_cache = None
                self._filter_cache = {}
                if self._dim is None:
                    self._dim = dim
                if self._centroids is None:
                    self._centroids = _CentroidTable(dim)
                self._centroids.append(np.array([n[0] for n in new], dtype=np.int64), cent_codes, cent_scales)
                if self._centroids.n > 2 * self._n_docs + 1024:  # mostly rows of replaced or deleted documents
                    self._centroids.retain(np.unique(self._label_seq[self._label_seq >= 0]))
                if pending_graph_dim is not None:
                    self._graph_dim, self._graph_dim_pending = pending_graph_dim, False
                self._blobs.put("vectors", written)
        except BaseException:
            _rollback(conn)
            raise

    def _checkpoint(self) -> None:
        """Copy the WAL into the database file and truncate it (after large writes; best effort)."""
        with contextlib.suppress(sqlite3.Error):
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _maintain(self) -> None:
        """Automatic sealing and merging after a write (write mutex held)."""
        if self._mutable_tokens >= self.mutable_max_tokens:
            self._seal()
        for s in list(self._segments.values()):
            if s.n_live_tokens == 0 or (s.n_tokens - s.n_live_tokens) >= self.compact_deleted_ratio * s.n_tokens:
                self._merge([s.id])
        if len(self._segments) > self.max_segments:
            # Fold the smaller segments into the largest segment that they are not negligible against: its
            # graph is extended, not rebuilt (HNSW work only for the folded tokens), and a big segment's file
            # is rewritten only once 1/FOLD_RATIO of its size has accumulated beside it.
            group = sorted(self._segments.values(), key=lambda s: (-s.n_live_tokens, s.id))
            while len(group) > 2 and self.FOLD_RATIO * sum(s.n_live_tokens for s in group[1:]) < group[0].n_live_tokens:
                group = group[1:]
            base = group[0]
            n_new = sum(s.n_live_tokens for s in group[1:])
            self._merge([s.id for s in group], into=base.id if self._extendable(base, n_new) else None)

    def _storage_type(self) -> Any:
        voyager = self._voyager
        return {
            "float32": voyager.StorageDataType.Float32,
            "float8": voyager.StorageDataType.Float8,
            "e4m3": voyager.StorageDataType.E4M3,
        }[self._storage]

    def _beam(self, n_tokens: int) -> int:
        """HNSW construction beam of a segment that will hold ``n_tokens`` tokens."""
        if self._ef_construction_large is not None and n_tokens > self.LARGE_SEGMENT_TOKENS:
            return self._ef_construction_large
        return self._ef_construction

    def _extendable(self, seg: _Segment, n_new: int) -> bool:
        """Whether ``n_new`` tokens may be added to ``seg``'s graph: it was built with the settings that a graph
        of the resulting size gets (a segment growing past :attr:`LARGE_SEGMENT_TOKENS` is rebuilt once with the
        larger beam)."""
        index = seg.index
        return bool(
            (None if seg.proj is None else int(seg.proj.shape[0])) == self._target_graph_dim()
            and index.M == self._M
            and index.ef_construction == self._beam(seg.n_tokens + n_new)
            and index.storage_data_type == self._storage_type()
        )

    def _build_segment(
        self, flat: npt.NDArray[np.float32], labels: npt.NDArray[np.int64], *, base: _Segment | None = None
    ) -> tuple[int, str, Any, npt.NDArray[np.float32] | None]:
        """Build an HNSW graph over ``flat`` ``(n, dim)`` under ``labels`` ``(n,)`` and write it atomically.

        With ``base``, the tokens are added to a private copy of ``base``'s graph (loaded from its file, so
        readers keep searching the original) instead of a new, empty one, projected as its tokens were.

        Returns:
            (segment id, file name, the graph, the ``(graph_dim, dim)`` projection it indexes or ``None``).
        """
        voyager = self._voyager
        if base is not None:
            index = voyager.Index.load(str(self._root / base.file))
            proj = base.proj
        else:
            proj = self._fit_projection(flat)
        if proj is not None:
            flat = flat @ proj.T
        if base is None:
            index = voyager.Index(
                voyager.Space.Cosine,
                num_dimensions=flat.shape[1],
                M=self._M,
                ef_construction=self._beam(flat.shape[0]),
                max_elements=max(1, flat.shape[0]),
                storage_data_type=self._storage_type(),
            )
        t0 = time.perf_counter()
        index.add_items(flat, ids=labels, num_threads=self.num_threads)
        sid = self._next_segment
        name = f"seg-{sid:06d}.voyager"
        target = self._root / name
        tmp = self._root / f".{name}.{uuid.uuid4().hex}.tmp"
        try:
            index.save(str(tmp))
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        _fsync_dir(self._root)
        logger.debug("built segment %s: %d tokens in %.2fs", name, flat.shape[0], time.perf_counter() - t0)
        return sid, name, index, proj

    def _target_graph_dim(self) -> int | None:
        """Dimensions a new segment's graph indexes: ``graph_dim`` when it projects, else ``None`` (all)."""
        if self._graph_dim is None or self._dim is None or self._graph_dim >= self._dim:
            return None
        return self._graph_dim

    def _fit_projection(self, flat: npt.NDArray[np.float32]) -> npt.NDArray[np.float32] | None:
        """The ``(graph_dim, dim)`` projection of a new segment over ``flat``: its tokens' ``graph_dim`` principal
        directions (uncentred: the graph compares directions through the origin), or ``None`` (full vectors)."""
        p = self._target_graph_dim()
        if p is None:
            return None
        sample = flat
        if flat.shape[0] > _PROJECTION_SAMPLE:
            rng = np.random.default_rng(flat.shape[0])
            sample = flat[np.sort(rng.choice(flat.shape[0], _PROJECTION_SAMPLE, replace=False))]
        gram = sample.T.astype(np.float64) @ sample.astype(np.float64)
        _, vecs = np.linalg.eigh(gram)  # ascending eigenvalues
        return np.ascontiguousarray(vecs[:, ::-1][:, :p].T, dtype=np.float32)

    def _store_projection(self, conn: sqlite3.Connection, sid: int, proj: npt.NDArray[np.float32] | None) -> None:
        """Record segment ``sid``'s projection in the open transaction (format version 3 from then on)."""
        if proj is None:
            return
        conn.execute("CREATE TABLE IF NOT EXISTS projections (segment INTEGER PRIMARY KEY, matrix BLOB NOT NULL)")
        conn.execute("INSERT OR REPLACE INTO projections VALUES (?, ?)", (sid, proj.astype(_F32).tobytes()))
        if self._format_version < _PROJECTED_FORMAT_VERSION:
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('format_version', ?)", (str(_PROJECTED_FORMAT_VERSION),))

    def _seal(self) -> None:
        """Turn the mutable segment into a sealed HNSW segment (write mutex held)."""
        seqs = sorted(self._mutable)
        if not seqs:
            return
        arrays = [self._mutable[s][1] for s in seqs]
        labels = np.concatenate(
            [
                np.arange(self._mutable[s][0], self._mutable[s][0] + a.shape[0], dtype=np.int64)
                for s, a in zip(seqs, arrays, strict=True)
            ]
        )
        flat = np.concatenate(arrays)
        sid, name, index, proj = self._build_segment(flat, labels)
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("UPDATE docs SET segment = ? WHERE segment IS NULL", (sid,))
            conn.execute(
                "INSERT INTO segments VALUES (?, ?, ?, ?, ?)", (sid, name, len(labels), len(labels), len(seqs))
            )
            self._store_projection(conn, sid, proj)
            self._bump_generation(conn, next_segment=sid + 1)
            with self._rw.write():
                conn.execute("COMMIT")
                if proj is not None:
                    self._format_version = max(self._format_version, _PROJECTED_FORMAT_VERSION)
                segments = dict(self._segments)
                segments[sid] = _Segment(sid, name, index, len(labels), len(labels), len(seqs), proj)
                self._segments = segments
                self._next_segment = sid + 1
                self._generation += 1
                self._mutable = {}
                self._mutable_tokens = 0
                self._mutable_cache = None
                self._sealed_cache = None
        except BaseException:
            _rollback(conn)
            raise
        self._write_manifest()
        logger.info("sealed %d documents (%d tokens) into %s", len(seqs), len(labels), name)

    def _merge(self, seg_ids: list[int], *, into: int | None = None) -> None:
        """Merge ``seg_ids`` into one new segment (write mutex held).

        Without ``into``, the live tokens of every segment are rebuilt into a new graph (deleted tokens are
        reclaimed). With ``into`` (one of ``seg_ids``), the live tokens of the others are added to a copy of
        that segment's graph, which keeps its dead tokens (reclaimed later by its deleted-ratio rebuild or by
        :meth:`compact`).
        """
        conn = self._conn
        seg_json = json.dumps(seg_ids)
        base = self._segments[into] if into is not None else None
        read_json = json.dumps([s for s in seg_ids if s != into])
        arrays: list[npt.NDArray[np.float32]] = []
        labels: list[npt.NDArray[np.int64]] = []
        n_docs = 0
        dim = self._dim or 0
        for first, n_tok, blob, residual in conn.execute(
            f"SELECT first_label, n_tokens, {self._vector_cols} FROM docs "
            "WHERE segment IN (SELECT value FROM json_each(?)) ORDER BY seq",
            (read_json,),
        ):
            arrays.append(_decode_vectors(blob, n_tok, dim, self._vector_dtype, residual))
            labels.append(np.arange(first, first + n_tok, dtype=np.int64))
            n_docs += 1
        new: _Segment | None = None
        if base is not None and not arrays:
            seg_ids = [s for s in seg_ids if s != into]  # nothing to add: just drop the empty segments
            seg_json = read_json
        elif arrays:
            flat = np.concatenate(arrays)
            lab = np.concatenate(labels)
            del arrays
            sid, name, index, proj = self._build_segment(flat, lab, base=base)
            if base is None:
                new = _Segment(sid, name, index, len(lab), len(lab), n_docs, proj)
            else:
                new = _Segment(
                    sid,
                    name,
                    index,
                    base.n_tokens + len(lab),
                    base.n_live_tokens + len(lab),
                    base.n_docs + n_docs,
                    proj,
                )
        old_files = [self._segments[s].file for s in seg_ids]
        conn.execute("BEGIN IMMEDIATE")
        try:
            if new is not None:
                conn.execute(
                    "UPDATE docs SET segment = ? WHERE segment IN (SELECT value FROM json_each(?))", (new.id, seg_json)
                )
                conn.execute(
                    "INSERT INTO segments VALUES (?, ?, ?, ?, ?)",
                    (new.id, new.file, new.n_tokens, new.n_live_tokens, new.n_docs),
                )
                self._store_projection(conn, new.id, new.proj)
            conn.execute("DELETE FROM segments WHERE id IN (SELECT value FROM json_each(?))", (seg_json,))
            if any(self._segments[s].proj is not None for s in seg_ids):
                conn.execute("DELETE FROM projections WHERE segment IN (SELECT value FROM json_each(?))", (seg_json,))
            next_segment = self._next_segment + (1 if new is not None else 0)
            self._bump_generation(conn, next_segment=next_segment)
            with self._rw.write():
                conn.execute("COMMIT")
                if new is not None and new.proj is not None:
                    self._format_version = max(self._format_version, _PROJECTED_FORMAT_VERSION)
                segments = {k: v for k, v in self._segments.items() if k not in seg_ids}
                if new is not None:
                    segments[new.id] = new
                self._segments = segments
                self._next_segment = next_segment
                self._generation += 1
        except BaseException:
            _rollback(conn)
            raise
        for name in old_files:
            with contextlib.suppress(FileNotFoundError):
                (self._root / name).unlink()
        self._checkpoint()
        self._write_manifest()
        logger.info(
            "merged segments %s into %s (%d live tokens)",
            seg_ids,
            new.file if new is not None else "nothing",
            new.n_tokens if new is not None else 0,
        )

    def _bump_generation(self, conn: sqlite3.Connection, *, next_segment: int) -> None:
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('generation', ?)", (str(self._generation + 1),))
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('next_segment', ?)", (str(next_segment),))

    def _write_manifest(self) -> None:
        """Atomically rewrite ``manifest.json``, a mirror of the committed state (SQLite stays authoritative)."""
        manifest = {
            "format": _FORMAT,
            "format_version": self._format_version,
            "generation": self._generation,
            "dim": self._dim,
            "model_id": self._model_id,
            "space": "cosine",
            "M": self._M,
            "ef_construction": self._ef_construction,
            "ef_construction_large": self._ef_construction_large,
            "storage_data_type": self._storage,
            "vector_dtype": self._vector_dtype,
            "segments": [{"id": s.id, "file": s.file, "n_tokens": s.n_tokens} for s in self._segments.values()],
            "note": f"mirror of {_DB} (the source of truth) at this generation; do not edit",
        }
        data = json.dumps(manifest, indent=1).encode("utf-8")
        _write_atomic(self._root / _MANIFEST, lambda f: f.write(data))

    # ------------------------------------------------------------------------------------------ searching

    def _mutable_view(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """(seqs ``(m,)``, flat float32 tokens ``(T, dim)``, offsets ``(m + 1,)``) of the mutable segment."""
        with self._cache_lock:
            if self._mutable_cache is None:
                seqs = np.array(sorted(self._mutable), dtype=np.int64)
                arrays = [self._mutable[int(s)][1] for s in seqs]
                offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
                np.cumsum([a.shape[0] for a in arrays], out=offsets[1:])
                flat = np.concatenate(arrays) if arrays else np.zeros((0, self._dim or 0), dtype=np.float32)
                self._mutable_cache = (seqs, flat, offsets)
            return self._mutable_cache

    def _sealed_view(self, conn: sqlite3.Connection) -> _ScanView:
        """Every sealed document as the small-index scan reads it (cached until the next write).

        An int8 / int14 store is cached as int8 codes requantised with one scale per document
        (:func:`_doc_scale_codes`, ``dim`` bytes per token: 41 MiB at 110,000 384-d tokens), which the scan ranks by
        :func:`_doc_scale_estimate`; the documents it keeps are then read from the store and scored exactly.
        float16 / float32 stores are decoded to float32 once rather than widened on every query (measured 9 vs
        16 ms at 100,000 tokens) and scored exactly.
        """
        with self._cache_lock:
            if self._sealed_cache is None:
                rows = conn.execute(
                    "SELECT seq, n_tokens, vectors FROM docs WHERE segment IS NOT NULL ORDER BY seq"
                ).fetchall()
                seqs, flat, offsets, scales = self._stack(rows)
                del rows
                if scales is not None:
                    codes, doc_scales = _doc_scale_codes(flat, scales, offsets)
                    self._sealed_cache = _ScanView(seqs, offsets, codes=codes, doc_scales=doc_scales)
                else:
                    self._sealed_cache = _ScanView(seqs, offsets, rows=flat.astype(np.float32))
            return self._sealed_cache

    def _stack(self, rows: Iterable[tuple[int, int, bytes]], *, arena: _Arena | None = None) -> _Stacked:
        """Stack ``(seq, n_tokens, vectors blob)`` rows as stored, without decoding them (into a region of
        ``arena`` when given: the result is then valid until the arena's next reset).

        Returns:
            (seqs ``(m,)``, flat float16, float32 or int8 rows ``(T, dim)``, offsets ``(m + 1,)``, int8 / int14 row
            scales ``(T,)`` or ``None``): the arguments of :func:`_score_stacked` (int14 residuals are read
            separately, see :meth:`_gather_residuals`).
        """
        dim = self._dim or 0
        fetched = list(rows)
        offsets = np.zeros(len(fetched) + 1, dtype=np.int64)
        np.cumsum([r[1] for r in fetched], out=offsets[1:])
        # One join and one view for all documents (per-document arrays cost more than the bytes); a bytearray, so
        # the view is writable and torch can wrap it without a copy.
        joined: bytearray | memoryview
        if arena is None:
            joined = bytearray().join(r[2] for r in fetched)
        else:
            joined = arena.take(sum(len(r[2]) for r in fetched))
            pos = 0
            for r in fetched:
                end = pos + len(r[2])
                joined[pos:end] = r[2]
                pos = end
        flat, row_scales = _blob_parts(joined, dim, self._vector_dtype)
        if row_scales is not None:
            # Contiguous: scaling the estimate's products by a strided view cost 0.43 instead of ~0.1 ms (14,000
            # 384-d tokens).
            row_scales = np.ascontiguousarray(row_scales)
        if flat.shape[0] != offsets[-1]:
            raise CollectionConfigError(
                f"stored vectors of {self._root} hold {flat.shape[0]} tokens where {int(offsets[-1])} were recorded; "
                "the index is damaged"
            )
        return np.array([r[0] for r in fetched], dtype=np.int64), flat, offsets, row_scales

    def _gather_residuals(
        self,
        rows: Iterable[tuple[int, int, bytes]],
        seqs: npt.NDArray[np.int64],
        offsets: npt.NDArray[np.int64],
    ) -> _Planes:
        """The int14 residual planes of stacked documents ``seqs`` (rows ``offsets``), from ``(seq, n_tokens,
        residual blob)`` rows in any order: nibbles ``(T, d' / 2)`` and high bits ``(T, d' / 4)``, contiguous."""
        half, quarter = _residual_widths(self._dim or 0)
        n_rows = int(offsets[-1])
        nibbles = np.empty((n_rows, half), dtype=np.uint8)
        two = np.empty((n_rows, quarter), dtype=np.uint8)
        where = {int(s): i for i, s in enumerate(seqs.tolist())}
        filled = 0
        for seq, n_tok, blob in rows:
            i = where.get(seq)
            if i is None:
                continue
            r0, r1 = int(offsets[i]), int(offsets[i + 1])
            if r1 - r0 != n_tok:
                raise CollectionConfigError(f"stored vectors of {self._root} disagree with their residuals; damaged")
            nibbles[r0:r1], two[r0:r1] = _residual_planes(blob, n_tok, self._dim or 0)
            filled += 1
        if filled != seqs.size:
            raise CollectionConfigError(f"residuals of {seqs.size - filled} documents of {self._root} are missing")
        return nibbles, two

    def _score(
        self, conn: sqlite3.Connection, q: npt.NDArray[np.float32], k: int, flt: dict[str, list[Any]] | None
    ) -> dict[int, float]:
        """Exact MaxSim of the selected documents: ``{seq: score}`` (shared lock held)."""
        scores: dict[int, float] = {}
        # Documents of a reranked batch scored exactly after the int8 estimate (see _score_stacked): the estimate
        # ranked the exact top k at most 3 places lower (k = 1 / 10 / 50, 1,000 synthetic and 225 MiniLM queries:
        # worst 1 / 12 / 53 and 1 / 11 / 52 of 128 or 160 candidates). The candidates are read in batches of
        # n_rerank while deep ones keep winning (_rerank).
        n_exact = k + max(8, k // 4)
        # The small-index scan ranks by a coarser estimate (one scale per document): worst rank 11-12 for a top 10.
        n_scan_exact = 2 * k + 8
        # A large k reranks more candidates than n_rerank: top 100 of 1,000 MiniLM documents, recall@100 0.845
        # from 208 candidates vs 0.739 from 128 (p50 21 vs 12 ms).
        n_rerank = max(self.n_rerank, 2 * k + 8)
        # Mutable segment: exact over all of it.
        mseqs, mflat, moffs = self._mutable_view()
        if mseqs.size:
            # One torch thread, as in _exact: a graph search usually follows (see there).
            exact = maxsim_flat(q, mflat, moffs, validate=False, num_threads=1)
            keep = np.ones(mseqs.size, dtype=bool)
            if flt is not None:
                keep = self._match(conn, mseqs, flt)
            scores.update(zip(mseqs[keep].tolist(), exact[keep].tolist(), strict=True))
        n_sealed_docs = self._n_docs - mseqs.size
        sealed_live = sum(seg.n_live_tokens for seg in self._segments.values())
        if 0 < sealed_live <= self.exact_below_tokens:
            # A small index: scoring every (matching) sealed document exactly, on vectors cached in memory until
            # the next write, is cheaper than the graph search.
            view = self._sealed_view(conn)
            sel = np.arange(view.seqs.size)
            if flt is not None:
                sel = np.flatnonzero(np.isin(view.seqs, self._filtered_seqs(conn, flt)))
            if view.rows is not None:  # float16 / float32: every (matching) document exactly
                stacked: _Stacked = (view.seqs, view.rows, view.offsets, None)
                if sel.size < view.seqs.size:
                    stacked = _take_docs(stacked, sel)
                if sel.size:
                    scores.update(_score_stacked(q, stacked, None, estimate_threads=None))
            elif sel.size:
                # int8 / int14: every (matching) document ranked by the int8 estimate (both cores), the best
                # n_scan_exact read from the store and scored exactly.
                if sel.size > n_scan_exact:
                    assert view.codes is not None and view.doc_scales is not None
                    estimate = _doc_scale_estimate(q, view.codes, view.doc_scales, view.offsets)[sel]
                    sel = np.sort(sel[np.argsort(-estimate, kind="stable")[:n_scan_exact]])
                scores.update(self._exact(conn, q, view.seqs[sel]))
            return scores
        # Sealed segments: approximate candidates, then exact rerank of the best. The query rounded to int8 once,
        # for the centroid similarities and the rerank's estimate.
        q8 = quantise_int8(q)
        cand, approx, unsearched = self._candidates(q, q8=q8)
        n_cand = cand.size
        if flt is not None and cand.size:
            keep = self._match(conn, cand, flt)
            cand, approx = cand[keep], approx[keep]
        if cand.size:
            ordered = cand[np.argsort(-approx, kind="stable")]
            scores.update(self._rerank(conn, q, q8, ordered, n_rerank, n_exact))
        # Exhaustive fallbacks: a selective filter, too few candidates for k, or an unsearchable segment.
        rest: npt.NDArray[np.int64] | None = None
        if flt is not None and cand.size < n_rerank and n_sealed_docs > cand.size:
            rest = self._filtered_seqs(conn, flt)
        elif flt is None and (len(scores) < min(k, self._n_docs) or unsearched) and n_cand < n_sealed_docs:
            rest = np.array(
                [r[0] for r in conn.execute("SELECT seq FROM docs WHERE segment IS NOT NULL")], dtype=np.int64
            )
        if rest is not None and flt is not None and rest.size > self._exhaustive_limit(n_rerank) and len(scores) >= k:
            rest = None  # a broad filter: the candidates already give k matching hits
        if rest is not None and rest.size:
            todo = rest[~np.isin(rest, np.fromiter(scores.keys(), dtype=np.int64, count=len(scores)))]
            for start in range(0, todo.size, _FETCH_CHUNK):
                scores.update(self._exact(conn, q, todo[start : start + _FETCH_CHUNK], n_exact, remember=False))
        return scores

    @staticmethod
    def _exhaustive_limit(n_rerank: int) -> int:
        """Largest filtered set scored exhaustively when it is not needed to reach ``k`` hits."""
        return max(8 * n_rerank, 2048)

    def _candidates(
        self, q: npt.NDArray[np.float32], q8: tuple[npt.NDArray[np.float32], npt.NDArray[np.int8]] | None = None
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], bool]:
        """Candidate documents of the sealed segments and their approximate scores (``q8``: ``quantise_int8(q)``,
        computed here when not given).

        Returns:
            ``(seqs (c,), approx (c,), unsearched)``: distinct document seqs sorted ascending, their
            approximate scores, and whether a segment could not be searched (the caller then scans).
        """
        n_q = q.shape[0]
        label_seq = self._label_seq
        seq_parts: list[npt.NDArray[np.int64]] = []
        mat_parts: list[npt.NDArray[np.float64]] = []
        hit_parts: list[npt.NDArray[np.bool_]] = []
        unsearched = False
        found: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]] = []
        floor = np.full(n_q, -np.inf)
        for seg in self._segments.values():
            if seg.n_live_tokens == 0:
                continue
            kk = min(self.k_token, seg.n_tokens)
            ef = max(self.ef_search, kk)
            qs = q if seg.proj is None else _project(q, seg.proj)
            try:
                labels, dists = seg.index.query(qs, k=kk, num_threads=self.num_threads, query_ef=ef)
            except self._voyager.RecallError:
                try:
                    labels, dists = seg.index.query(qs, k=kk, num_threads=self.num_threads, query_ef=4 * ef)
                except self._voyager.RecallError:
                    logger.warning("segment %s returned fewer than %d neighbours; scanning it exactly", seg.file, kk)
                    unsearched = True
                    continue
            sims = 1.0 - np.asarray(dists, dtype=np.float64).reshape(n_q, kk)
            found.append((np.asarray(labels, dtype=np.int64).reshape(n_q, kk), sims))
            # Each query token's k-th similarity: the highest over the segments is what one graph holding
            # every token would have retrieved down to (about), whatever the segment sizes.
            np.maximum(floor, sims[:, -1], out=floor)
        tok_ids = np.arange(n_q)
        for labels, sims in found:
            seqs = label_seq[labels]
            valid = seqs >= 0
            if not valid.any():
                continue
            # Voyager returns each token's neighbours nearest first: reversed, a later write of the same
            # (document, token) cell carries a higher similarity, and with repeated indices NumPy keeps the
            # last write, so the fancy assignment below stores each cell's maximum.
            seqs, sims, valid = seqs[:, ::-1], sims[:, ::-1], valid[:, ::-1]
            tok = np.broadcast_to(tok_ids[:, None], labels.shape)[valid]
            sim = sims[valid]
            uniq, inv = np.unique(seqs[valid], return_inverse=True)
            # Only similarities at or above the global floor count as retrieved: a small segment returns its
            # k_token nearest too, and counting those deeper matches favoured its documents (recall@10 0.93 vs
            # 0.97 for one segment holding everything).
            keep = sim >= floor[tok]
            mat = np.zeros((uniq.size, n_q))
            mat[inv[keep], tok[keep]] = sim[keep]
            hit = np.zeros((uniq.size, n_q), dtype=bool)
            hit[inv[keep], tok[keep]] = True
            seq_parts.append(uniq)
            mat_parts.append(mat)
            hit_parts.append(hit)
        if not seq_parts:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64), unsearched
        seqs_all = np.concatenate(seq_parts)
        mat = np.concatenate(mat_parts) if len(mat_parts) > 1 else mat_parts[0]
        # Approximate score: the sum over query tokens of the best similarity each retrieved from the document.
        # A query token that did not retrieve it counts the similarity of its nearest centroid of the document
        # (see _doc_centroids), capped at the token's floor (had it been higher, the graph would have returned
        # the token's match, about): a document close to every query token but no token's nearest then ranks
        # by all its matches, not just the few retrieved. Measured against exact MaxSim (100 queries of the
        # benchmark's 1,000 MiniLM documents, 384-d): the exact top 10's worst approximate rank went from 260 to
        # 91, and top 10s within the best 64 candidates from 98% to 99% (another graph, 225 queries: 92.9% to
        # 98.2%); on 10,000 synthetic 128-d documents from 82% to 95%. An index whose documents lack centroids
        # (written by an older version, opened read-only) counts 0 for such a token, as before.
        table = self._centroids
        rows = table.rows(seqs_all) if table is not None else None
        if rows is not None and table is not None:
            hit = np.concatenate(hit_parts) if len(hit_parts) > 1 else hit_parts[0]
            fill = np.minimum(table.similarities(rows, q, q8), floor[None, :])
            np.copyto(mat, fill, where=~hit)
        approx_all = mat.sum(axis=1)
        order = np.argsort(seqs_all, kind="stable")  # ties in the later stable sort keep insertion order
        return seqs_all[order], approx_all[order], unsearched

    def _rerank(
        self,
        conn: sqlite3.Connection,
        q: npt.NDArray[np.float32],
        q8: tuple[npt.NDArray[np.float32], npt.NDArray[np.int8]],
        ordered: npt.NDArray[np.int64],
        n_rerank: int,
        keep: int,
    ) -> dict[int, float]:
        """Rerank candidates ``ordered`` (seqs ``(c,)``, best approximate score first), ``n_rerank`` at a time:
        ``{seq: exact MaxSim}`` of the ``keep`` with the best int8 estimate (int8 / int14 store), or of every
        candidate read (float16 / float32: each batch is scored exactly; the exact score serves as the estimate).

        The first batch is read; the next one only while the approximate order proves unreliable for this query:
        a document in the lower half of the first batch, or anywhere in a later batch, ranks among the ``keep``
        best estimates so far. Most queries stop after one batch (their p50 cost is one batch's), and the rest
        reach the documents that the approximate score ranked deep. Simulated against exact MaxSim with the
        centroid-completed approximate score (see :meth:`_candidates`; exact scores standing in for the
        estimate), 225 MiniLM queries (1,000 Cranfield documents, 384-d tokens through 128-d graphs) on eight
        graphs: batches of 96 missed 3 of the 18,000 top-10 hits (one a document no query token retrieved),
        reading 119 candidates on average (21% of queries read a second batch); batches of 64 missed 3 too but
        read a second batch for 52% of queries (p50 128 candidates), and a narrower trigger (the best 12 instead
        of ``keep``) missed 7 with batches of 64, 80 or 96. Without centroids, batches of 128 missed 5 of 9,000
        (four of the graphs), reading 167. On 300 synthetic 128-d queries (10,000 documents, two graphs): none of
        6,000 missed, 126 read (formerly 1 of 6,000, 160).
        """
        residuals = self._residual_reader(conn) if self._vector_dtype == "int14" else None
        arena = _ARENA
        arena.reset()  # this thread's previous search is over
        stacks: list[_Stacked] = []
        estimates: list[npt.NDArray[np.float32]] = []
        start, tail_from = 0, n_rerank // 2
        while start < ordered.size:
            batch = ordered[start : start + n_rerank]
            start += n_rerank
            stacked = self._stack(self._blobs.fetch(conn, "vectors", batch.tolist()), arena=arena)
            seqs, flat, offsets, row_scales = stacked
            if seqs.size == 0:
                continue
            if row_scales is None:  # float16 / float32: exact scores
                est = maxsim_flat(q, flat, offsets, validate=False, num_threads=1)
            elif not stacks and start >= ordered.size and seqs.size <= keep:
                return _exact_stacked(q, stacked, residuals)  # one batch, all of it kept: no estimate needed
            else:
                est = maxsim_int8_estimate(q, flat, row_scales, offsets, num_threads=1, query_int8=q8)
            stacks.append(stacked)
            estimates.append(est)
            if start >= ordered.size:
                break
            pooled = np.concatenate(estimates) if len(estimates) > 1 else est
            threshold = np.partition(pooled, pooled.size - keep)[pooled.size - keep] if pooled.size > keep else -np.inf
            if tail_from:  # the documents of the batch's lower half (seqs ascending, the batch in approximate order)
                deep = set(batch[tail_from:].tolist())
                tail = np.fromiter((s in deep for s in seqs.tolist()), dtype=bool, count=seqs.size)
            else:
                tail = np.ones(seqs.size, dtype=bool)
            if not (est[tail] >= threshold).any():
                break
            tail_from = 0
        if not stacks:
            return {}
        if stacks[0][3] is None:
            return {
                seq: score
                for (seqs, *_), est in zip(stacks, estimates, strict=True)
                for seq, score in zip(seqs.tolist(), est.tolist(), strict=True)
            }
        pooled = np.concatenate(estimates)
        best = np.argsort(-pooled, kind="stable")[:keep]
        parts: list[_Stacked] = []
        base = 0
        for stacked, est in zip(stacks, estimates, strict=True):
            local = np.sort(best[(best >= base) & (best < base + est.size)] - base)
            if local.size:
                parts.append(stacked if local.size == est.size else _take_docs(stacked, local))
            base += est.size
        return _exact_stacked(q, parts[0] if len(parts) == 1 else _concat_stacked(parts), residuals)

    def _residual_reader(
        self, conn: sqlite3.Connection, *, remember: bool = True
    ) -> Callable[[npt.NDArray[np.int64], npt.NDArray[np.int64]], _Planes]:
        """``residuals(seqs, offsets)``: the int14 residual planes of stacked documents, read through the cache."""

        def residuals(kept: npt.NDArray[np.int64], offsets: npt.NDArray[np.int64]) -> _Planes:
            rows = self._blobs.fetch(conn, "residual", kept.tolist(), remember=remember)
            return self._gather_residuals(rows, kept, offsets)

        return residuals

    def _exact(
        self,
        conn: sqlite3.Connection,
        q: npt.NDArray[np.float32],
        seqs: npt.NDArray[np.int64],
        keep: int | None = None,
        *,
        remember: bool = True,
    ) -> dict[int, float]:
        """Exact MaxSim of documents ``seqs`` on their stored vectors: ``{seq: score}``, read through the blob
        cache (``remember``: keep what was read from the store there).

        With ``keep`` and int8 / int14 vectors, only the ``keep`` documents with the best int8 estimate are scored
        exactly and returned (see :func:`_score_stacked`).
        """
        if seqs.size == 0:
            return {}
        stacked = self._stack(self._blobs.fetch(conn, "vectors", seqs.tolist(), remember=remember))
        if stacked[0].size == 0:
            return {}
        residuals = self._residual_reader(conn, remember=remember) if self._vector_dtype == "int14" else None
        return _score_stacked(q, stacked, keep, estimate_threads=1, residuals=residuals)

    def _match(
        self, conn: sqlite3.Connection, seqs: npt.NDArray[np.int64], flt: dict[str, list[Any]]
    ) -> npt.NDArray[np.bool_]:
        """Boolean mask ``(len(seqs),)``: which documents satisfy the filter."""
        ok: set[int] = set()
        lst = seqs.tolist()
        for start in range(0, len(lst), 8 * _FETCH_CHUNK):
            for seq, meta in conn.execute(
                "SELECT seq, metadata FROM docs WHERE seq IN (SELECT value FROM json_each(?))",
                (json.dumps(lst[start : start + 8 * _FETCH_CHUNK]),),
            ):
                if match_filter(json.loads(meta), flt):
                    ok.add(seq)
        return np.fromiter((s in ok for s in lst), dtype=bool, count=len(lst))

    def _filtered_seqs(self, conn: sqlite3.Connection, flt: dict[str, list[Any]]) -> npt.NDArray[np.int64]:
        """Seqs of all sealed documents matching ``flt`` (cached until the next write)."""
        key = json.dumps(flt, sort_keys=True, default=repr)
        with self._cache_lock:
            hit = self._filter_cache.get(key)
        if hit is not None:
            return hit
        out = np.array(
            [
                seq
                for seq, meta in conn.execute("SELECT seq, metadata FROM docs WHERE segment IS NOT NULL")
                if match_filter(json.loads(meta), flt)
            ],
            dtype=np.int64,
        )
        with self._cache_lock:
            if len(self._filter_cache) >= 64:
                self._filter_cache.pop(next(iter(self._filter_cache)))
            self._filter_cache[key] = out
        return out


# ---------------------------------------------------------------------------------------------- helpers


def _project(q: npt.NDArray[np.float32], proj: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """``q @ proj.T``: query tokens ``(n_q, dim)`` on a segment's principal directions ``(graph_dim, dim)``.

    On one torch thread, not NumPy's: OpenBLAS would run this small product on every core and leave its threads
    spinning after it, on the core that Voyager's search and the rerank need next (measured p50 9.8 vs 8.5-8.8 ms
    per query and CPU time 17.7 vs 10.3 ms, 1,000 MiniLM documents, in a process without OPENBLAS_NUM_THREADS=1).
    """
    torch = _torch_module()
    if torch is False or not proj.flags.writeable:  # pragma: no cover - torch is a core dependency; proj a copy
        return np.asarray(q @ proj.T, dtype=np.float32)
    out = np.empty((q.shape[0], proj.shape[0]), dtype=np.float32)
    tq = torch.from_numpy(np.array(q, dtype=np.float32, order="C"))  # a private copy: torch wraps writable memory
    with _torch_threads(1):
        torch.mm(tq, torch.from_numpy(proj).T, out=torch.from_numpy(out))
    return out


class _BlobCache:
    """Stored blobs of recently written or scored documents, least recently used first out past ``max_bytes``.

    Keyed by (column, seq). A document's seq is never reused (``AUTOINCREMENT``; only committed rows are read) and
    its ``vectors`` / ``residual`` blobs are never rewritten (merges and compaction change its ``segment`` only),
    so an entry stays valid as long as the document lives; deleted documents are dropped by
    :meth:`VoyagerBackend._apply_removed` (their seqs no longer come up as candidates anyway), and a reload of the
    state from disk clears the cache. Writes put the ``vectors`` blobs they commit (write-through). A hit skips
    SQLite's assembly of the blob from its overflow pages: reading and joining 128 candidates' 42 KB int8 records
    (384-d MiniLM tokens) took 0.87 instead of 1.96 ms.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, int], tuple[int, bytes]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        """Bytes of blobs held."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def fetch(
        self, conn: sqlite3.Connection, column: str, seqs: Sequence[int], *, remember: bool = True
    ) -> list[tuple[int, int, bytes]]:
        """``(seq, n_tokens, blob)`` of the live documents among ``seqs``, ascending by seq: from the cache where
        held, the rest from ``conn`` (kept for later unless ``remember`` is false: an exhaustive scan would only
        push the frequently reranked documents out)."""
        rows: list[tuple[int, int, bytes]] = []
        missing: list[int] = []
        if self.max_bytes > 0:
            with self._lock:
                entries = self._entries
                for seq in seqs:
                    key = (column, seq)
                    hit = entries.get(key)
                    if hit is None:
                        missing.append(seq)
                    else:
                        entries.move_to_end(key)
                        rows.append((seq, hit[0], hit[1]))
        else:
            missing = list(seqs)
        if missing:
            fetched: list[tuple[int, int, bytes]] = conn.execute(
                f"SELECT seq, n_tokens, {column} FROM docs WHERE seq IN (SELECT value FROM json_each(?))",
                (json.dumps(missing),),
            ).fetchall()
            if remember:
                self.put(column, fetched)
            rows.extend(fetched)
        rows.sort(key=lambda r: r[0])
        return rows

    def put(self, column: str, rows: Iterable[tuple[int, int, bytes]]) -> None:
        """Keep ``(seq, n_tokens, blob)`` rows read from the store or just committed to it (write-through: a process
        that writes documents and then searches them finds them here), within the budget."""
        if self.max_bytes <= 0:
            return
        with self._lock:
            for seq, n_tok, blob in rows:
                key = (column, seq)
                if len(blob) <= self.max_bytes and key not in self._entries:
                    self._entries[key] = (n_tok, blob)
                    self._bytes += len(blob)
            while self._bytes > self.max_bytes:
                _, (_, old) = self._entries.popitem(last=False)
                self._bytes -= len(old)

    def discard(self, seqs: Iterable[int]) -> None:
        """Forget the blobs of documents ``seqs`` (deleted)."""
        with self._lock:
            for seq in seqs:
                for column in ("vectors", "residual"):
                    hit = self._entries.pop((column, seq), None)
                    if hit is not None:
                        self._bytes -= len(hit[1])

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0


@dataclass(frozen=True)
class _ScanView:
    """The sealed documents as the small-index scan reads them (see :meth:`VoyagerBackend._sealed_view`): seqs
    ``(m,)`` ascending and row offsets ``(m + 1,)``, then either int8 codes requantised per document ``(T, dim)``
    with their document scales ``(m,)`` (int8 / int14 stores), or float32 rows ``(T, dim)`` (float16 / float32)."""

    seqs: npt.NDArray[np.int64]
    offsets: npt.NDArray[np.int64]
    codes: npt.NDArray[np.int8] | None = None
    doc_scales: npt.NDArray[np.float32] | None = None
    rows: npt.NDArray[np.float32] | None = None


def _doc_scale_codes(
    codes: npt.NDArray[np.int8], scales: npt.NDArray[np.float32], offsets: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float32]]:
    """int8 tokens ``codes * scales`` ``(T, dim)`` requantised with one scale per document (its tokens' largest):
    (codes ``(T, dim)``, document scales ``(m,)``), each component within half a document step of the stored one.

    With one scale per document, a document's best similarity per query token is the largest integer product
    times that scale: :func:`_doc_scale_estimate` skips widening and scaling every product (the scan's main cost
    besides the product itself). Ranks measured against exact MaxSim on the stored int8 vectors, 1,000 documents
    and 100 queries: no document of an exact top 10 ranked below 12th (synthetic set: 11th, as with per-token scales).
    """
    n_docs = offsets.shape[0] - 1
    doc_scales = np.maximum.reduceat(scales, offsets[:-1]).astype(np.float32) if n_docs else np.zeros(0, np.float32)
    out = np.empty(codes.shape, dtype=np.int8)
    step = max(1, (1 << 22) // max(1, codes.shape[1]))  # rows per chunk: bounded float32 temporaries
    per_row = np.repeat(np.where(doc_scales > 0, doc_scales, np.float32(1.0)), np.diff(offsets))
    for r0 in range(0, codes.shape[0], step):
        r1 = min(codes.shape[0], r0 + step)
        ratio = (scales[r0:r1] / per_row[r0:r1]).astype(np.float32)  # <= 1
        np.rint(codes[r0:r1] * ratio[:, None], out=out[r0:r1], casting="unsafe")
    return out, doc_scales


def _doc_scale_estimate(
    q: npt.NDArray[np.float32],
    codes: npt.NDArray[np.int8],
    doc_scales: npt.NDArray[np.float32],
    offsets: npt.NDArray[np.int64],
) -> npt.NDArray[np.float32]:
    """Approximate MaxSim ``(m,)`` of ``q`` ``(n_q, dim)`` against documents requantised by
    :func:`_doc_scale_codes`, the query rounded to int8 per token: each document's best integer product per query
    token times the two scales (torch's int8 product on both cores; the exact float32 product where torch lacks
    it). For ranking only."""
    n_docs = offsets.shape[0] - 1
    q_scales, q_codes = quantise_int8(q)
    best = np.empty((q.shape[0], n_docs), dtype=np.float32)
    torch = _torch_module()
    if torch is False or not hasattr(torch, "_int_mm"):  # pragma: no cover - torch >= 2.4 has it
        rows = np.repeat(doc_scales, np.diff(offsets))
        return maxsim_flat(q, codes.astype(np.float32), offsets, validate=False, row_scales=rows)
    tq = torch.from_numpy(q_codes)
    with _torch_threads(None):
        for d0, d1, r0, r1 in _doc_groups(offsets, max(1, (1 << 22) // q.shape[0])):
            prod = torch._int_mm(tq, torch.from_numpy(codes[r0:r1]).T).numpy()
            best[:, d0:d1] = np.maximum.reduceat(prod, offsets[d0:d1] - r0, axis=1)
    best *= doc_scales[None, :]
    best *= q_scales[:, None]
    estimate: npt.NDArray[np.float32] = best.sum(axis=0, dtype=np.float64).astype(np.float32)
    return estimate


def _doc_centroids(
    arrays: Sequence[npt.NDArray[np.float32]], n_centroids: int = _N_CENTROIDS, iters: int = _CENTROID_ITERS
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float32]]:
    """Per-document centroids of token vectors, quantised to int8: ``(codes (n, C, dim), scales (n, C))``.

    Spherical k-means (``iters`` Lloyd steps) on each document's tokens ``(L_i, dim)``, started from ``C`` tokens
    evenly spaced through the document (no random state); each centroid is the direction of its tokens' mean
    times their mean norm (unit-norm tokens give unit-norm centroids), kept as int8 codes times a float32 scale.
    A document of fewer than ``C`` tokens repeats some (the maximum over them is unchanged). Documents are
    processed in groups of similar length, padded (at most 256 documents and ``_CENTROID_GROUP_ENTRIES`` padded
    components per group): one batched product per step, about 1M 128-d tokens per second on one core.
    """
    n = len(arrays)
    dim = arrays[0].shape[1] if n else 0
    c = n_centroids
    codes = np.zeros((n, c, dim), dtype=np.int8)
    scales = np.zeros((n, c), dtype=_F32)  # little-endian: stored as its bytes
    lens = np.fromiter((a.shape[0] for a in arrays), dtype=np.int64, count=n)
    order = np.argsort(lens, kind="stable")
    # Groups of up to 256 documents and about _CENTROID_GROUP_ENTRIES padded components (64 MiB of float32 for
    # each of the group's copies), so that long documents are processed a few at a time.
    sorted_lens = lens[order].tolist()
    groups: list[tuple[int, int]] = []
    g0 = 0
    while g0 < n:
        g1 = g0 + 1  # lengths ascend: the group's last document sets its width
        while g1 < n and g1 - g0 < 256 and (g1 + 1 - g0) * sorted_lens[g1] * dim <= _CENTROID_GROUP_ENTRIES:
            g1 += 1
        groups.append((g0, g1))
        g0 = g1
    for g0, g1 in groups:
        idx = order[g0:g1]
        b, width = idx.size, int(lens[idx].max())
        x = np.zeros((b, width, dim), dtype=np.float32)
        mask = np.zeros((b, width), dtype=bool)
        for i, j in enumerate(idx.tolist()):
            x[i, : lens[j]] = arrays[j]
            mask[i, : lens[j]] = True
        norms = np.linalg.norm(x, axis=2)
        unit = x / np.maximum(norms, 1e-12)[..., None]
        start = (np.arange(c)[None, :] * lens[idx][:, None]) // c
        cen = unit[np.arange(b)[:, None], start]  # (b, C, dim)
        weights = np.zeros((b, width, c), dtype=np.float32)
        for _ in range(iters):
            assign = np.matmul(unit, cen.transpose(0, 2, 1)).argmax(axis=2)  # (b, width)
            weights = (assign[..., None] == np.arange(c)).astype(np.float32) * mask[..., None]
            total = np.matmul(weights.transpose(0, 2, 1), unit)  # (b, C, dim)
            size = np.linalg.norm(total, axis=2, keepdims=True)
            cen = np.where(size > 1e-12, total / np.maximum(size, 1e-12), cen)  # an empty cluster keeps its centre
        count = weights.sum(axis=1)  # (b, C)
        mean_norm = np.matmul(weights.transpose(0, 2, 1), norms[..., None])[..., 0] / np.maximum(count, 1.0)
        # An empty cluster (a document of fewer than C distinct tokens) stands for its starting token.
        mean_norm = np.where(count > 0, mean_norm, norms[np.arange(b)[:, None], start])
        vec = cen * mean_norm[..., None]
        scale = np.abs(vec).max(axis=2) / 127.0
        scale[scale == 0] = 1.0
        codes[idx] = np.clip(np.rint(vec / scale[..., None]), -127, 127).astype(np.int8)
        scales[idx] = scale
    return codes, scales


class _CentroidTable:
    """In-memory per-document centroids (see :func:`_doc_centroids`), by seq: ``codes (n, C, dim)`` int8 and
    ``scales (n, C)`` float32, seqs ascending (seqs only grow, so writes append). Rows of deleted documents stay
    until the next reload (they are never looked up: candidates are live documents)."""

    def __init__(self, dim: int, n_centroids: int = _N_CENTROIDS) -> None:
        self.dim = dim
        self.n = 0
        self.seqs = np.zeros(0, dtype=np.int64)
        self.codes = np.zeros((0, n_centroids, dim), dtype=np.int8)
        self.scales = np.zeros((0, n_centroids), dtype=np.float32)
        #: The index's ``centroids_epoch`` when the rows were read (see ``VoyagerBackend._read_centroids``).
        self.epoch = "0"

    @property
    def nbytes(self) -> int:
        return int(self.seqs.nbytes + self.codes.nbytes + self.scales.nbytes)

    def append(self, seqs: npt.NDArray[np.int64], codes: npt.NDArray[np.int8], scales: npt.NDArray[np.float32]) -> None:
        """Add rows ``seqs (m,)`` (all above the last seq held), ``codes (m, C, dim)``, ``scales (m, C)``."""
        m = seqs.size
        if m == 0:
            return
        if self.n and seqs[0] <= self.seqs[self.n - 1]:
            raise ValueError("centroid rows must be appended in ascending seq order")
        if self.n + m > self.seqs.size:
            cap = max(self.n + m, 2 * self.seqs.size, 1024)
            grown_seqs = np.zeros(cap, dtype=np.int64)
            grown_codes = np.zeros((cap, *self.codes.shape[1:]), dtype=np.int8)
            grown_scales = np.zeros((cap, self.scales.shape[1]), dtype=np.float32)
            grown_seqs[: self.n], grown_codes[: self.n], grown_scales[: self.n] = (
                self.seqs[: self.n],
                self.codes[: self.n],
                self.scales[: self.n],
            )
            self.seqs, self.codes, self.scales = grown_seqs, grown_codes, grown_scales
        self.seqs[self.n : self.n + m] = seqs
        self.codes[self.n : self.n + m] = codes
        self.scales[self.n : self.n + m] = scales
        self.n += m

    def retain(self, live: npt.NDArray[np.int64]) -> None:
        """Keep the rows of seqs ``live (m,)`` only (frees those of deleted documents)."""
        keep = np.flatnonzero(np.isin(self.seqs[: self.n], live))
        self.seqs, self.codes, self.scales = self.seqs[keep], self.codes[keep], self.scales[keep]
        self.n = keep.size

    def rows(self, seqs: npt.NDArray[np.int64]) -> npt.NDArray[np.int64] | None:
        """Row of each of ``seqs (u,)``, or ``None`` when any of them has no centroids."""
        held = self.seqs[: self.n]
        pos = np.searchsorted(held, seqs)
        if pos.size and (pos.max() >= self.n or not np.array_equal(held[pos], seqs)):
            return None
        return pos

    def similarities(
        self,
        rows: npt.NDArray[np.int64],
        q: npt.NDArray[np.float32],
        q8: tuple[npt.NDArray[np.float32], npt.NDArray[np.int8]] | None = None,
    ) -> npt.NDArray[np.float32]:
        """``(u, n_q)``: for the documents at ``rows (u,)`` and each query token of ``q (n_q, dim)``, the highest dot
        product with one of the document's centroids.

        An int8 product (the query rounded to int8 per token, as in
        :func:`~colbert_adapters.scoring.maxsim_int8_estimate`; within 0.003 of float32 on unit vectors): 0.36 vs
        1.06 ms for 642 384-d documents and 32 query tokens, one core. float32 where torch's int8 product is
        missing. ``q8``: the query's ``quantise_int8``, if the caller has it.
        """
        c = self.codes.shape[1]
        gathered = self.codes[rows].reshape(-1, self.dim)  # (u * C, dim)
        sims: npt.NDArray[np.float32] | None = None
        torch = _torch_module()
        if torch is not False and hasattr(torch, "_int_mm") and gathered.shape[0]:
            q_scales, q_codes = q8 if q8 is not None else quantise_int8(q)
            try:
                with _torch_threads(1):
                    prod = torch._int_mm(torch.from_numpy(gathered), torch.from_numpy(q_codes).T).numpy()
                sims = prod.astype(np.float32)
                sims *= q_scales[None, :]
            except RuntimeError:  # pragma: no cover - a torch build without the CPU int8 product
                sims = None
        if sims is None:
            sims = gathered.astype(np.float32) @ q.T  # (u * C, n_q)
        sims *= self.scales[rows].reshape(-1, 1)
        best = sims[0::c]
        for j in range(1, c):
            np.maximum(best, sims[j::c], out=best)
        return best


def _concat_stacked(parts: Sequence[_Stacked]) -> _Stacked:
    """Stacked documents of ``parts`` one after the other, in new arrays."""
    lens = np.concatenate([np.diff(p[2]) for p in parts])
    offsets = np.zeros(lens.size + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    scales = [p[3] for p in parts]
    return (
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        offsets,
        None if any(s is None for s in scales) else np.concatenate(scales),  # type: ignore[arg-type]
    )


def _take_docs(stacked: _Stacked, sel: npt.NDArray[np.int64]) -> _Stacked:
    """The documents at positions ``sel`` (ascending) of ``stacked``, their rows gathered into new arrays."""
    seqs, flat, offsets, row_scales = stacked
    lens = offsets[sel + 1] - offsets[sel]
    sub_offsets = np.zeros(sel.size + 1, dtype=np.int64)
    np.cumsum(lens, out=sub_offsets[1:])
    # Row indices of the kept documents: each document's start, then +1 along its rows.
    rows = np.repeat(offsets[sel] - sub_offsets[:-1], lens) + np.arange(int(sub_offsets[-1]))
    return seqs[sel], flat[rows], sub_offsets, None if row_scales is None else row_scales[rows]


def _score_stacked(
    q: npt.NDArray[np.float32],
    stacked: _Stacked,
    keep: int | None,
    *,
    estimate_threads: int | None,
    residuals: Callable[[npt.NDArray[np.int64], npt.NDArray[np.int64]], _Planes] | None = None,
) -> dict[int, float]:
    """Exact MaxSim of stacked documents (see :meth:`VoyagerBackend._stack`): ``{seq: score}``.

    With ``keep`` and int8 / int14 rows, only the ``keep`` documents with the best
    :func:`~colbert_adapters.scoring.maxsim_int8_estimate` (the query rounded to int8 as well, ``estimate_threads``
    torch threads) are scored exactly and returned. An int14 store is estimated on its int8 codes alone and the
    documents scored exactly are scored on their codes plus the residuals that ``residuals(seqs, offsets)`` reads
    for them (so a rerank reads the residuals of ``keep`` documents only). The estimate differs from the exact
    scores on the int8 codes by the query's rounding only: on 1,000 documents and 100 queries (MiniLM and the
    synthetic benchmark set) at most 1.1e-2 and 1.6e-2 (the int8 codes themselves are off float32 by up to 4.3e-2
    and 2.0e-2). Among the 128 (or 160) best candidates, the estimate ranked no document of the exact top
    1 / 10 / 50 below 1st / 12th / 53rd (1,000 synthetic and 225 MiniLM queries, int14 store), so the search's
    ``keep = k + max(8, k // 4)`` leaves a margin of 5 or more. A rerank of 160 candidates costs 10.5 instead of
    14.0 ms with the estimate (p50, 1,000 MiniLM documents, same recall). The graph search's rerank does the same
    over its batches (:meth:`VoyagerBackend._rerank`).
    """
    seqs, flat, offsets, row_scales = stacked
    if keep is not None and row_scales is not None and seqs.size > keep:
        estimate = maxsim_int8_estimate(q, flat, row_scales, offsets, num_threads=estimate_threads)
        sel = np.sort(np.argsort(-estimate, kind="stable")[:keep])
        stacked = _take_docs(stacked, sel)
    return _exact_stacked(q, stacked, residuals)


def _exact_stacked(
    q: npt.NDArray[np.float32],
    stacked: _Stacked,
    residuals: Callable[[npt.NDArray[np.int64], npt.NDArray[np.int64]], _Planes] | None,
) -> dict[int, float]:
    """Exact MaxSim of every stacked document: ``{seq: score}`` (int14: codes plus the residuals that
    ``residuals(seqs, offsets)`` reads; otherwise the stored rows, int8 ones with their row scales)."""
    seqs, flat, offsets, row_scales = stacked
    if residuals is not None:
        assert row_scales is not None
        exact14 = _maxsim_int14(q, flat, row_scales, residuals(seqs, offsets), offsets)
        return dict(zip(seqs.tolist(), exact14.tolist(), strict=True))
    # One torch thread: the product alternates with Voyager's search threads, which spinning OpenMP workers
    # would slow down (measured p50 13.7 vs 19.9 ms at 10k docs with two threads on 2 cores).
    exact = maxsim_flat(q, flat, offsets, validate=False, row_scales=row_scales, num_threads=1)
    return dict(zip(seqs.tolist(), exact.tolist(), strict=True))


def _int8_record(dim: int) -> np.dtype[Any]:
    """One stored int8 token: its float32 scale, then its ``dim`` int8 codes (``4 + dim`` bytes, little-endian)."""
    return np.dtype([("scale", _F32), ("codes", np.int8, (dim,))])


def _residual_widths(dim: int) -> tuple[int, int]:
    """Bytes per token of an int14 residual's two planes: ``(nibbles, two-bit)`` = ``(d' / 2, d' / 4)``, where
    ``d'`` is ``dim`` rounded up to a multiple of 4."""
    padded = -(-dim // 4) * 4
    return padded // 2, padded // 4


def _quantise_int14(arr: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int8], bytes]:
    """int8 codes of ``arr`` ``(n, dim)`` plus each component's rounded remainder: (scales ``(n,)``, codes
    ``(n, dim)``, residual blob).

    The remainder of component ``i`` after its code, in units of the row scale (within +-0.5), is rounded to a
    multiple of ``1 / (2 L)`` (``L`` = ``_RESIDUAL_LEVELS`` = 31) and kept as the 6-bit value ``v_i = L + that
    multiple`` (0 .. 62). The blob holds two planes, token-major: ``n * d' / 2`` bytes of low nibbles (byte ``i``
    of a token: ``v_{2i} & 15`` in its low half, ``v_{2i+1} & 15`` in its high half), then ``n * d' / 4`` bytes of
    high bit pairs (byte ``i``: ``v_{4i+j} >> 4`` in bits ``2 j, 2 j + 1``), ``d'`` being ``dim`` rounded up to a
    multiple of 4 (padding values 0). A token then decodes to ``(codes + (v - L) / (2 L)) * scale``, within
    ``scale / (4 L)`` = ``max|x| / 15,748`` of ``arr`` per component (:func:`_dequantise_int14`).
    """
    n, dim = arr.shape
    scales, codes = quantise_int8(arr)
    safe = np.where(scales > 0, scales, np.float32(1.0))
    half, _ = _residual_widths(dim)
    values = np.zeros((n, 2 * half), dtype=np.uint8)
    # Codes are the rounded quotients (clipping at +-127 never bites: the largest quotient is 127), so each
    # remainder is within +-0.5 and each value within 0 .. 2 L.
    steps = np.rint((arr / safe[:, None] - codes) * (2 * _RESIDUAL_LEVELS))
    values[:, :dim] = np.clip(steps, -_RESIDUAL_LEVELS, _RESIDUAL_LEVELS) + _RESIDUAL_LEVELS
    nibbles = (values[:, 0::2] & 15) | ((values[:, 1::2] & 15) << 4)
    high = values >> 4
    two = high[:, 0::4] | (high[:, 1::4] << 2) | (high[:, 2::4] << 4) | (high[:, 3::4] << 6)
    return scales, codes, nibbles.tobytes() + two.tobytes()


def _residual_planes(
    blob: bytes | bytearray, n_tokens: int, dim: int
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """The nibble ``(n_tokens, d' / 2)`` and two-bit ``(n_tokens, d' / 4)`` planes of one residual blob (views)."""
    half, quarter = _residual_widths(dim)
    buf = np.frombuffer(blob, dtype=np.uint8)
    if buf.size != n_tokens * (half + quarter):
        raise CollectionConfigError(
            f"a stored residual holds {buf.size} bytes where {n_tokens} tokens need {n_tokens * (half + quarter)}; "
            "the index is damaged"
        )
    return buf[: n_tokens * half].reshape(n_tokens, half), buf[n_tokens * half :].reshape(n_tokens, quarter)


def _residual_values(nibbles: npt.NDArray[np.uint8], two: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """The 6-bit residual values ``(n, d')`` (0 .. 62, component order) of residual planes ``(n, d' / 2)`` and
    ``(n, d' / 4)``.

    Whole-array integer steps instead of per-component ones (NumPy cannot fuse them, so fewer passes is faster):
    each nibble byte widened to 16 bits and spread to ``0x0L0H`` reads, as bytes, as its two components in order;
    each bit-pair byte widened to 32 bits and spread to one pair per byte likewise.
    """
    n = nibbles.shape[0]
    low = nibbles.astype(np.uint16)
    low |= low << 4
    low &= 0x0F0F
    values = low.view(np.uint8).reshape(n, -1)  # little-endian: the byte of component 2i comes first
    high = two.astype(np.uint32)
    high |= (high << 6) | (high << 12) | (high << 18)
    high &= 0x03030303
    high <<= 4
    values += high.view(np.uint8).reshape(n, -1)
    return values


def _dequantise_int14(
    codes: npt.NDArray[np.int8],
    scales: npt.NDArray[np.float32],
    nibbles: npt.NDArray[np.uint8],
    two: npt.NDArray[np.uint8],
) -> npt.NDArray[np.float32]:
    """float32 rows ``(n, dim)`` of int14-stored tokens (see :func:`_quantise_int14`) from their codes ``(n, dim)``,
    scales ``(n,)`` and residual planes ``(n, d' / 2)``, ``(n, d' / 4)``."""
    dim = codes.shape[1]
    units = codes.astype(np.int16)  # in residual steps: codes * 2 L + v - L, within +-7,905
    units *= 2 * _RESIDUAL_LEVELS
    units += _residual_values(nibbles, two)[:, :dim]
    units -= _RESIDUAL_LEVELS
    out = units.astype(np.float32)
    out *= (scales / np.float32(2 * _RESIDUAL_LEVELS))[:, None]
    return out


def _split_query(q: npt.NDArray[np.float32], parts: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int8]]:
    """``q`` ``(n_q, dim)`` as int8 parts: (scales ``(n_q,)``, parts ``(parts * n_q, dim)``).

    Row ``i`` of ``q`` is ``scales[i] * sum_p part_p[i] / 254 ** p`` within ``scales[i] / (2 * 254 ** (parts - 1))``
    per component, ``part_p`` being rows ``p * n_q .. (p + 1) * n_q`` (``scales[i] = max|q_i| / 127``; each part
    is the previous one's remainder times 254, within +-127).
    """
    scales = (np.abs(q).max(axis=1) / 127.0).astype(np.float32)
    safe = np.where(scales > 0, scales, np.float32(1.0)).astype(np.float64)
    rest = q.astype(np.float64) / safe[:, None]
    out = np.empty((parts * q.shape[0], q.shape[1]), dtype=np.int8)
    for p in range(parts):
        part = np.clip(np.rint(rest), -127, 127)
        out[p * q.shape[0] : (p + 1) * q.shape[0]] = part
        rest = (rest - part) * 254.0
    return scales, out


def _maxsim_int14(
    q: npt.NDArray[np.float32],
    codes: npt.NDArray[np.int8],
    scales: npt.NDArray[np.float32],
    planes: _Planes,
    offsets: npt.NDArray[np.int64],
    *,
    decode: bool = False,
) -> npt.NDArray[np.float32]:
    """MaxSim of ``q`` ``(n_q, dim)`` against int14-stored documents (rows ``offsets``): ``(n_docs,)`` float32.

    A token stands for ``(codes + (v - L) / (2 L)) * scale`` (:func:`_quantise_int14`). With ``decode``, below
    ``_INT14_WINDOW_MIN_DIM`` dimensions, or without torch's int8 product, the tokens are decoded to float32 and
    scored by :func:`~colbert_adapters.scoring.maxsim_flat` on one thread, documents in groups of about
    ``_INT14_ROWS`` rows. Otherwise, in such groups (torch on one thread, see :func:`_score_stacked`):

    1. ``q . codes`` for every token as an int8 product (``torch._int_mm``) with the query as two int8 parts
       (:func:`_split_query`);
    2. a token's similarity lies within ``scale * reach_i`` of that product (the query's remainder: at most
       ``dim / 4`` code units; the residual: at most ``|q_i|_1 / 2``), so a token whose upper bound falls short of
       the best lower bound in its document, for every query token, cannot be a maximum. Only the other tokens (a
       quarter to a third of them on MiniLM and the synthetic benchmark set) are decoded to float32 and multiplied
       by the float32 query;
    3. each document's maximum is taken over its remaining tokens: exactly its maximum over all of them, so the
       scores equal the decoded path's (measured: identical on 100 MiniLM queries x 18 documents, 1.25 vs 2.05 ms
       per batch at 384-d; at 128-d decoding everything stays faster, 0.67 vs 0.80 ms).
    """
    n_q, dim = q.shape
    n_docs = offsets.shape[0] - 1
    torch = _torch_module()
    if decode or dim < _INT14_WINDOW_MIN_DIM or torch is False or not hasattr(torch, "_int_mm"):
        exact = np.empty(n_docs, dtype=np.float32)
        for d0, d1, r0, r1 in _doc_groups(offsets, _INT14_ROWS):
            decoded = _dequantise_int14(codes[r0:r1], scales[r0:r1], planes[0][r0:r1], planes[1][r0:r1])
            exact[d0:d1] = maxsim_flat(q, decoded, offsets[d0 : d1 + 1] - r0, validate=False, num_threads=1)
        return exact
    q_scales, parts = _split_query(q, 2)
    safe = np.where(q_scales > 0, q_scales, np.float32(1.0))
    # How far a token's final similarity can lie from its two-part product with the codes, per query token, in
    # units of the query token's scale times the row scale: the query's remainder after two parts (1 / 508 of a
    # query unit per component against codes within +-127: dim / 4) plus the residual (|q_i| / scale_i, in query
    # units, times half a code step), with float32 headroom.
    reach = (np.abs(q).sum(axis=1) / safe / 2 + dim / 4) * 1.001 + 1e-3
    t_coarse = torch.from_numpy(parts)
    tq = torch.from_numpy(np.ascontiguousarray(q, dtype=np.float32))
    inv254 = np.float32(1 / 254)
    best = np.empty((n_q, n_docs), dtype=np.float32)
    if not codes.flags.writeable:
        codes = np.array(codes)  # torch wraps writable memory only
    try:
        with _torch_threads(1):
            for d0, d1, r0, r1 in _doc_groups(offsets, _INT14_ROWS):
                local = offsets[d0:d1] - r0
                row_scales = scales[r0:r1]
                prod = torch._int_mm(t_coarse, torch.from_numpy(codes[r0:r1]).T).numpy()
                coarse = prod[:n_q].astype(np.float32)
                coarse += prod[n_q:].astype(np.float32) * inv254
                coarse *= row_scales[None, :]  # ~ q . codes * scale, in units of the query token's scale
                slack = reach[:, None] * row_scales[None, :]
                floor = np.maximum.reduceat(coarse - slack, local, axis=1)
                coarse += slack
                maybe = (coarse >= np.repeat(floor, np.diff(offsets[d0 : d1 + 1]), axis=1)).any(axis=0)
                rows = np.flatnonzero(maybe) + r0
                decoded = _dequantise_int14(codes[rows], scales[rows], planes[0][rows], planes[1][rows])
                fine = torch.mm(tq, torch.from_numpy(decoded).T).numpy()
                kept = np.zeros(d1 - d0 + 1, dtype=np.int64)
                np.cumsum(np.add.reduceat(maybe, local), out=kept[1:])
                best[:, d0:d1] = np.maximum.reduceat(fine, kept[:-1], axis=1)
    except RuntimeError:  # pragma: no cover - a torch build without the CPU int8 product
        return _maxsim_int14(q, codes, scales, planes, offsets, decode=True)
    scores: npt.NDArray[np.float32] = best.sum(axis=0, dtype=np.float64).astype(np.float32)
    return scores


def _encode_vectors(
    arr: npt.NDArray[np.float32], vector_dtype: str
) -> tuple[bytes, bytes | None, npt.NDArray[np.float32]]:
    """The ``vectors`` blob of one document ``(n, dim)``, its ``residual`` blob (int14) or ``None``, and the float32
    vectors they decode to."""
    if vector_dtype == "float16":
        half = arr.astype(_F16)
        return half.tobytes(), None, half.astype(np.float32)
    if vector_dtype == "float32":
        exact = np.ascontiguousarray(arr, dtype=_F32)
        return exact.tobytes(), None, exact.astype(np.float32)
    residual: bytes | None = None
    if vector_dtype == "int14":
        scales, codes, residual = _quantise_int14(arr)
        decoded = _dequantise_int14(codes, scales, *_residual_planes(residual, arr.shape[0], arr.shape[1]))
    else:
        scales, codes = quantise_int8(arr)
        decoded = codes.astype(np.float32) * scales[:, None]
    rec = np.empty(arr.shape[0], dtype=_int8_record(arr.shape[1]))
    rec["scale"] = scales
    rec["codes"] = codes
    return rec.tobytes(), residual, decoded


def _blob_parts(
    blob: bytes | bytearray | memoryview, dim: int, vector_dtype: str
) -> tuple[npt.NDArray[Any], npt.NDArray[np.float32] | None]:
    """Views of ``vectors`` blobs (one, or several joined): (float16 / float32 rows ``(n, dim)`` and ``None``, or
    int8 codes ``(n, dim)`` and their row scales ``(n,)`` for int8 / int14; the int8 views are strided)."""
    if vector_dtype in ("float16", "float32"):
        return np.frombuffer(blob, dtype=_F16 if vector_dtype == "float16" else _F32).reshape(-1, dim), None
    rec = np.frombuffer(blob, dtype=_int8_record(dim))
    return rec["codes"], rec["scale"]


def _decode_vectors(
    blob: bytes, n_tokens: int, dim: int, vector_dtype: str, residual: bytes | None = None
) -> npt.NDArray[np.float32]:
    """The float32 ``(n_tokens, dim)`` vectors a ``vectors`` blob (and, for int14, its ``residual`` blob) stands
    for."""
    rows, scales = _blob_parts(blob, dim, vector_dtype)
    if rows.shape[0] != n_tokens:
        raise CollectionConfigError(
            f"a stored document has {rows.shape[0]} token vectors where {n_tokens} were recorded; the index is damaged"
        )
    if vector_dtype == "int14":
        if residual is None:
            raise CollectionConfigError("a stored int14 document has no residual; the index is damaged")
        assert scales is not None
        return _dequantise_int14(rows, scales, *_residual_planes(residual, n_tokens, dim))
    out = rows.astype(np.float32)
    if scales is not None:
        out *= scales[:, None]
    return out


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidInputError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _json_text(meta: Mapping[str, Any]) -> str:
    return json.dumps(meta, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _is_temp(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


def _rollback(conn: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):
        if conn.in_transaction:
            conn.execute("ROLLBACK")
