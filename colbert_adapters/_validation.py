"""Input validation shared by the encoder, the scoring module and every backend.

All checks raise :class:`~colbert_adapters.errors.InvalidInputError` (or a subclass) with a message that
names the offending item and the fix. Nothing here mutates its inputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .errors import DimensionMismatchError, InvalidInputError
from .types import MultiVector

__all__ = [
    "MAX_DIM",
    "MAX_ID_CHARS",
    "MAX_K",
    "MAX_METADATA_DEPTH",
    "MAX_TEXT_CHARS",
    "MAX_TOKENS_PER_DOCUMENT",
    "METADATA_INT_RANGE",
    "as_multivector",
    "check_filter",
    "check_ids",
    "check_k",
    "check_metadatas",
    "check_texts",
    "check_upsert_batch",
    "match_filter",
    "positive_int",
]

_SCALARS = (str, int, float, bool, type(None))

# The limits every backend enforces, through the checks below, before anything is written (README "Limits";
# public in colbert_adapters.limits).
#: Longest id, in characters. Ids are non-empty str without NUL (U+0000) and valid Unicode.
MAX_ID_CHARS = 1024
#: Deepest nesting of dicts and lists in a document's metadata (the top-level dict is depth 1).
MAX_METADATA_DEPTH = 32
#: Longest metadata key (at any depth) and filter key, in characters.
MAX_KEY_CHARS = 256
#: Metadata integers must fit in a signed 64-bit integer (what SQLite, JSON readers and Qdrant keep exactly).
METADATA_INT_RANGE = (-(2**63), 2**63 - 1)
#: Longest stored text, in characters.
MAX_TEXT_CHARS = 16 * 2**20
#: Most token vectors one document (or query) may have.
MAX_TOKENS_PER_DOCUMENT = 1 << 20
#: Widest token vector.
MAX_DIM = 1 << 16
#: Largest ``k`` of a search.
MAX_K = 2**31 - 1


def _check_unicode(s: str, where: str) -> None:
    """Raise when ``s`` cannot be stored as UTF-8 (an unpaired surrogate, e.g. from a bad decode)."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as err:
        bad = s[err.start : err.end]
        raise InvalidInputError(
            f"{where} holds {bad!r} at position {err.start}, an unpaired surrogate that is not valid Unicode text; "
            "decode the input with errors='replace' or 'ignore'"
        ) from None


def check_texts(texts: object, *, what: str = "texts") -> list[str]:
    """Return ``texts`` as a list of ``str``; a single ``str`` is rejected (wrap it in a list).

    Raises:
        InvalidInputError: ``texts`` is not a sequence of strings (``None`` items included).
    """
    if isinstance(texts, str):
        raise InvalidInputError(f"{what} must be a list of strings, got a single str; wrap it: [{texts[:30]!r}]")
    if not isinstance(texts, Sequence):
        raise InvalidInputError(f"{what} must be a list of strings, got {type(texts).__name__}")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise InvalidInputError(
                f"{what}[{i}] is {type(t).__name__} ({t!r:.40}), expected str; convert or drop it before encoding"
            )
        _check_text(t, f"{what}[{i}]")
    return out


def _check_text(t: str, where: str) -> None:
    if len(t) > MAX_TEXT_CHARS:
        raise InvalidInputError(f"{where} has {len(t):,} characters, more than {MAX_TEXT_CHARS:,}; split it")
    _check_unicode(t, where)


def check_ids(ids: object, *, allow_duplicates: bool = False) -> list[str]:
    """Validate document ids: a sequence of non-empty ``str``, no duplicates within one call."""
    if isinstance(ids, str) or not isinstance(ids, Sequence):
        raise InvalidInputError(f"ids must be a list of strings, got {type(ids).__name__}")
    out = list(ids)
    for i, x in enumerate(out):
        if not isinstance(x, str):
            raise InvalidInputError(
                f"ids[{i}] is {type(x).__name__} ({x!r:.40}); ids must be str (use str(id) for numbers)"
            )
        if not x:
            raise InvalidInputError(f"ids[{i}] is an empty string; ids must be non-empty")
        if len(x) > MAX_ID_CHARS:
            raise InvalidInputError(f"ids[{i}] has {len(x):,} characters; ids are at most {MAX_ID_CHARS:,}")
        if "\x00" in x:
            raise InvalidInputError(f"ids[{i}] ({x!r:.60}) contains NUL (\\x00); ids must not contain NUL characters")
        _check_unicode(x, f"ids[{i}]")
    if not allow_duplicates and len(set(out)) != len(out):
        seen: set[str] = set()
        dup = next(x for x in out if x in seen or seen.add(x))  # type: ignore[func-returns-value]
        raise InvalidInputError(f"duplicate id {dup!r} in one call; each id may appear once per call")
    return out


