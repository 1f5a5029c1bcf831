"""Segment life: sealing the mutable segment into an HNSW graph, folding and rebuilding segments.

Writes are segmented (a log-structured design): an upsert commits its rows to SQLite in one transaction and puts
the documents in a small in-memory *mutable segment* that is searched exactly. When the mutable segment reaches
``mutable_max_tokens`` tokens it is *sealed* (:func:`seal`): its vectors are built into a new HNSW file, and one
SQLite transaction assigns the documents to it. When there are more than ``max_segments`` sealed segments, the
smaller ones are *folded* into a larger one (:func:`maintain`): their tokens are added to a copy of its graph
(HNSW inserts are incremental) and its file is rewritten. The target is the largest segment that the others are
not negligible against (they hold 1/``fold_ratio`` of its tokens), so a token is inserted into a graph a number of
times that grows only logarithmically with the number of writes, and a trickle of small writes does not rewrite a
large file each time. A segment is rebuilt without its dead tokens once ``compact_deleted_ratio`` of them belong to
deleted or replaced documents. Nothing ever rebuilds the whole index for a small write.

A segment file is written under a temporary name, fsync'ed and renamed into place before the transaction that
references it commits; files no committed state references are removed at the next writable open.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import sqlite3
import time
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ..._codecs import F32, decode_vectors
from .._files import file_crc32, fsync_dir
from . import _cstore
from ._compressed import remove_dir
from ._db import check_blob, rollback
from ._layout import PROJECTED_FORMAT_VERSION, remove_orphans, segment_name, write_manifest
from ._state import IndexState, MaintenanceEvent, Segment

__all__ = [
    "STORAGE_TYPES",
    "MergeBuild",
    "build_segment",
    "commit_merge",
    "compact",
    "maintain",
    "merge",
    "plan_merges",
    "prepare_merge",
    "seal",
    "target_graph_dim",
]

logger = logging.getLogger("colbert_adapters.backends.voyager")

#: How a segment's graph stores its vectors (``storage_data_type``).
STORAGE_TYPES = ("float32", "float8", "e4m3")
#: Tokens sampled to fit a segment's projection.
PROJECTION_SAMPLE = 100_000


def maintain(st: IndexState) -> None:
    """Automatic maintenance after a write (write mutex held): seal the mutable segment when it is full, then fold
    or rebuild segments as :func:`plan_merges` says; on the background workers when the index has them, else
    here."""
    threshold = _cstore.seal_threshold(st)
    if st.worker is not None:
        if st.mutable_tokens >= threshold:
            st.sealer.request()
        if plan_merges(st):
            st.worker.request()
        return
    if st.mutable_tokens >= threshold:
        try:
            seal(st)
        except OSError as err:  # e.g. a full disk: the write itself committed; the next one seals again
            logger.warning("could not seal the mutable segment of %s (%s); the next write retries", st.root, err)
            return
    for seg_ids, into in plan_merges(st, all_rebuilds=True):
        if all(sid in st.segments for sid in seg_ids):
            merge(st, seg_ids, into=into)


def plan_merges(st: IndexState, *, all_rebuilds: bool = False) -> list[tuple[list[int], int | None]]:
    """The merges the segments need now, in order: ``(segment ids, the id whose graph is extended or None)``.

    A segment is rebuilt without its dead tokens once ``compact_deleted_ratio`` of them belong to deleted or
    replaced documents (the first such, or all with ``all_rebuilds``). When there are more than ``max_segments``,
    the smaller ones are folded into the largest segment that they are not negligible against: its graph is
    extended, not rebuilt (HNSW work only for the folded tokens), and a big segment's file is rewritten only once
    1/``fold_ratio`` of its size has accumulated beside it.
    """
    jobs: list[tuple[list[int], int | None]] = []
    for seg in st.segments.values():
        if (
            seg.n_live_tokens == 0
            or (seg.n_tokens - seg.n_live_tokens) >= st.tuning.compact_deleted_ratio * seg.n_tokens
        ):
            jobs.append(([seg.id], None))
            if not all_rebuilds:
                return jobs
    if len(st.segments) > st.tuning.max_segments:
        group = sorted(st.segments.values(), key=lambda s: (-s.n_live_tokens, s.id))
        while (
            len(group) > 2 and st.tuning.fold_ratio * sum(s.n_live_tokens for s in group[1:]) < group[0].n_live_tokens
        ):
            group = group[1:]
        base = group[0]
        n_new = sum(s.n_live_tokens for s in group[1:])
        jobs.append(([s.id for s in group], base.id if extendable(st, base, n_new) else None))
    return jobs


def allocate_segment_id(st: IndexState) -> int:
    """A new segment id (ids are never reused; the seal and a background fold may build at the same time)."""
    with st.cache_lock:
        sid = st.next_segment
        st.next_segment = sid + 1
    return sid


def storage_type(st: IndexState) -> Any:
    voyager = st.voyager
    return {
        "float32": voyager.StorageDataType.Float32,
        "float8": voyager.StorageDataType.Float8,
        "e4m3": voyager.StorageDataType.E4M3,
    }[st.storage]


def beam(st: IndexState, n_tokens: int) -> int:
    """HNSW construction beam of a segment that will hold ``n_tokens`` tokens."""
    if st.ef_construction_large is not None and n_tokens > st.tuning.large_segment_tokens:
        return st.ef_construction_large
    return st.ef_construction


def extendable(st: IndexState, seg: Segment, n_new: int) -> bool:
    """Whether ``n_new`` tokens may be added to ``seg``'s graph: it was built with the settings that a graph
    of the resulting size gets (a segment growing past ``large_segment_tokens`` is rebuilt once with the
    larger beam)."""
    index = seg.index
    if st.compression is not None:
        return False  # a compressed merge copies codes: always a rebuild
    return bool(
        (None if seg.proj is None else int(seg.proj.shape[0])) == target_graph_dim(st)
        and index.M == st.M
        and index.ef_construction == beam(st, seg.n_tokens + n_new)
        and index.storage_data_type == storage_type(st)
    )


def build_segment(
    st: IndexState,
    flat: npt.NDArray[np.float32],
    labels: npt.NDArray[np.int64],
    *,
    base: Segment | None = None,
    num_threads: int | None = None,
) -> tuple[int, str, Any, npt.NDArray[np.float32] | None, int]:
    """Build an HNSW graph over ``flat`` ``(n, dim)`` under ``labels`` ``(n,)`` and write it atomically.

    With ``base``, the tokens are added to a private copy of ``base``'s graph (loaded from its file, so
    readers keep searching the original) instead of a new, empty one, projected as its tokens were.

    Returns:
        (segment id, file name, the graph, the ``(graph_dim, dim)`` projection it indexes or ``None``, the file's
        CRC-32).
    """
    voyager = st.voyager
    if base is not None:
        index = voyager.Index.load(str(st.root / base.file))
        proj = base.proj
    else:
        proj = fit_projection(st, flat)
    if proj is not None:
        flat = flat @ proj.T
    if base is None:
        index = voyager.Index(
            voyager.Space.Cosine,
            num_dimensions=flat.shape[1],
            M=st.M,
            ef_construction=beam(st, flat.shape[0]),
            max_elements=max(1, flat.shape[0]),
            storage_data_type=storage_type(st),
        )
    t0 = time.perf_counter()
    index.add_items(flat, ids=labels, num_threads=st.tuning.num_threads if num_threads is None else num_threads)
    sid = allocate_segment_id(st)
    name = segment_name(sid)
    target = st.root / name
    tmp = st.root / f".{name}.{uuid.uuid4().hex}.tmp"
    try:
        index.save(str(tmp))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        crc = file_crc32(tmp)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    fsync_dir(st.root)
    logger.debug("built segment %s: %d tokens in %.2fs", name, flat.shape[0], time.perf_counter() - t0)
    return sid, name, index, proj, crc


def target_graph_dim(st: IndexState) -> int | None:
    """Dimensions a new segment's graph indexes: ``graph_dim`` when it projects, else ``None`` (all)."""
    if st.graph_dim is None or st.dim is None or st.graph_dim >= st.dim:
        return None
    return st.graph_dim


