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

from ..._filters import check_filter
from ..._validation import check_ids
from ...errors import InvalidInputError

__all__ = ["to_filter"]

#: Sentinel filter: ``doc_ids=[]`` allows no document; the retriever returns ``[]``.
_NO_MATCH: dict[str, Any] = {}


def _with_doc_ids(flt: dict[str, Any] | None, doc_ids: Sequence[str] | None) -> dict[str, Any] | None:
    """``flt`` restricted to the nodes of source documents ``doc_ids`` (their ``ref_doc_id`` metadata field)."""
    if doc_ids is None:
        return flt
    wanted = list(dict.fromkeys(check_ids(doc_ids, allow_duplicates=True)))
    if not wanted:
        return _NO_MATCH
    by_doc: dict[str, Any] = {"ref_doc_id": {"$in": wanted}}
    return by_doc if not flt else {"$and": [flt, by_doc]}


# --------------------------------------------------------------------------------------------------- filters


def to_filter(filters: MetadataFilters | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Translate LlamaIndex ``MetadataFilters`` (or our dict form) to the colbert-adapters filter dict.

    Operators: ``EQ`` ``NE`` ``GT`` ``GTE`` ``LT`` ``LTE`` ``IN`` ``NIN`` map to ``$eq`` ... ``$nin``;
    ``CONTAINS`` (a list field holds the value) to ``$eq`` (a list field matches by its elements), ``ANY`` to
    ``$in``, ``ALL`` to one ``$eq`` per value, ``TEXT_MATCH`` (case-sensitive substring) to ``$text``,
    ``IS_EMPTY`` to ``$exists: false``. Conditions ``AND``, ``OR`` and ``NOT`` (none of the filters holds), nested
    to any depth. ``TEXT_MATCH_INSENSITIVE`` has no exact equivalent on every backend and raises.

    Args:
        filters: ``MetadataFilters``, a filter dict (see ``MultiVectorStore.search``), or ``None``.

    Returns:
        The filter dict, or ``None`` for no filter.

    Raises:
        InvalidInputError: an unsupported operator or condition, or a malformed dict.

    Example:
        >>> from llama_index.core.vector_stores.types import MetadataFilter, MetadataFilters, FilterOperator
        >>> to_filter(MetadataFilters(filters=[
        ...     MetadataFilter(key="lang", value="en"),
        ...     MetadataFilter(key="year", value=2020, operator=FilterOperator.GTE),
        ... ]))
        {'$and': [{'lang': {'$eq': 'en'}}, {'year': {'$gte': 2020}}]}
    """
    if filters is None:
        return None
    if isinstance(filters, MetadataFilters):
        out = _translate(filters)
    elif isinstance(filters, Mapping):
        out = dict(filters) or None
    else:
        raise InvalidInputError(
            f"filters must be MetadataFilters or a dict like {{'source': 'a'}}, got {type(filters).__name__}"
        )
    check_filter(out)
    return out


_OPERATORS = {
    FilterOperator.EQ: "$eq",
    FilterOperator.NE: "$ne",
    FilterOperator.GT: "$gt",
    FilterOperator.GTE: "$gte",
    FilterOperator.LT: "$lt",
    FilterOperator.LTE: "$lte",
    FilterOperator.IN: "$in",
    FilterOperator.NIN: "$nin",
    FilterOperator.ANY: "$in",
    FilterOperator.CONTAINS: "$eq",
    FilterOperator.TEXT_MATCH: "$text",
}


def _leaf(f: MetadataFilter) -> dict[str, Any]:
    op = f.operator
    if op == FilterOperator.IS_EMPTY:
        return {f.key: {"$exists": False}}
    if op == FilterOperator.ALL:
        values = f.value if isinstance(f.value, list) else [f.value]
        return {"$and": [{f.key: {"$eq": v}} for v in values]} if len(values) != 1 else {f.key: {"$eq": values[0]}}
    if op in (FilterOperator.IN, FilterOperator.NIN, FilterOperator.ANY) and not isinstance(f.value, list):
        return {f.key: {_OPERATORS[op]: [f.value]}}
    if op in _OPERATORS:
        return {f.key: {_OPERATORS[op]: f.value}}
    raise InvalidInputError(
        f"unsupported filter operator {op.name} on {f.key!r}; supported: "
        f"{', '.join(sorted({o.name for o in _OPERATORS} | {'ALL', 'IS_EMPTY'}))}"
    )


def _translate(filters: MetadataFilters) -> dict[str, Any] | None:
    parts = [p for f in filters.filters if (p := _translate(f) if isinstance(f, MetadataFilters) else _leaf(f))]
    condition = filters.condition or FilterCondition.AND
    if not parts:
        return None
    if condition == FilterCondition.NOT:
        return {"$not": parts[0] if len(parts) == 1 else {"$and": parts}}
    if condition not in (FilterCondition.AND, FilterCondition.OR):
        raise InvalidInputError(f"unsupported filter condition {condition.name}: use AND, OR or NOT")
    if len(parts) == 1:
        return parts[0]
    return {"$and" if condition == FilterCondition.AND else "$or": parts}