def check_metadatas(metadatas: object, n: int) -> list[dict[str, Any]]:
    """Validate per-document metadata: ``None`` or a sequence of ``n`` JSON-serialisable mappings."""
    if metadatas is None:
        return [{} for _ in range(n)]
    if isinstance(metadatas, Mapping) or not isinstance(metadatas, Sequence):
        raise InvalidInputError(f"metadatas must be a list of dicts (one per document), got {type(metadatas).__name__}")
    out = list(metadatas)
    if len(out) != n:
        raise InvalidInputError(f"got {len(out)} metadatas for {n} documents; pass one dict (or None) per document")
    res: list[dict[str, Any]] = []
    for i, m in enumerate(out):
        if m is None:
            res.append({})
            continue
        if not isinstance(m, Mapping):
            raise InvalidInputError(f"metadatas[{i}] is {type(m).__name__}, expected a dict")
        _check_json(m, f"metadatas[{i}]", 1)
        res.append(dict(m))
    return res


def _check_json(value: Any, where: str, depth: int) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInputError(f"{where} holds a non-finite float ({value}); metadata must be JSON-serialisable")
    if isinstance(value, int) and not isinstance(value, bool):
        lo, hi = METADATA_INT_RANGE
        if not lo <= value <= hi:
            raise InvalidInputError(
                f"{where} holds the integer {value}, outside the signed 64-bit range metadata keeps exactly; "
                "store it as a str"
            )
        return
    if isinstance(value, str):
        _check_text(value, where)
        return
    if isinstance(value, _SCALARS):
        return
    if isinstance(value, (Mapping, list, tuple)) and depth > MAX_METADATA_DEPTH:
        raise InvalidInputError(
            f"{where} nests dicts and lists more than {MAX_METADATA_DEPTH} levels deep; flatten the metadata"
        )
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise InvalidInputError(f"{where} has a non-string key {k!r}; metadata keys must be str")
            _check_unicode(k, f"{where} key {k!r:.40}")
            if len(k) > MAX_KEY_CHARS:
                raise InvalidInputError(
                    f"{where} has a key of {len(k)} characters ({k[:40]!r}...); metadata keys are at most "
                    f"{MAX_KEY_CHARS} characters: shorten it, or move the value under a short key"
                )
            _check_json(v, f"{where}[{k!r}]", depth + 1)
        return
    if isinstance(value, (list, tuple)):
        for j, v in enumerate(value):
            _check_json(v, f"{where}[{j}]", depth + 1)
        return
    raise InvalidInputError(
        f"{where} holds a {type(value).__name__}, which is not JSON-serialisable; use str/int/float/bool/None/list/dict"
    )


