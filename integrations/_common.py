"""Framework-neutral helpers shared by the LangChain and LlamaIndex integrations.

Nothing here imports a framework. The integrations stay thin: they translate the host's objects
(``Document`` / ``NodeWithScore``) to texts, ids and filters, and call these helpers, which delegate to
:class:`~colbert_adapters.store.MultiVectorStore` and :func:`colbert_adapters.scoring.rerank` (the one
place where MaxSim is computed).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

from .._filters import check_filter
from .._identity import same_model
from .._mmr import check_score_threshold
from .._validation import check_k
from ..backends.base import Backend
from ..errors import InvalidInputError
from ..scoring import rerank
from ..store import MultiVectorStore
from ..types import Encoder, Filter, Hit, MultiVector

__all__ = [
    "RerankResult",
    "RetrievalMode",
    "check_query",
    "load_encoder",
    "normalized_relevance",
    "query_token_vectors",
    "reject_unknown",
    "rerank_texts",
    "resolve_store",
    "search_mode",
    "search_with_query_length",
]

logger = logging.getLogger(__name__)


class RetrievalMode(str, Enum):
    """How a retriever searches, named as langchain-qdrant names it: ``DENSE`` is late interaction (MaxSim),
    ``SPARSE`` BM25 over the stored texts, ``HYBRID`` both fused (``MultiVectorStore.search(mode=...)``)."""

    DENSE = "dense"
    SPARSE = "sparse"
    HYBRID = "hybrid"


_MODES = {"dense": "late", "late": "late", "sparse": "lexical", "lexical": "lexical", "hybrid": "hybrid"}


def search_mode(retrieval_mode: object) -> str:
    """The store's ``mode`` for a retrieval mode: a :class:`RetrievalMode` (or langchain-qdrant's, or LlamaIndex's
    string enums with the same values), or the strings ``"dense"``/``"late"``, ``"sparse"``/``"lexical"``,
    ``"hybrid"``.

    Raises:
        InvalidInputError: anything else (the message lists the accepted values).
    """
    value = retrieval_mode.value if isinstance(retrieval_mode, Enum) else retrieval_mode
    if not isinstance(value, str) or value.lower() not in _MODES:
        raise InvalidInputError(
            f"retrieval_mode must be RetrievalMode.DENSE, SPARSE or HYBRID (or 'late', 'lexical', 'hybrid'), "
            f"got {retrieval_mode!r}"
        )
    return _MODES[value.lower()]


def resolve_store(
    store: MultiVectorStore | None,
    encoder: Encoder | None,
    backend: Backend | None,
    *,
    owner: str,
    default_backend: bool = False,
) -> MultiVectorStore:
    """Return the store an integration works on, built from ``store`` or from ``encoder`` + ``backend``.

    Args:
        store: an existing facade (preferred).
        encoder: the encoder, when no ``store`` is given (or the same encoder as ``store.encoder``).
        backend: the backend, when no ``store`` is given (or the same object as ``store.backend``).
        owner: class name used in error messages.
        default_backend: with only an ``encoder``, create an empty exact in-memory backend.

    Raises:
        InvalidInputError: nothing to build a store from, or ``store`` combined with a different encoder
            model or a different backend object ("mixed backends").
        DimensionMismatchError / CollectionConfigError: from :class:`MultiVectorStore` when the encoder does
            not match the backend's stored vectors or model.
    """
    if store is not None:
        if not isinstance(store, MultiVectorStore):
            raise InvalidInputError(
                f"{owner}: store must be a colbert_adapters MultiVectorStore, got {type(store).__name__}"
            )
        if backend is not None and backend is not store.backend:
            raise InvalidInputError(
                f"{owner}: got store= and a different backend= ({type(backend).__name__}); mixing backends "
                "would search one index and read vectors from another. Pass only store=, or encoder= and "
                "backend="
            )
        if (
            encoder is not None
            and encoder is not store.encoder
            and not same_model(store.encoder.model_id, encoder.model_id)
        ):
            raise InvalidInputError(
                f"{owner}: encoder {encoder.model_id!r} differs from the store's encoder "
                f"{store.encoder.model_id!r}; MaxSim scores of different models are not comparable"
            )
        return store
    if encoder is None:
        raise InvalidInputError(
            f"{owner} needs a ColBERT encoder: pass store=MultiVectorStore(encoder, backend) or encoder= (and backend=)"
        )
    if backend is None:
        if not default_backend:
            raise InvalidInputError(
                f"{owner} needs an index to search: pass store=MultiVectorStore(encoder, backend) or "
                "encoder= and backend="
            )
        return MultiVectorStore(encoder)
    return MultiVectorStore(encoder, backend)


def reject_unknown(owner: str, kwargs: dict[str, Any], accepted: Sequence[str]) -> None:
    """Raise a :class:`TypeError` naming the accepted keyword arguments when ``kwargs`` holds any other.

    The hosts' interfaces declare ``**kwargs``; an argument a method does not use must not pass silently (a
    misspelt ``filters=`` would otherwise search without the filter).
    """
    if kwargs:
        raise TypeError(
            f"{owner} got unexpected keyword argument(s) {', '.join(sorted(kwargs))}; it accepts "
            f"{', '.join(accepted) if accepted else 'no keyword arguments'}"
        )


def check_query(query: object, *, owner: str) -> str:
    """Return ``query`` if it is a non-blank ``str``; otherwise raise a clear :class:`InvalidInputError`."""
    if not isinstance(query, str):
        raise InvalidInputError(f"{owner}: the query must be a str, got {type(query).__name__}")
    if not query.strip():
        raise InvalidInputError(f"{owner}: the query is empty or blank; pass at least one word")
    return query


def search_with_query_length(
    store: MultiVectorStore,
    query: str,
    k: int,
    filter: Filter | None = None,
    score_threshold: float | None = None,
    *,
    highlight: bool = False,
    mode: str = "late",
) -> tuple[list[Hit], int]:
    """Search ``store`` and also return the number of query token vectors (to normalise scores).

    Validation matches :meth:`MultiVectorStore.search`: a blank query, ``k <= 0``, a malformed filter or a
    non-numeric ``score_threshold`` (raw MaxSim) raise :class:`InvalidInputError`. A filter on a metadata field
    no document has matches nothing: the result is empty, not an error.
    """
    check_query(query, owner="search")
    k = check_k(k)
    check_filter(filter)
    check_score_threshold(score_threshold)
    if store.count() == 0:
        return [], 0
    if mode != "late":  # BM25 or fused scores: no query length to normalise by
        return store.search(query, k, filter, score_threshold=score_threshold, highlight=highlight, mode=mode), 0
    qv = store.encode_query(query)
    hits = store.search_by_vectors(qv, k=k, filter=filter, score_threshold=score_threshold, highlight=highlight)
    return hits, int(qv.shape[0])


def query_token_vectors(embedding: Any, *, owner: str) -> Any:
    """Return ``embedding`` if it can be a query's token vectors; a flat single vector raises a clear error.

    The store checks the shape, dimension and values (``as_multivector``); this only catches the single-vector
    embedding that code written for dense vector stores passes, and says what a ColBERT store needs instead.
    """
    shape = getattr(embedding, "shape", None)
    if shape is not None:
        flat = len(shape) == 1
    else:
        flat = (
            isinstance(embedding, Sequence)
            and not isinstance(embedding, (str, bytes))
            and len(embedding) > 0
            and isinstance(embedding[0], (int, float, np.number))
        )
    if flat:
        raise InvalidInputError(
            f"{owner}: got a single vector of length {len(embedding)}, but a ColBERT store scores a query's token "
            "vectors with MaxSim: pass a (n_tokens, dim) array or a list of lists, e.g. store.encode_query(text)"
        )
    return embedding


def load_encoder(model: object, device: str | None, *, owner: str) -> Encoder:
    """Load the ColBERT encoder ``model`` names: a Hugging Face Hub id or a local checkpoint directory.

    Raises:
        InvalidInputError: ``model`` is not a ``str`` or path, or ``device`` is not a ``str``.
        CheckpointError, HubUnavailableError: from :meth:`ColBERTEncoder.from_pretrained`.
    """
    if not isinstance(model, (str, os.PathLike)) or not os.fspath(model).strip():
        raise InvalidInputError(
            f"{owner}: model must be a Hugging Face Hub id or a local checkpoint path (e.g. "
            f"'lightonai/GTE-ModernColBERT-v1'), got {model!r}"
        )
    if device is not None and not isinstance(device, str):
        raise InvalidInputError(f"{owner}: device must be a str such as 'cpu' or 'cuda', got {device!r}")
    from ..encoder import ColBERTEncoder

    logger.info("%s: loading model %s", owner, os.fspath(model))
    return ColBERTEncoder.from_pretrained(model, device=device)


def normalized_relevance(mean_token_score: float) -> float:
    """Map a per-query-token MaxSim score in ``[-1, 1]`` to a relevance in ``[0, 1]``.

    MaxSim sums one cosine per query token, so ``score / n_query_tokens`` lies in ``[-1, 1]``; this maps it
    linearly to ``[0, 1]`` (``(x + 1) / 2``), clipping float rounding. 1.0 means every query token found an
    identical document token.
    """
    return float(min(1.0, max(0.0, (mean_token_score + 1.0) / 2.0)))


@dataclass(frozen=True, slots=True)
class RerankResult:
    """Output of :func:`rerank_texts`: ``order`` holds ``(input position, MaxSim score)``, best first."""

    order: list[tuple[int, float]]
    n_query_tokens: int
    reused: int
    encoded: int


def rerank_texts(
    query: str,
    texts: Sequence[str],
    ids: Sequence[str | None],
    *,
    encoder: Encoder,
    store: MultiVectorStore | None,
    top_n: int | None,
    batch_size: int = 32,
    stored_texts: Sequence[str] | None = None,
) -> RerankResult:
    """Score candidate texts against a query with exact MaxSim (``scoring.rerank``) and keep the best.

    Token vectors are reused instead of re-encoding when ``store`` holds a document with the same id *and*
    the same text (so a stale or foreign id never reuses wrong vectors). Every other text is encoded in
    one batched call. Candidates without an id are simply encoded.

    Args:
        query: the query (non-blank).
        texts: ``n`` candidate texts.
        ids: ``n`` ids (``None`` or ``""`` for unknown).
        encoder: encodes the query and the texts that cannot be reused.
        store: where stored vectors may be reused from, or ``None``.
        top_n: keep the best ``top_n`` (``None``: all).
        batch_size: encoder batch size.
        stored_texts: the text each candidate is stored under, when it differs from the text to encode
            (LlamaIndex stores a node's raw text but encodes it with its metadata); default ``texts``.

    Returns:
        A :class:`RerankResult`; an empty ``texts`` gives an empty order without encoding anything.
    """
    check_query(query, owner="rerank")
    if top_n is not None:
        check_k(top_n)
    n = len(texts)
    match = texts if stored_texts is None else stored_texts
    if len(ids) != n or len(match) != n:
        raise InvalidInputError(f"rerank: got {n} texts, {len(ids)} ids and {len(match)} stored texts")
    if n == 0:
        return RerankResult([], 0, 0, 0)
    vectors: list[MultiVector | None] = [None] * n
    if store is not None:
        known = [i for i in range(n) if ids[i]]
        if known:
            records = store.get(list(dict.fromkeys(str(ids[i]) for i in known)), with_vectors=True)
            by_id = {r.id: r for r in records}
            for i in known:
                rec = by_id.get(str(ids[i]))
                if rec is not None and rec.vectors is not None and rec.text == match[i]:
                    vectors[i] = np.asarray(rec.vectors, dtype=np.float32)
    missing = [i for i in range(n) if vectors[i] is None]
    if missing:
        encoded = encoder.encode_documents([texts[i] for i in missing], batch_size=batch_size)
        for i, v in zip(missing, encoded, strict=True):
            vectors[i] = v
    (qv,) = encoder.encode_queries([query])
    docs: list[MultiVector] = [v for v in vectors if v is not None]
    hits = rerank(qv, docs, ids=[str(i) for i in range(n)], k=top_n)
    logger.debug("reranked %d candidates (%d reused, %d encoded)", n, n - len(missing), len(missing))
    return RerankResult([(int(h.id), h.score) for h in hits], int(qv.shape[0]), n - len(missing), len(missing))
