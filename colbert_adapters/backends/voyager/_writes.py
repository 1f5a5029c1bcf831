"""Writes: upserts and deletes, each one SQLite transaction applied to the in-memory state when it commits.

An upsert validates and encodes the whole batch first (nothing is written when any item is bad), then, in one
transaction, deletes the rows of replaced ids and inserts the new ones with their centroids; the new documents go
to the mutable segment. The in-memory state changes under the exclusive lock, right after the commit, so a
concurrent search sees the old state or the new one. After the commit, :func:`._segments.maintain` may seal or
fold segments.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import numpy.typing as npt

from ..._codecs import encode_vectors
from ..._filters import FilterExpr
from ..._validation import as_multivector, check_ids, check_upsert_batch
from ...errors import ColBERTError, DimensionMismatchError, InvalidInputError
from ...types import Metadata, MultiVector
from . import _sqlfilter
from ._centroids import CentroidTable, doc_centroids
from ._cstore import seal_threshold
from ._db import CHECKPOINT_BYTES, checksum, json_text, rollback
from ._docstore import Row, delete_rows, lookup_rows
from ._layout import default_graph_dim, write_manifest
from ._segments import maintain
from ._sqlfilter import where_clause
from ._state import IndexState, load_state

__all__ = [
    "apply_removed",
    "clear",
    "create_metadata_index",
    "delete",
    "delete_where",
    "upsert",
    "write_docs",
]

_F16_MAX = float(np.finfo(np.float16).max)


def upsert(
    st: IndexState,
    ids: Sequence[str],
    vectors: Sequence[MultiVector],
    texts: Sequence[str | None] | None,
    metadatas: Sequence[Metadata | None] | None,
) -> None:
    """Insert or replace documents in one transaction (see ``VoyagerBackend.upsert``)."""
    st.check_writable()
    id_list, text_list, meta_list = check_upsert_batch(ids, vectors, texts, metadatas)
    n = len(id_list)
    meta_json = [json_text(m) for m in meta_list]
    with st.write_mutex:
        st.check_writable()
        dim = st.dim
        encoded: list[tuple[bytes, bytes | None, npt.NDArray[np.float32]]] = []
        for i, v in enumerate(vectors):
            try:
                arr = as_multivector(v, dim=dim, where=f"vectors[{i}]")
            except DimensionMismatchError as err:
                if st.dim is None:
                    raise DimensionMismatchError(
                        f"vectors[{i}] has dimension {np.shape(v)[-1]} but vectors[0] has {dim}; "
                        "all documents must come from the same encoder"
                    ) from err
                raise
            dim = arr.shape[1]
            if st.vector_dtype == "float16" and float(np.abs(arr).max()) > _F16_MAX:
                raise InvalidInputError(
                    f"vectors[{i}] holds values beyond the float16 range (|x| > 65504) of this index's "
                    "vector_dtype='float16'; token vectors are expected to be L2-normalised"
                )
            encoded.append(encode_vectors(arr, st.vector_dtype))
        if n == 0:
            return
        assert dim is not None
        with _storage_errors(st, "write"):
            write_docs(st, id_list, encoded, text_list, meta_json, dim)
        if sum(len(blob) + len(res or b"") for blob, res, _ in encoded) >= CHECKPOINT_BYTES:
            st.db.checkpoint()
        maintain(st)
    _throttle(st)


@contextlib.contextmanager
def _storage_errors(st: IndexState, what: str) -> Iterator[None]:
    """SQLite's errors during a write (a full disk, an I/O error) as one of ours; the transaction rolled back."""
    try:
        yield
    except sqlite3.Error as err:
        raise ColBERTError(
            f"could not {what} in {st.root}: {err}. Nothing of this {what} was stored; free disk space (or fix the "
            "I/O error) and retry"
        ) from err


#: Longest a write is held back when the workers have fallen far behind (a soft brake: it bounds the stall).
THROTTLE_SECONDS = 0.25
#: Mutable tokens, in multiples of ``mutable_max_tokens``, beyond which a write waits for the sealer: the mutable
#: segment is scored exactly by every search, so its backlog is what a writer faster than the sealer costs them.
MUTABLE_BACKLOG = 16


