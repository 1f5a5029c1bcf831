"""A search, start to end: the mutable segment exactly, then the sealed segments by scan or by graph.

:func:`search` is what ``VoyagerBackend.search`` runs once the query is checked. Within one SQLite read
transaction (one snapshot even while another process writes), :func:`score` scores

* the mutable segment: every document exactly;
* a small index (at most ``exact_below_tokens`` live sealed tokens): every sealed document, ranked by an int8
  estimate on codes cached in memory until the next write, the best read and scored exactly;
* otherwise: candidates from the graphs (``_candidates``), reranked in batches (``_rerank``), with exhaustive
  fallbacks for a selective filter, too few candidates for ``k``, or a segment the graph could not search.

A metadata filter applies before the top ``k`` is taken, so ``k`` hits come back whenever ``k`` documents match.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ..._codecs import decode_vectors, quantise_int8
from ..._filters import FilterExpr
from ..._kernels import doc_scale_codes, doc_scale_estimate
from ...scoring import maxsim_flat
from ...types import Hit
from ..base import Record
from . import _cstore
from ._candidates import candidates
from ._db import FETCH_CHUNK, check_blob, rollback
from ._rerank import Stacked, rerank, score_exact, score_stacked, stack, take_docs
from ._sqlfilter import where_clause
from ._state import IndexState, MutableView, SearchTrace, refresh_if_stale

__all__ = [
    "ScanView",
    "exhaustive_limit",
    "filtered_seqs",
    "get_records",
    "match",
    "mutable_view",
    "score",
    "sealed_view",
    "search",
]


@dataclass(frozen=True)
class ScanView:
    """The sealed documents as the small-index scan reads them (see :func:`sealed_view`): seqs ``(m,)`` ascending
    and row offsets ``(m + 1,)``, then either int8 codes requantised per document ``(T, dim)`` with their document
    scales ``(m,)`` (int8 / int14 stores), or float32 rows ``(T, dim)`` (float16 / float32)."""

    seqs: npt.NDArray[np.int64]
    offsets: npt.NDArray[np.int64]
    codes: npt.NDArray[np.int8] | None = None
    doc_scales: npt.NDArray[np.float32] | None = None
    rows: npt.NDArray[np.float32] | None = None


def search(
    st: IndexState,
    q: npt.NDArray[np.float32],
    k: int,
    flt: FilterExpr | None,
    trace: SearchTrace | None = None,
) -> list[Hit]:
    """Top ``k`` documents for query tokens ``q`` ``(n_q, dim)`` (checked) among those matching ``flt``, by
    descending exact MaxSim; ties keep insertion order. ``trace`` records what the search did."""
    with st.rw.read(), st.db.reader() as conn:
        st.check_open()
        if st.n_docs == 0:
            return []
        # One read transaction: the search's reads (vectors, then residuals, then texts) see one snapshot even
        # while another process writes.
        conn.execute("BEGIN")
        try:
            scores = score(st, conn, q, k, flt, trace)
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
            rollback(conn)
    return [
        Hit(id=rows[s][1], score=float(scores[s]), text=rows[s][2], metadata=json.loads(rows[s][3]))
        for s in top
        if s in rows
    ]


def mutable_view(st: IndexState) -> MutableView:
    """(seqs ``(m,)``, flat float32 tokens ``(T, dim)``, offsets ``(m + 1,)``) of the mutable segment."""
    with st.cache_lock:
        if st.mutable_cache is None:
            seqs = np.array(sorted(st.mutable), dtype=np.int64)
            arrays = [st.mutable[int(s)][1] for s in seqs]
            offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
            np.cumsum([a.shape[0] for a in arrays], out=offsets[1:])
            flat = np.concatenate(arrays) if arrays else np.zeros((0, st.dim or 0), dtype=np.float32)
            st.mutable_cache = (seqs, flat, offsets)
        return st.mutable_cache


def sealed_view(st: IndexState, conn: sqlite3.Connection) -> ScanView:
    """Every sealed document as the small-index scan reads it (cached until the next write).

    An int8 / int14 store is cached as int8 codes requantised with one scale per document
    (:func:`~colbert_adapters._kernels.doc_scale_codes`, ``dim`` bytes per token), which the scan ranks by
    :func:`~colbert_adapters._kernels.doc_scale_estimate`; the documents it keeps are then read from the store
    and scored exactly. float16 / float32 stores are decoded to float32 once rather than widened on every query,
    and scored exactly.
    """
    with st.cache_lock:
        if st.sealed_cache is None:
            rows = []
            for seq, n_tok, blob, crc in conn.execute(
                f"SELECT seq, n_tokens, vectors, {st.crc_column('vectors')} FROM docs "
                "WHERE segment IS NOT NULL ORDER BY seq"
            ):
                check_blob(blob, crc, f"the stored vectors of document seq {seq} in {st.root}")
                rows.append((seq, n_tok, blob))
            seqs, flat, offsets, scales = stack(rows, st.dim or 0, st.vector_dtype, where=st.root)
            del rows
            if scales is not None:
                codes, doc_scales = doc_scale_codes(flat, scales, offsets)
                st.sealed_cache = ScanView(seqs, offsets, codes=codes, doc_scales=doc_scales)
            else:
                st.sealed_cache = ScanView(seqs, offsets, rows=flat.astype(np.float32))
        view: ScanView = st.sealed_cache
        return view


def score(
    st: IndexState,
    conn: sqlite3.Connection,
    q: npt.NDArray[np.float32],
    k: int,
    flt: FilterExpr | None,
    trace: SearchTrace | None = None,
) -> dict[int, float]:
    """Exact MaxSim of the selected documents: ``{seq: score}`` (shared lock held); ``trace`` records the
    stages."""
    scores: dict[int, float] = {}
    # Documents of a reranked batch scored exactly after the int8 estimate (see _rerank.score_stacked): the
    # estimate ranks the exact top k a few places lower at most. The candidates are read in batches of n_rerank
    # while deep ones keep winning (_rerank.rerank).
    n_exact = k + max(8, k // 4)
    # The small-index scan ranks by a coarser estimate (one scale per document), hence a wider margin.
    n_scan_exact = 2 * k + 8
    # A large k reranks more candidates than n_rerank (recall@k needs candidates beyond the k best).
    n_rerank = max(st.tuning.n_rerank, 2 * k + 8)
    # Mutable segment: exact over all of it.
    mseqs, mflat, moffs = mutable_view(st)
    if mseqs.size:
        # One torch thread, as in the exact stage: a graph search usually follows (see _rerank).
        exact = maxsim_flat(q, mflat, moffs, validate=False, num_threads=1)
        keep = np.ones(mseqs.size, dtype=bool)
        if flt is not None:
            keep = match(st, conn, mseqs, flt)
        scores.update(zip(mseqs[keep].tolist(), exact[keep].tolist(), strict=True))
        if trace is not None:
            trace.mutable = int(mseqs.size)
    if st.compression is not None:  # compressed segments: probe, centroid interaction, decompress the best
        scores.update(_cstore.score(st, conn, q, k, flt, trace, match, filtered_seqs))
        return scores
    n_sealed_docs = st.n_docs - mseqs.size
    sealed_live = sum(seg.n_live_tokens for seg in st.segments.values())
    if 0 < sealed_live <= st.tuning.exact_below_tokens:
        # A small index: scoring every (matching) sealed document exactly, on vectors cached in memory until
        # the next write, is cheaper than the graph search.
        view = sealed_view(st, conn)
        if trace is not None:
            trace.path = "scan"
        sel = np.arange(view.seqs.size)
        if flt is not None:
            sel = np.flatnonzero(np.isin(view.seqs, filtered_seqs(st, conn, flt)))
        if view.rows is not None:  # float16 / float32: every (matching) document exactly
            stacked: Stacked = (view.seqs, view.rows, view.offsets, None)
            if sel.size < view.seqs.size:
                stacked = take_docs(stacked, sel)
            if sel.size:
                scores.update(score_stacked(q, stacked, None, estimate_threads=None, trace=trace))
        elif sel.size:
            # int8 / int14: every (matching) document ranked by the int8 estimate (both cores), the best
            # n_scan_exact read from the store and scored exactly.
            if sel.size > n_scan_exact:
                assert view.codes is not None and view.doc_scales is not None
                estimate = doc_scale_estimate(q, view.codes, view.doc_scales, view.offsets)[sel]
                if trace is not None:
                    trace.scanned = int(view.seqs.size)
                sel = np.sort(sel[np.argsort(-estimate, kind="stable")[:n_scan_exact]])
            scores.update(score_exact(st, conn, q, view.seqs[sel], trace=trace))
        return scores
    # Sealed segments: approximate candidates, then exact rerank of the best. The query rounded to int8 once,
    # for the centroid similarities and the rerank's estimate.
    q8 = quantise_int8(q)
    cand, approx, unsearched = candidates(st, q, q8=q8, trace=trace)
    n_cand = cand.size
    if flt is not None and cand.size:
        keep = match(st, conn, cand, flt)
        cand, approx = cand[keep], approx[keep]
    if trace is not None:
        trace.path, trace.candidates = "graph", n_cand
        trace.approximate = _by_id(conn, dict(zip(cand.tolist(), approx.tolist(), strict=True)))
    if cand.size:
        ordered = cand[np.argsort(-approx, kind="stable")]
        scores.update(rerank(st, conn, q, q8, ordered, n_rerank, n_exact, trace))
    # Exhaustive fallbacks: a selective filter, too few candidates for k, or an unsearchable segment.
    rest: npt.NDArray[np.int64] | None = None
    if flt is not None and cand.size < n_rerank and n_sealed_docs > cand.size:
        rest = filtered_seqs(st, conn, flt)
    elif flt is None and (len(scores) < min(k, st.n_docs) or unsearched) and n_cand < n_sealed_docs:
        rest = np.array([r[0] for r in conn.execute("SELECT seq FROM docs WHERE segment IS NOT NULL")], dtype=np.int64)
    if rest is not None and flt is not None and rest.size > exhaustive_limit(n_rerank) and len(scores) >= k:
        rest = None  # a broad filter: the candidates already give k matching hits
    if rest is not None and rest.size:
        todo = rest[~np.isin(rest, np.fromiter(scores.keys(), dtype=np.int64, count=len(scores)))]
        if trace is not None:
            trace.fallback = int(todo.size)
        for start in range(0, todo.size, FETCH_CHUNK):
            chunk = todo[start : start + FETCH_CHUNK]
            scores.update(score_exact(st, conn, q, chunk, n_exact, remember=False, trace=trace))
    return scores


def exhaustive_limit(n_rerank: int) -> int:
    """Largest filtered set scored exhaustively when it is not needed to reach ``k`` hits."""
    return max(8 * n_rerank, 2048)


def match(
    st: IndexState, conn: sqlite3.Connection, seqs: npt.NDArray[np.int64], flt: FilterExpr
) -> npt.NDArray[np.bool_]:
    """Boolean mask ``(len(seqs),)``: which documents satisfy the filter (evaluated by SQLite)."""
    clause, params = where_clause(flt)
    ok: set[int] = set()
    lst = seqs.tolist()
    for start in range(0, len(lst), 8 * FETCH_CHUNK):
        chunk = json.dumps(lst[start : start + 8 * FETCH_CHUNK])
        sql = f"SELECT seq FROM docs WHERE seq IN (SELECT value FROM json_each(?)) AND {clause}"
        ok.update(seq for (seq,) in conn.execute(sql, (chunk, *params)))
    return np.fromiter((s in ok for s in lst), dtype=bool, count=len(lst))


def filtered_seqs(st: IndexState, conn: sqlite3.Connection, flt: FilterExpr) -> npt.NDArray[np.int64]:
    """Seqs of all sealed documents matching ``flt`` (cached until the next write), through the metadata indexes
    where the filter's keys have them."""
    key = repr(flt)
    with st.cache_lock:
        hit = st.filter_cache.get(key)
    if hit is not None:
        return hit
    clause, params = where_clause(flt, st.metadata_indexes)
    sql = f"SELECT seq FROM docs WHERE segment IS NOT NULL AND {clause} ORDER BY seq"
    out = np.array([seq for (seq,) in conn.execute(sql, params)], dtype=np.int64)
    with st.cache_lock:
        if len(st.filter_cache) >= 64:
            st.filter_cache.pop(next(iter(st.filter_cache)))
        st.filter_cache[key] = out
    return out


