"""Token codecs: how a token vector becomes bytes and comes back (int8, int14, float16, float32).

Every stored or cached copy of a token vector goes through these functions, so a quantised store and the kernels
that score it (:mod:`colbert_adapters._kernels`) agree on one layout:

* ``int8``: per token a float32 scale (its largest magnitude over 127) and ``dim`` int8 codes; a component is
  within half a step (``max|x| / 254``) of the original.
* ``int14``: the int8 codes plus each component's 6-bit remainder (:func:`quantise_int14`); a component is within
  ``max|x| / 15,748`` of the original.
* ``float16`` / ``float32``: the components as they are (little-endian).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import IndexCorruptedError

__all__ = [
    "F16",
    "F32",
    "RESIDUAL_LEVELS",
    "VECTOR_DTYPES",
    "blob_parts",
    "decode_vectors",
    "dequantise_int14",
    "encode_vectors",
    "int8_record",
    "quantise_int8",
    "quantise_int14",
    "residual_planes",
    "residual_values",
    "residual_widths",
]

F16 = np.dtype("<f2")
F32 = np.dtype("<f4")
#: Encodings of stored token vectors (the ``vector_dtype`` of a Voyager index).
VECTOR_DTYPES = ("int14", "int8", "float16", "float32")
#: int14: the remainder of each component after its int8 code is kept in ``2 * RESIDUAL_LEVELS + 1`` (63) steps,
#: 6 bits (see :func:`quantise_int14`).
RESIDUAL_LEVELS = 31

_FloatArray = npt.NDArray[np.float32]


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


def int8_record(dim: int) -> np.dtype[Any]:
    """One stored int8 token: its float32 scale, then its ``dim`` int8 codes (``4 + dim`` bytes, little-endian)."""
    return np.dtype([("scale", F32), ("codes", np.int8, (dim,))])


def residual_widths(dim: int) -> tuple[int, int]:
    """Bytes per token of an int14 residual's two planes: ``(nibbles, two-bit)`` = ``(d' / 2, d' / 4)``, where
    ``d'`` is ``dim`` rounded up to a multiple of 4."""
    padded = -(-dim // 4) * 4
    return padded // 2, padded // 4


def quantise_int14(arr: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int8], bytes]:
    """int8 codes of ``arr`` ``(n, dim)`` plus each component's rounded remainder: (scales ``(n,)``, codes
    ``(n, dim)``, residual blob).

    The remainder of component ``i`` after its code, in units of the row scale (within +-0.5), is rounded to a
    multiple of ``1 / (2 L)`` (``L`` = ``RESIDUAL_LEVELS`` = 31) and kept as the 6-bit value ``v_i = L + that
    multiple`` (0 .. 62). The blob holds two planes, token-major: ``n * d' / 2`` bytes of low nibbles (byte ``i``
    of a token: ``v_{2i} & 15`` in its low half, ``v_{2i+1} & 15`` in its high half), then ``n * d' / 4`` bytes of
    high bit pairs (byte ``i``: ``v_{4i+j} >> 4`` in bits ``2 j, 2 j + 1``), ``d'`` being ``dim`` rounded up to a
    multiple of 4 (padding values 0). A token then decodes to ``(codes + (v - L) / (2 L)) * scale``, within
    ``scale / (4 L)`` = ``max|x| / 15,748`` of ``arr`` per component (:func:`dequantise_int14`).
    """
    n, dim = arr.shape
    scales, codes = quantise_int8(arr)
    safe = np.where(scales > 0, scales, np.float32(1.0))
    half, _ = residual_widths(dim)
    values = np.zeros((n, 2 * half), dtype=np.uint8)
    # Codes are the rounded quotients (clipping at +-127 never bites: the largest quotient is 127), so each
    # remainder is within +-0.5 and each value within 0 .. 2 L.
    steps = np.rint((arr / safe[:, None] - codes) * (2 * RESIDUAL_LEVELS))
    values[:, :dim] = np.clip(steps, -RESIDUAL_LEVELS, RESIDUAL_LEVELS) + RESIDUAL_LEVELS
    nibbles = (values[:, 0::2] & 15) | ((values[:, 1::2] & 15) << 4)
    high = values >> 4
    two = high[:, 0::4] | (high[:, 1::4] << 2) | (high[:, 2::4] << 4) | (high[:, 3::4] << 6)
    return scales, codes, nibbles.tobytes() + two.tobytes()


