"""The search modes of ``MultiVectorStore``: one query answered by MaxSim (``"late"``), BM25 over the stored texts
(``"lexical"``) or both fused (``"hybrid"``).

The store checks the arguments and encodes the queries; this module runs one query in a lexical or hybrid mode
against the backend's lexical capability (:class:`~colbert_adapters.backends.base.LexicalBackend`) and the late
search the store hands it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ._fusion import HybridOptions, fuse
from .backends.base import Backend, LexicalBackend
from .errors import InvalidInputError
from .types import Filter, Hit, MultiVector

__all__ = ["lexical_backend", "search_mode"]


def lexical_backend(backend: Backend) -> LexicalBackend:
    """``backend`` as a lexical backend.

    Raises:
        InvalidInputError: the backend has no lexical search (the message names the backends that do).
    """
    if not isinstance(backend, LexicalBackend):
        raise InvalidInputError(
            f"mode='lexical' and mode='hybrid' need a backend with lexical search (lexical_search(); the memory, "
            f"Voyager and Qdrant backends have it); {type(backend).__name__} has none: use mode='late'"
        )
    return backend


def search_mode(
    backend: LexicalBackend,
    mode: str,
    options: HybridOptions,
    text: str,
    q: MultiVector | None,
    k: int,
    filter: Filter | None,
    subset: Sequence[str] | None,
    late: Callable[[MultiVector, int], list[Hit]],
    exact: Callable[[MultiVector, list[str], int], list[Hit]],
) -> list[Hit]:
    """One query in mode ``"lexical"`` or ``"hybrid"``.

    Args:
        backend: answers the lexical list.
        mode: ``"lexical"`` or ``"hybrid"``.
        options: the hybrid options.
        text: the query text.
        q: its token vectors (``None`` in lexical mode).
        k: number of hits.
        filter: the metadata filter (the backend checks it).
        subset: only these ids (``ids=``), or ``None``.
        late: the late-interaction search: ``late(q, n)`` is the top ``n`` by MaxSim (filter and subset applied).
        exact: ``exact(q, ids, n)``: the top ``n`` of ``ids`` by exact MaxSim (for ``rerank=True``).

    Returns:
        Up to ``k`` hits: BM25 scores (lexical), fused scores (hybrid), or exact MaxSim (hybrid with ``rerank``).
    """
    if mode == "lexical":
        return backend.lexical_search(text, k, filter, ids=subset)
    if q is None:
        raise ValueError("a hybrid search needs the query's vectors")
    depth = options.depth(k)
    late_hits = late(q, depth)
    lexical_hits = backend.lexical_search(text, depth, filter, ids=subset)
    if options.rerank:
        return exact(q, list(dict.fromkeys([*(h.id for h in late_hits), *(h.id for h in lexical_hits)])), k)
    return fuse(late_hits, lexical_hits, options, k)
