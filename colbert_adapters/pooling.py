"""Token pooling: PyLate's hierarchical clustering of document token vectors (``pool_factor``).

Reduces a document's token vectors by ``pool_factor`` with Ward clustering on cosine distances and
replaces each cluster by its mean (not re-normalised), exactly as PyLate 1.6.0
(``ColBERT.pool_embeddings_hierarchical``). Needs scipy: ``pip install "colbert-adapters[pooling]"``.
"""

from __future__ import annotations

import numpy as np

from ._optional import require
from .errors import InvalidInputError
from .types import MultiVector

__all__ = ["pool_tokens"]


def pool_tokens(vectors: MultiVector, pool_factor: int, protected_tokens: int = 1) -> MultiVector:
    """Pool one document's token vectors.

    Args:
        vectors: float32 ``(n_tokens, dim)``, L2-normalised rows.
        pool_factor: target reduction; ``n - protected_tokens`` rows become ``max((n - protected) // pool_factor, 1)``
            cluster means (fewer when the clustering yields fewer clusters). ``1`` returns the input unchanged.
        protected_tokens: leading rows kept as they are (``1`` keeps the ``[CLS]`` vector, as PyLate does).

    Returns:
        float32 ``(protected + n_clusters, dim)``: the protected rows, then the cluster means in label order.

    Raises:
        InvalidInputError: ``pool_factor < 1`` or ``protected_tokens < 0``.
        MissingDependencyError: scipy is not installed.
    """
    if isinstance(pool_factor, bool) or not isinstance(pool_factor, int) or pool_factor < 1:
        raise InvalidInputError(f"pool_factor must be an int >= 1, got {pool_factor!r}")
    if isinstance(protected_tokens, bool) or not isinstance(protected_tokens, int) or protected_tokens < 0:
        raise InvalidInputError(f"protected_tokens must be an int >= 0, got {protected_tokens!r}")
    if pool_factor == 1:
        return vectors
    protected = vectors[:protected_tokens]
    to_pool = vectors[protected_tokens:]
    n = to_pool.shape[0]
    n_clusters = max(n // pool_factor, 1)
    if n_clusters >= n:
        return vectors
    hierarchy = require("scipy.cluster.hierarchy", extra="pooling", package="scipy")
    # float32 similarities as PyLate computes them (torch.mm in float32), then Ward linkage in float64.
    # Near-identical rows give cosines that round above 1; PyLate then crashes in scipy ("negative
    # distances"). Clipping those -1e-7 distances to 0 changes nothing else.
    dist = np.maximum(1 - to_pool @ to_pool.T, 0)
    condensed = dist[np.triu_indices(n, k=1)]
    labels = hierarchy.fcluster(hierarchy.linkage(condensed, method="ward"), t=n_clusters, criterion="maxclust")
    labels = labels.astype(np.int64) - 1
    sums = np.zeros((n_clusters, to_pool.shape[1]), dtype=np.float32)
    np.add.at(sums, labels, to_pool)
    counts = np.bincount(labels, minlength=n_clusters)
    keep = counts > 0
    pooled = sums[keep] / counts[keep, None].astype(np.float32)
    return np.ascontiguousarray(np.concatenate([protected, pooled], axis=0), dtype=np.float32)