def get_records(st: IndexState, id_list: list[str], with_vectors: bool) -> list[Record]:
    """The stored documents of the known ids in ``id_list``, in its order (see ``VoyagerBackend.get``)."""
    refresh_if_stale(st)
    with st.rw.read(), st.db.reader() as conn:
        st.check_open()
        cols = (
            f"id, text, metadata, n_tokens, {st.vector_cols}, {st.crc_cols}, seq"
            if with_vectors
            else "id, text, metadata"
        )
        found: dict[str, tuple[Any, ...]] = {}
        unique = list(dict.fromkeys(id_list))
        for start in range(0, len(unique), FETCH_CHUNK):
            chunk = unique[start : start + FETCH_CHUNK]
            for row in conn.execute(
                f"SELECT {cols} FROM docs WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(chunk),)
            ):
                found[row[0]] = row
        dim = st.dim or 0
        # Documents sealed into a compressed segment have an empty row in SQLite: decoded from the segment.
        packed = _cstore.doc_vectors(st, [r[8] for r in found.values() if with_vectors and not r[4] and r[3]])
    out: list[Record] = []
    for doc_id in id_list:
        row = found.get(doc_id)
        if row is None:
            continue
        vecs = None
        if with_vectors and row[8] in packed:
            vecs = packed[row[8]]
        elif with_vectors:
            check_blob(row[4], row[6], f"the stored vectors of document {doc_id!r} (seq {row[8]}) in {st.root}")
            check_blob(row[5], row[7], f"the stored residuals of document {doc_id!r} (seq {row[8]}) in {st.root}")
            vecs = decode_vectors(row[4], row[3], dim, st.vector_dtype, row[5])
        out.append(Record(id=doc_id, text=row[1], metadata=json.loads(row[2]), vectors=vecs))
    return out


def _by_id(conn: sqlite3.Connection, by_seq: dict[Any, float]) -> dict[str, float]:
    """``{seq: value}`` re-keyed by document id (for a :class:`SearchTrace`)."""
    ids = dict(
        conn.execute(
            "SELECT seq, id FROM docs WHERE seq IN (SELECT value FROM json_each(?))", (json.dumps(list(by_seq)),)
        ).fetchall()
    )
    return {ids[seq]: value for seq, value in by_seq.items() if seq in ids}
