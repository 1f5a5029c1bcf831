"""Filters: the dict form to ``qdrant_client.models.Filter``, and client filters to Qdrant Edge filters.

A dict filter (any form of :mod:`colbert_adapters._filters`, on metadata) becomes a native filter that
matches a superset of it; the backend re-checks every hit exactly with
:func:`~colbert_adapters._filters.match_filter`, so results equal :class:`MemoryBackend`'s. Native filters
pass through (an Edge filter only on Edge). ``qdrant_client`` and ``qdrant_edge`` are imported on use.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Mapping
from typing import Any

from ..._filters import And, Cond, FilterExpr, Not, Or, check_filter
from ..._optional import require
from ...errors import InvalidInputError
from ._points import metadata_path

__all__ = ["native_filter_kind", "resolve_filter", "to_edge_filter", "to_models_filter"]


def resolve_filter(flt: Any, engine: str) -> tuple[Any, FilterExpr | None]:
    """Turn a backend ``filter=`` argument into what the engine ``engine`` takes.

    Args:
        flt: ``None``, the dict form (see :mod:`colbert_adapters._filters`), a normalised filter, a
            ``qdrant_client.models.Filter`` or a ``qdrant_edge.Filter``.
        engine: ``"edge"``, ``"local"`` or ``"server"``.

    Returns:
        ``(native filter for the engine or None, normalised filter to re-check exactly or None)``. The native
        filter of a dict matches a superset of it (exactly it, for most filters).

    Raises:
        InvalidInputError: a malformed dict, an Edge filter on another engine, or another type.
    """
    kind = native_filter_kind(flt)
    if kind == "client" or (kind == "edge" and engine == "edge"):
        return flt, None
    if kind == "edge":
        raise InvalidInputError(
            "a qdrant_edge.Filter only works on a Qdrant Edge backend; pass a qdrant_client.models.Filter "
            "(works on every engine) or the dict form"
        )
    if flt is not None and not isinstance(flt, (Mapping, Cond, Not, And, Or)):
        raise InvalidInputError(
            "filter must be a dict like {'source': 'a', 'year': {'$gte': 2020}}, a qdrant_client.models.Filter or "
            f"a qdrant_edge.Filter, got {type(flt).__name__}"
        )
    norm = check_filter(flt)
    if norm is None:
        return None, None
    return to_models_filter(norm, native_bools=engine != "edge"), norm


_ALL = "all"  # translation of a condition every point satisfies (no native condition)
_NONE = "none"  # translation of a condition no point satisfies


def to_models_filter(expr: FilterExpr, *, native_bools: bool = True) -> Any:
    """Translate a normalised filter to a ``models.Filter`` that matches a superset of it, or ``None`` (all).

    Most conditions translate exactly (Qdrant, too, matches a list field by its elements). Where Qdrant's
    meaning differs (``null`` inside lists, ``$text``, which Qdrant matches by tokens, bools on Qdrant Edge,
    which reads a Python ``bool`` filter value as an int), the translation is chosen by polarity: a superset
    where the condition counts positively, a subset under a negation, so the whole stays a superset and the
    backend's exact re-check with :func:`~colbert_adapters._filters.match_filter` does the rest.
    """
    m = require("qdrant_client.models", extra="qdrant", package="qdrant-client")
    out = _native(expr, True, m, native_bools)
    if isinstance(out, str):  # _ALL (a superset never needs _NONE at the top)
        return None
    return out if isinstance(out, m.Filter) else m.Filter(must=[out])


def _native(expr: FilterExpr, superset: bool, m: Any, native_bools: bool) -> Any:
    if isinstance(expr, Not):
        inner = _native(expr.item, not superset, m, native_bools)
        if isinstance(inner, str):
            return _NONE if inner == _ALL else _ALL
        return m.Filter(must_not=[inner])
    if isinstance(expr, (And, Or)):
        parts = [_native(item, superset, m, native_bools) for item in expr.items]
        absorbing, neutral = (_NONE, _ALL) if isinstance(expr, And) else (_ALL, _NONE)
        if absorbing in parts:
            return absorbing
        parts = [p for p in parts if p != neutral]
        if not parts:
            return neutral
        if len(parts) == 1:
            return parts[0]
        return m.Filter(must=parts) if isinstance(expr, And) else m.Filter(should=parts)
    return _condition(expr, superset, m, native_bools)


def _condition(c: Cond, superset: bool, m: Any, native_bools: bool) -> Any:
    path = metadata_path(c.key)
    not_empty = m.Filter(must_not=[m.IsEmptyCondition(is_empty=m.PayloadField(key=path))])
    if c.op in ("eq", "in"):
        values = c.value if c.op == "in" else (c.value,)
        conds: list[Any] = []
        strs = [v for v in values if isinstance(v, str)]
        if strs:
            match = m.MatchValue(value=strs[0]) if len(strs) == 1 else m.MatchAny(any=strs)
            conds.append(m.FieldCondition(key=path, match=match))
        for v in values:
            if isinstance(v, bool):
                if native_bools:
                    conds.append(m.FieldCondition(key=path, match=m.MatchValue(value=v)))
                elif superset:
                    conds.append(not_empty)
                # else: no exact native form; as a subset it contributes nothing
            elif isinstance(v, (int, float)):
                conds.append(m.FieldCondition(key=path, range=m.Range(gte=v, lte=v)))
            elif v is None:
                null = m.IsNullCondition(is_null=m.PayloadField(key=path))
                # A null inside a list: Qdrant's is_null may not see it; any non-empty list does.
                conds.append(m.Filter(should=[null, not_empty]) if superset else null)
        if not conds:
            return _NONE
        return conds[0] if len(conds) == 1 else m.Filter(should=conds)
    if c.op in ("gt", "gte", "lt", "lte"):
        return m.FieldCondition(key=path, range=m.Range(**{c.op: c.value}))
    if c.op == "exists":
        return not_empty
    # text: Qdrant's MatchText matches whole tokens (Edge always, a server with a full-text index), not the
    # substrings $text means, so it prunes nothing natively; the exact re-check decides.
    return _ALL if superset else _NONE


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
