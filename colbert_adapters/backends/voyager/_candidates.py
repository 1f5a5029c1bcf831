"""Where a search's candidates come from: the sealed segments' HNSW graphs and an approximate score.

Each query token asks every sealed segment's graph for its ``k_token`` nearest token vectors (beam
``ef_search``; a segment whose graph indexes a projection is queried with the projected tokens). The labels map to
the documents owning those tokens (``IndexState.label_seq``); a candidate's approximate score sums, over query
tokens, the best similarity that token retrieved from it, or, for a token that retrieved nothing of it, its
similarity to the nearest of the document's centroids (``_centroids``), capped at what the token retrieved last.
The exact stage (``_rerank``) then reads the candidates best approximate score first.
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt

from ..._kernels import project
from ._state import IndexState, SearchTrace

__all__ = ["candidates"]

logger = logging.getLogger("colbert_adapters.backends.voyager")


def candidates(
    st: IndexState,
    q: npt.NDArray[np.float32],
    q8: tuple[npt.NDArray[np.float32], npt.NDArray[np.int8]] | None = None,
    trace: SearchTrace | None = None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], bool]:
    """Candidate documents of the sealed segments and their approximate scores (``q8``: ``quantise_int8(q)``,
    computed here when not given; ``trace``: where to record whether centroids completed the scores).

    Returns:
        ``(seqs (c,), approx (c,), unsearched)``: distinct document seqs sorted ascending, their
        approximate scores, and whether a segment could not be searched (the caller then scans).
    """
    n_q = q.shape[0]
    label_seq = st.label_seq
    seq_parts: list[npt.NDArray[np.int64]] = []
    mat_parts: list[npt.NDArray[np.float64]] = []
    hit_parts: list[npt.NDArray[np.bool_]] = []
    unsearched = False
    found: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]] = []
    floor = np.full(n_q, -np.inf)
    for seg in st.segments.values():
        if seg.n_live_tokens == 0:
            continue
        kk = min(st.tuning.k_token, seg.n_tokens)
        ef = max(st.tuning.ef_search, kk)
        qs = q if seg.proj is None else project(q, seg.proj)
        try:
            labels, dists = seg.index.query(qs, k=kk, num_threads=st.tuning.num_threads, query_ef=ef)
        except st.voyager.RecallError:
            try:
                labels, dists = seg.index.query(qs, k=kk, num_threads=st.tuning.num_threads, query_ef=4 * ef)
            except st.voyager.RecallError:
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
        # k_token nearest too, and counting those deeper matches would favour its documents over those of a
        # large segment.
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
    # (see _centroids), capped at the token's floor (had it been higher, the graph would have returned the
    # token's match, about): a document close to every query token but no token's nearest then ranks by all its
    # matches, not just the few retrieved. An index whose documents lack centroids (written by an older version,
    # opened read-only) counts 0 for such a token.
    table = st.centroids
    rows = table.rows(seqs_all) if table is not None else None
    if trace is not None:
        trace.centroids = rows is not None
    if rows is not None and table is not None:
        hit = np.concatenate(hit_parts) if len(hit_parts) > 1 else hit_parts[0]
        fill = np.minimum(table.similarities(rows, q, q8), floor[None, :])
        np.copyto(mat, fill, where=~hit)
    approx_all = mat.sum(axis=1)
    order = np.argsort(seqs_all, kind="stable")  # ties in the later stable sort keep insertion order
    return seqs_all[order], approx_all[order], unsearched
