"""Filters: the dict form to ``qdrant_client.models.Filter``, and client filters to Qdrant Edge filters.

A dict filter (``{"field": value}`` / ``{"field": [v1, v2]}`` on metadata) becomes a native filter that
matches a superset of it; the backend re-checks every hit exactly with
:func:`~colbert_adapters._validation.match_filter`, so results equal :class:`MemoryBackend`'s. Native filters
pass through (an Edge filter only on Edge). ``qdrant_client`` and ``qdrant_edge`` are imported on use.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from ..._optional import require
from ..._validation import check_filter
from ...errors import InvalidInputError
from ._points import metadata_path

__all__ = ["dict_to_models_filter", "native_filter_kind", "resolve_filter", "to_edge_filter"]


def resolve_filter(flt: Any, engine: str) -> tuple[Any, dict[str, list[Any]] | None]:
    """Turn a backend ``filter=`` argument into what the engine ``engine`` takes.

    Args:
        flt: ``None``, the dict form, a ``qdrant_client.models.Filter`` or a ``qdrant_edge.Filter``.
        engine: ``"edge"``, ``"local"`` or ``"server"``.

    Returns:
        ``(native filter for the engine or None, normalised dict filter to re-check exactly or None)``.

    Raises:
        InvalidInputError: a malformed dict, an Edge filter on another engine, or another type.
    """
    if flt is None or isinstance(flt, Mapping):
        norm = check_filter(flt)
        if norm is None:
            return None, None
        return dict_to_models_filter(norm, native_bools=engine != "edge"), norm
    kind = native_filter_kind(flt)
    if kind == "client" or (kind == "edge" and engine == "edge"):
        return flt, None
    if kind == "edge":
        raise InvalidInputError(
            "a qdrant_edge.Filter only works on a Qdrant Edge backend; pass a qdrant_client.models.Filter "
            "(works on every engine) or the dict form"
        )
    raise InvalidInputError(
        "filter must be a dict like {'source': 'a', 'year': [2020, 2021]}, a qdrant_client.models.Filter or "
        f"a qdrant_edge.Filter, got {type(flt).__name__}"
    )


def dict_to_models_filter(norm: Mapping[str, Sequence[Any]], *, native_bools: bool = True) -> Any:
    """Translate a normalised dict filter to a ``models.Filter`` that matches a superset of it.

    Numbers use a closed range (so 2020 matches 2020.0, as in MemoryBackend), strings and bools exact
    matches, ``None`` an is-null condition. Qdrant also matches an element of an array field; the backend
    re-checks every hit with :func:`~colbert_adapters._validation.match_filter`, which does not.

    ``native_bools=False`` (Qdrant Edge 0.9, which reads a Python ``bool`` filter value as an int and so never
    matches a stored bool): a field filtered on a bool only has to be present, and the exact re-check does
    the rest.
    """
    m = require("qdrant_client.models", extra="qdrant", package="qdrant-client")
    must = []
    for key, values in norm.items():
        path = metadata_path(key)
        if not native_bools and any(isinstance(v, bool) for v in values):
            must.append(m.Filter(must_not=[m.IsEmptyCondition(is_empty=m.PayloadField(key=path))]))
            continue
        conds: list[Any] = []
        strs = [v for v in values if isinstance(v, str)]
        if len(strs) == 1:
            conds.append(m.FieldCondition(key=path, match=m.MatchValue(value=strs[0])))
        elif strs:
            conds.append(m.FieldCondition(key=path, match=m.MatchAny(any=strs)))
        for v in values:
            if isinstance(v, bool):
                conds.append(m.FieldCondition(key=path, match=m.MatchValue(value=v)))
            elif isinstance(v, (int, float)):
                conds.append(m.FieldCondition(key=path, range=m.Range(gte=v, lte=v)))
            elif v is None:
                conds.append(m.IsNullCondition(is_null=m.PayloadField(key=path)))
        must.append(conds[0] if len(conds) == 1 else m.Filter(should=conds))
    return m.Filter(must=must)


def native_filter_kind(flt: Any) -> str | None:
    """``"client"`` for a ``qdrant_client.models.Filter``, ``"edge"`` for a ``qdrant_edge.Filter``, else ``None``."""
    models = sys.modules.get("qdrant_client.models")
    if models is not None and isinstance(flt, models.Filter):
        return "client"
    qe = sys.modules.get("qdrant_edge")
    if qe is not None and isinstance(flt, qe.Filter):
        return "edge"
    return None


def to_edge_filter(flt: Any, qe: Any) -> Any:
    """Convert a ``qdrant_client.models.Filter`` (or an Edge ``Filter``, returned as is) to an Edge filter.

    Supported: ``must``/``should``/``must_not``, nested filters, ``FieldCondition`` with ``MatchValue``,
    ``MatchAny``, ``MatchExcept``, ``MatchText`` or ``Range``, ``IsEmptyCondition``, ``IsNullCondition`` and
    ``HasIdCondition``.

    Raises:
        InvalidInputError: a condition Edge (or this converter) does not support.
    """
    if isinstance(flt, qe.Filter):
        return flt
    m = require("qdrant_client.models", extra="qdrant", package="qdrant-client")
    if not isinstance(flt, m.Filter):
        raise InvalidInputError(
            f"filter must be a dict, a qdrant_client.models.Filter or a qdrant_edge.Filter, got {type(flt).__name__}"
        )

    def conds(items: Any) -> list[Any] | None:
        if items is None:
            return None
        seq = items if isinstance(items, list) else [items]
        return [cond(c) for c in seq]

    def cond(c: Any) -> Any:
        if isinstance(c, m.Filter):
            return to_edge_filter(c, qe)
        if isinstance(c, m.FieldCondition):
            if c.match is not None:
                mt = c.match
                if isinstance(mt, m.MatchValue):
                    return qe.FieldCondition(key=c.key, match=qe.MatchValue(mt.value))
                if isinstance(mt, m.MatchAny):
                    return qe.FieldCondition(key=c.key, match=qe.MatchAny(list(mt.any)))
                if isinstance(mt, m.MatchExcept):
                    return qe.FieldCondition(key=c.key, match=qe.MatchExcept(list(mt.except_)))
                if isinstance(mt, m.MatchText):
                    return qe.FieldCondition(key=c.key, match=qe.MatchText(mt.text))
            if c.range is not None and isinstance(c.range, m.Range):
                r = c.range
                return qe.FieldCondition(key=c.key, range=qe.RangeFloat(gte=r.gte, gt=r.gt, lte=r.lte, lt=r.lt))
        if isinstance(c, m.IsEmptyCondition):
            return qe.IsEmptyCondition(c.is_empty.key)
        if isinstance(c, m.IsNullCondition):
            return qe.IsNullCondition(c.is_null.key)
        if isinstance(c, m.HasIdCondition):
            return qe.HasIdCondition({uuid.UUID(str(x)) if isinstance(x, str) else x for x in c.has_id})
        raise InvalidInputError(
            f"filter condition {c!r:.120} is not supported on Qdrant Edge by colbert-adapters; pass a "
            "qdrant_edge.Filter instead"
        )

    if getattr(flt, "min_should", None) is not None:
        raise InvalidInputError("min_should filters are not supported on Qdrant Edge by colbert-adapters")
    return qe.Filter(must=conds(flt.must), should=conds(flt.should), must_not=conds(flt.must_not))
