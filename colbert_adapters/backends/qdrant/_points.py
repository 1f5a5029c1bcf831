"""How a document becomes a Qdrant point: its id, its payload keys, its summary vector, the checks on its vectors.

A point holds one document:

* id: ``uuid5(ID_NAMESPACE, doc_id)`` (Qdrant accepts only unsigned ints and UUIDs), see :func:`point_id`;
* a multivector: the document's ``(n_tokens, dim)`` token vectors, fewer than :data:`MAX_MULTIVECTOR_FLOATS`
  floats (:func:`check_vectors`);
* a summary vector: the L2-normalised mean of the token vectors (:func:`summary_vector`), for the first stage;
* payload: ``{DOC_ID_KEY: str, TEXT_KEY: str | None, METADATA_KEY: {...}, SEQ_KEY: int}``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ..._validation import as_multivector
from ...errors import DimensionMismatchError, InvalidInputError

__all__ = [
    "DOC_ID_KEY",
    "ID_NAMESPACE",
    "MAX_MULTIVECTOR_FLOATS",
    "METADATA_KEY",
    "SEQ_KEY",
    "TEXT_KEY",
    "check_vectors",
    "metadata_path",
    "payload_bytes",
    "point_id",
    "summary_vector",
]

#: Namespace of the deterministic point ids: ``uuid5(ID_NAMESPACE, doc_id)``.
ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/colbert-adapters/colbert-adapters#doc-id")

DOC_ID_KEY = "doc_id"
TEXT_KEY = "text"
METADATA_KEY = "metadata"
SEQ_KEY = "seq"
#: Characters Qdrant reads as JSON-path syntax in a payload key.
FORBIDDEN_KEY_CHARS = frozenset('[]"')


def metadata_path(key: str) -> str:
    """The payload path where metadata field ``key`` lives (``metadata.<key>``): filters and indexes use it.

    A dotted key (``"author.name"``) is a nested field, as in the filters.
    """
    if not isinstance(key, str) or not key or FORBIDDEN_KEY_CHARS & set(key) or "" in key.split("."):
        raise InvalidInputError(
            f"metadata key {key!r} is empty, has an empty dotted part or contains '[', ']' or '\"', which Qdrant "
            "reads as a JSON path; rename the metadata field, or pass a qdrant_client.models.Filter with the path "
            "you mean"
        )
    return f"{METADATA_KEY}.{key}"


#: Qdrant refuses a multivector of this many floats or more (``MAX_MULTIVECTOR_FLATTENED_LEN``, hard-coded in
#: the server): at most 8,191 token vectors at 128 dims. Edge does not check it, so we do.
MAX_MULTIVECTOR_FLOATS = 1024 * 1024


def point_id(doc_id: str) -> str:
    """The Qdrant point id of a document id: ``str(uuid5(ID_NAMESPACE, doc_id))``.

    Qdrant accepts only unsigned integers and UUIDs as point ids; the original id is kept in the payload
    (``doc_id``).

    Example:
        >>> point_id("doc-1") == point_id("doc-1") != point_id("doc-2")
        True
    """
    return str(uuid.uuid5(ID_NAMESPACE, doc_id))


def summary_vector(vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """The first-stage vector of a multivector: the L2-normalised mean of its rows, float32 ``(dim,)``.

    A mean of (near) zero falls back to the first non-zero row, then to the first axis, so the summary is
    always a unit vector.
    """
    mean = vectors.mean(axis=0, dtype=np.float64)
    norm = float(np.linalg.norm(mean))
    if norm < 1e-9:
        norms = np.linalg.norm(vectors, axis=1)
        nz = np.flatnonzero(norms > 1e-9)
        if nz.size:
            mean, norm = vectors[nz[0]].astype(np.float64), float(norms[nz[0]])
        else:
            mean, norm = np.eye(1, vectors.shape[1], dtype=np.float64)[0], 1.0
    out: npt.NDArray[np.float32] = (mean / norm).astype(np.float32)
    return out


def check_vectors(vectors: Sequence[Any], dim: int | None, ids: Sequence[str]) -> list[npt.NDArray[np.float32]]:
    """Validate every multivector (shape, finiteness, Qdrant's per-point cap) before anything is sent."""
    arrays: list[npt.NDArray[np.float32]] = []
    for i, v in enumerate(vectors):
        try:
            arr = as_multivector(v, dim=dim, where=f"vectors[{i}] (id {ids[i]!r})")
        except DimensionMismatchError as err:
            if arrays and dim == arrays[0].shape[1]:  # the batch disagrees with its own first item
                raise DimensionMismatchError(
                    f"{err}; vectors[0] has dimension {dim}: all documents must come from the same encoder"
                ) from err
            raise
        if arr.size >= MAX_MULTIVECTOR_FLOATS:
            max_tokens = (MAX_MULTIVECTOR_FLOATS - 1) // arr.shape[1]
            raise InvalidInputError(
                f"vectors[{i}] (id {ids[i]!r}) has {arr.shape[0]} tokens x {arr.shape[1]} dims = {arr.size} floats; "
                f"Qdrant stores fewer than {MAX_MULTIVECTOR_FLOATS} floats per multivector (at most {max_tokens} "
                f"tokens at {arr.shape[1]} dims). Split long documents into passages, or lower the encoder's "
                "document_length; nothing was written"
            )
        if dim is None:
            dim = arr.shape[1]
        # Copy when as_multivector returned the caller's array (or a view): later edits must not leak in.
        arrays.append(arr.copy() if arr is v or not arr.flags.owndata else arr)
    return arrays


def payload_bytes(payload: Mapping[str, Any]) -> int:
    """Length of a payload as compact UTF-8 JSON, for the request-size estimate."""
    return len(json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8"))