def fit_projection(st: IndexState, flat: npt.NDArray[np.float32]) -> npt.NDArray[np.float32] | None:
    """The ``(graph_dim, dim)`` projection of a new segment over ``flat``: its tokens' ``graph_dim`` principal
    directions (uncentred: the graph compares directions through the origin), or ``None`` (full vectors)."""
    p = target_graph_dim(st)
    if p is None:
        return None
    sample = flat
    if flat.shape[0] > PROJECTION_SAMPLE:
        rng = np.random.default_rng(flat.shape[0])
        sample = flat[np.sort(rng.choice(flat.shape[0], PROJECTION_SAMPLE, replace=False))]
    gram = sample.T.astype(np.float64) @ sample.astype(np.float64)
    _, vecs = np.linalg.eigh(gram)  # ascending eigenvalues
    return np.ascontiguousarray(vecs[:, ::-1][:, :p].T, dtype=np.float32)


def store_projection(st: IndexState, conn: sqlite3.Connection, sid: int, proj: npt.NDArray[np.float32] | None) -> None:
    """Record segment ``sid``'s projection in the open transaction (format version 3 from then on)."""
    if proj is None:
        return
    conn.execute("CREATE TABLE IF NOT EXISTS projections (segment INTEGER PRIMARY KEY, matrix BLOB NOT NULL)")
    conn.execute("INSERT OR REPLACE INTO projections VALUES (?, ?)", (sid, proj.astype(F32).tobytes()))
    if st.format_version < PROJECTED_FORMAT_VERSION:
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('format_version', ?)", (str(PROJECTED_FORMAT_VERSION),))


