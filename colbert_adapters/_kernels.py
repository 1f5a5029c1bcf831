"""MaxSim kernels: every product between query and document token vectors that the library computes.

:mod:`colbert_adapters.scoring` (the public API: validation, then a kernel) and every backend call these on
inputs they have already checked. Documents are *stacked*: one ``(n_total_tokens, dim)`` matrix of rows (float32,
float16, or int8 codes with per-row scales, see :mod:`colbert_adapters._codecs`) plus ``offsets`` ``(n_docs + 1,)``
saying which rows belong to which document. Nothing is padded, so a document's score is over its own tokens only.

Products run through torch's CPU kernels (MKL / oneDNN, and ``torch._int_mm`` for exact int8 products) where torch
can wrap the arrays, NumPy otherwise; both give the same float32 products up to summation order. Work is done in
chunks bounded by :data:`MAX_CHUNK_ENTRIES` similarities and :data:`ROW_CHUNK_BYTES` of rows, so memory stays
bounded whatever the number of tokens.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from ._codecs import dequantise_int14, quantise_int8

__all__ = [
    "ESTIMATE_ROWS",
    "INT14_ROWS",
    "INT14_WINDOW_MIN_DIM",
    "MAX_CHUNK_ENTRIES",
    "ROW_CHUNK_BYTES",
    "Planes",
    "doc_groups",
    "doc_scale_codes",
    "doc_scale_estimate",
    "flat_maxsim",
    "int8_estimate",
    "maxsim_both_ways",
    "maxsim_int14",
    "maxsim_stacked",
    "product_kernel",
    "project",
    "split_query",
    "torch_module",
    "torch_threads",
    "widen_half",
]

#: Upper bound on the number of similarity entries (query tokens x document tokens) materialised at once:
#: 2**24 float32 entries = 64 MiB.
MAX_CHUNK_ENTRIES = 1 << 24
#: Document token rows are scored in chunks of at most this many float32 bytes (float16 rows are widened chunk-wise).
ROW_CHUNK_BYTES = 2 << 20
#: Rows per int8 product of :func:`int8_estimate` (documents are not split across products): the transposing copy
#: of a group's products stays in cache.
ESTIMATE_ROWS = 4096
#: Rows per group of the int14 exact product (bounds its float32 copies: 16 MB at 384-d).
INT14_ROWS = 1 << 13
#: Smallest dimension at which :func:`maxsim_int14` prunes tokens with int8 products before decoding the rest;
#: below it, decoding every token is cheaper than the pruning's fixed cost.
INT14_WINDOW_MIN_DIM = 256

_FloatArray = npt.NDArray[np.float32]
#: An int14 store's residual planes of stacked tokens: nibbles ``(T, d' / 2)`` and high bits ``(T, d' / 4)``
#: (see :func:`colbert_adapters._codecs.quantise_int14`).
Planes = tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]

_TORCH: Any = None


def torch_module() -> Any:
    """torch (a core dependency, imported on first use), or ``False`` where it cannot be imported."""
    global _TORCH
    if _TORCH is None:
        try:
            import torch

            _TORCH = torch
        except ImportError:  # pragma: no cover - torch is a core dependency
            _TORCH = False
    return _TORCH


@contextlib.contextmanager
def torch_threads(num_threads: int | None) -> Iterator[None]:
    """Run the block with ``num_threads`` torch intra-op threads in this thread (OpenMP settings are per thread)."""
    torch: Any = torch_module() if num_threads is not None else False
    if torch is False:
        yield
        return
    previous = torch.get_num_threads()
    if previous == num_threads:
        yield
        return
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def product_kernel(q_all: _FloatArray) -> Any:
    """A function ``(rows (r, dim), out (n_q, r)) -> out`` computing ``q_all @ rows.T`` into ``out``.

    torch's CPU matrix product (MKL / oneDNN, torch's intra-op threads) is faster than NumPy's OpenBLAS on these
    shapes (see ``benchmarks/``); rows that torch cannot wrap without a copy (read-only or non-contiguous arrays)
    go through NumPy. Both compute the same float32 products up to summation order.
    """
    torch = torch_module()
    q = np.array(q_all, dtype=np.float32, order="C")  # a small private copy torch may wrap (writeable)
    tq = torch.from_numpy(q) if torch is not False else None

    def product(rows: _FloatArray, out: _FloatArray) -> _FloatArray:
        if tq is not None and rows.flags.writeable and rows.flags.c_contiguous and rows.dtype == np.float32:
            torch.mm(tq, torch.from_numpy(rows).T, out=torch.from_numpy(out))
        else:
            np.matmul(q, rows.T, out=out)
        return out

    return product


def widen_half(src: npt.NDArray[Any], dst: _FloatArray) -> _FloatArray:
    """Exact float16 (or int8) -> float32 conversion of ``src`` into ``dst`` (same shape); returns ``dst``.

    NumPy converts half floats one element at a time (costing more than the matrix product that follows); torch,
    a core dependency imported here on first use, converts with F16C / AVX-512 instructions. Both are exact, so
    the result does not depend on which one ran.
    """
    torch = torch_module()
    if torch is not False and src.flags.writeable and all(st > 0 for st in src.strides):  # torch wraps strided views
        torch.from_numpy(dst).copy_(torch.from_numpy(src))
    else:
        np.copyto(dst, src)
    return dst


def doc_groups(offsets: npt.NDArray[np.integer[Any]], max_rows: int) -> Iterator[tuple[int, int, int, int]]:
    """Consecutive groups of documents (rows ``offsets``, ``(n_docs + 1,)``) of about ``max_rows`` rows each: yields
    ``(d0, d1, r0, r1)``, documents ``d0:d1`` on rows ``r0:r1``; a document longer than ``max_rows`` is a group of
    its own."""
    n_docs = offsets.shape[0] - 1
    d0 = 0
    while d0 < n_docs:
        d1 = max(d0 + 1, int(np.searchsorted(offsets, offsets[d0] + max_rows, side="right")) - 1)
        yield d0, d1, int(offsets[d0]), int(offsets[d1])
        d0 = d1


def maxsim_stacked(
    q_all: _FloatArray,
    q_offsets: npt.NDArray[np.int64],
    flat: npt.NDArray[Any],
    offsets: npt.NDArray[np.int64],
    row_scales: _FloatArray | None = None,
) -> _FloatArray:
    """Core kernel, inputs already validated.

    ``q_all`` stacks the token vectors of several queries (``q_offsets`` splits them), ``flat`` those of the
    documents (float32, float16, or int8 codes scaled by ``row_scales``). Returns ``(n_queries, n_docs)``.
    Document token rows are processed in chunks; a document that straddles two chunks gets the maximum of its
    partial maxima.
    """
    n_q_tokens = q_all.shape[0]
    n_docs = offsets.shape[0] - 1
    n_rows = flat.shape[0]
    # (n_q_tokens, n_docs): queries times the transposed document rows put each query token's similarities in
    # one contiguous row, so the per-document maxima are contiguous reductions along the last axis (much
    # faster than reducing the (rows, n_q_tokens) product along its first axis).
    best = np.full((n_q_tokens, n_docs), -np.inf, dtype=np.float32)
    # Cache-sized chunks of rows (the products of a chunk stay in cache for the reductions); float16 rows are
    # widened a chunk at a time into one reused buffer instead of a full-size float32 copy.
    rows_per_chunk = max(
        1, min(MAX_CHUNK_ENTRIES // max(1, n_q_tokens), ROW_CHUNK_BYTES // (4 * max(1, flat.shape[1])))
    )
    chunk = min(rows_per_chunk, n_rows)
    widen: _FloatArray | None = None
    if flat.dtype != np.float32:
        widen = np.empty((chunk, flat.shape[1]), dtype=np.float32)
    sims_buf = np.empty(n_q_tokens * chunk, dtype=np.float32)
    product = product_kernel(q_all)
    for r0 in range(0, n_rows, rows_per_chunk):
        r1 = min(n_rows, r0 + rows_per_chunk)
        rows = flat[r0:r1]
        if widen is not None:
            rows = widen_half(rows, widen[: r1 - r0])
        sims = product(rows, sims_buf[: n_q_tokens * (r1 - r0)].reshape(n_q_tokens, r1 - r0))
        if row_scales is not None:
            sims *= row_scales[None, r0:r1]
        # Documents intersecting [r0, r1): from the one holding row r0 to the one holding row r1 - 1.
        first = int(np.searchsorted(offsets, r0, side="right")) - 1
        last = int(np.searchsorted(offsets, r1 - 1, side="right")) - 1
        starts = np.maximum(offsets[first : last + 1], r0) - r0
        part = np.maximum.reduceat(sims, starts, axis=1)  # (n_q_tokens, last - first + 1)
        np.maximum(best[:, first : last + 1], part, out=best[:, first : last + 1])
    # Accumulate the per-token maxima in float64 so long queries do not lose precision.
    summed = np.add.reduceat(best.astype(np.float64), q_offsets[:-1], axis=0)  # (n_queries, n_docs)
    return np.ascontiguousarray(summed, dtype=np.float32)


def int8_estimate(
    q_scales: _FloatArray,
    q_int8: npt.NDArray[np.int8],
    flat: npt.NDArray[np.int8],
    scales: _FloatArray,
    offs: npt.NDArray[np.int64],
    *,
    num_threads: int | None,
) -> _FloatArray | None:
    """:func:`colbert_adapters.scoring.maxsim_int8_estimate` on checked arguments and a query already rounded to
    int8 (``quantise_int8``: scales ``(n_q,)``, codes ``(n_q, dim)``); ``None`` where torch or its int8 product is
    unavailable.

    The documents' codes are the product's left operand: ``(rows, dim) @ (dim, n_q)``, whose result is transposed
    while it is converted to float32 (one pass), in groups of about ``ESTIMATE_ROWS`` rows so that the transpose
    stays in cache. With the query on the left (``(n_q, dim) @ (dim, rows)``) oneDNN would repack every document row as
    the right operand, which costs more than the product.
    """
    n_docs = offs.shape[0] - 1
    if n_docs == 0:
        return np.zeros(0, dtype=np.float32)
    torch = torch_module()
    if torch is False or not hasattr(torch, "_int_mm"):  # pragma: no cover - torch >= 2.4 has it
        return None
    q_right = torch.from_numpy(np.ascontiguousarray(q_int8.T))  # (dim, n_q)
    if not flat.flags.writeable:
        flat = np.array(flat)  # torch wraps writable memory only
    n_q = q_int8.shape[0]
    best = np.empty((n_q, n_docs), dtype=np.float32)
    # Documents in groups of about ESTIMATE_ROWS rows (fewer if MAX_CHUNK_ENTRIES bounds the (rows,
    # n_query_tokens) int32 products lower): the transposing copy stays in cache, which one large group's does not.
    rows_per_chunk = max(1, min(ESTIMATE_ROWS, MAX_CHUNK_ENTRIES // 4 // n_q))
    with torch_threads(num_threads):
        for d0, d1, r0, r1 in doc_groups(offs, rows_per_chunk):
            try:
                prod = torch._int_mm(torch.from_numpy(flat[r0:r1]), q_right).numpy()
            except RuntimeError:  # pragma: no cover - a torch build without the CPU int8 product
                return None
            sims = np.ascontiguousarray(prod.T, dtype=np.float32)  # (n_q, rows)
            sims *= scales[None, r0:r1]
            best[:, d0:d1] = np.maximum.reduceat(sims, offs[d0:d1] - r0, axis=1)
    best *= q_scales[:, None]
    scores: _FloatArray = best.sum(axis=0, dtype=np.float64).astype(np.float32)
    return scores


def flat_maxsim(
    q: _FloatArray,
    flat: npt.NDArray[Any],
    offsets: npt.NDArray[np.int64],
    row_scales: _FloatArray | None = None,
    *,
    num_threads: int | None = None,
) -> _FloatArray:
    """MaxSim ``(n_docs,)`` of one query ``(n_q, dim)`` against stacked documents (rows ``flat``, ``offsets``
    ``(n_docs + 1,)``, int8 rows with ``row_scales``), inputs already checked; ``num_threads`` torch threads in
    the calling thread (``None``: torch's setting)."""
    if offsets.shape[0] == 1:
        return np.zeros(0, dtype=np.float32)
    with torch_threads(num_threads):
        scores: _FloatArray = maxsim_stacked(q, np.array([0, q.shape[0]], dtype=np.int64), flat, offsets, row_scales)[0]
    return scores


def doc_scale_codes(
    codes: npt.NDArray[np.int8], scales: npt.NDArray[np.float32], offsets: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float32]]:
    """int8 tokens ``codes * scales`` ``(T, dim)`` requantised with one scale per document (its tokens' largest):
    (codes ``(T, dim)``, document scales ``(m,)``), each component within half a document step of the stored one.

    With one scale per document, a document's best similarity per query token is the largest integer product
    times that scale: :func:`doc_scale_estimate` skips widening and scaling every product (the scan's main cost
    besides the product itself). The coarser scale costs little rank accuracy: the caller scores a margin of the
    best documents exactly (``benchmarks/results/design-notes.md`` records the ranks).
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


def doc_scale_estimate(
    q: npt.NDArray[np.float32],
    codes: npt.NDArray[np.int8],
    doc_scales: npt.NDArray[np.float32],
    offsets: npt.NDArray[np.int64],
) -> npt.NDArray[np.float32]:
    """Approximate MaxSim ``(m,)`` of ``q`` ``(n_q, dim)`` against documents requantised by
    :func:`doc_scale_codes`, the query rounded to int8 per token: each document's best integer product per query
    token times the two scales (torch's int8 product on both cores; the exact float32 product where torch lacks
    it). For ranking only."""
    n_docs = offsets.shape[0] - 1
    q_scales, q_codes = quantise_int8(q)
    best = np.empty((q.shape[0], n_docs), dtype=np.float32)
    torch = torch_module()
    if torch is False or not hasattr(torch, "_int_mm"):  # pragma: no cover - torch >= 2.4 has it
        rows = np.repeat(doc_scales, np.diff(offsets))
        return flat_maxsim(q, codes.astype(np.float32), offsets, rows)
    tq = torch.from_numpy(q_codes)
    with torch_threads(None):
        for d0, d1, r0, r1 in doc_groups(offsets, max(1, (1 << 22) // q.shape[0])):
            prod = torch._int_mm(tq, torch.from_numpy(codes[r0:r1]).T).numpy()
            best[:, d0:d1] = np.maximum.reduceat(prod, offsets[d0:d1] - r0, axis=1)
    best *= doc_scales[None, :]
    best *= q_scales[:, None]
    estimate: npt.NDArray[np.float32] = best.sum(axis=0, dtype=np.float64).astype(np.float32)
    return estimate


def split_query(q: npt.NDArray[np.float32], parts: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int8]]:
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


def maxsim_int14(
    q: npt.NDArray[np.float32],
    codes: npt.NDArray[np.int8],
    scales: npt.NDArray[np.float32],
    planes: Planes,
    offsets: npt.NDArray[np.int64],
    *,
    decode: bool = False,
) -> npt.NDArray[np.float32]:
    """MaxSim of ``q`` ``(n_q, dim)`` against int14-stored documents (rows ``offsets``): ``(n_docs,)`` float32.

    A token stands for ``(codes + (v - L) / (2 L)) * scale`` (:func:`~colbert_adapters._codecs.quantise_int14`).
    With ``decode``, below ``INT14_WINDOW_MIN_DIM`` dimensions, or without torch's int8 product, the tokens are
    decoded to float32 and scored by :func:`flat_maxsim` on one thread, documents in groups of about ``INT14_ROWS``
    rows. Otherwise, in such groups (torch on one thread: the product alternates with the HNSW search's threads):

    1. ``q . codes`` for every token as an int8 product (``torch._int_mm``) with the query as two int8 parts
       (:func:`split_query`);
    2. a token's similarity lies within ``scale * reach_i`` of that product (the query's remainder: at most
       ``dim / 4`` code units; the residual: at most ``|q_i|_1 / 2``), so a token whose upper bound falls short of
       the best lower bound in its document, for every query token, cannot be a maximum. Only the other tokens (a
       quarter to a third of them on MiniLM and the synthetic benchmark set) are decoded to float32 and multiplied
       by the float32 query;
    3. each document's maximum is taken over its remaining tokens: exactly its maximum over all of them, so the
       scores equal the decoded path's (the pruning pays off on wide tokens only, hence ``INT14_WINDOW_MIN_DIM``).
    """
    n_q, dim = q.shape
    n_docs = offsets.shape[0] - 1
    torch = torch_module()
    if decode or dim < INT14_WINDOW_MIN_DIM or torch is False or not hasattr(torch, "_int_mm"):
        exact = np.empty(n_docs, dtype=np.float32)
        for d0, d1, r0, r1 in doc_groups(offsets, INT14_ROWS):
            decoded = dequantise_int14(codes[r0:r1], scales[r0:r1], planes[0][r0:r1], planes[1][r0:r1])
            exact[d0:d1] = flat_maxsim(q, decoded, offsets[d0 : d1 + 1] - r0, num_threads=1)
        return exact
    q_scales, parts = split_query(q, 2)
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
        with torch_threads(1):
            for d0, d1, r0, r1 in doc_groups(offsets, INT14_ROWS):
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
                decoded = dequantise_int14(codes[rows], scales[rows], planes[0][rows], planes[1][rows])
                fine = torch.mm(tq, torch.from_numpy(decoded).T).numpy()
                kept = np.zeros(d1 - d0 + 1, dtype=np.int64)
                np.cumsum(np.add.reduceat(maybe, local), out=kept[1:])
                best[:, d0:d1] = np.maximum.reduceat(fine, kept[:-1], axis=1)
    except RuntimeError:  # pragma: no cover - a torch build without the CPU int8 product
        return maxsim_int14(q, codes, scales, planes, offsets, decode=True)
    scores: npt.NDArray[np.float32] = best.sum(axis=0, dtype=np.float64).astype(np.float32)
    return scores


def project(q: npt.NDArray[np.float32], proj: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """``q @ proj.T``: query tokens ``(n_q, dim)`` on a segment's principal directions ``(graph_dim, dim)``.

    On one torch thread, not NumPy's: OpenBLAS would run this small product on every core and leave its threads
    spinning after it, on the core that the HNSW search and the rerank need next.
    """
    torch = torch_module()
    if torch is False or not proj.flags.writeable:  # pragma: no cover - torch is a core dependency; proj a copy
        return np.asarray(q @ proj.T, dtype=np.float32)
    out = np.empty((q.shape[0], proj.shape[0]), dtype=np.float32)
    tq = torch.from_numpy(np.array(q, dtype=np.float32, order="C"))  # a private copy: torch wraps writable memory
    with torch_threads(1):
        torch.mm(tq, torch.from_numpy(proj).T, out=torch.from_numpy(out))
    return out


def maxsim_both_ways(
    a: _FloatArray, flat: _FloatArray, offsets: npt.NDArray[np.int64]
) -> tuple[_FloatArray, _FloatArray]:
    """``MaxSim(a, doc_i)`` and ``MaxSim(doc_i, a)`` for every document of ``flat``, from one product.

    Inputs validated: ``a`` float32 ``(n_a, dim)``, ``flat`` float32 ``(n_rows, dim)`` split by ``offsets``
    (``(n_docs + 1,)``, no empty document). Each chunk's ``a @ rows.T`` gives both: maxima along ``a``'s tokens
    score each document row against ``a`` (summed per document: ``MaxSim(doc_i, a)``), per-document maxima along
    the rows score ``a``'s tokens against the document (summed: ``MaxSim(a, doc_i)``). Returns two ``(n_docs,)``.
    """
    n_a, n_docs, n_rows = a.shape[0], offsets.shape[0] - 1, flat.shape[0]
    best = np.full((n_a, n_docs), -np.inf, dtype=np.float32)
    row_best = np.empty(n_rows, dtype=np.float32)
    rows_per_chunk = max(1, min(MAX_CHUNK_ENTRIES // max(1, n_a), ROW_CHUNK_BYTES // (4 * max(1, flat.shape[1]))))
    sims_buf = np.empty(n_a * min(rows_per_chunk, n_rows), dtype=np.float32)
    product = product_kernel(a)
    for r0 in range(0, n_rows, rows_per_chunk):
        r1 = min(n_rows, r0 + rows_per_chunk)
        sims = product(flat[r0:r1], sims_buf[: n_a * (r1 - r0)].reshape(n_a, r1 - r0))
        np.max(sims, axis=0, out=row_best[r0:r1])
        first = int(np.searchsorted(offsets, r0, side="right")) - 1
        last = int(np.searchsorted(offsets, r1 - 1, side="right")) - 1
        starts = np.maximum(offsets[first : last + 1], r0) - r0
        np.maximum(best[:, first : last + 1], np.maximum.reduceat(sims, starts, axis=1), out=best[:, first : last + 1])
    forward = best.sum(axis=0, dtype=np.float64).astype(np.float32)
    backward = np.add.reduceat(row_best.astype(np.float64), offsets[:-1]).astype(np.float32)
    return forward, backward
