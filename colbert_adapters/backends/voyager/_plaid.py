"""Candidate generation and the exact stage of compressed indexes (PLAID-style centroid interaction).

A search over compressed segments (``_compressed``) runs in three stages, all on the query's score table
``S = q @ centroids.T`` ``(n_q, n_centroids)``:

1. **Probe**: each query token's ``n_probe`` best centroids; the inverted lists of those centroids give the
   candidate documents. A candidate's first approximate score sums, over query tokens, the best probed centroid
   score among its tokens, or for a query token that probed none of its centroids the token's lowest probed score
   (an upper bound of what it would have found there).
2. **Centroid interaction**: the ``n_interact`` best candidates are scored with every token standing for its
   centroid: ``sum_i max_t S[i, code(t)]`` (their centroid ids read from the segments' memory-mapped codes).
3. **Exact stage**: the ``n_full`` best of those are decompressed and scored with exact MaxSim.

Deleted documents are skipped at stage 1 (tombstones: their labels map to no document). A metadata filter
applies to the candidates before stage 2; a selective filter (fewer matching candidates than ``n_full``) scores
every matching document exactly instead, so filtered searches return ``k`` hits whenever ``k`` documents match.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..._residual import ResidualCodec
from ...scoring import maxsim_flat
from ._compressed import CompressedSegment

__all__ = ["Located", "Params", "decode_docs", "exact_scores", "interact", "locate", "probe", "search_compressed"]

#: Documents decompressed per batch by the exact stage.
DECODE_BATCH = 1024


@dataclass(frozen=True, slots=True)
class Params:
    """Search settings of the compressed stages (``VoyagerBackend``'s ``n_probe``, ``n_interact``, ``n_full``)."""

    n_probe: int
    n_interact: int
    n_full: int


@dataclass(frozen=True, slots=True)
class Located:
    """Documents by segment: seqs ``(m,)``, the index of their segment in the searched list ``(m,)`` and their
    position in it ``(m,)``."""

    seqs: npt.NDArray[np.int64]
    seg: npt.NDArray[np.int64]
    pos: npt.NDArray[np.int64]

    def take(self, sel: npt.NDArray[np.int64]) -> Located:
        return Located(self.seqs[sel], self.seg[sel], self.pos[sel])


def probe(
    scores: npt.NDArray[np.float32],
    segments: Sequence[CompressedSegment],
    live: Sequence[npt.NDArray[np.bool_]],
    n_probe: int,
) -> tuple[Located, npt.NDArray[np.float64]]:
    """Stage 1: the live documents on the ``n_probe`` best centroids of some query token and their first
    approximate scores (see the module docstring), from the score table ``scores`` ``(n_q, n_centroids)``."""
    n_q, n_c = scores.shape
    n_probe = max(1, min(n_probe, n_c))
    probed = (
        np.argpartition(-scores, n_probe - 1, axis=1)[:, :n_probe]
        if n_probe < n_c
        else np.tile(np.arange(n_c), (n_q, 1))
    )
    vals = np.take_along_axis(scores, probed, axis=1)
    floor = vals.min(axis=1).astype(np.float64)
    tok = np.repeat(np.arange(n_q), probed.shape[1])
    cents = probed.ravel()
    pvals = vals.ravel()
    parts_seq, parts_seg, parts_pos, parts_tok, parts_val = [], [], [], [], []
    for si, seg in enumerate(segments):
        ptr = seg.ivf_ptr
        ok = cents < ptr.shape[0] - 1  # centroids appended after the segment was written hold none of its tokens
        c = cents[ok]
        starts = np.asarray(ptr[c], dtype=np.int64)
        lens = np.asarray(ptr[c + 1], dtype=np.int64) - starts
        total = int(lens.sum())
        if total == 0:
            continue
        offs = np.zeros(lens.size + 1, dtype=np.int64)
        np.cumsum(lens, out=offs[1:])
        idx = np.repeat(starts - offs[:-1], lens) + np.arange(total, dtype=np.int64)
        local = np.asarray(seg.ivf_docs[idx], dtype=np.int64)
        keep = live[si][local]
        local = local[keep]
        parts_seq.append(np.asarray(seg.doc_seqs[local], dtype=np.int64))
        parts_seg.append(np.full(local.size, si, dtype=np.int64))
        parts_pos.append(local)
        parts_tok.append(np.repeat(tok[ok], lens)[keep])
        parts_val.append(np.repeat(pvals[ok], lens)[keep])
    if not parts_seq:
        empty = np.zeros(0, dtype=np.int64)
        return Located(empty, empty, empty), np.zeros(0, dtype=np.float64)
    seqs = np.concatenate(parts_seq)
    uniq, first, inv = np.unique(seqs, return_index=True, return_inverse=True)
    tokens = np.concatenate(parts_tok)
    values = np.concatenate(parts_val).astype(np.float64)
    mat = np.broadcast_to(floor, (uniq.size, n_q)).copy()
    # Ascending values: with repeated (document, token) cells NumPy keeps the last write, i.e. the maximum.
    order = np.argsort(values, kind="stable")
    mat[inv[order], tokens[order]] = values[order]
    located = Located(uniq, np.concatenate(parts_seg)[first], np.concatenate(parts_pos)[first])
    return located, mat.sum(axis=1)


def interact(
    scores_t: npt.NDArray[np.float32], segments: Sequence[CompressedSegment], docs: Located
) -> npt.NDArray[np.float64]:
    """Stage 2: ``sum_i max_t S[i, code(t)]`` of each document ``(m,)`` (``scores_t``: the score table
    transposed, ``(n_centroids, n_q)`` contiguous)."""
    out = np.zeros(docs.seqs.size, dtype=np.float64)
    for si, seg in enumerate(segments):
        sel = np.flatnonzero(docs.seg == si)
        if sel.size == 0:
            continue
        rows, offs = seg.rows(docs.pos[sel])
        per_token = scores_t[np.asarray(seg.codes[rows], dtype=np.intp)]  # (T, n_q)
        best = np.maximum.reduceat(per_token, offs[:-1], axis=0)  # (m_si, n_q): documents have >= 1 token
        out[sel] = best.sum(axis=1)
    return out


def decode_docs(
    codec: ResidualCodec, segments: Sequence[CompressedSegment], docs: Located
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Decompressed tokens of ``docs``, in their order: ``(flat (T, dim) float32 unit rows, offsets (m + 1,))``."""
    flats: list[npt.NDArray[np.float32]] = [np.zeros((0, codec.dim), dtype=np.float32)] * docs.seqs.size
    for si, seg in enumerate(segments):
        sel = np.flatnonzero(docs.seg == si)
        if sel.size == 0:
            continue
        rows, offs = seg.rows(docs.pos[sel])
        dec = codec.decode(seg.codes[rows], np.asarray(seg.residuals[rows]))
        for j, i in enumerate(sel.tolist()):
            flats[i] = dec[offs[j] : offs[j + 1]]
    offsets = np.zeros(docs.seqs.size + 1, dtype=np.int64)
    np.cumsum([f.shape[0] for f in flats], out=offsets[1:])
    flat = np.concatenate(flats) if flats else np.zeros((0, codec.dim), dtype=np.float32)
    return flat, offsets


def exact_scores(
    codec: ResidualCodec, segments: Sequence[CompressedSegment], q: npt.NDArray[np.float32], docs: Located
) -> dict[int, float]:
    """Stage 3: MaxSim of ``q`` against the decompressed ``docs``: ``{seq: score}`` (in batches)."""
    out: dict[int, float] = {}
    for s in range(0, docs.seqs.size, DECODE_BATCH):
        part = docs.take(np.arange(s, min(s + DECODE_BATCH, docs.seqs.size)))
        flat, offsets = decode_docs(codec, segments, part)
        exact = maxsim_flat(q, flat, offsets, validate=False, num_threads=1)
        out.update(zip(part.seqs.tolist(), exact.tolist(), strict=True))
    return out


def locate(
    segments: Sequence[CompressedSegment], live: Sequence[npt.NDArray[np.bool_]], seqs: npt.NDArray[np.int64]
) -> Located:
    """Where the live documents ``seqs`` are (those in no searched segment are left out)."""
    found = np.zeros(seqs.size, dtype=bool)
    seg = np.zeros(seqs.size, dtype=np.int64)
    pos = np.zeros(seqs.size, dtype=np.int64)
    for si, s in enumerate(segments):
        here, p = s.locate(seqs)
        here &= ~found
        if here.any():
            here[here] = live[si][p[here]]
        seg[here], pos[here] = si, p[here]
        found |= here
    return Located(seqs[found], seg[found], pos[found])


def top(values: npt.NDArray[np.float64], n: int) -> npt.NDArray[np.int64]:
    """Positions of the ``n`` largest ``values``, ascending (ties: the earlier position)."""
    if values.size <= n:
        return np.arange(values.size, dtype=np.int64)
    return np.sort(np.argsort(-values, kind="stable")[:n]).astype(np.int64)


def search_compressed(
    codec: ResidualCodec,
    segments: Sequence[CompressedSegment],
    live: Sequence[npt.NDArray[np.bool_]],
    q: npt.NDArray[np.float32],
    k: int,
    params: Params,
    keep: object = None,
    conn: sqlite3.Connection | None = None,
) -> tuple[dict[int, float], int]:
    """The three stages over ``segments`` (``live``: their live masks): ``({seq: exact score}, candidates)``.

    ``keep``: ``None``, or a callable ``seqs -> bool mask`` applied to the candidates (a metadata filter).
    """
    scores = np.ascontiguousarray(q @ codec.centroids.T, dtype=np.float32)
    cand, approx = probe(scores, segments, live, params.n_probe)
    n_cand = cand.seqs.size
    if keep is not None and cand.seqs.size:
        mask = keep(cand.seqs)  # type: ignore[operator]
        cand, approx = cand.take(np.flatnonzero(mask)), approx[mask]
    n_full = max(params.n_full, k)
    n_interact = max(params.n_interact, n_full)
    if cand.seqs.size > n_full:
        cand = cand.take(top(approx, n_interact))
        ci = interact(np.ascontiguousarray(scores.T), segments, cand)
        cand = cand.take(top(ci, n_full))
    return exact_scores(codec, segments, q, cand), n_cand
