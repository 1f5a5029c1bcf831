"""Hybrid search: the late-interaction and lexical result lists fused into one.

Two fusions, both over the ``fetch_k`` best of each list:

* ``"rrf"`` (reciprocal-rank fusion, Cormack et al. 2009): a document scores ``sum 1 / (rrf_k + rank)`` over the
  lists that hold it (ranks from 1). Only ranks count, so MaxSim and BM25 need no common scale.
* ``"blend"``: each list's scores min-max normalised to ``[0, 1]`` over its candidates (a document missing from a
  list gets 0 there), then ``alpha * late + (1 - alpha) * lexical``.

Either way higher is better, ties keep the late list's order, then the lexical list's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import InvalidInputError
from .types import Hit

__all__ = ["FUSIONS", "HybridOptions", "blend", "check_hybrid", "fuse", "rrf"]

#: The fusions of a hybrid search.
FUSIONS = ("rrf", "blend")
#: The ``k`` of reciprocal-rank fusion (the constant of Cormack et al., and Qdrant's ``Fusion.RRF``).
RRF_K = 60


@dataclass(frozen=True, slots=True)
class HybridOptions:
    """The checked options of a hybrid search (see ``MultiVectorStore.search``)."""

    fusion: str = "rrf"
    alpha: float = 0.5
    rrf_k: int = RRF_K
    fetch_k: int | None = None
    rerank: bool = False

    def depth(self, k: int) -> int:
        """How many hits of each list are fused for ``k`` results: ``fetch_k``, or ``max(100, 2 k)``."""
        return max(k, self.fetch_k) if self.fetch_k is not None else max(100, 2 * k)


def check_hybrid(fusion: object, alpha: object, rrf_k: object, fetch_k: object, rerank: object) -> HybridOptions:
    """The hybrid options checked.

    Raises:
        InvalidInputError: an unknown fusion, ``alpha`` outside ``[0, 1]``, a non-positive ``rrf_k`` or
            ``fetch_k``, a non-bool ``rerank``.
    """
    if not isinstance(fusion, str) or fusion not in FUSIONS:
        raise InvalidInputError(f"fusion must be one of {', '.join(repr(f) for f in FUSIONS)}, got {fusion!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not (0.0 <= float(alpha) <= 1.0):
        raise InvalidInputError(f"alpha must be a number in [0, 1] (the late list's weight), got {alpha!r}")
    if isinstance(rrf_k, bool) or not isinstance(rrf_k, int) or rrf_k < 1:
        raise InvalidInputError(f"rrf_k must be a positive int (60 is the usual value), got {rrf_k!r}")
    if fetch_k is not None and (isinstance(fetch_k, bool) or not isinstance(fetch_k, int) or fetch_k < 1):
        raise InvalidInputError(f"fetch_k must be a positive int or None, got {fetch_k!r}")
    if not isinstance(rerank, bool):
        raise InvalidInputError(f"rerank must be True or False, got {rerank!r}")
    return HybridOptions(fusion, float(alpha), rrf_k, fetch_k, rerank)


def rrf(lists: Sequence[Sequence[Hit]], rrf_k: int = RRF_K, weights: Sequence[float] | None = None) -> dict[str, float]:
    """Reciprocal-rank fusion: ``{id: sum_l w_l / (rrf_k + rank_l(id))}``, ranks from 1, in first-seen order.

    Example:
        >>> a, b = [Hit("x", 9.0), Hit("y", 8.0)], [Hit("y", 3.0), Hit("z", 2.0)]
        >>> {i: round(s * 61, 3) for i, s in rrf([a, b]).items()}
        {'x': 1.0, 'y': 1.984, 'z': 0.984}
    """
    out: dict[str, float] = {}
    for li, hits in enumerate(lists):
        w = 1.0 if weights is None else float(weights[li])
        for rank, h in enumerate(hits, start=1):
            out[h.id] = out.get(h.id, 0.0) + w / (rrf_k + rank)
    return out


def _minmax(hits: Sequence[Hit]) -> dict[str, float]:
    if not hits:
        return {}
    lo, hi = min(h.score for h in hits), max(h.score for h in hits)
    span = hi - lo
    return {h.id: (h.score - lo) / span if span > 0 else 1.0 for h in hits}


def blend(late: Sequence[Hit], lexical: Sequence[Hit], alpha: float) -> dict[str, float]:
    """``alpha * minmax(late) + (1 - alpha) * minmax(lexical)`` per document (0 where a list lacks it).

    Example:
        >>> late, lexical = [Hit("x", 20.0), Hit("y", 10.0)], [Hit("y", 7.5), Hit("z", 2.5)]
        >>> blend(late, lexical, 0.5)
        {'x': 0.5, 'y': 0.5, 'z': 0.0}
    """
    a, b = _minmax(late), _minmax(lexical)
    return {i: alpha * a.get(i, 0.0) + (1.0 - alpha) * b.get(i, 0.0) for i in dict.fromkeys([*a, *b])}


def fuse(late: Sequence[Hit], lexical: Sequence[Hit], options: HybridOptions, k: int) -> list[Hit]:
    """The best ``k`` documents of the fused lists, each with its fused score (and the text and metadata of the
    list that holds it)."""
    scores = rrf([late, lexical], options.rrf_k) if options.fusion == "rrf" else blend(late, lexical, options.alpha)
    hits = {h.id: h for h in lexical}
    hits.update({h.id: h for h in late})
    order = sorted(scores, key=lambda i: -scores[i])  # stable: first-seen order breaks ties
    out = []
    for doc_id in order[:k]:
        h = hits[doc_id]
        score = scores[doc_id]
        out.append(Hit(h.id, score if math.isfinite(score) else 0.0, h.text, h.metadata))
    return out