def _throttle(st: IndexState) -> None:
    """Hold a write back briefly while the workers are far behind, giving them the CPU; never longer than
    :data:`THROTTLE_SECONDS`: while the unsealed backlog exceeds :data:`MUTABLE_BACKLOG` mutable segments, or far
    more segments wait for folding than ``max_segments`` allows (each costs every search a graph query)."""
    if st.worker is None:
        return
    if st.mutable_tokens >= MUTABLE_BACKLOG * seal_threshold(st):
        st.sealer.wait_progress(THROTTLE_SECONDS)
    elif len(st.segments) > 4 * st.tuning.max_segments + 8:
        st.worker.wait_progress(THROTTLE_SECONDS)


def delete(st: IndexState, ids: Sequence[str]) -> int:
    """Remove documents by id in one transaction; returns how many were removed (see ``VoyagerBackend.delete``)."""
    st.check_writable()
    unique = list(dict.fromkeys(check_ids(ids, allow_duplicates=True)))
    if not unique:
        return 0
    return _delete(st, lambda conn: unique)


def delete_where(st: IndexState, flt: FilterExpr) -> int:
    """Remove the documents matching ``flt`` in one transaction; returns how many were removed."""
    st.check_writable()

    clause, params = where_clause(flt, st.metadata_indexes)

    def matching(conn: sqlite3.Connection) -> list[str]:
        return [doc_id for (doc_id,) in conn.execute(f"SELECT id FROM docs WHERE {clause}", params)]

    return _delete(st, matching)


def create_metadata_index(st: IndexState, key: str) -> None:
    """Create the indexes of metadata key ``key`` in one transaction (see ``VoyagerBackend.create_metadata_index``)."""
    st.check_writable()
    with st.write_mutex:
        st.check_writable()
        conn = st.conn
        with _storage_errors(st, "create a metadata index"):
            conn.execute("BEGIN IMMEDIATE")
            try:
                _sqlfilter.create_metadata_index(conn, key)
                conn.execute("COMMIT")
            except BaseException:
                rollback(conn)
                raise
        st.metadata_indexes = frozenset(_sqlfilter.metadata_indexes(conn))
        st.invalidate()


def _delete(st: IndexState, select: Callable[[sqlite3.Connection], list[str]]) -> int:
    """Delete the ids ``select`` finds inside the write transaction (so no write slips in between)."""
    with st.write_mutex:
        st.check_writable()
        conn = st.conn
        with _storage_errors(st, "delete"):
            conn.execute("BEGIN IMMEDIATE")
            try:
                old = lookup_rows(conn, select(conn))
                delete_rows(conn, list(old.values()))
                with st.rw.write():
                    conn.execute("COMMIT")
                    apply_removed(st, list(old.values()))
            except BaseException:
                rollback(conn)
                raise
        if old:
            maintain(st)
    _throttle(st)
    return len(old)


def apply_removed(st: IndexState, rows: list[Row]) -> None:
    """Reflect committed deletions in memory (exclusive lock held)."""
    if not rows:
        return
    segments = dict(st.segments)
    for r in rows:
        # Dead labels map to no document: the graphs skip them, and the centroid table keeps only live seqs.
        st.label_seq[r.first_label : r.first_label + r.n_tokens] = -1
        if r.segment is None:
            if st.mutable.pop(r.seq, None) is not None:
                st.mutable_tokens -= r.n_tokens
        else:
            s = segments[r.segment]
            segments[r.segment] = dataclasses.replace(
                s, n_live_tokens=s.n_live_tokens - r.n_tokens, n_docs=s.n_docs - 1
            )
    st.segments = segments
    st.n_docs -= len(rows)
    st.invalidate()
    st.blobs.discard(r.seq for r in rows)


