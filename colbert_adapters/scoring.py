"""MaxSim late-interaction scoring: the one place where the ColBERT similarity is computed.

The score of a document for a query is the sum, over the query's token vectors, of the best dot product
with any of the document's token vectors (``sum_i max_j <q_i, d_j>``). With L2-normalised rows this is a
sum of cosines, so a score lies in ``[-n_query_tokens, n_query_tokens]``; higher is better.

Documents are ragged: every document keeps exactly its own tokens. Nothing is padded with zero vectors, so
a query token whose similarities to a short document are all negative contributes that negative maximum,
not the ``0`` a zero padding row would win with (PyLate's ``rank.rerank`` pads with zeros and no mask;
see ``shared/reference/pylate-spec.md`` fact 11). The torch variants mask padding with ``-inf``.

Example:
    Two query tokens, two documents (one with two tokens, one with a single token):

    >>> import numpy as np
    >>> q = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    >>> doc_a = np.array([[1.0, 0.0], [0.6, 0.8]], dtype=np.float32)
    >>> doc_b = np.array([[0.0, -1.0]], dtype=np.float32)
    >>> [round(s, 4) for s in maxsim(q, [doc_a, doc_b]).tolist()]  # a: max(1, .6) + max(0, .8); b: 0 - 1
    [1.8, -1.0]
    >>> [(h.id, round(h.score, 2)) for h in rerank(q, [doc_b, doc_a], ids=["b", "a"])]
    [('a', 1.8), ('b', -1.0)]
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ._validation import as_multivector, check_ids, check_k
from .errors import DimensionMismatchError, InvalidInputError
from .types import Hit, Metadata, MultiVector

if TYPE_CHECKING:
    import torch

__all__ = [
    "maxsim",
    "maxsim_batch",
    "maxsim_flat",
    "maxsim_int8_estimate",
    "maxsim_padded_torch",
    "maxsim_torch",
    "quantise_int8",
    "rerank",
]

logger = logging.getLogger(__name__)

#: Upper bound on the number of similarity entries (query tokens x document tokens) materialised at once
#: by the numpy paths: 2**24 float32 entries = 64 MiB.
MAX_CHUNK_ENTRIES = 1 << 24
#: Rows per int8 product of :func:`maxsim_int8_estimate` (documents are not split across products).
_ESTIMATE_ROWS = 4096
#: Document token rows are scored in chunks of at most this many float32 bytes (float16 rows are widened chunk-wise).
ROW_CHUNK_BYTES = 2 << 20

_FloatArray = npt.NDArray[np.float32]


# --------------------------------------------------------------------------------------------------- numpy


def maxsim(query: MultiVector | Any, documents: Sequence[MultiVector | Any]) -> _FloatArray:
    """Exact MaxSim scores of one query against ragged documents.

    Args:
        query: float32 array-like of shape ``(n_query_tokens, dim)``.
        documents: ``n_docs`` array-likes, document ``i`` of shape ``(n_tokens_i, dim)``; lengths may differ.

    Returns:
        float32 array of shape ``(n_docs,)``: ``sum_i max_j <query_i, doc_j>`` per document, in input order.
        An empty ``documents`` gives an empty array.

    Raises:
        InvalidInputError: the query or a document is not 2-D, is empty (no token vectors), or holds NaN/inf.
        DimensionMismatchError: a document's dimension differs from the query's.

    Example:
        >>> import numpy as np
        >>> maxsim(np.eye(2, dtype=np.float32), [np.eye(2, dtype=np.float32)]).tolist()
        [2.0]
    """
    q = as_multivector(query, where="query")
    flat, offsets = _concat_documents(documents, q.shape[1])
    if offsets.shape[0] == 1:
        return np.zeros(0, dtype=np.float32)
    scores: _FloatArray = _maxsim_stacked(q, np.array([0, q.shape[0]], dtype=np.int64), flat, offsets)[0]
    return scores


def maxsim_flat(
    query: MultiVector | Any,
    flat_tokens: _FloatArray | npt.NDArray[np.float16],
    offsets: npt.NDArray[np.integer[Any]] | Sequence[int],
    *,
    validate: bool = True,
    row_scales: npt.NDArray[np.float32] | None = None,
    num_threads: int | None = None,
) -> _FloatArray:
    """MaxSim of one query against documents whose token vectors are stacked in one matrix.

    Document ``i`` owns rows ``flat_tokens[offsets[i]:offsets[i + 1]]``. The work is done in chunks of at most
    :data:`MAX_CHUNK_ENTRIES` similarities, so peak memory stays bounded however many tokens there are.

    Args:
        query: float32 array-like ``(n_query_tokens, dim)``.
        flat_tokens: float32 array ``(n_total_tokens, dim)``; a float16 array is used as it is and widened
            to float32 a cache-sized chunk at a time (cheaper than converting it first).
        offsets: int array ``(n_docs + 1,)``, starting at 0, strictly increasing (every document has at least
            one token), ending at ``n_total_tokens``.
        validate: check that ``flat_tokens`` is finite (an ``O(n_total_tokens * dim)`` pass). Backends that
            validated vectors on insert pass ``False``; shapes and offsets are always checked.
        row_scales: float32 ``(n_total_tokens,)``: row ``j`` stands for ``flat_tokens[j] * row_scales[j]``
            (quantised storage: ``flat_tokens`` may then be int8 codes). The scales multiply the similarities
            after the product, so the codes are never dequantised in memory.
        num_threads: torch intra-op threads for the products, in the calling thread only (restored after);
            ``None`` keeps torch's setting. Callers that alternate with another thread pool (an HNSW search)
            pass ``1``: idle OpenMP workers spin for a while after each product and slow the other pool down.

    Returns:
        float32 array ``(n_docs,)`` of MaxSim scores.

    Raises:
        InvalidInputError: malformed offsets, non-2-D or non-finite inputs.
        DimensionMismatchError: ``flat_tokens`` and ``query`` have different dimensions.

    Example:
        >>> import numpy as np
        >>> tokens = np.array([[1, 0], [0, 1], [-1, 0]], dtype=np.float32)
        >>> maxsim_flat(np.array([[1, 0]], dtype=np.float32), tokens, [0, 2, 3]).tolist()
        [1.0, -1.0]
    """
    q = as_multivector(query, where="query")
    flat = _check_flat(flat_tokens, q.shape[1], validate=validate, quantised=row_scales is not None)
    offs = _check_offsets(offsets, flat.shape[0])
    scales = None if row_scales is None else _check_row_scales(row_scales, flat.shape[0], validate=validate)
    if offs.shape[0] == 1:
        return np.zeros(0, dtype=np.float32)
    if num_threads is not None and (
        isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1
    ):
        raise InvalidInputError(f"num_threads must be a positive int or None, got {num_threads!r}")
    with _torch_threads(num_threads):
        scores: _FloatArray = _maxsim_stacked(q, np.array([0, q.shape[0]], dtype=np.int64), flat, offs, scales)[0]
    return scores


def maxsim_int8_estimate(
    query: MultiVector | Any,
    codes: npt.NDArray[np.int8],
    row_scales: npt.NDArray[np.float32],
    offsets: npt.NDArray[np.integer[Any]] | Sequence[int],
    *,
    num_threads: int | None = None,
    query_int8: tuple[_FloatArray, npt.NDArray[np.int8]] | None = None,
) -> _FloatArray:
    """Approximate MaxSim against int8-quantised documents, with the query quantised to int8 as well.

    Document ``i`` owns rows ``codes[offsets[i]:offsets[i + 1]]``; row ``j`` stands for ``codes[j] * row_scales[j]``
    (the layout :func:`maxsim_flat` takes with ``row_scales``). Each query token is rounded to int8 with its own
    scale ``s_i = max|query_i| / 127`` and the products are exact integer products (``torch._int_mm``: VNNI / AMX
    instructions, no float copy of the codes), so the one difference from :func:`maxsim_flat` on the same codes
    is the query's rounding: each similarity moves by at most ``s_i / 2 * row_scales[j] * sum(|codes[j]|)``.
    Meant for choosing which candidates to score exactly (about 3x cheaper than the exact product on 384-d
    codes here); where torch or its int8 product is unavailable the exact :func:`maxsim_flat` scores are returned.

    Args:
        query: float32 array-like ``(n_query_tokens, dim)``, finite.
        codes: int8 array ``(n_total_tokens, dim)`` (row-strided views are used without a copy when writable).
        row_scales: float32 ``(n_total_tokens,)``.
        offsets: int array ``(n_docs + 1,)`` as for :func:`maxsim_flat`.
        num_threads: torch intra-op threads for the products, as for :func:`maxsim_flat`.
        query_int8: ``quantise_int8(query)`` when the caller already has it (``(n_query_tokens,)`` scales and
            ``(n_query_tokens, dim)`` codes), so that a query estimated against several batches is rounded once.

    Returns:
        float32 array ``(n_docs,)`` of estimated MaxSim scores.

    Raises:
        InvalidInputError: malformed offsets or scales, codes that are not int8.
        DimensionMismatchError: ``codes`` and ``query`` have different dimensions.
    """
    q = as_multivector(query, where="query")
    arr = np.asarray(codes)
    if arr.dtype != np.int8:
        raise InvalidInputError(f"codes must be an int8 array, got dtype {arr.dtype}")
    flat = _check_flat(arr, q.shape[1], validate=False, quantised=True)
    offs = _check_offsets(offsets, flat.shape[0])
    scales = _check_row_scales(row_scales, flat.shape[0], validate=False)
    n_docs = offs.shape[0] - 1
    if n_docs == 0:
        return np.zeros(0, dtype=np.float32)
    q_scales, q_int8 = quantise_int8(q) if query_int8 is None else query_int8
    if q_int8.shape != q.shape or q_int8.dtype != np.int8 or q_scales.shape != (q.shape[0],):
        raise InvalidInputError(
            f"query_int8 must be quantise_int8(query): int8 codes {q.shape} and scales ({q.shape[0]},), got "
            f"{q_int8.dtype} codes {q_int8.shape} and scales {q_scales.shape}"
        )
    estimate = _int8_estimate(q_scales, q_int8, flat, scales, offs, num_threads=num_threads)
    if estimate is None:  # pragma: no cover - torch >= 2.4 has the int8 product
        return maxsim_flat(q, flat, offs, validate=False, row_scales=scales, num_threads=num_threads)
    return estimate


def _int8_estimate(
    q_scales: _FloatArray,
    q_int8: npt.NDArray[np.int8],
    flat: npt.NDArray[np.int8],
    scales: _FloatArray,
    offs: npt.NDArray[np.int64],
    *,
    num_threads: int | None,
) -> _FloatArray | None:
    """:func:`maxsim_int8_estimate` on checked arguments and a query already rounded to int8 (``quantise_int8``:
    scales ``(n_q,)``, codes ``(n_q, dim)``); ``None`` where torch or its int8 product is unavailable.

    The documents' codes are the product's left operand: ``(rows, dim) @ (dim, n_q)``, whose result is transposed
    while it is converted to float32 (one pass), in groups of about ``_ESTIMATE_ROWS`` rows so that the transpose
    stays in cache. The query on the left (``(n_q, dim) @ (dim, rows)``) repacks every document row as the right
    operand: 1.84 vs 1.20 ms on 10,800 random 384-d rows and 20 query tokens, 11.1 vs 8.4 ms on 100,000 128-d rows
    and 32 tokens (one thread).
    """
    n_docs = offs.shape[0] - 1
    if n_docs == 0:
        return np.zeros(0, dtype=np.float32)
    torch = _torch_module()
    if torch is False or not hasattr(torch, "_int_mm"):  # pragma: no cover - torch >= 2.4 has it
        return None
    q_right = torch.from_numpy(np.ascontiguousarray(q_int8.T))  # (dim, n_q)
    if not flat.flags.writeable:
        flat = np.array(flat)  # torch wraps writable memory only
    n_q = q_int8.shape[0]
    best = np.empty((n_q, n_docs), dtype=np.float32)
    # Documents in groups of about _ESTIMATE_ROWS rows (fewer if MAX_CHUNK_ENTRIES bounds the (rows,
    # n_query_tokens) int32 products lower): the transposing copy stays in cache. One group of 100,000 rows took
    # 26 ms where groups of 4,096 took 8 (128-d, 32 query tokens; the query on the left, as before: 8).
    rows_per_chunk = max(1, min(_ESTIMATE_ROWS, MAX_CHUNK_ENTRIES // 4 // n_q))
    with _torch_threads(num_threads):
        for d0, d1, r0, r1 in _doc_groups(offs, rows_per_chunk):
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


def _doc_groups(offsets: npt.NDArray[np.integer[Any]], max_rows: int) -> Iterator[tuple[int, int, int, int]]:
    """Consecutive groups of documents (rows ``offsets``, ``(n_docs + 1,)``) of about ``max_rows`` rows each: yields
    ``(d0, d1, r0, r1)``, documents ``d0:d1`` on rows ``r0:r1``; a document longer than ``max_rows`` is a group of
    its own."""
    n_docs = offsets.shape[0] - 1
    d0 = 0
    while d0 < n_docs:
        d1 = max(d0 + 1, int(np.searchsorted(offsets, offsets[d0] + max_rows, side="right")) - 1)
        yield d0, d1, int(offsets[d0]), int(offsets[d1])
        d0 = d1


def quantise_int8(arr: npt.NDArray[np.floating[Any]]) -> tuple[_FloatArray, npt.NDArray[np.int8]]:
    """Symmetric per-row int8 quantisation of ``arr`` ``(n, dim)``: (scales ``(n,)`` float32, codes ``(n, dim)``).

    Row ``i`` is ``codes[i] * scales[i]`` within ``scales[i] / 2`` per component (``scales[i]`` is the row's
    largest magnitude over 127; an all-zero row gets scale 0 and zero codes).

    Example:
        >>> import numpy as np
        >>> scales, codes = quantise_int8(np.array([[0.5, -0.25]], dtype=np.float32))
        >>> codes.tolist(), float(scales[0] * 127)
        ([[127, -64]], 0.5)
    """
    scales = (np.abs(arr).max(axis=1) / 127.0).astype(np.float32)
    safe = np.where(scales > 0, scales, np.float32(1.0))
    codes = np.clip(np.rint(arr / safe[:, None]), -127, 127).astype(np.int8)
    return scales, codes


def maxsim_batch(queries: Sequence[MultiVector | Any], documents: Sequence[MultiVector | Any]) -> _FloatArray:
    """MaxSim of every query against every document.

    Args:
        queries: ``n_queries`` array-likes, query ``i`` of shape ``(n_query_tokens_i, dim)``.
        documents: ``n_docs`` array-likes, document ``j`` of shape ``(n_tokens_j, dim)``.

    Returns:
        float32 array ``(n_queries, n_docs)``; entry ``[i, j]`` equals ``maxsim(queries[i], [documents[j]])``.

    Raises:
        InvalidInputError: a query or document is empty, not 2-D, or non-finite.
        DimensionMismatchError: the dimensions differ.
    """
    if isinstance(queries, np.ndarray) and queries.ndim == 2:
        raise InvalidInputError(
            "queries must be a sequence of (n_tokens, dim) arrays, got one 2-D array; wrap it: [query]"
        )
    qs = [as_multivector(x, where=f"queries[{i}]") for i, x in enumerate(queries)]
    if not qs:
        dim = None
    else:
        dim = qs[0].shape[1]
        for i, x in enumerate(qs):
            if x.shape[1] != dim:
                raise DimensionMismatchError(
                    f"queries[{i}] has dimension {x.shape[1]}, queries[0] has {dim}; encode all queries with "
                    "the same model"
                )
    flat, offsets = _concat_documents(documents, dim)
    n_docs = offsets.shape[0] - 1
    if not qs or n_docs == 0:
        return np.zeros((len(qs), n_docs), dtype=np.float32)
    out = np.empty((len(qs), n_docs), dtype=np.float32)
    # Group queries so the (query tokens x docs) running-max matrix stays within the chunk budget.
    start = 0
    while start < len(qs):
        stop, tokens = start, 0
        while stop < len(qs) and (stop == start or (tokens + qs[stop].shape[0]) * n_docs <= MAX_CHUNK_ENTRIES):
            tokens += qs[stop].shape[0]
            stop += 1
        group = qs[start:stop]
        q_offsets = np.zeros(len(group) + 1, dtype=np.int64)
        np.cumsum([g.shape[0] for g in group], out=q_offsets[1:])
        out[start:stop] = _maxsim_stacked(np.concatenate(group), q_offsets, flat, offsets)
        start = stop
    return out


def _concat_documents(documents: Sequence[Any], dim: int | None) -> tuple[_FloatArray, npt.NDArray[np.int64]]:
    """Validate ragged documents and stack them: ``(n_total_tokens, dim)`` plus offsets ``(n_docs + 1,)``."""
    if isinstance(documents, np.ndarray) and documents.ndim == 2:
        raise InvalidInputError(
            "documents must be a sequence of (n_tokens, dim) arrays, got one 2-D array; wrap it: [document]"
        )
    if isinstance(documents, (str, bytes)) or not isinstance(documents, (Sequence, np.ndarray)):
        raise InvalidInputError(
            f"documents must be a sequence of (n_tokens, dim) arrays, got {type(documents).__name__}"
        )
    docs: list[_FloatArray] = []
    for i, d in enumerate(documents):
        arr = as_multivector(d, dim=dim, where=f"documents[{i}]")
        if dim is None:
            dim = arr.shape[1]
        docs.append(arr)
    offsets = np.zeros(len(docs) + 1, dtype=np.int64)
    if not docs:
        return np.zeros((0, dim or 0), dtype=np.float32), offsets
    np.cumsum([d.shape[0] for d in docs], out=offsets[1:])
    return np.concatenate(docs), offsets


def _check_flat(flat_tokens: Any, dim: int, *, validate: bool, quantised: bool = False) -> npt.NDArray[Any]:
    arr = np.asarray(flat_tokens)
    if arr.dtype == np.int8 and not quantised:
        raise InvalidInputError("int8 flat_tokens are quantisation codes: pass their row_scales too")
    if arr.dtype not in (np.float16, np.int8):  # float16 / int8 stay as they are: the kernel widens chunk by chunk
        arr = arr.astype(np.float32, copy=False)
    if arr.ndim != 2:
        raise InvalidInputError(f"flat_tokens must be 2-D (n_total_tokens, dim), got shape {arr.shape}")
    if arr.shape[1] != dim:
        raise DimensionMismatchError(
            f"flat_tokens has dimension {arr.shape[1]}, the query has {dim}; encode both with the same model"
        )
    if validate and not np.isfinite(arr).all():
        raise InvalidInputError("flat_tokens contains NaN or inf values; check the encoder output")
    return arr


def _check_row_scales(row_scales: Any, n_rows: int, *, validate: bool) -> _FloatArray:
    scales = np.asarray(row_scales, dtype=np.float32)
    if scales.shape != (n_rows,):
        raise InvalidInputError(f"row_scales must have shape ({n_rows},) (one scale per token row), got {scales.shape}")
    if validate and not np.isfinite(scales).all():
        raise InvalidInputError("row_scales contains NaN or inf values")
    return scales


def _check_offsets(offsets: Any, n_rows: int) -> npt.NDArray[np.int64]:
    offs = np.asarray(offsets)
    if offs.ndim != 1 or offs.shape[0] < 1 or not np.issubdtype(offs.dtype, np.integer):
        raise InvalidInputError(
            f"offsets must be a 1-D integer array (n_docs + 1,), got dtype {offs.dtype} shape {offs.shape}"
        )
    offs = offs.astype(np.int64, copy=False)
    if offs[0] != 0 or offs[-1] != n_rows:
        raise InvalidInputError(
            f"offsets must start at 0 and end at the number of token rows ({n_rows}), "
            f"got {int(offs[0])} ... {int(offs[-1])}"
        )
    if offs.shape[0] > 1 and not (np.diff(offs) > 0).all():
        bad = int(np.flatnonzero(np.diff(offs) <= 0)[0])
        raise InvalidInputError(
            f"offsets must be strictly increasing: document {bad} has no token vectors "
            f"(offsets[{bad}]={int(offs[bad])}, offsets[{bad + 1}]={int(offs[bad + 1])})"
        )
    return offs


def _maxsim_stacked(
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
    # one contiguous row, so the per-document maxima are contiguous reductions along the last axis (about 5x
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
    product = _product_kernel(q_all)
    for r0 in range(0, n_rows, rows_per_chunk):
        r1 = min(n_rows, r0 + rows_per_chunk)
        rows = flat[r0:r1]
        if widen is not None:
            rows = _widen_half(rows, widen[: r1 - r0])
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


_TORCH: Any = None


def _torch_module() -> Any:
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
def _torch_threads(num_threads: int | None) -> Iterator[None]:
    """Run the block with ``num_threads`` torch intra-op threads in this thread (OpenMP settings are per thread)."""
    torch: Any = _torch_module() if num_threads is not None else False
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


def _product_kernel(q_all: _FloatArray) -> Any:
    """A function ``(rows (r, dim), out (n_q, r)) -> out`` computing ``q_all @ rows.T`` into ``out``.

    torch's CPU matrix product (MKL / oneDNN, using torch's intra-op threads) is 1.3x (one thread) to 2.8x (two)
    faster than NumPy's OpenBLAS on these shapes; rows that torch cannot wrap without a copy (read-only or
    non-contiguous arrays) go through NumPy. Both compute the same float32 products up to summation order.
    """
    torch = _torch_module()
    q = np.array(q_all, dtype=np.float32, order="C")  # a small private copy torch may wrap (writeable)
    tq = torch.from_numpy(q) if torch is not False else None

    def product(rows: _FloatArray, out: _FloatArray) -> _FloatArray:
        if tq is not None and rows.flags.writeable and rows.flags.c_contiguous and rows.dtype == np.float32:
            torch.mm(tq, torch.from_numpy(rows).T, out=torch.from_numpy(out))
        else:
            np.matmul(q, rows.T, out=out)
        return out

    return product


def _widen_half(src: npt.NDArray[Any], dst: _FloatArray) -> _FloatArray:
    """Exact float16 (or int8) -> float32 conversion of ``src`` into ``dst`` (same shape); returns ``dst``.

    NumPy converts half floats one element at a time (~2.5 ns per value, more than the matrix product that
    follows); torch, a core dependency imported here on first use, converts with F16C / AVX-512 instructions
    (~8x faster). Both are exact, so the result does not depend on which one ran.
    """
    torch = _torch_module()
    if torch is not False and src.flags.writeable and all(st > 0 for st in src.strides):  # torch wraps strided views
        torch.from_numpy(dst).copy_(torch.from_numpy(src))
    else:
        np.copyto(dst, src)
    return dst


# --------------------------------------------------------------------------------------------------- torch


def maxsim_torch(
    query: torch.Tensor,
    documents: Sequence[torch.Tensor] | torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """MaxSim of one query against documents, in torch, on the tensors' device.

    Args:
        query: tensor ``(n_query_tokens, dim)``.
        documents: a list of ``n_docs`` tensors ``(n_tokens_i, dim)``, or a padded tensor
            ``(n_docs, t, dim)``.
        mask: for a padded tensor, a bool (or 0/1) tensor ``(n_docs, t)``, true on real tokens; ``None`` means
            every position is real. Must be ``None`` for a list.

    Returns:
        Tensor ``(n_docs,)`` in the query's floating dtype. Padding positions are excluded with ``-inf``,
        so the result equals :func:`maxsim` (not PyLate's zero-padded score).

    Raises:
        InvalidInputError: wrong ranks, a document without real tokens, a mask with the wrong shape.
        DimensionMismatchError: the dimensions differ.
    """
    import torch

    if query.ndim != 2 or query.shape[0] == 0:
        raise InvalidInputError(f"query must be a non-empty 2-D tensor (n_tokens, dim), got shape {tuple(query.shape)}")
    if isinstance(documents, torch.Tensor):
        docs = documents
        if docs.ndim != 3:
            raise InvalidInputError(
                f"a padded documents tensor must be 3-D (n_docs, t, dim), got shape {tuple(docs.shape)}"
            )
        if mask is None:
            mask = torch.ones(docs.shape[:2], dtype=torch.bool, device=docs.device)
    else:
        if mask is not None:
            raise InvalidInputError("mask only applies to a padded (n_docs, t, dim) tensor; drop it for a list")
        doc_list = list(documents)
        if not doc_list:
            return torch.zeros(0, dtype=query.dtype, device=query.device)
        for i, d in enumerate(doc_list):
            if d.ndim != 2 or d.shape[0] == 0:
                raise InvalidInputError(
                    f"documents[{i}] must be a non-empty 2-D tensor (n_tokens, dim), got shape {tuple(d.shape)}"
                )
            if d.shape[1] != query.shape[1]:
                raise DimensionMismatchError(
                    f"documents[{i}] has dimension {d.shape[1]}, the query has {query.shape[1]}"
                )
        docs = torch.nn.utils.rnn.pad_sequence(doc_list, batch_first=True)
        lengths = torch.tensor([d.shape[0] for d in doc_list], device=docs.device)
        mask = torch.arange(docs.shape[1], device=docs.device)[None, :] < lengths[:, None]
    return maxsim_padded_torch(
        query[None], torch.ones((1, query.shape[0]), dtype=torch.bool, device=query.device), docs, mask
    )[0]


def maxsim_padded_torch(
    queries: torch.Tensor,
    queries_mask: torch.Tensor | None,
    documents: torch.Tensor,
    documents_mask: torch.Tensor | None,
) -> torch.Tensor:
    """MaxSim of padded query and document batches, in torch, on the tensors' device.

    Args:
        queries: tensor ``(n_queries, s, dim)``.
        queries_mask: bool or 0/1 tensor ``(n_queries, s)``, true on real query tokens (``None``: all real).
            Padding query tokens contribute nothing.
        documents: tensor ``(n_docs, t, dim)``.
        documents_mask: bool or 0/1 tensor ``(n_docs, t)``, true on real document tokens (``None``: all real).
            Padding document tokens are excluded with ``-inf`` before the max.

    Returns:
        Tensor ``(n_queries, n_docs)`` of MaxSim scores.

    Raises:
        InvalidInputError: wrong ranks or mask shapes, or a document with no real token.
        DimensionMismatchError: the dimensions differ.
    """
    import torch

    if queries.ndim != 3 or documents.ndim != 3:
        raise InvalidInputError(
            f"queries and documents must be 3-D (batch, tokens, dim), got {tuple(queries.shape)} and "
            f"{tuple(documents.shape)}"
        )
    if queries.shape[2] != documents.shape[2]:
        raise DimensionMismatchError(
            f"queries have dimension {queries.shape[2]}, documents have {documents.shape[2]}; "
            "encode both with the same model"
        )
    q_mask = _bool_mask(queries_mask, queries.shape[:2], "queries_mask", queries.device)
    d_mask = _bool_mask(documents_mask, documents.shape[:2], "documents_mask", documents.device)
    if documents.shape[0] and not bool(d_mask.any(dim=1).all()):
        bad = int(torch.nonzero(~d_mask.any(dim=1))[0, 0])
        raise InvalidInputError(f"document {bad} has no real token (its mask row is all false)")
    n_q, s, _ = queries.shape
    n_d, t, _ = documents.shape
    dtype = torch.promote_types(queries.dtype, documents.dtype)
    out = torch.empty((n_q, n_d), dtype=dtype, device=queries.device)
    if n_q == 0 or n_d == 0:
        return out
    # Chunk over documents to bound the (n_q, chunk, s, t) similarity tensor.
    per_doc = max(1, n_q * s * t)
    step = max(1, MAX_CHUNK_ENTRIES // per_doc)
    neg_inf = torch.tensor(float("-inf"), dtype=out.dtype, device=documents.device)
    for b0 in range(0, n_d, step):
        b1 = min(n_d, b0 + step)
        sims = torch.einsum("asd,btd->abst", queries, documents[b0:b1])
        sims = torch.where(d_mask[None, b0:b1, None, :], sims, neg_inf)
        best = sims.max(dim=-1).values  # (n_q, chunk, s)
        best = torch.where(q_mask[:, None, :], best, torch.zeros((), dtype=best.dtype, device=best.device))
        out[:, b0:b1] = best.sum(dim=-1)
    return out


def _bool_mask(mask: torch.Tensor | None, shape: Any, name: str, device: Any) -> torch.Tensor:
    import torch

    if mask is None:
        return torch.ones(tuple(shape), dtype=torch.bool, device=device)
    if tuple(mask.shape) != tuple(shape):
        raise InvalidInputError(f"{name} must have shape {tuple(shape)}, got {tuple(mask.shape)}")
    return mask.to(device=device, dtype=torch.bool)


# --------------------------------------------------------------------------------------------------- rerank


def rerank(
    query_vectors: MultiVector | Any,
    documents_vectors: Sequence[MultiVector | Any],
    ids: Sequence[str],
    k: int | None = None,
    *,
    texts: Sequence[str | None] | None = None,
    metadatas: Sequence[Metadata | None] | None = None,
) -> list[Hit]:
    """Score candidate documents exactly with MaxSim and return them best first.

    Args:
        query_vectors: float32 array-like ``(n_query_tokens, dim)``.
        documents_vectors: ``n`` array-likes, ``(n_tokens_i, dim)`` each.
        ids: ``n`` document ids (non-empty ``str``), aligned with ``documents_vectors``.
        k: keep the best ``k`` (``None``: all). ``k`` larger than ``n`` returns all.
        texts: optional ``n`` texts copied into the hits.
        metadatas: optional ``n`` metadata mappings copied into the hits.

    Returns:
        Up to ``k`` :class:`~colbert_adapters.types.Hit` sorted by descending score; equal scores keep the
        input order.

    Raises:
        InvalidInputError: lengths differ, bad ids, bad ``k``, or invalid vectors.
        DimensionMismatchError: a document's dimension differs from the query's.
    """
    id_list = check_ids(ids, allow_duplicates=True)
    if isinstance(documents_vectors, np.ndarray) and documents_vectors.ndim == 2:
        raise InvalidInputError(
            "documents_vectors must be a sequence of (n_tokens, dim) arrays, got one 2-D array; wrap it"
        )
    n = len(documents_vectors)
    if len(id_list) != n:
        raise InvalidInputError(f"got {len(id_list)} ids for {n} documents_vectors; pass one id per document")
    for name, seq in (("texts", texts), ("metadatas", metadatas)):
        if seq is not None and len(seq) != n:
            raise InvalidInputError(f"got {len(seq)} {name} for {n} documents; pass one per document")
    limit = n if k is None else min(check_k(k), n)
    scores = maxsim(query_vectors, documents_vectors)
    order = np.argsort(-scores, kind="stable")[:limit]
    return [
        Hit(
            id=id_list[i],
            score=float(scores[i]),
            text=None if texts is None else texts[i],
            metadata=dict(metadatas[i] or {}) if metadatas is not None else {},
        )
        for i in order.tolist()
    ]