@dataclass
class SealBuild:
    """A sealed graph built from a snapshot of the mutable segment, waiting for :func:`commit_seal`."""

    #: The mutable documents the graph holds (``seq`` -> number of tokens), as the snapshot saw them.
    seqs: dict[int, int]
    sid: int
    name: str
    index: Any
    proj: npt.NDArray[np.float32] | None
    crc: int
    n_tokens: int
    started: float
    #: A compressed index's segment (``_cstore``), with the codec it needs committed; ``None``: an HNSW segment.
    parts: _cstore.SealParts | None = None


def prepare_seal(
    st: IndexState, *, num_threads: int | None = None, locked: bool = False, max_tokens: int | None = None
) -> SealBuild | None:
    """Build the graph of the mutable segment as it is now (``None`` when it is empty), or of its oldest documents
    up to ``max_tokens`` tokens (at least one document).

    The snapshot of ``st.mutable`` is taken under the write mutex (``locked``: the caller holds it); the graph is
    built without it when the caller does not hold it (the arrays are never modified in place), so writes go on
    meanwhile. Documents written or deleted during the build are handled by :func:`commit_seal`.
    """
    t0 = time.perf_counter()
    with contextlib.nullcontext() if locked else st.write_mutex:
        snapshot = dict(st.mutable)
    if not snapshot:
        return None
    seqs = sorted(snapshot)
    if st.compression is not None and st.codec is None:
        max_tokens = None  # the codec is trained on every collected token
    if max_tokens is not None:
        counts = np.cumsum([snapshot[s][1].shape[0] for s in seqs])
        seqs = seqs[: max(1, int(np.searchsorted(counts, max_tokens, side="right")))]
    if st.compression is not None:
        parts = _cstore.build_seal(st, seqs, snapshot)
        lens = {s: snapshot[s][1].shape[0] for s in seqs}
        return SealBuild(lens, parts.sid, parts.name, parts.segment, None, parts.crc, parts.n_tokens, t0, parts)
    arrays = [snapshot[s][1] for s in seqs]
    labels = np.concatenate(
        [
            np.arange(snapshot[s][0], snapshot[s][0] + a.shape[0], dtype=np.int64)
            for s, a in zip(seqs, arrays, strict=True)
        ]
    )
    sid, name, index, proj, crc = build_segment(st, np.concatenate(arrays), labels, num_threads=num_threads)
    return SealBuild(
        {s: a.shape[0] for s, a in zip(seqs, arrays, strict=True)}, sid, name, index, proj, crc, len(labels), t0
    )


