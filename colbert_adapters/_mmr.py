"""Maximal marginal relevance (MMR) with MaxSim, and the checks of the arguments that go with it.

MMR picks documents one at a time among the best candidates of a search, trading relevance to the query against
similarity to the documents already picked. Both terms are put on the same scale, the mean best cosine:

* relevance of a candidate ``d`` for the query ``q`` (``n_q`` token vectors)::

      rel(d) = MaxSim(q, d) / n_q                                   in [-1, 1]

* similarity of two documents ``a`` and ``b`` (``n_a`` and ``n_b`` token vectors), MaxSim taken both ways so it
  is symmetric; identical token sets give 1::

      sim(a, b) = (MaxSim(a, b) / n_a + MaxSim(b, a) / n_b) / 2     in [-1, 1]

* the next document is the remaining candidate with the highest::

      lambda_mult * rel(d) - (1 - lambda_mult) * max over picked s of sim(d, s)

  (the first pick is the most relevant candidate). ``lambda_mult = 1`` keeps the search order (ties in candidate
  order); ``lambda_mult = 0`` picks for diversity alone after the first.

MaxSim between documents is computed by ``_kernels.maxsim_both_ways``, only between each picked document and the
candidates left (one product gives both directions): ``k - 1`` products, not the full candidate matrix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ._kernels import maxsim_both_ways
from ._validation import as_multivector
from .errors import InvalidInputError
from .types import MultiVector

__all__ = ["check_lambda_mult", "check_score_threshold", "select"]


def check_score_threshold(value: object) -> float | None:
    """A ``score_threshold``: ``None`` or a finite real number (a raw MaxSim score)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidInputError(
            f"score_threshold must be a number (a raw MaxSim score: hits scoring below it are dropped) or None, "
            f"got {type(value).__name__}"
        )
    threshold = float(value)
    if not math.isfinite(threshold):
        raise InvalidInputError(f"score_threshold must be finite, got {threshold}")
    return threshold


def check_lambda_mult(value: object, name: str = "lambda_mult") -> float:
    """An MMR ``lambda_mult`` (LlamaIndex: ``mmr_threshold``, named by ``name``): a number in ``[0, 1]``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidInputError(
            f"{name} must be a number between 0 (most diverse) and 1 (most relevant), got {type(value).__name__}"
        )
    lam = float(value)
    if not 0.0 <= lam <= 1.0:  # also rejects NaN
        raise InvalidInputError(f"{name} must be between 0 (most diverse) and 1 (most relevant), got {value}")
    return lam


def select(
    relevance: Sequence[float] | np.ndarray,
    vectors: Sequence[MultiVector],
    k: int,
    lambda_mult: float,
) -> list[int]:
    """Pick up to ``k`` candidates by maximal marginal relevance (formula in the module docstring).

    Args:
        relevance: ``n`` relevances ``MaxSim(q, d) / n_q``, one per candidate.
        vectors: ``n`` float32 ``(n_tokens_i, dim)`` token vectors of the candidates.
        k: number of candidates to pick (``>= 1``).
        lambda_mult: ``0`` (most diverse) to ``1`` (most relevant).

    Returns:
        Positions in the candidate list, in the order picked; ties go to the earlier candidate.
    """
    n = len(vectors)
    if len(relevance) != n:
        raise InvalidInputError(f"got {len(relevance)} relevances for {n} candidates")
    dim = vectors[0].shape[1] if n else None
    vectors = [as_multivector(v, dim=dim, where=f"vectors[{i}]") for i, v in enumerate(vectors)]
    rel = np.asarray(relevance, dtype=np.float64)
    counts = np.array([v.shape[0] for v in vectors], dtype=np.int64)
    lengths = counts.astype(np.float64)
    closest = np.zeros(n, dtype=np.float64)  # max similarity to a picked document (no penalty before the first)
    remaining = np.ones(n, dtype=bool)
    picked: list[int] = []
    for _ in range(min(k, n)):
        gain = lambda_mult * rel - (1.0 - lambda_mult) * closest
        gain[~remaining] = -np.inf
        best = int(np.argmax(gain))  # the first maximum: ties keep the candidates' order
        picked.append(best)
        remaining[best] = False
        others = np.flatnonzero(remaining)
        if len(picked) == k or others.size == 0:
            break
        flat = np.concatenate([vectors[int(j)] for j in others])
        offsets = np.zeros(others.size + 1, dtype=np.int64)
        np.cumsum(counts[others], out=offsets[1:])
        forward, backward = maxsim_both_ways(vectors[best], flat, offsets)
        sim = (forward.astype(np.float64) / lengths[best] + backward.astype(np.float64) / lengths[others]) / 2.0
        closest[others] = sim if len(picked) == 1 else np.maximum(closest[others], sim)
    return picked
