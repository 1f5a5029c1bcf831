"""MaxSim late-interaction scoring: the public API (checked inputs, then a kernel of :mod:`._kernels`).

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

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from . import _kernels
from ._codecs import quantise_int8
from ._kernels import MAX_CHUNK_ENTRIES as MAX_CHUNK_ENTRIES
from ._kernels import ROW_CHUNK_BYTES as ROW_CHUNK_BYTES
from ._kernels import flat_maxsim, int8_estimate, maxsim_stacked
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
    scores: _FloatArray = maxsim_stacked(q, np.array([0, q.shape[0]], dtype=np.int64), flat, offsets)[0]
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
    return flat_maxsim(q, flat, offs, scales, num_threads=num_threads)


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
    Meant for choosing which candidates to score exactly (cheaper than the exact product: integer products, no
    widening); where torch or its int8 product is unavailable the exact :func:`maxsim_flat` scores are returned.

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
    estimate = int8_estimate(q_scales, q_int8, flat, scales, offs, num_threads=num_threads)
    if estimate is None:  # pragma: no cover - torch >= 2.4 has the int8 product
        return maxsim_flat(q, flat, offs, validate=False, row_scales=scales, num_threads=num_threads)
    return estimate


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
        while stop < len(qs) and (stop == start or (tokens + qs[stop].shape[0]) * n_docs <= _kernels.MAX_CHUNK_ENTRIES):
            tokens += qs[stop].shape[0]
            stop += 1
        group = qs[start:stop]
        q_offsets = np.zeros(len(group) + 1, dtype=np.int64)
        np.cumsum([g.shape[0] for g in group], out=q_offsets[1:])
        out[start:stop] = maxsim_stacked(np.concatenate(group), q_offsets, flat, offsets)
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
    step = max(1, _kernels.MAX_CHUNK_ENTRIES // per_doc)
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