def commit_seal(st: IndexState, built: SealBuild) -> None:
    """Make a built seal the index's state in one transaction (write mutex held).

    Only the snapshot's documents that are still in the mutable segment move into the new segment; those
    deleted or replaced during the build leave dead labels in its graph (reclaimed as any segment's are), and
    documents written during the build stay mutable. A crash before the commit leaves the file an orphan that
    the next writable open removes.
    """
    present = [seq for seq in built.seqs if seq in st.mutable]
    if not present:  # every document went during the build (deleted, replaced, cleared, sealed by compact())
        remove_dir(st.root / built.name)
        if built.parts is not None and built.parts.codec_meta is not None:  # the new codec goes with the next seal
            remove_dir(st.root / json.loads(built.parts.codec_meta)["dir"])
        return
    n_live = sum(built.seqs[seq] for seq in present)
    conn = st.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "UPDATE docs SET segment = ? WHERE segment IS NULL AND seq IN (SELECT value FROM json_each(?))",
            (built.sid, json.dumps(present)),
        )
        conn.execute(
            "INSERT INTO segments (id, file, n_tokens, n_live_tokens, n_docs, crc) VALUES (?, ?, ?, ?, ?, ?)",
            (built.sid, built.name, built.n_tokens, n_live, len(present), built.crc),
        )
        store_projection(st, conn, built.sid, built.proj)
        if built.parts is not None:
            _cstore.commit_seal_rows(st, conn, built.parts, present)
        bump_generation(st, conn)
        with st.rw.write():
            conn.execute("COMMIT")
            if built.parts is not None:
                _cstore.apply_seal(st, built.parts, present)
            if built.proj is not None:
                st.format_version = max(st.format_version, PROJECTED_FORMAT_VERSION)
            segments = dict(st.segments)
            segments[built.sid] = Segment(
                built.sid, built.name, built.index, built.n_tokens, n_live, len(present), built.proj, built.crc
            )
            st.segments = segments
            st.generation += 1
            mutable = dict(st.mutable)
            for seq in present:
                del mutable[seq]
            st.mutable = mutable
            st.mutable_tokens -= n_live
            st.mutable_cache = None
            st.sealed_cache = None
    except BaseException:
        rollback(conn)
        raise
    write_manifest(st)
    st.maintenance.append(MaintenanceEvent("seal", built.name, 0, built.n_tokens, time.perf_counter() - built.started))
    logger.info("sealed %d documents (%d tokens) into %s", len(present), built.n_tokens, built.name)


def seal(st: IndexState) -> None:
    """Turn the mutable segment into a sealed HNSW segment, now (write mutex held)."""
    built = prepare_seal(st, locked=True)
    if built is not None:
        commit_seal(st, built)


@dataclass
class MergeBuild:
    """A merge whose graph is built and written, waiting for :func:`commit_merge`."""

    seg_ids: list[int]
    base: Segment | None
    #: The new segment (``None``: nothing to add, the empty segments are just dropped); its live counts are
    #: those of the documents read, recomputed at the commit (documents may be deleted meanwhile).
    new: Segment | None
    started: float


def merge(st: IndexState, seg_ids: list[int], *, into: int | None = None) -> None:
    """Merge ``seg_ids`` into one new segment, now (write mutex held).

    Without ``into``, the live tokens of every segment are rebuilt into a new graph (deleted tokens are
    reclaimed). With ``into`` (one of ``seg_ids``), the live tokens of the others are added to a copy of
    that segment's graph, which keeps its dead tokens (reclaimed later by its deleted-ratio rebuild or by
    ``VoyagerBackend.compact``).
    """
    commit_merge(st, prepare_merge(st, st.conn, seg_ids, into))


def prepare_merge(
    st: IndexState, conn: sqlite3.Connection, seg_ids: list[int], into: int | None, *, num_threads: int | None = None
) -> MergeBuild:
    """Read the documents of ``seg_ids`` (but ``into``'s) through ``conn`` and build the merged graph's file.

    Needs no lock: the segment files are immutable and documents never move into a segment being merged (new
    documents go to the mutable segment); documents deleted meanwhile are left out at the commit.
    """
    t0 = time.perf_counter()
    if st.compression is not None:  # codes are copied: a rebuild costs no more than a fold
        parts = _cstore.build_merge(st, seg_ids)
        new = None if parts is None else Segment(parts.sid, parts.name, parts.segment, parts.n_tokens,
                                                 parts.n_tokens, parts.n_docs, None, parts.crc)  # fmt: skip
        return MergeBuild(seg_ids, None, new, t0)
    base = st.segments[into] if into is not None else None
    read_json = json.dumps([s for s in seg_ids if s != into])
    arrays: list[npt.NDArray[np.float32]] = []
    labels: list[npt.NDArray[np.int64]] = []
    n_docs = 0
    dim = st.dim or 0
    for seq, first, n_tok, blob, residual, vcrc, rcrc in conn.execute(
        f"SELECT seq, first_label, n_tokens, {st.vector_cols}, {st.crc_cols} FROM docs "
        "WHERE segment IN (SELECT value FROM json_each(?)) ORDER BY seq",
        (read_json,),
    ):
        check_blob(blob, vcrc, f"the stored vectors of document seq {seq} in {st.root}")
        check_blob(residual, rcrc, f"the stored residuals of document seq {seq} in {st.root}")
        arrays.append(decode_vectors(blob, n_tok, dim, st.vector_dtype, residual))
        labels.append(np.arange(first, first + n_tok, dtype=np.int64))
        n_docs += 1
    new: Segment | None = None
    if base is not None and not arrays:
        seg_ids = [s for s in seg_ids if s != into]  # nothing to add: just drop the empty segments
    elif arrays:
        flat = np.concatenate(arrays)
        lab = np.concatenate(labels)
        del arrays
        sid, name, index, proj, crc = build_segment(st, flat, lab, base=base, num_threads=num_threads)
        if base is None:
            new = Segment(sid, name, index, len(lab), len(lab), n_docs, proj, crc)
        else:
            new = Segment(
                sid,
                name,
                index,
                base.n_tokens + len(lab),
                base.n_live_tokens + len(lab),
                base.n_docs + n_docs,
                proj,
                crc,
            )
    return MergeBuild(seg_ids, base, new, t0)