def as_multivector(vectors: object, *, dim: int | None = None, where: str = "vectors") -> MultiVector:
    """Convert one multi-vector to a C-contiguous float32 ``(n_tokens, dim)`` array and validate it.

    Args:
        vectors: a 2-D array-like ``(n_tokens, dim)`` (numpy array, torch tensor, nested lists).
        dim: the expected dimension, or ``None`` to accept any.
        where: how to name the item in error messages, e.g. ``"vectors[3]"``.

    Raises:
        InvalidInputError: not 2-D, empty, ragged, or holding NaN/inf.
        DimensionMismatchError: ``dim`` given and the second axis differs.
    """
    if hasattr(vectors, "detach") and hasattr(vectors, "cpu"):  # torch.Tensor without importing torch
        if getattr(vectors, "is_complex", lambda: False)():
            raise InvalidInputError(f"{where} is complex-valued; token vectors must be real")
        vectors = vectors.detach().cpu().float().numpy()
    if _is_complex(vectors):
        raise InvalidInputError(f"{where} is complex-valued; token vectors must be real")
    try:
        arr = np.asarray(vectors, dtype=np.float32)
    except (ValueError, TypeError) as err:
        raise InvalidInputError(
            f"{where} is not a rectangular numeric array ({err}); every token vector must have the same length"
        ) from err
    if arr.ndim != 2:
        raise InvalidInputError(
            f"{where} must be 2-D (n_tokens, dim), got shape {arr.shape}; "
            "pass one (n_tokens, dim) array per document, not a single vector or a batch"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InvalidInputError(f"{where} is empty (shape {arr.shape}); a multi-vector needs at least one token vector")
    if arr.shape[0] > MAX_TOKENS_PER_DOCUMENT or arr.shape[1] > MAX_DIM:
        raise InvalidInputError(
            f"{where} has shape {arr.shape}; at most {MAX_TOKENS_PER_DOCUMENT:,} token vectors of at most "
            f"{MAX_DIM:,} dimensions are accepted (split long documents into passages)"
        )
    if dim is not None and arr.shape[1] != dim:
        raise DimensionMismatchError(
            f"{where} has dimension {arr.shape[1]}, expected {dim}; encode with the same model as the stored "
            "documents, or use a new index"
        )
    if not np.isfinite(arr).all():
        raise InvalidInputError(f"{where} contains NaN or inf values; check the encoder output")
    return np.ascontiguousarray(arr)


def _is_complex(vectors: object) -> bool:
    try:
        return bool(np.iscomplexobj(vectors))  # type: ignore[arg-type]
    except (ValueError, TypeError):  # ragged or not numeric: the conversion below says what is wrong
        return False


def check_k(k: object) -> int:
    """Validate a result count: a positive ``int``."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise InvalidInputError(f"k must be a positive int, got {type(k).__name__}")
    if k <= 0:
        raise InvalidInputError(f"k must be >= 1, got {k}")
    if k > MAX_K:
        raise InvalidInputError(f"k must be at most {MAX_K:,}, got {k}")
    return int(k)


def check_filter(flt: object) -> dict[str, list[Any]] | None:
    """Normalise a metadata filter to ``{field: [allowed values]}``; ``None``/``{}`` mean no filter.

    ``{"source": "a", "year": [2020, 2021]}`` matches documents whose ``source`` equals ``"a"`` and whose
    ``year`` is 2020 or 2021.
    """
    if flt is None:
        return None
    if not isinstance(flt, Mapping):
        raise InvalidInputError(
            f"filter must be a dict like {{'source': 'a', 'year': [2020, 2021]}}, got {type(flt).__name__}"
        )
    if not flt:
        return None
    out: dict[str, list[Any]] = {}
    for key, value in flt.items():
        if not isinstance(key, str):
            raise InvalidInputError(f"filter keys must be str, got {key!r}")
        _check_unicode(key, f"filter key {key!r:.40}")
        if len(key) > MAX_KEY_CHARS:
            raise InvalidInputError(f"filter key {key[:40]!r}... is longer than {MAX_KEY_CHARS} characters")
        values = list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
        if not values:
            raise InvalidInputError(f"filter[{key!r}] is an empty list; it would match nothing")
        for v in values:
            if not isinstance(v, _SCALARS):
                raise InvalidInputError(
                    f"filter[{key!r}] holds a {type(v).__name__}; filter values must be str/int/float/bool/None"
                )
            if isinstance(v, str):
                _check_unicode(v, f"filter[{key!r}]")
        out[key] = values
    return out


def match_filter(metadata: Mapping[str, Any], flt: Mapping[str, Sequence[Any]] | None) -> bool:
    """True when ``metadata`` satisfies a filter normalised by :func:`check_filter`.

    A missing field never matches. ``True``/``1`` are distinct (JSON semantics), as are ``1`` and ``"1"``.
    """
    if not flt:
        return True
    for key, allowed in flt.items():
        if key not in metadata:
            return False
        v = metadata[key]
        if not any((type(v) is type(a) and v == a) or _num_eq(v, a) for a in allowed):
            return False
    return True


def _num_eq(a: Any, b: Any) -> bool:
    # 2020 matches 2020.0, but bools never match numbers.
    return (
        isinstance(a, (int, float))
        and isinstance(b, (int, float))
        and not isinstance(a, bool)
        and not isinstance(b, bool)
        and a == b
    )


def check_doc_texts(texts: object, n: int) -> list[str | None]:
    """Validate stored document texts: ``None``, or ``n`` entries that are ``str`` or ``None``."""
    if texts is None:
        return [None] * n
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence):
        raise InvalidInputError(f"texts must be a list of str (or None entries), got {type(texts).__name__}")
    out = list(texts)
    if len(out) != n:
        raise InvalidInputError(f"got {len(out)} texts for {n} ids; pass one text (or None) per id")
    for i, t in enumerate(out):
        if t is not None and not isinstance(t, str):
            raise InvalidInputError(f"texts[{i}] is {type(t).__name__}, expected str or None")
        if t is not None:
            _check_text(t, f"texts[{i}]")
    return out


def check_upsert_batch(
    ids: object, vectors: object, texts: object, metadatas: object
) -> tuple[list[str], list[str | None], list[dict[str, Any]]]:
    """The checks every backend's ``upsert`` starts with (vectors themselves are checked per backend).

    Returns:
        ``(ids, texts, metadatas)`` as lists of length ``n``.

    Raises:
        InvalidInputError: bad ids, ``vectors`` not a sequence of ``n`` items, bad texts or metadata.
    """
    id_list = check_ids(ids)
    n = len(id_list)
    if isinstance(vectors, (str, bytes)) or not isinstance(vectors, (Sequence, np.ndarray)):
        raise InvalidInputError(f"vectors must be a sequence of (n_tokens, dim) arrays, got {type(vectors).__name__}")
    if len(vectors) != n:
        raise InvalidInputError(f"got {len(vectors)} vectors for {n} ids; pass one (n_tokens, dim) array per id")
    return id_list, check_doc_texts(texts, n), check_metadatas(metadatas, n)


def positive_int(value: object, name: str) -> int:
    """Return ``value`` as an ``int`` if it is a positive integer (``bool`` excluded), else raise.

    Raises:
        InvalidInputError: naming ``name`` and the value given.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidInputError(f"{name} must be a positive int, got {value!r}")
    return int(value)
