"""The state every Voyager room works on: one :class:`IndexState` per open index, and how it is (re)loaded.

The facade (:class:`~colbert_adapters.backends.voyager.VoyagerBackend`) owns one :class:`IndexState` and passes
it to the functions of the other rooms (``_layout``, ``_writes``, ``_segments``, ``_search``); none of them keeps
state of its own. Locking: ``rw`` is shared by readers of the in-memory state and taken exclusively to apply a
commit; ``write_mutex`` serialises writers (held across a whole write); ``cache_lock`` guards the lazily built
search caches.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..._codecs import F32, decode_vectors
from ...errors import ColBERTError, CollectionConfigError, IndexCorruptedError
from .._files import FileWriteLock, RWLock, file_crc32
from ._centroids import CentroidTable, read_centroids
from ._compressed import CompressedSegment, is_compressed_file, load_codec
from ._db import DB, SEGMENT_FILE, Database, check_blob, columns, rollback
from ._docstore import BlobCache
from ._sqlfilter import metadata_indexes

__all__ = [
    "IndexState",
    "MaintenanceEvent",
    "MutableView",
    "SearchTrace",
    "Segment",
    "Tuning",
    "load_segment",
    "load_state",
    "refresh_if_stale",
    "release",
    "segment_path",
]

logger = logging.getLogger("colbert_adapters.backends.voyager")

#: (seqs ``(m,)``, flat float32 tokens ``(T, dim)``, offsets ``(m + 1,)``) of the mutable segment.
MutableView = tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.int64]]


@dataclass
class SearchTrace:
    """What one search did, stage by stage (``VoyagerBackend.explain``): where the time and the approximation go.

    Attributes:
        path: ``"empty"`` (nothing to search), ``"scan"`` (a small index: every sealed document ranked by an int8
            estimate, the best scored exactly) or ``"graph"`` (HNSW candidates, then the exact stage).
        mutable: documents of the mutable segment scored exactly (every one, whatever the path).
        scanned: sealed documents the scan ranked by its estimate (``"scan"`` only).
        candidates: candidate documents the graphs returned (``"graph"`` only), before the filter.
        centroids: whether the candidates' approximate scores were completed by their documents' centroids.
        approximate: ``{id: approximate score}`` of the candidates that passed the filter (``"graph"`` only).
        batches: candidates read per batch by the exact stage, in order.
        estimated: documents per int8 estimate of MaxSim (rerank batches and the exhaustive fallback).
        exact: sealed documents per exact MaxSim scoring, in order.
        fallback: documents scored exhaustively (a selective filter, too few candidates, a graph that could not
            be searched).
    """

    path: str = "empty"
    mutable: int = 0
    scanned: int = 0
    candidates: int = 0
    centroids: bool = False
    approximate: dict[str, float] = field(default_factory=dict)
    batches: list[int] = field(default_factory=list)
    estimated: list[int] = field(default_factory=list)
    exact: list[int] = field(default_factory=list)
    fallback: int = 0


@dataclass(frozen=True, slots=True)
class MaintenanceEvent:
    """One piece of segment maintenance (``VoyagerBackend.stats()["maintenance"]``).

    Attributes:
        kind: ``"seal"`` (the mutable segment became a graph), ``"fold"`` (smaller segments' tokens were added to
            a copy of a larger segment's graph) or ``"rebuild"`` (a new graph over the live tokens of segments).
        segment: the file written.
        base_tokens: tokens already in the graph that was extended (``"fold"``; 0 otherwise).
        inserted_tokens: tokens inserted into the graph.
        seconds: wall-clock time of the graph work and the commit.
    """

    kind: str
    segment: str
    base_tokens: int
    inserted_tokens: int
    seconds: float


@dataclass(slots=True)
class Segment:
    """A sealed HNSW segment: its graph (``index``, a ``voyager.Index``) over the tokens of some documents."""

    id: int
    file: str
    index: Any
    n_tokens: int
    n_live_tokens: int
    n_docs: int
    #: ``(graph_dim, dim)`` float32 rows the graph's vectors are projected on, or ``None`` (full vectors).
    proj: npt.NDArray[np.float32] | None = None
    #: CRC-32 of the file (``None``: written before checksums, not verified).
    crc: int | None = None


@dataclass(slots=True)
class Tuning:
    """Search and maintenance settings of an open index (not stored in it; see ``VoyagerBackend``'s arguments)."""

    ef_search: int
    k_token: int
    n_rerank: int
    exact_below_tokens: int
    mutable_max_tokens: int
    max_segments: int
    compact_deleted_ratio: float
    num_threads: int
    #: Smallest default graph_dim of a new index (see ``_layout.default_graph_dim``).
    graph_dim_min: int
    #: Smaller segments are folded into a larger one once they hold 1/fold_ratio of its tokens.
    fold_ratio: int
    #: Segments with more tokens than this are built with ``ef_construction_large`` (when the index has one).
    large_segment_tokens: int
    #: Compressed indexes (``_plaid``): centroids probed per query token, candidates scored by centroid
    #: interaction, candidates decompressed and scored exactly; tokens collected before the codec is trained.
    n_probe: int = 8
    n_interact: int = 256
    n_full: int = 64
    train_tokens: int = 65_536


@dataclass(eq=False)
class IndexState:
    """Everything an open Voyager index holds in memory; the rooms read and update it under its locks.

    Fields below ``settings`` mirror the index's ``meta`` table (fixed by the files, see ``_layout``); those below
    ``contents`` mirror the committed documents and segments.
    """

    root: Path
    read_only: bool
    voyager: Any  # the voyager module
    tuning: Tuning
    blobs: BlobCache
    db: Database
    flock: FileWriteLock | None = None
    ephemeral: bool = False
    closed: bool = True
    rw: RWLock = field(default_factory=RWLock)
    write_mutex: threading.Lock = field(default_factory=threading.Lock)
    cache_lock: threading.Lock = field(default_factory=threading.Lock)
    # settings
    dim: int | None = None
    model_id: str | None = None
    vector_dtype: str = "int14"
    #: The stored columns a document's vectors decode from (the residual column exists since int14).
    vector_cols: str = "vectors, residual"
    #: The checksum columns of the vectors and residual blobs, or ``"NULL, NULL"`` for an index without them
    #: (opened read-only before a writable open added them).
    crc_cols: str = "vcrc, rcrc"
    format_version: int = 2
    M: int = 16
    ef_construction: int = 40
    ef_construction_large: int | None = None
    storage: str = "float8"
    graph_dim: int | None = None
    #: A new index without a dimension yet: the default graph_dim is set with the first upsert.
    graph_dim_pending: bool = False
    #: ``"2bit"`` / ``"4bit"``: the compressed store (``_compressed``); ``None``: token graphs.
    compression: str | None = None
    #: The compressed store's codec (a ``_residual.ResidualCodec``, ``None`` until trained) and its meta row.
    codec: Any = None
    codec_meta: str | None = None
    #: Mean reconstruction error of each seal's tokens over the codec's training error (drift), latest last.
    seal_errors: deque[float] = field(default_factory=lambda: deque(maxlen=64))
    # contents
    segments: dict[int, Segment] = field(default_factory=dict)
    #: label -> seq of the document owning that token (-1: free or dead).
    label_seq: npt.NDArray[np.int64] = field(default_factory=lambda: np.full(0, -1, dtype=np.int64))
    next_label: int = 0
    next_segment: int = 1
    generation: int = 0
    #: The mutable segment: seq -> (first label, float32 vectors as stored).
    mutable: dict[int, tuple[int, npt.NDArray[np.float32]]] = field(default_factory=dict)
    mutable_tokens: int = 0
    n_docs: int = 0
    centroids: CentroidTable | None = None
    #: SQLite's data_version when the state was last loaded (a reader reloads when it changes).
    data_version: int | None = None
    # search caches, rebuilt lazily after a write
    mutable_cache: MutableView | None = None
    #: All sealed documents as the small-index scan reads them (a ``_search.ScanView``).
    sealed_cache: Any = None
    filter_cache: dict[str, npt.NDArray[np.int64]] = field(default_factory=dict)
    #: Metadata keys with an index (``_sqlfilter``): filters on them read through it.
    metadata_indexes: frozenset[str] = frozenset()
    #: The latest segment maintenance done by this instance, oldest first.
    maintenance: deque[MaintenanceEvent] = field(default_factory=lambda: deque(maxlen=256))
    #: Held by whoever merges segments (the background worker, ``compact``, ``clear``): one merge at a time.
    maintenance_lock: threading.Lock = field(default_factory=threading.Lock)
    #: The background merge worker of a writer (``_background.Worker``), or ``None``: merges run inline.
    worker: Any = None
    #: Held by whoever seals the mutable segment off the write mutex (the sealer, ``compact``, ``clear``); taken
    #: before ``maintenance_lock`` and ``write_mutex``.
    seal_lock: threading.Lock = field(default_factory=threading.Lock)
    #: The background sealer of a writer (``_background.Worker``), or ``None``: the write that fills the mutable
    #: segment seals it.
    sealer: Any = None

    @property
    def conn(self) -> sqlite3.Connection:
        """The main SQLite connection."""
        return self.db.conn

    def crc_column(self, column: str) -> str:
        """The checksum column of the ``vectors`` or ``residual`` blobs (``"NULL"`` where the index has none)."""
        vectors, residual = (c.strip() for c in self.crc_cols.split(","))
        return vectors if column == "vectors" else residual

    def invalidate(self) -> None:
        """Forget the search caches derived from the documents (after a committed change)."""
        self.mutable_cache = None
        self.sealed_cache = None
        self.filter_cache = {}

    def check_open(self) -> None:
        """Raise :class:`ColBERTError` when the index is closed."""
        if self.closed:
            raise ColBERTError(f"this VoyagerBackend ({self.root}) is closed; open the directory again")

    def check_writable(self) -> None:
        """Raise :class:`ColBERTError` when the index is closed or read-only."""
        self.check_open()
        if self.read_only:
            raise ColBERTError(
                f"this VoyagerBackend ({self.root}) is read-only; open it with read_only=False to write "
                "(one writer process at a time)"
            )


def load_state(st: IndexState) -> None:
    """(Re)build the in-memory contents from SQLite: segments, label map, mutable segment, centroids."""
    conn = st.conn
    conn.execute("BEGIN")  # one read snapshot for all the queries below
    try:
        _load_state_in(st, conn)
    finally:
        rollback(conn)


def _load_state_in(st: IndexState, conn: sqlite3.Connection) -> None:
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    seg_crc = "crc" if "crc" in columns(conn, "segments") else "NULL"
    seg_rows = conn.execute(
        f"SELECT id, file, n_tokens, n_live_tokens, n_docs, {seg_crc} FROM segments ORDER BY id"
    ).fetchall()
    st.crc_cols = "vcrc, rcrc" if "vcrc" in columns(conn, "docs") else "NULL, NULL"
    st.metadata_indexes = frozenset(metadata_indexes(conn))
    dim = int(meta["dim"]) if meta.get("dim") else st.dim
    projections: dict[int, npt.NDArray[np.float32] | None] = {}
    files = {r[0]: r[1] for r in seg_rows}
    known = {sid: seg for sid, seg in st.segments.items() if files.get(sid) == seg.file}
    if (
        len(known) < len(seg_rows)
        and conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'projections'").fetchone()
    ):
        # Only segments not loaded yet: a loaded segment keeps its graph and projection (files are immutable).
        for sid, blob in conn.execute("SELECT segment, matrix FROM projections"):
            if sid not in known:
                projections[sid] = np.frombuffer(blob, dtype=F32).reshape(-1, dim or 1).copy()
    segments: dict[int, Segment] = {}
    for sid, file, n_tok, n_live, n_docs, crc in seg_rows:
        seg_path = segment_path(st.root, sid, file)
        old = known.get(sid)
        if old is not None:
            index = old.index
            projections[sid] = old.proj
        else:
            index = load_segment(st, seg_path, crc)
        segments[sid] = Segment(sid, file, index, n_tok, n_live, n_docs, projections.get(sid), crc)
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
    for seq, first, n_tok, blob, residual, vcrc, rcrc in conn.execute(
        f"SELECT seq, first_label, n_tokens, {st.vector_cols}, {st.crc_cols} FROM docs "
        "WHERE segment IS NULL ORDER BY seq"
    ):
        check_blob(blob, vcrc, f"the stored vectors of document seq {seq} in {st.root}")
        check_blob(residual, rcrc, f"the stored residuals of document seq {seq} in {st.root}")
        mutable[seq] = (first, decode_vectors(blob, n_tok, dim or 0, st.vector_dtype, residual))
        mutable_tokens += n_tok
    st.segments = segments
    st.label_seq = label_seq
    st.next_label = next_label
    st.next_segment = int(meta["next_segment"])
    st.generation = int(meta["generation"])
    st.mutable = mutable
    st.mutable_tokens = mutable_tokens
    st.invalidate()
    st.blobs.clear()
    st.centroids = read_centroids(conn, st.centroids, dim, meta.get("centroids_epoch", "0"), len(rows), st.root)
    st.n_docs = len(rows)
    st.dim = dim
    st.compression = meta.get("compression") or None
    if meta.get("codec") != st.codec_meta:
        st.codec = load_codec(st.root, meta["codec"]) if meta.get("codec") else None
        st.codec_meta = meta.get("codec")
    if meta.get("model_id"):
        st.model_id = meta["model_id"]
    st.data_version = conn.execute("PRAGMA data_version").fetchone()[0]


def load_segment(st: IndexState, path: Path, crc: int | None) -> Any:
    """Load a segment's graph, after checking the file against its recorded checksum (a damaged graph must never
    reach the HNSW library, which may crash on it).

    Raises:
        IndexCorruptedError: the file is missing, does not match its checksum, or cannot be loaded.
    """
    if is_compressed_file(path.name):  # memory-mapped: O(1); verify() checks its checksum
        return CompressedSegment(path)
    try:
        if crc is not None and file_crc32(path) != crc:
            raise IndexCorruptedError(
                f"segment {path} of {st.root} does not match its checksum: the file is damaged. Restore the index "
                "from a backup (VoyagerBackend.verify() lists every damaged part)"
            )
        return st.voyager.Index.load(str(path))
    except (OSError, RuntimeError, ValueError) as err:
        raise IndexCorruptedError(f"segment {path} of {st.root} cannot be loaded: {err}") from err


def segment_path(root: Path, sid: int, file: object) -> Path:
    """The path of segment ``sid``'s file ``file`` (as the database records it) inside index ``root``.

    Raises:
        IndexCorruptedError: ``file`` is not a segment file name (``seg-NNNNNN.voyager``): a path elsewhere
            (``../x``, an absolute path) is damage or tampering, never a file to open or delete.
    """
    if not isinstance(file, str) or not SEGMENT_FILE.fullmatch(file):
        raise IndexCorruptedError(
            f"{root / DB} names segment {sid}'s file {file!r}, which is not a segment file name "
            "(seg-NNNNNN.voyager or .plaid); the database is damaged or was edited. Restore the index from a backup"
        )
    return root / file


def refresh_if_stale(st: IndexState) -> None:
    """Read-only mode: reload the state when another process committed since the last look."""
    if not st.read_only or st.closed:
        return
    with st.rw.write():
        if st.closed:
            return
        version = st.conn.execute("PRAGMA data_version").fetchone()[0]
        if version == st.data_version:
            return
        for attempt in range(5):
            try:
                load_state(st)
                return
            except CollectionConfigError:  # a segment was merged away between two reads: retry
                if attempt == 4:
                    raise
                time.sleep(0.05 * (attempt + 1))


def release(st: IndexState) -> None:
    """Close the connections, drop the graphs and caches, release the write lock; delete a temporary index."""
    st.db.close()
    st.segments = {}
    st.mutable = {}
    st.invalidate()
    st.blobs.clear()
    if st.flock is not None:
        st.flock.release()
        st.flock = None
    if st.ephemeral:
        shutil.rmtree(st.root, ignore_errors=True)