def commit_merge(st: IndexState, built: MergeBuild) -> None:
    """Make a built merge the index's state in one transaction (write mutex held), then delete the old files."""
    seg_ids, new, base = built.seg_ids, built.new, built.base
    seg_json = json.dumps(seg_ids)
    old_files = [st.segments[s].file for s in seg_ids]
    conn = st.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        if new is not None:
            conn.execute(
                "UPDATE docs SET segment = ? WHERE segment IN (SELECT value FROM json_each(?))", (new.id, seg_json)
            )
            live_tokens, live_docs = conn.execute(
                "SELECT COALESCE(SUM(n_tokens), 0), COUNT(*) FROM docs WHERE segment = ?", (new.id,)
            ).fetchone()
            new = dataclasses.replace(new, n_live_tokens=int(live_tokens), n_docs=int(live_docs))
            conn.execute(
                "INSERT INTO segments (id, file, n_tokens, n_live_tokens, n_docs, crc) VALUES (?, ?, ?, ?, ?, ?)",
                (new.id, new.file, new.n_tokens, new.n_live_tokens, new.n_docs, new.crc),
            )
            store_projection(st, conn, new.id, new.proj)
        conn.execute("DELETE FROM segments WHERE id IN (SELECT value FROM json_each(?))", (seg_json,))
        if any(st.segments[s].proj is not None for s in seg_ids):
            conn.execute("DELETE FROM projections WHERE segment IN (SELECT value FROM json_each(?))", (seg_json,))
        bump_generation(st, conn)
        with st.rw.write():
            conn.execute("COMMIT")
            if new is not None and new.proj is not None:
                st.format_version = max(st.format_version, PROJECTED_FORMAT_VERSION)
            segments = {k: v for k, v in st.segments.items() if k not in seg_ids}
            if new is not None:
                segments[new.id] = new
            st.segments = segments
            st.generation += 1
    except BaseException:
        rollback(conn)
        raise
    for name in old_files:
        remove_dir(st.root / name)
    st.db.checkpoint()
    write_manifest(st)
    if new is not None:
        kind, base_tokens = ("rebuild", 0) if base is None else ("fold", base.n_tokens)
        elapsed = time.perf_counter() - built.started
        st.maintenance.append(MaintenanceEvent(kind, new.file, base_tokens, new.n_tokens - base_tokens, elapsed))
    logger.info(
        "merged segments %s into %s (%d live tokens)",
        seg_ids,
        new.file if new is not None else "nothing",
        new.n_tokens if new is not None else 0,
    )


def bump_generation(st: IndexState, conn: sqlite3.Connection) -> None:
    """Record the next generation and the segment-id counter in the open transaction."""
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('generation', ?)", (str(st.generation + 1),))
    with st.cache_lock:  # at least every id allocated so far, committed or being built
        next_segment = st.next_segment
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('next_segment', ?)", (str(next_segment),))


def compact(st: IndexState) -> None:
    """Seal the mutable segment, merge all segments into one without dead tokens, shrink the files (write mutex
    held). Readers keep searching the old segments until the new one is committed; a crash leaves either state."""
    if st.mutable:
        seal(st)
    segs = list(st.segments.values())
    if len(segs) > 1 or any(s.n_live_tokens < s.n_tokens for s in segs):
        merge(st, [s.id for s in segs])
    conn = st.conn
    conn.execute("PRAGMA incremental_vacuum").fetchall()  # each step frees one page: run them all
    if st.compression is not None:
        # Sealing empties rows in place, leaving partly filled pages; the database holds texts and metadata only,
        # so rewriting it is cheap.
        try:
            conn.execute("VACUUM")
        except sqlite3.OperationalError as err:  # e.g. a reader of another process mid-transaction
            logger.info("could not VACUUM %s (%s); its database keeps its free space", st.root, err)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    remove_orphans(st)