def write_docs(
    st: IndexState,
    ids: list[str],
    encoded: list[tuple[bytes, bytes | None, npt.NDArray[np.float32]]],
    texts: list[str | None],
    metas: list[str],
    dim: int,
) -> None:
    """Commit documents ``ids`` (encoded by ``encode_vectors``, ``dim``-d) with their centroids, replacing any
    stored under the same ids, and add them to the mutable segment (write mutex held)."""
    conn = st.conn
    first = st.next_label
    # Per-document centroids complete the token graphs' approximate scores; a compressed index has no token graph.
    with_centroids = st.compression is None
    cent_codes, cent_scales = doc_centroids([decoded for _, _, decoded in encoded] if with_centroids else [])
    conn.execute("BEGIN IMMEDIATE")
    try:
        old = lookup_rows(conn, ids)
        delete_rows(conn, list(old.values()))
        new: list[tuple[int, int, npt.NDArray[np.float32]]] = []
        written: list[tuple[int, int, bytes]] = []  # (seq, n_tokens, vectors blob) for the blob cache
        label = first
        # The residual column exists in indexes created since int14 (the only ones that store residuals).
        cols, marks = ("vectors, residual", "?, ?") if st.vector_dtype == "int14" else ("vectors", "?")
        for doc_id, (blob, residual, decoded), text, meta in zip(ids, encoded, texts, metas, strict=True):
            cur = conn.execute(
                f"INSERT INTO docs (id, text, metadata, n_tokens, first_label, segment, vcrc, rcrc, {cols}) "
                f"VALUES (?, ?, ?, ?, ?, NULL, ?, ?, {marks})",
                (
                    doc_id,
                    text,
                    meta,
                    decoded.shape[0],
                    label,
                    checksum(blob),
                    None if residual is None else checksum(residual),
                    blob,
                    *(() if residual is None else (residual,)),
                ),
            )
            assert cur.lastrowid is not None
            i = len(new)
            if with_centroids:
                conn.execute(
                    "INSERT INTO centroids VALUES (?, ?, ?)",
                    (cur.lastrowid, cent_scales[i].tobytes(), cent_codes[i].tobytes()),
                )
            new.append((cur.lastrowid, label, decoded))
            written.append((cur.lastrowid, decoded.shape[0], blob))
            label += decoded.shape[0]
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('next_label', ?)", (str(label),))
        if st.dim is None:
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('dim', ?)", (str(dim),))
        pending_graph_dim = default_graph_dim(dim, st.tuning.graph_dim_min) if st.graph_dim_pending else None
        if pending_graph_dim is not None:
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('graph_dim', ?)", (str(pending_graph_dim),))
        with st.rw.write():
            conn.execute("COMMIT")
            apply_removed(st, list(old.values()))
            if label > st.label_seq.shape[0]:
                grown = np.full(max(label, 2 * st.label_seq.shape[0]), -1, dtype=np.int64)
                grown[: st.label_seq.shape[0]] = st.label_seq
                st.label_seq = grown
            for seq, lab, decoded in new:
                st.label_seq[lab : lab + decoded.shape[0]] = seq
                st.mutable[seq] = (lab, decoded)
                st.mutable_tokens += decoded.shape[0]
            st.next_label = label
            st.n_docs += len(new)
            st.invalidate()
            if st.dim is None:
                st.dim = dim
            if st.centroids is None and with_centroids:
                st.centroids = CentroidTable(dim)
            if st.centroids is not None and with_centroids:
                st.centroids.append(np.array([n[0] for n in new], dtype=np.int64), cent_codes, cent_scales)
                if st.centroids.n > 2 * st.n_docs + 1024:  # mostly rows of replaced or deleted documents
                    st.centroids.retain(np.unique(st.label_seq[st.label_seq >= 0]))
            if pending_graph_dim is not None:
                st.graph_dim, st.graph_dim_pending = pending_graph_dim, False
            st.blobs.put("vectors", written)
    except BaseException:
        rollback(conn)
        raise


def clear(st: IndexState) -> None:
    """Remove every document and segment in one transaction (see ``VoyagerBackend.clear``); labels keep growing
    from where they were, and the emptied segment files are deleted once the transaction commits."""
    st.check_writable()
    with st.write_mutex:
        st.check_writable()
        conn = st.conn
        files = [s.file for s in st.segments.values()]
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("DELETE FROM docs")
            conn.execute("DELETE FROM centroids")
            conn.execute("DELETE FROM segments")
            if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'projections'").fetchone():
                conn.execute("DELETE FROM projections")
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('generation', ?)", (str(st.generation + 1),))
            with st.rw.write():
                conn.execute("COMMIT")
                st.centroids = None  # a fresh table: the old rows all belong to deleted documents
                load_state(st)
        except BaseException:
            rollback(conn)
            raise
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                (st.root / name).unlink()
        st.db.checkpoint()
        write_manifest(st)
