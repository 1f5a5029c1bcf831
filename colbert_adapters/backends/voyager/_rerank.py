"""The exact stage of a search: read candidates' stored vectors, estimate, and score the best exactly.

Candidates arrive best approximate score first (see ``_candidates``). They are read from the store (through the
blob cache) in batches of ``n_rerank``, stacked as stored without decoding (:func:`stack`), ranked by an int8
estimate of MaxSim (:func:`colbert_adapters.scoring.maxsim_int8_estimate`), and the best ``keep`` are scored
exactly: int14 stores read the residuals of those documents only (:func:`colbert_adapters._kernels.maxsim_int14`),
float16 / float32 stores score every candidate read exactly.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ..._codecs import blob_parts, residual_planes, residual_widths
from ..._kernels import Planes, maxsim_int14
from ...errors import IndexCorruptedError
from ...scoring import maxsim_flat, maxsim_int8_estimate
from ._state import IndexState, SearchTrace

__all__ = [
    "ARENA",
    "ARENA_MAX_BYTES",
    "Arena",
    "Stacked",
    "exact_stacked",
    "rerank",
    "score_exact",
    "score_stacked",
    "stack",
    "take_docs",
]

#: (seqs ``(m,)``, stored rows ``(T, dim)`` (float16 / float32, or int8 codes), offsets ``(m + 1,)``, row scales
#: ``(T,)`` for int8 / int14 else ``None``): stacked documents as stored (see :func:`score_stacked`; an int14
#: store's residuals are read for the documents scored exactly only).
Stacked = tuple[npt.NDArray[np.int64], npt.NDArray[Any], npt.NDArray[np.int64], npt.NDArray[np.float32] | None]
#: Largest buffer a thread keeps between searches for the rerank's stacked batches (see :class:`Arena`).
ARENA_MAX_BYTES = 32 << 20


class Arena(threading.local):
    """Per-thread scratch memory for one search's stacked batches, kept for the next search.

    A fresh buffer of a few MB per batch costs its pages' first-touch faults every time; a kept one is already
    mapped. Regions are
    handed out one after the other (:meth:`take`) and all given back at once (:meth:`reset`, at the start of a
    search: the previous search's views are gone by then). A request that does not fit starts a new buffer (the
    old one lives on while views of it do); one over ``ARENA_MAX_BYTES`` is not kept.
    """

    def __init__(self) -> None:
        self.buf = bytearray()
        self.pos = 0

    def reset(self) -> None:
        self.pos = 0

    def take(self, n: int) -> memoryview:
        """A writable region of ``n`` bytes, valid until the next :meth:`reset` of this thread."""
        if n > ARENA_MAX_BYTES:
            return memoryview(bytearray(n))
        if self.pos + n > len(self.buf):
            self.buf = bytearray(min(ARENA_MAX_BYTES, max(2 * len(self.buf), 2 * n, 1 << 20)))
            self.pos = 0
        view = memoryview(self.buf)[self.pos : self.pos + n]
        self.pos += n
        return view


ARENA = Arena()


def concat_stacked(parts: Sequence[Stacked]) -> Stacked:
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


def take_docs(stacked: Stacked, sel: npt.NDArray[np.int64]) -> Stacked:
    """The documents at positions ``sel`` (ascending) of ``stacked``, their rows gathered into new arrays."""
    seqs, flat, offsets, row_scales = stacked
    lens = offsets[sel + 1] - offsets[sel]
    sub_offsets = np.zeros(sel.size + 1, dtype=np.int64)
    np.cumsum(lens, out=sub_offsets[1:])
    # Row indices of the kept documents: each document's start, then +1 along its rows.
    rows = np.repeat(offsets[sel] - sub_offsets[:-1], lens) + np.arange(int(sub_offsets[-1]))
    return seqs[sel], flat[rows], sub_offsets, None if row_scales is None else row_scales[rows]


def score_stacked(
    q: npt.NDArray[np.float32],
    stacked: Stacked,
    keep: int | None,
    *,
    estimate_threads: int | None,
    residuals: Callable[[npt.NDArray[np.int64], npt.NDArray[np.int64]], Planes] | None = None,
    trace: SearchTrace | None = None,
) -> dict[int, float]:
    """Exact MaxSim of stacked documents (see :func:`stack`): ``{seq: score}`` (recorded in ``trace``).

    With ``keep`` and int8 / int14 rows, only the ``keep`` documents with the best
    :func:`~colbert_adapters.scoring.maxsim_int8_estimate` (the query rounded to int8 as well, ``estimate_threads``
    torch threads) are scored exactly and returned. An int14 store is estimated on its int8 codes alone and the
    documents scored exactly are scored on their codes plus the residuals that ``residuals(seqs, offsets)`` reads
    for them (so a rerank reads the residuals of ``keep`` documents only). The estimate differs from the exact
    scores on the int8 codes by the query's rounding only, so it ranks the exact top ``k`` within a few places;
    the search's ``keep = k + max(8, k // 4)`` leaves that margin (``benchmarks/results/design-notes.md`` records the
    ranks). :func:`rerank` does the same over its batches.
    """
    seqs, flat, offsets, row_scales = stacked
    if keep is not None and row_scales is not None and seqs.size > keep:
        estimate = maxsim_int8_estimate(q, flat, row_scales, offsets, num_threads=estimate_threads)
        if trace is not None:
            trace.estimated.append(seqs.size)
        sel = np.sort(np.argsort(-estimate, kind="stable")[:keep])
        stacked = take_docs(stacked, sel)
    return exact_stacked(q, stacked, residuals, trace)


def exact_stacked(
    q: npt.NDArray[np.float32],
    stacked: Stacked,
    residuals: Callable[[npt.NDArray[np.int64], npt.NDArray[np.int64]], Planes] | None,
    trace: SearchTrace | None = None,
) -> dict[int, float]:
    """Exact MaxSim of every stacked document: ``{seq: score}`` (int14: codes plus the residuals that
    ``residuals(seqs, offsets)`` reads; otherwise the stored rows, int8 ones with their row scales)."""
    seqs, flat, offsets, row_scales = stacked
    if trace is not None:
        trace.exact.append(seqs.size)
    if residuals is not None:
        assert row_scales is not None
        exact14 = maxsim_int14(q, flat, row_scales, residuals(seqs, offsets), offsets)
        return dict(zip(seqs.tolist(), exact14.tolist(), strict=True))
    # One torch thread: the product alternates with Voyager's search threads, which spinning OpenMP workers
    # would slow down.
    exact = maxsim_flat(q, flat, offsets, validate=False, row_scales=row_scales, num_threads=1)
    return dict(zip(seqs.tolist(), exact.tolist(), strict=True))


def stack(
    rows: Iterable[tuple[int, int, bytes]],
    dim: int,
    vector_dtype: str,
    *,
    arena: Arena | None = None,
    where: object = None,
) -> Stacked:
    """Stack ``(seq, n_tokens, vectors blob)`` rows of ``dim``-d vectors stored as ``vector_dtype`` as they are,
    without decoding them (into a region of ``arena`` when given: the result is then valid until the arena's next
    reset). ``where`` names the index in the error raised on damaged rows.

    Returns:
        (seqs ``(m,)``, flat float16, float32 or int8 rows ``(T, dim)``, offsets ``(m + 1,)``, int8 / int14 row
        scales ``(T,)`` or ``None``): the arguments of :func:`score_stacked` (int14 residuals are read
        separately, see :func:`gather_residuals`).
    """
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
    flat, row_scales = blob_parts(joined, dim, vector_dtype)
    if row_scales is not None:
        # Contiguous: scaling the estimate's products by a strided view costs several times more.
        row_scales = np.ascontiguousarray(row_scales)
    if flat.shape[0] != offsets[-1]:
        raise IndexCorruptedError(
            f"stored vectors of {where} hold {flat.shape[0]} tokens where {int(offsets[-1])} were recorded; "
            "the index is damaged"
        )
    return np.array([r[0] for r in fetched], dtype=np.int64), flat, offsets, row_scales


def gather_residuals(
    st: IndexState,
    rows: Iterable[tuple[int, int, bytes]],
    seqs: npt.NDArray[np.int64],
    offsets: npt.NDArray[np.int64],
) -> Planes:
    """The int14 residual planes of stacked documents ``seqs`` (rows ``offsets``), from ``(seq, n_tokens,
    residual blob)`` rows in any order: nibbles ``(T, d' / 2)`` and high bits ``(T, d' / 4)``, contiguous."""
    half, quarter = residual_widths(st.dim or 0)
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
            raise IndexCorruptedError(f"stored vectors of {st.root} disagree with their residuals; damaged")
        nibbles[r0:r1], two[r0:r1] = residual_planes(blob, n_tok, st.dim or 0)
        filled += 1
    if filled != seqs.size:
        raise IndexCorruptedError(f"residuals of {seqs.size - filled} documents of {st.root} are missing")
    return nibbles, two


def rerank(
    st: IndexState,
    conn: sqlite3.Connection,
    q: npt.NDArray[np.float32],
    q8: tuple[npt.NDArray[np.float32], npt.NDArray[np.int8]],
    ordered: npt.NDArray[np.int64],
    n_rerank: int,
    keep: int,
    trace: SearchTrace | None = None,
) -> dict[int, float]:
    """Rerank candidates ``ordered`` (seqs ``(c,)``, best approximate score first), ``n_rerank`` at a time:
    ``{seq: exact MaxSim}`` of the ``keep`` with the best int8 estimate (int8 / int14 store), or of every
    candidate read (float16 / float32: each batch is scored exactly; the exact score serves as the estimate).

    The first batch is read; the next one only while the approximate order proves unreliable for this query:
    a document in the lower half of the first batch, or anywhere in a later batch, ranks among the ``keep``
    best estimates so far. Most queries stop after one batch (their p50 cost is one batch's), and the rest
    reach the documents that the approximate score ranked deep (the batch size and the trigger were chosen by
    simulation against exact MaxSim: ``benchmarks/results/design-notes.md``).
    """
    residuals = residual_reader(st, conn) if st.vector_dtype == "int14" else None
    arena = ARENA
    arena.reset()  # this thread's previous search is over
    stacks: list[Stacked] = []
    estimates: list[npt.NDArray[np.float32]] = []
    start, tail_from = 0, n_rerank // 2
    while start < ordered.size:
        batch = ordered[start : start + n_rerank]
        start += n_rerank
        stacked = stack(
            st.blobs.fetch(conn, "vectors", batch.tolist(), crc_column=st.crc_column("vectors")),
            st.dim or 0,
            st.vector_dtype,
            arena=arena,
            where=st.root,
        )
        seqs, flat, offsets, row_scales = stacked
        if seqs.size == 0:
            continue
        if trace is not None:
            trace.batches.append(seqs.size)
        if row_scales is None:  # float16 / float32: exact scores
            est = maxsim_flat(q, flat, offsets, validate=False, num_threads=1)
            if trace is not None:
                trace.exact.append(seqs.size)
        elif not stacks and start >= ordered.size and seqs.size <= keep:
            return exact_stacked(q, stacked, residuals, trace)  # one batch, all of it kept: no estimate needed
        else:
            est = maxsim_int8_estimate(q, flat, row_scales, offsets, num_threads=1, query_int8=q8)
            if trace is not None:
                trace.estimated.append(seqs.size)
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
    parts: list[Stacked] = []
    base = 0
    for stacked, est in zip(stacks, estimates, strict=True):
        local = np.sort(best[(best >= base) & (best < base + est.size)] - base)
        if local.size:
            parts.append(stacked if local.size == est.size else take_docs(stacked, local))
        base += est.size
    return exact_stacked(q, parts[0] if len(parts) == 1 else concat_stacked(parts), residuals, trace)


def residual_reader(
    st: IndexState, conn: sqlite3.Connection, *, remember: bool = True
) -> Callable[[npt.NDArray[np.int64], npt.NDArray[np.int64]], Planes]:
    """``residuals(seqs, offsets)``: the int14 residual planes of stacked documents, read through the cache."""

    def residuals(kept: npt.NDArray[np.int64], offsets: npt.NDArray[np.int64]) -> Planes:
        rows = st.blobs.fetch(conn, "residual", kept.tolist(), remember=remember, crc_column=st.crc_column("residual"))
        return gather_residuals(st, rows, kept, offsets)

    return residuals


def score_exact(
    st: IndexState,
    conn: sqlite3.Connection,
    q: npt.NDArray[np.float32],
    seqs: npt.NDArray[np.int64],
    keep: int | None = None,
    *,
    remember: bool = True,
    trace: SearchTrace | None = None,
) -> dict[int, float]:
    """Exact MaxSim of documents ``seqs`` on their stored vectors: ``{seq: score}``, read through the blob
    cache (``remember``: keep what was read from the store there).

    With ``keep`` and int8 / int14 vectors, only the ``keep`` documents with the best int8 estimate are scored
    exactly and returned (see :func:`score_stacked`).
    """
    if seqs.size == 0:
        return {}
    rows = st.blobs.fetch(conn, "vectors", seqs.tolist(), remember=remember, crc_column=st.crc_column("vectors"))
    stacked = stack(rows, st.dim or 0, st.vector_dtype, where=st.root)
    if stacked[0].size == 0:
        return {}
    residuals = residual_reader(st, conn, remember=remember) if st.vector_dtype == "int14" else None
    return score_stacked(q, stacked, keep, estimate_threads=1, residuals=residuals, trace=trace)
