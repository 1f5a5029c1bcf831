"""First-stage layouts of a Qdrant collection: what stands for a document in the prefetch before the MaxSim rerank.

A two-stage search is one request: a prefetch of ``prefetch_limit`` candidates through an HNSW index, then exact
MaxSim on the stored token multivectors of those candidates. The layout (``QdrantCollectionConfig.first_stage``,
recorded in the collection) decides what the prefetch searches:

* ``"centroids"``: a named multivector of ``n_centroids`` k-means centroids of the document's tokens (MaxSim, HNSW),
  searched with the query's token vectors. A document about several things keeps one centroid per topic, so a
  query about one of them finds it; no corpus statistic is needed, so nothing drifts as the corpus grows.
* ``"mean"``: one vector, the L2-normalised mean of the tokens (cosine, HNSW), searched with the query's mean. The
  layout of collections made before layouts were recorded.
* ``"centred-mean"``: the mean minus the corpus centre (the mean token vector, fixed by the first write and kept
  in the collection's metadata), normalised. Token vectors of modern ColBERT models sit in a narrow cone (mean
  cosine near 0.9); their means then all point the same way and the cosine between them carries little but the
  shared direction: subtracting the centre removes it.
* ``"muvera"``: a MUVERA fixed dimensional encoding (SimHash buckets, random projections) of the centred tokens,
  one dense vector (dot product, HNSW). Centring matters here too: in a narrow cone every token falls in the same
  SimHash bucket.
* ``"tokens"``: no summary; Qdrant's own HNSW over the token multivectors (graph built with MaxSim between
  documents), searched with the query tokens.

The functions here are pure (numpy): what a document stores, what a query sends, and what the collection must hold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ...errors import CollectionConfigError
from ..voyager._centroids import doc_centroids
from ._points import summary_vector

__all__ = [
    "DEFAULT_FIRST_STAGE",
    "DEFAULT_PREFETCH",
    "FIRST_STAGES",
    "MUVERA_BUCKET_BITS",
    "MUVERA_PROJECTION",
    "MUVERA_REPETITIONS",
    "Layout",
    "SummarySpec",
    "corpus_centre",
    "legacy_layout",
]

F32 = np.float32
#: The first-stage layouts (``QdrantCollectionConfig.first_stage``).
FIRST_STAGES = ("centroids", "mean", "centred-mean", "muvera", "tokens")
#: The layout of new collections (chosen by recall and latency on real and synthetic data, see benchmarks/).
DEFAULT_FIRST_STAGE = "centroids"
#: Default ``prefetch_limit`` per layout (others: 200). The centroids are scanned exactly, whatever the limit: a
#: deeper prefetch only adds MaxSim reranks, a small part of the request's cost.
DEFAULT_PREFETCH = {"centroids": 400}
#: Layouts that keep the corpus centre in the collection's metadata.
CENTRED = ("centred-mean", "muvera")
#: MUVERA parameters: SimHash bits per repetition (``2**bits`` buckets), projected size per bucket, repetitions.
MUVERA_BUCKET_BITS = 4
MUVERA_PROJECTION = 16
MUVERA_REPETITIONS = 8
_MUVERA_SEED = 42


@dataclass(frozen=True)
class SummarySpec:
    """The first-stage vector of a layout, as the engines create it.

    Attributes:
        name: vector name in the collection.
        size: dimension (of each row, for a multivector).
        multivector: whether it is a MaxSim multivector (centroids).
        distance: ``"cosine"`` or ``"dot"``.
    """

    name: str
    size: int
    multivector: bool
    distance: str


def muvera_size(dim: int) -> int:
    """Dimension of a MUVERA encoding (independent of ``dim``)."""
    del dim
    return int(MUVERA_REPETITIONS * (2**MUVERA_BUCKET_BITS) * MUVERA_PROJECTION)


def legacy_layout(stored: Mapping[str, Any]) -> dict[str, Any]:
    """A layout recorded before first stages were: the mean summary, float32 and unquantized."""
    out = dict(stored)
    out.setdefault("first_stage", "mean")
    out.setdefault("summary_datatype", "float32")
    out.setdefault("summary_m", 16)
    return out


def corpus_centre(arrays: Sequence[npt.NDArray[np.float32]]) -> npt.NDArray[np.float32]:
    """The mean token vector of ``arrays`` (each ``(n_tokens, dim)``), float32 ``(dim,)``."""
    total = np.zeros(arrays[0].shape[1], dtype=np.float64)
    n = 0
    for a in arrays:
        total += a.sum(axis=0, dtype=np.float64)
        n += a.shape[0]
    out: npt.NDArray[np.float32] = (total / max(n, 1)).astype(F32)
    return out


class Layout:
    """What a collection of one first-stage layout stores per document and sends per query.

    Args:
        first_stage: one of :data:`FIRST_STAGES`.
        dim: token vector dimension.
        summary_name: name of the first-stage vector.
        multivector_name: name of the token multivector (the ``"tokens"`` layout searches it).
        n_centroids: centroids per document (``"centroids"``).
        centre: the corpus centre ``(dim,)`` of the centred layouts, ``None`` until the first write fixes it.
    """

    def __init__(
        self,
        first_stage: str,
        dim: int,
        summary_name: str,
        multivector_name: str,
        n_centroids: int,
        centre: npt.NDArray[np.float32] | None = None,
    ) -> None:
        self.first_stage = first_stage
        self.dim = dim
        self.summary_name = summary_name
        self.multivector_name = multivector_name
        self.n_centroids = n_centroids
        self.centre = centre
        self._muvera: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]] | None = None

    @property
    def needs_centre(self) -> bool:
        """Whether the layout centres vectors and has no centre yet (the next write fixes it)."""
        return self.first_stage in CENTRED and self.centre is None

    @property
    def spec(self) -> SummarySpec | None:
        """The first-stage vector to create, or ``None`` (``"tokens"``: the multivector's own HNSW)."""
        if self.first_stage == "tokens":
            return None
        if self.first_stage == "centroids":
            return SummarySpec(self.summary_name, self.dim, True, "dot")
        if self.first_stage == "muvera":
            return SummarySpec(self.summary_name, muvera_size(self.dim), False, "dot")
        return SummarySpec(self.summary_name, self.dim, False, "cosine")

    @property
    def prefetch_using(self) -> str:
        """The vector the prefetch searches."""
        return self.multivector_name if self.first_stage == "tokens" else self.summary_name

    def doc_vectors(self, arrays: Sequence[npt.NDArray[np.float32]]) -> list[npt.NDArray[np.float32] | None]:
        """The first-stage vector of each document (``None`` for ``"tokens"``).

        Args:
            arrays: token vectors, each float32 ``(n_tokens_i, dim)``.

        Returns:
            Per document: ``(n_centroids, dim)`` centroids, a ``(dim,)`` mean, a MUVERA encoding, or ``None``.
        """
        if not arrays:
            return []
        fs = self.first_stage
        if fs == "tokens":
            return [None] * len(arrays)
        if fs == "mean":
            return [summary_vector(a) for a in arrays]
        if fs == "centroids":
            codes, scales = doc_centroids(arrays, self.n_centroids)
            cen = codes.astype(F32) * scales[..., None]
            return [np.ascontiguousarray(cen[i]) for i in range(len(arrays))]
        centre = self._centre()
        if fs == "centred-mean":
            return [_unit(a.mean(axis=0, dtype=np.float64) - centre) for a in arrays]
        return [self._fde(a, query=False) for a in arrays]

    def query_vector(self, q: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """What the prefetch sends for query tokens ``q (n_q, dim)``: the tokens, their mean or an encoding."""
        fs = self.first_stage
        if fs in ("centroids", "tokens"):
            return q
        if fs == "mean":
            return summary_vector(q)
        if fs == "centred-mean":
            return _unit(q.mean(axis=0, dtype=np.float64) - self._centre())
        return self._fde(q, query=True)

    def check_schema(self, vectors: Mapping[str, Mapping[str, Any]], where: str, fix: str) -> None:
        """Refuse a collection whose vectors do not hold this layout (``vectors``: :attr:`Schema.vectors`).

        Raises:
            CollectionConfigError: the first-stage vector is missing or of another kind.
        """
        spec = self.spec
        if spec is None:
            return
        got = vectors.get(spec.name)
        kind = "a MaxSim multivector" if spec.multivector else "a single vector"
        if (
            got is None
            or (got["multivector"] == "max_sim") != spec.multivector
            or got["size"] != spec.size
            or got["distance"] != spec.distance
        ):
            raise CollectionConfigError(
                f"{where} has no first-stage vector {spec.name!r} of the {self.first_stage!r} layout ({kind} of "
                f"{spec.size} dims, {spec.distance}); found {dict(got) if got is not None else 'none'}. Open it with "
                "the first_stage it was created with (QdrantCollectionConfig(first_stage=...), or no config), or "
                f"{fix}"
            )

    # ---- internals

    def _centre(self) -> npt.NDArray[np.float64]:
        if self.centre is None:  # pragma: no cover - the backend fixes the centre before the first write
            raise CollectionConfigError(f"the {self.first_stage!r} layout has no corpus centre yet")
        return self.centre.astype(np.float64)

    def _fde(self, x: npt.NDArray[np.float32], *, query: bool) -> npt.NDArray[np.float32]:
        """MUVERA fixed dimensional encoding of the centred rows of ``x``: per repetition, SimHash buckets of the
        rows, a sum (query) or mean (document; an empty bucket takes the row nearest to it) per bucket, each
        bucket projected to ``MUVERA_PROJECTION`` dims by a random sign matrix."""
        planes, proj = self._muvera_params()
        c = (x.astype(np.float64) - self._centre()).astype(F32)
        n_buckets = 2**MUVERA_BUCKET_BITS
        weights = 2 ** np.arange(MUVERA_BUCKET_BITS)
        out = np.zeros((MUVERA_REPETITIONS, n_buckets, MUVERA_PROJECTION), dtype=F32)
        for r in range(MUVERA_REPETITIONS):
            h = c @ planes[r]  # (n, bits)
            bucket = (h > 0).astype(np.int64) @ weights
            agg = np.zeros((n_buckets, c.shape[1]), dtype=F32)
            np.add.at(agg, bucket, c)
            if not query:
                counts = np.bincount(bucket, minlength=n_buckets).astype(F32)
                agg /= np.maximum(counts, 1.0)[:, None]
                empty = np.flatnonzero(counts == 0)
                if empty.size:
                    bits = (h > 0)[None, :, :] != ((empty[:, None] >> np.arange(MUVERA_BUCKET_BITS)) & 1)[:, None, :]
                    agg[empty] = c[bits.sum(axis=2).argmin(axis=1)]
            out[r] = agg @ proj[r]
        return out.reshape(-1)

    def _muvera_params(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        if self._muvera is None:
            rng = np.random.default_rng(_MUVERA_SEED)
            planes = rng.standard_normal((MUVERA_REPETITIONS, self.dim, MUVERA_BUCKET_BITS)).astype(F32)
            signs = rng.choice(np.array([-1.0, 1.0], dtype=F32), size=(MUVERA_REPETITIONS, self.dim, MUVERA_PROJECTION))
            self._muvera = (planes, (signs / np.sqrt(MUVERA_PROJECTION)).astype(F32))
        return self._muvera


def _unit(v: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    norm = float(np.linalg.norm(v))
    if norm < 1e-12:
        out = np.zeros(v.shape[0], dtype=F32)
        out[0] = 1.0
        return out
    return (v / norm).astype(F32)