def residual_planes(
    blob: bytes | bytearray, n_tokens: int, dim: int
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """The nibble ``(n_tokens, d' / 2)`` and two-bit ``(n_tokens, d' / 4)`` planes of one residual blob (views)."""
    half, quarter = residual_widths(dim)
    buf = np.frombuffer(blob, dtype=np.uint8)
    if buf.size != n_tokens * (half + quarter):
        raise IndexCorruptedError(
            f"a stored residual holds {buf.size} bytes where {n_tokens} tokens need {n_tokens * (half + quarter)}; "
            "the index is damaged"
        )
    return buf[: n_tokens * half].reshape(n_tokens, half), buf[n_tokens * half :].reshape(n_tokens, quarter)


def residual_values(nibbles: npt.NDArray[np.uint8], two: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """The 6-bit residual values ``(n, d')`` (0 .. 62, component order) of residual planes ``(n, d' / 2)`` and
    ``(n, d' / 4)``.

    Whole-array integer steps instead of per-component ones (NumPy cannot fuse them, so fewer passes is faster):
    each nibble byte widened to 16 bits and spread to ``0x0L0H`` reads, as bytes, as its two components in order;
    each bit-pair byte widened to 32 bits and spread to one pair per byte likewise.
    """
    n = nibbles.shape[0]
    low = nibbles.astype(np.uint16)
    low |= low << 4
    low &= 0x0F0F
    values = low.view(np.uint8).reshape(n, -1)  # little-endian: the byte of component 2i comes first
    high = two.astype(np.uint32)
    high |= (high << 6) | (high << 12) | (high << 18)
    high &= 0x03030303
    high <<= 4
    values += high.view(np.uint8).reshape(n, -1)
    return values


def dequantise_int14(
    codes: npt.NDArray[np.int8],
    scales: npt.NDArray[np.float32],
    nibbles: npt.NDArray[np.uint8],
    two: npt.NDArray[np.uint8],
) -> npt.NDArray[np.float32]:
    """float32 rows ``(n, dim)`` of int14-stored tokens (see :func:`quantise_int14`) from their codes ``(n, dim)``,
    scales ``(n,)`` and residual planes ``(n, d' / 2)``, ``(n, d' / 4)``."""
    dim = codes.shape[1]
    units = codes.astype(np.int16)  # in residual steps: codes * 2 L + v - L, within +-7,905
    units *= 2 * RESIDUAL_LEVELS
    units += residual_values(nibbles, two)[:, :dim]
    units -= RESIDUAL_LEVELS
    out = units.astype(np.float32)
    out *= (scales / np.float32(2 * RESIDUAL_LEVELS))[:, None]
    return out


def encode_vectors(
    arr: npt.NDArray[np.float32], vector_dtype: str
) -> tuple[bytes, bytes | None, npt.NDArray[np.float32]]:
    """The ``vectors`` blob of one document ``(n, dim)``, its ``residual`` blob (int14) or ``None``, and the float32
    vectors they decode to."""
    if vector_dtype == "float16":
        half = arr.astype(F16)
        return half.tobytes(), None, half.astype(np.float32)
    if vector_dtype == "float32":
        exact = np.ascontiguousarray(arr, dtype=F32)
        return exact.tobytes(), None, exact.astype(np.float32)
    residual: bytes | None = None
    if vector_dtype == "int14":
        scales, codes, residual = quantise_int14(arr)
        decoded = dequantise_int14(codes, scales, *residual_planes(residual, arr.shape[0], arr.shape[1]))
    else:
        scales, codes = quantise_int8(arr)
        decoded = codes.astype(np.float32) * scales[:, None]
    rec = np.empty(arr.shape[0], dtype=int8_record(arr.shape[1]))
    rec["scale"] = scales
    rec["codes"] = codes
    return rec.tobytes(), residual, decoded


def blob_parts(
    blob: bytes | bytearray | memoryview, dim: int, vector_dtype: str
) -> tuple[npt.NDArray[Any], npt.NDArray[np.float32] | None]:
    """Views of ``vectors`` blobs (one, or several joined): (float16 / float32 rows ``(n, dim)`` and ``None``, or
    int8 codes ``(n, dim)`` and their row scales ``(n,)`` for int8 / int14; the int8 views are strided)."""
    if vector_dtype in ("float16", "float32"):
        return np.frombuffer(blob, dtype=F16 if vector_dtype == "float16" else F32).reshape(-1, dim), None
    rec = np.frombuffer(blob, dtype=int8_record(dim))
    return rec["codes"], rec["scale"]


def decode_vectors(
    blob: bytes, n_tokens: int, dim: int, vector_dtype: str, residual: bytes | None = None
) -> npt.NDArray[np.float32]:
    """The float32 ``(n_tokens, dim)`` vectors a ``vectors`` blob (and, for int14, its ``residual`` blob) stands
    for."""
    rows, scales = blob_parts(blob, dim, vector_dtype)
    if rows.shape[0] != n_tokens:
        raise IndexCorruptedError(
            f"a stored document has {rows.shape[0]} token vectors where {n_tokens} were recorded; the index is damaged"
        )
    if vector_dtype == "int14":
        if residual is None:
            raise IndexCorruptedError("a stored int14 document has no residual; the index is damaged")
        assert scales is not None
        return dequantise_int14(rows, scales, *residual_planes(residual, n_tokens, dim))
    out = rows.astype(np.float32)
    if scales is not None:
        out *= scales[:, None]
    return out
