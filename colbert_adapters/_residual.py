"""The residual codec of compressed indexes: a centroid id plus ``nbits``-bit quantised residuals per token.

A token vector ``x`` (unit norm, ``dim`` components) is stored as the id of its nearest centroid ``c`` (k-means on a
sample of the index's tokens) and its residual ``x - c`` quantised per component into ``2 ** nbits`` buckets. The
bucket cut-offs of component ``j`` are quantiles of the training residuals' component ``j``, and each bucket's
value (its *weight*) is the mean of the training residuals that fall in it, so the codec adapts to each
component's spread (ColBERT/PLAID use one set of cut-offs for every component). Decoding adds the bucket weights
to the centroid and renormalises: a document token is then a unit vector again, as MaxSim expects.

Bucket indices are packed ``8 // nbits`` per byte, first component in the high bits, and decoded through one
lookup table per byte position (``(dim * nbits / 8, 256, 8 / nbits)`` float32): one gather per byte instead of
shifts and masks per component.

The k-means is Euclidean (assignment by the largest ``x . c - |c|^2 / 2``), hence invariant to a translation of
the space: mean-centring the tokens would give the same centroids and residuals, so the codec does not centre.

The codebook only grows: :meth:`ResidualCodec.extend` appends centroids for tokens that sit far from every
centroid (new topics), so existing codes stay valid and nothing has to be re-encoded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import InvalidInputError

__all__ = [
    "COMPRESSIONS",
    "ResidualCodec",
    "code_dtype",
    "default_n_centroids",
    "kmeans",
    "pack_bits",
    "unpack_bits",
]

#: The compressed modes and their bits per residual component.
COMPRESSIONS = {"2bit": 2, "4bit": 4}
#: Rows assigned or decoded per batch (bounds the temporary ``(rows, n_centroids)`` score matrix).
BATCH = 8192

F32 = np.float32


def default_n_centroids(n_tokens: int) -> int:
    """Centroids for a codec trained on ``n_tokens`` tokens: the power of two nearest ``16 * sqrt(n_tokens)``
    (PLAID's rule), at most ``n_tokens // 8`` (each centroid needs a few tokens), at least 1."""
    target = 16.0 * math.sqrt(max(1, n_tokens))
    n = 2 ** round(math.log2(target))
    return int(max(1, min(n, n_tokens // 8)))


def code_dtype(n_centroids: int) -> np.dtype[Any]:
    """``uint16`` for up to 65,536 centroids, else ``uint32``."""
    return np.dtype(np.uint16) if n_centroids <= 1 << 16 else np.dtype(np.uint32)


def pack_bits(buckets: npt.NDArray[np.uint8], nbits: int) -> npt.NDArray[np.uint8]:
    """Pack bucket indices ``(n, dim)`` (each ``< 2 ** nbits``) into ``(n, dim * nbits // 8)`` bytes, first
    component in the high bits. ``dim * nbits`` must be a multiple of 8."""
    per = 8 // nbits
    n, dim = buckets.shape
    b = buckets.reshape(n, dim // per, per).astype(np.uint8)
    out = np.zeros((n, dim // per), dtype=np.uint8)
    for i in range(per):
        out |= b[:, :, i] << np.uint8(nbits * (per - 1 - i))
    return out


def unpack_bits(packed: npt.NDArray[np.uint8], nbits: int) -> npt.NDArray[np.uint8]:
    """The inverse of :func:`pack_bits`: ``(n, nbytes)`` -> bucket indices ``(n, nbytes * 8 // nbits)``."""
    per = 8 // nbits
    mask = np.uint8((1 << nbits) - 1)
    n, nbytes = packed.shape
    out = np.empty((n, nbytes, per), dtype=np.uint8)
    for i in range(per):
        out[:, :, i] = (packed >> np.uint8(nbits * (per - 1 - i))) & mask
    return out.reshape(n, nbytes * per)


def _assign(
    x: npt.NDArray[np.float32], centroids: npt.NDArray[np.float32], half_sq: npt.NDArray[np.float32]
) -> npt.NDArray[np.int64]:
    """Nearest centroid (Euclidean) of every row of ``x``, in batches."""
    out = np.empty(x.shape[0], dtype=np.int64)
    for s in range(0, x.shape[0], BATCH):
        scores = x[s : s + BATCH] @ centroids.T
        scores -= half_sq
        out[s : s + BATCH] = scores.argmax(axis=1)
    return out


def kmeans(
    x: npt.NDArray[np.float32], k: int, *, iters: int = 8, seed: int = 0
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Euclidean k-means (Lloyd) of ``x`` ``(n, dim)`` into ``k`` centroids, initialised on distinct random rows;
    an emptied cluster restarts on the row farthest from its centroid. Returns ``(centroids (k, dim), labels
    (n,))``."""
    n, dim = x.shape
    rng = np.random.default_rng(seed)
    k = max(1, min(k, n))
    centroids = np.ascontiguousarray(x[rng.choice(n, k, replace=False)], dtype=F32)
    labels = np.zeros(n, dtype=np.int64)
    for _ in range(iters):
        labels = _assign(x, centroids, 0.5 * np.einsum("ij,ij->i", centroids, centroids))
        counts = np.bincount(labels, minlength=k)
        sums = np.zeros((k, dim), dtype=np.float64)
        np.add.at(sums, labels, x)
        empty = counts == 0
        centroids = (sums / np.maximum(counts, 1)[:, None]).astype(F32)
        if empty.any():
            err = np.einsum("ij,ij->i", x - centroids[labels], x - centroids[labels])
            far = np.argsort(-err)[: int(empty.sum())]
            centroids[np.flatnonzero(empty)[: far.size]] = x[far]
    labels = _assign(x, centroids, 0.5 * np.einsum("ij,ij->i", centroids, centroids))
    return centroids, labels


@dataclass(frozen=True, eq=False)
class ResidualCodec:
    """A trained residual codec (see the module docstring); immutable, shared by searching threads.

    Attributes:
        centroids: ``(n_centroids, dim)`` float32.
        cutoffs: ``(dim, 2 ** nbits - 1)`` float32, ascending per component: bucket ``b`` holds residuals in
            ``[cutoffs[b - 1], cutoffs[b])``.
        weights: ``(dim, 2 ** nbits)`` float32, the value each bucket decodes to.
        nbits: bits per residual component (2 or 4).
        train_error: mean squared reconstruction error of the training tokens (the drift reference).
        outlier_norm: residual norm above which a token counts as far from every centroid (the training
            residual norms' 99th percentile).
    """

    centroids: npt.NDArray[np.float32]
    cutoffs: npt.NDArray[np.float32]
    weights: npt.NDArray[np.float32]
    nbits: int
    train_error: float
    outlier_norm: float

    @property
    def dim(self) -> int:
        return int(self.centroids.shape[1])

    @property
    def n_centroids(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def nbytes_per_token(self) -> int:
        """Bytes of one token's packed residuals."""
        return self.dim * self.nbits // 8

    @classmethod
    def train(
        cls, sample: npt.NDArray[np.float32], nbits: int, n_centroids: int | None = None, *, seed: int = 0
    ) -> ResidualCodec:
        """Train on ``sample`` ``(n, dim)`` unit vectors: k-means centroids (``n_centroids``, default
        :func:`default_n_centroids`), then per-component bucket cut-offs (quantiles) and weights (bucket means)
        of the residuals.

        Raises:
            InvalidInputError: ``nbits`` is not 2 or 4, ``dim * nbits`` is not a multiple of 8, or ``sample`` is
                empty.
        """
        if nbits not in (2, 4):
            raise InvalidInputError(f"nbits must be 2 or 4, got {nbits!r}")
        x = np.ascontiguousarray(sample, dtype=F32)
        if x.ndim != 2 or x.shape[0] == 0:
            raise InvalidInputError(f"a codec needs a non-empty (n, dim) sample, got shape {x.shape}")
        if (x.shape[1] * nbits) % 8:
            raise InvalidInputError(
                f"{nbits}-bit compression packs {8 // nbits} components per byte; dim={x.shape[1]} is not a "
                f"multiple of {8 // nbits}. Use compression='int8' or 'int14' for this dimension"
            )
        k = default_n_centroids(x.shape[0]) if n_centroids is None else n_centroids
        centroids, labels = kmeans(x, k, seed=seed)
        residual = x - centroids[labels]
        levels = 1 << nbits
        qs = np.arange(1, levels) / levels
        cutoffs = np.quantile(residual, qs, axis=0).T.astype(F32)  # (dim, levels - 1)
        buckets = _bucketise(residual, cutoffs)
        weights = np.empty((x.shape[1], levels), dtype=F32)
        for j in range(x.shape[1]):
            sums = np.bincount(buckets[:, j], weights=residual[:, j], minlength=levels)
            counts = np.bincount(buckets[:, j], minlength=levels)
            mids = np.concatenate([[cutoffs[j, 0]], (cutoffs[j, :-1] + cutoffs[j, 1:]) / 2, [cutoffs[j, -1]]])
            weights[j] = np.where(counts > 0, sums / np.maximum(counts, 1), mids)
        codec = cls(centroids, cutoffs, weights, nbits, 0.0, 0.0)
        norms = np.linalg.norm(residual, axis=1)
        error = codec.reconstruction_error(x, labels, pack_bits(buckets, nbits))
        return cls(centroids, cutoffs, weights, nbits, float(error.mean()), float(np.quantile(norms, 0.99)))

    def extend(self, far: npt.NDArray[np.float32], *, seed: int = 0) -> ResidualCodec:
        """A codec with centroids appended for ``far`` ``(n, dim)``, tokens far from every centroid (k-means into
        a quarter of :func:`default_n_centroids` of them, at least one). The existing centroids, cut-offs and
        weights are kept: codes written with ``self`` decode the same with the result."""
        if far.shape[0] == 0:
            return self
        new, _ = kmeans(np.ascontiguousarray(far, dtype=F32), max(1, default_n_centroids(far.shape[0]) // 4), seed=seed)
        return ResidualCodec(
            np.concatenate([np.asarray(self.centroids), new]),
            self.cutoffs,
            self.weights,
            self.nbits,
            self.train_error,
            self.outlier_norm,
        )

    def residual_norms(self, x: npt.NDArray[np.float32], codes: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        """``|x - centroid(code)|`` per row ``(n,)``: rows above :attr:`outlier_norm` are far from every
        centroid."""
        d = x - self.centroids[np.asarray(codes, dtype=np.intp)]
        return np.sqrt(np.einsum("ij,ij->i", d, d))

    def assign(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
        """Nearest centroid id of every row of ``x`` ``(n, dim)``."""
        c = self.centroids
        return _assign(np.ascontiguousarray(x, dtype=F32), c, 0.5 * np.einsum("ij,ij->i", c, c))

    def encode(self, x: npt.NDArray[np.float32]) -> tuple[npt.NDArray[Any], npt.NDArray[np.uint8]]:
        """Encode ``x`` ``(n, dim)``: ``(centroid ids (n,) in code_dtype, packed residuals (n, dim * nbits // 8)
        uint8)``."""
        x = np.ascontiguousarray(x, dtype=F32)
        codes = self.assign(x)
        packed = np.empty((x.shape[0], self.nbytes_per_token), dtype=np.uint8)
        for s in range(0, x.shape[0], BATCH):
            r = x[s : s + BATCH] - self.centroids[codes[s : s + BATCH]]
            packed[s : s + BATCH] = pack_bits(_bucketise(r, self.cutoffs), self.nbits)
        return codes.astype(code_dtype(self.n_centroids)), packed

    def lut(self) -> npt.NDArray[np.float32]:
        """``(nbytes_per_token, 256, 8 // nbits)`` float32: the residual values a byte at each position
        decodes to."""
        per = 8 // self.nbits
        byte = np.arange(256, dtype=np.uint8)[:, None]
        idx = unpack_bits(byte, self.nbits)  # (256, per)
        w = self.weights.reshape(self.nbytes_per_token, per, -1)  # (positions, per, levels)
        pos = np.arange(self.nbytes_per_token)[:, None, None]
        comp = np.arange(per)[None, None, :]
        return np.ascontiguousarray(w[pos, comp, idx[None, :, :]], dtype=F32)

    def decode(
        self, codes: npt.NDArray[Any], packed: npt.NDArray[np.uint8], *, normalise: bool = True
    ) -> npt.NDArray[np.float32]:
        """Decode ``(codes (n,), packed (n, nbytes))`` to vectors ``(n, dim)`` float32: centroid plus bucket
        weights, renormalised to unit length (``normalise=False``: as reconstructed)."""
        table = self._table()
        n, nbytes = packed.shape
        idx = packed.astype(np.intp)
        idx += (np.arange(nbytes, dtype=np.intp) * 256)[None, :]
        # One gather of the byte's whole group of components (viewed as one wide element: NumPy's 1-D take).
        out = np.take(table, idx).view(F32).reshape(n, self.dim)
        out += self.centroids[np.asarray(codes, dtype=np.intp)]
        if not normalise:
            return out
        norms = np.sqrt(np.einsum("ij,ij->i", out, out))
        out /= np.maximum(norms, 1e-12)[:, None]
        return out

    def _table(self) -> npt.NDArray[Any]:
        """:meth:`lut` flattened to ``(nbytes * 256,)`` elements of ``8 // nbits`` float32 each (cached)."""
        cached = self.__dict__.get("_lut")
        if cached is None:
            wide = np.dtype(np.complex128) if self.nbits == 2 else np.dtype(np.float64)
            cached = np.ascontiguousarray(self.lut().reshape(-1, 8 // self.nbits)).view(wide).ravel()
            object.__setattr__(self, "_lut", cached)
        return cached

    def reconstruction_error(
        self, x: npt.NDArray[np.float32], codes: npt.NDArray[Any], packed: npt.NDArray[np.uint8]
    ) -> npt.NDArray[np.float32]:
        """Squared error ``|x - decode(codes, packed)|^2`` per row ``(n,)``."""
        d = x - self.decode(codes, packed)
        return np.einsum("ij,ij->i", d, d)


def _bucketise(r: npt.NDArray[np.float32], cutoffs: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
    """Bucket index of every residual component ``(n, dim)``: how many of the component's cut-offs it reaches."""
    out = np.zeros(r.shape, dtype=np.uint8)
    for b in range(cutoffs.shape[1]):
        out += r >= cutoffs[None, :, b]
    return out
