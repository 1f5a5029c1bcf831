"""Filters of the LlamaIndex integration: ``MetadataFilters`` (or our dict form) to the colbert-adapters filter, and
``doc_ids=`` as a filter on the nodes' ``ref_doc_id``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)

from ..._validation import check_filter, check_ids
from ...errors import InvalidInputError

__all__ = ["to_filter"]

#: Sentinel filter: the conditions contradict each other (e.g. ``a == 1 AND a == 2``); nothing matches.
_NO_MATCH: dict[str, list[Any]] = {}


def _with_doc_ids(flt: dict[str, list[Any]] | None, doc_ids: Sequence[str] | None) -> dict[str, list[Any]] | None:
    """``flt`` restricted to the nodes of source documents ``doc_ids`` (their ``ref_doc_id`` metadata field)."""
    if doc_ids is None or flt is _NO_MATCH:
        return flt
    wanted = list(dict.fromkeys(check_ids(doc_ids, allow_duplicates=True)))
    out = dict(flt or {})
    if "ref_doc_id" in out:  # both say which documents: the ones both allow
        wanted = [d for d in wanted if d in out["ref_doc_id"]]
    if not wanted:
        return _NO_MATCH
    out["ref_doc_id"] = wanted
    return out


# --------------------------------------------------------------------------------------------------- filters


def to_filter(filters: MetadataFilters | Mapping[str, Any] | None) -> dict[str, list[Any]] | None:
    """Translate LlamaIndex ``MetadataFilters`` (or our dict form) to the colbert-adapters filter.

    Supported: ``EQ`` and ``IN`` filters, combined with ``AND`` (nested ``AND`` groups included), or ``OR``
    over filters on one key. Contradictory conditions (``a == 1 AND a == 2``) give a filter that matches
    nothing (the retriever then returns ``[]``).

    Args:
        filters: ``MetadataFilters``, a dict ``{"field": value or [values]}``, or ``None``.

    Returns:
        ``{"field": [allowed values]}``, or ``None`` for no filter.

    Raises:
        InvalidInputError: an unsupported operator or condition, or a malformed dict.

    Example:
        >>> from llama_index.core.vector_stores.types import MetadataFilter, MetadataFilters, FilterOperator
        >>> to_filter(MetadataFilters(filters=[
        ...     MetadataFilter(key="lang", value="en"),
        ...     MetadataFilter(key="year", value=[2020, 2021], operator=FilterOperator.IN),
        ... ]))
        {'lang': ['en'], 'year': [2020, 2021]}
    """
    if filters is None:
        return None
    if isinstance(filters, MetadataFilters):
        return _translate(filters)
    if isinstance(filters, Mapping):
        checked: dict[str, list[Any]] | None = check_filter(filters)
        return checked
    raise InvalidInputError(
        f"filters must be MetadataFilters or a dict like {{'source': 'a'}}, got {type(filters).__name__}"
    )


def _leaf(f: MetadataFilter) -> tuple[str, list[Any]]:
    if f.operator == FilterOperator.EQ:
        return f.key, [f.value]
    if f.operator == FilterOperator.IN:
        values = f.value if isinstance(f.value, list) else [f.value]
        return f.key, list(values)
    raise InvalidInputError(
        f"unsupported filter operator {f.operator.name} on {f.key!r}: ColBERT filters support EQ and IN "
        "(combined with AND); filter the results afterwards for other conditions"
    )


def _translate(filters: MetadataFilters) -> dict[str, list[Any]] | None:
    condition = filters.condition or FilterCondition.AND
    if condition == FilterCondition.OR:
        leaves = [_leaf(f) if isinstance(f, MetadataFilter) else None for f in filters.filters]
        keys = {leaf[0] for leaf in leaves if leaf is not None}
        if None in leaves or len(keys) > 1:
            raise InvalidInputError(
                "OR filters are supported only between EQ/IN filters on the same key "
                f"(got keys {sorted(keys)}); use IN with a list of values"
            )
        if not leaves:
            return None
        values: list[Any] = []
        for leaf in leaves:
            assert leaf is not None  # checked above
            values += [v for v in leaf[1] if v not in values]
        any_of: dict[str, list[Any]] | None = check_filter({keys.pop(): values})
        return any_of
    if condition != FilterCondition.AND:
        raise InvalidInputError(f"unsupported filter condition {condition.name}: use AND (or OR on one key)")
    merged: dict[str, list[Any]] = {}
    for f in filters.filters:
        parts = _translate(f) if isinstance(f, MetadataFilters) else dict([_leaf(f)])
        if parts is _NO_MATCH:
            return _NO_MATCH
        for key, allowed in (parts or {}).items():
            if key in merged:
                merged[key] = [v for v in merged[key] if v in allowed]
                if not merged[key]:
                    return _NO_MATCH
            else:
                merged[key] = list(allowed)
    return check_filter(merged) if merged else None
