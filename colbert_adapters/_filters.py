"""Metadata filters: the dict forms users write, checked and normalised to one tree with one meaning.

Forms (the operator form is the one LangChain's vector stores use):

=====================================================  ===========================================================
``{"source": "a"}``                                    equality (``{"source": {"$eq": "a"}}``)
``{"year": [2020, 2021]}``                             membership (``{"year": {"$in": [2020, 2021]}}``)
``{"year": {"$gte": 2020, "$lt": 2024}}``              operators; several in one dict must all hold
``{"$and": [f, ...]}``, ``{"$or": [...]}``, ``{"$not": f}``  combinations; several keys in one dict must all hold
``{"author.name": "Ada"}``                             a dotted key addresses nested dicts
=====================================================  ===========================================================

Operators: ``$eq $ne $gt $gte $lt $lte $in $nin $exists $text``.

Semantics, the same on every backend (the memory backend evaluates them with :func:`match_filter`, Qdrant with
its native filter, then the same exact re-check). A field's *values* are: none when it is missing; the elements
of a list; the value itself otherwise (as in Qdrant, MongoDB and Pinecone, a list field matches when one of its
elements does).

- ``$eq x``: one value equals ``x``. Equality is JSON's: ``2020 == 2020.0``, but ``True != 1`` and ``1 != "1"``.
- ``$in [x, ...]``: one value equals one of the ``x``. ``$ne``/``$nin`` are their negations, so a document
  without the field matches them.
- ``$gt $gte $lt $lte n``: one value is a number (not a bool) in that relation to ``n`` (a number).
- ``$exists true``: the field is present and neither ``null`` nor an empty list (Qdrant's "not empty");
  ``$exists false`` is the negation.
- ``$text s``: one value is a string containing ``s`` (case-sensitive substring).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from ._validation import MAX_KEY_CHARS, _check_unicode
from .errors import InvalidInputError

__all__ = ["And", "Cond", "FilterExpr", "Not", "Or", "check_filter", "filter_paths", "match_filter"]

#: Operators accepted inside a field's dict.
OPERATORS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$text")
_RANGES = {"$gt": "gt", "$gte": "gte", "$lt": "lt", "$lte": "lte"}
_FORMS = (
    "accepted forms: {'field': value}, {'field': [v1, v2]}, {'field': {'$op': value}} with $op one of "
    + ", ".join(OPERATORS)
    + ", {'$and': [filter, ...]}, {'$or': [filter, ...]}, {'$not': filter}; dotted keys ('a.b') address nested fields"
)
_FORBIDDEN = frozenset('[]"')


@dataclass(frozen=True)
class Cond:
    """One condition on a field: ``op`` is ``eq``, ``in``, ``gt``, ``gte``, ``lt``, ``lte``, ``exists``, ``text``.

    ``path`` is the key split on dots; ``value`` is a scalar, or a tuple of scalars for ``in``.
    """

    path: tuple[str, ...]
    op: str
    value: Any

    @property
    def key(self) -> str:
        """The dotted key as the user wrote it."""
        return ".".join(self.path)


@dataclass(frozen=True)
class Not:
    """Negation of ``item``."""

    item: FilterExpr


@dataclass(frozen=True)
class And:
    """All of ``items`` hold."""

    items: tuple[FilterExpr, ...]


@dataclass(frozen=True)
class Or:
    """At least one of ``items`` holds."""

    items: tuple[FilterExpr, ...]


FilterExpr: TypeAlias = Cond | Not | And | Or


def check_filter(flt: object) -> FilterExpr | None:
    """Check a metadata filter and normalise it to a :data:`FilterExpr` tree; ``None``/``{}`` mean no filter.

    A tree passed in again is returned as is.

    Raises:
        InvalidInputError: an unknown operator, a value of the wrong type (a range bound that is not a number,
            ``$in`` without a list, ...), an empty list, a bad key; the message lists the accepted forms.
    """
    if flt is None or isinstance(flt, (Cond, Not, And, Or)):
        return flt
    if not isinstance(flt, Mapping):
        raise InvalidInputError(f"filter must be a dict, got {type(flt).__name__}; {_FORMS}")
    if not flt:
        return None
    return _mapping(flt, "filter")


def _mapping(flt: Mapping[Any, Any], where: str) -> FilterExpr:
    if not flt:
        raise InvalidInputError(f"{where} is an empty dict; it means nothing inside a combination ({_FORMS})")
    parts: list[FilterExpr] = []
    for key, value in flt.items():
        if not isinstance(key, str):
            raise InvalidInputError(f"filter keys must be str, got {key!r}")
        if key.startswith("$"):
            parts.append(_logical(key, value, where))
        else:
            parts.append(_field(_path(key), value, f"{where}[{key!r}]"))
    return parts[0] if len(parts) == 1 else And(tuple(parts))


def _logical(op: str, value: Any, where: str) -> FilterExpr:
    if op == "$not":
        if not isinstance(value, Mapping):
            raise InvalidInputError(f"{where}['$not'] must be a filter dict, got {type(value).__name__}")
        return Not(_mapping(value, f"{where}['$not']"))
    if op in ("$and", "$or"):
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence) or not value:
            raise InvalidInputError(f"{where}[{op!r}] must be a non-empty list of filter dicts")
        items = []
        for i, sub in enumerate(value):
            if not isinstance(sub, Mapping):
                raise InvalidInputError(f"{where}[{op!r}][{i}] must be a filter dict, got {type(sub).__name__}")
            items.append(_mapping(sub, f"{where}[{op!r}][{i}]"))
        if len(items) == 1:
            return items[0]
        return And(tuple(items)) if op == "$and" else Or(tuple(items))
    if op in OPERATORS:
        raise InvalidInputError(f"{op} applies to a field: write {{'field': {{{op!r}: ...}}}}, not {{{op!r}: ...}}")
    raise InvalidInputError(f"unknown filter operator {op!r} in {where}; {_FORMS}")


def _path(key: str) -> tuple[str, ...]:
    _check_unicode(key, f"filter key {key!r:.40}")
    if len(key) > MAX_KEY_CHARS:
        raise InvalidInputError(f"filter key {key[:40]!r}... is longer than {MAX_KEY_CHARS} characters")
    path = tuple(key.split("."))
    if any(not part for part in path) or _FORBIDDEN & set(key):
        raise InvalidInputError(
            f"filter key {key!r} has an empty part or one of '[', ']', '\"'; write nested keys as 'a.b'"
        )
    return path


def _field(path: tuple[str, ...], value: Any, where: str) -> FilterExpr:
    if isinstance(value, Mapping):
        if not value:
            raise InvalidInputError(f"{where} is an empty dict; {_FORMS}")
        if not all(isinstance(op, str) and op.startswith("$") for op in value):
            raise InvalidInputError(
                f"{where} is a dict without operators; filter a nested field with a dotted key "
                f"('{'.'.join(path)}.<field>') or use operators; {_FORMS}"
            )
        parts = [_operator(path, op, arg, f"{where}[{op!r}]") for op, arg in value.items()]
        return parts[0] if len(parts) == 1 else And(tuple(parts))
    if isinstance(value, (list, tuple, set, frozenset)):
        return _operator(path, "$in", list(value), where)
    return _operator(path, "$eq", value, where)


def _operator(path: tuple[str, ...], op: str, arg: Any, where: str) -> FilterExpr:
    if op in ("$eq", "$ne"):
        cond = Cond(path, "eq", _scalar(arg, where, hint="use $in for several values"))
        return cond if op == "$eq" else Not(cond)
    if op in ("$in", "$nin"):
        if isinstance(arg, (str, bytes, Mapping)) or not isinstance(arg, (Sequence, set, frozenset)):
            raise InvalidInputError(f"{where} must be a list of values, got {type(arg).__name__}")
        values = tuple(dict.fromkeys(_Key(_scalar(v, where, hint="")) for v in arg))
        if not values:
            raise InvalidInputError(f"{where} is an empty list; it would match {'nothing' if op == '$in' else 'all'}")
        cond = Cond(path, "in", tuple(k.value for k in values))
        return cond if op == "$in" else Not(cond)
    if op in _RANGES:
        if isinstance(arg, bool) or not isinstance(arg, (int, float)) or not math.isfinite(arg):
            raise InvalidInputError(
                f"{where} must be a finite number (int or float), got {arg!r:.60}; range operators compare "
                "numbers (store dates as numbers, e.g. a Unix timestamp)"
            )
        return Cond(path, _RANGES[op], arg)
    if op == "$exists":
        if not isinstance(arg, bool):
            raise InvalidInputError(f"{where} must be true or false, got {arg!r:.60}")
        cond = Cond(path, "exists", True)
        return cond if arg else Not(cond)
    if op == "$text":
        if not isinstance(arg, str) or not arg:
            raise InvalidInputError(f"{where} must be a non-empty str, got {arg!r:.60}")
        _check_unicode(arg, where)
        return Cond(path, "text", arg)
    raise InvalidInputError(f"unknown filter operator {op!r} in {where}; {_FORMS}")


def _scalar(v: Any, where: str, *, hint: str) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        raise InvalidInputError(f"{where} holds {v!r}; filter values must be finite")
    if not isinstance(v, (str, int, float, bool, type(None))):
        extra = f" ({hint})" if hint and isinstance(v, (list, tuple, set, dict)) else ""
        raise InvalidInputError(
            f"{where} holds a {type(v).__name__}; filter values must be str/int/float/bool/None{extra}"
        )
    if isinstance(v, str):
        _check_unicode(v, where)
    return v


@dataclass(frozen=True)
class _Key:
    """A filter value keyed by type and value, so ``True`` and ``1`` stay distinct in a set."""

    value: Any

    def __hash__(self) -> int:
        v = self.value
        return hash(("b", v) if isinstance(v, bool) else ("n", float(v)) if isinstance(v, (int, float)) else v)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Key) and _equal(self.value, other.value)


def _equal(a: Any, b: Any) -> bool:
    """JSON equality of scalars: bools only equal bools, numbers compare by value, the rest by type and value."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return bool(a == b)
    return type(a) is type(b) and a == b


_MISSING = object()


def _raw(metadata: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    """The field's stored value, or ``_MISSING``."""
    node: Any = metadata
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _values(metadata: Mapping[str, Any], path: tuple[str, ...]) -> list[Any] | None:
    """The field's values (``None`` when the field is missing)."""
    node = _raw(metadata, path)
    if node is _MISSING:
        return None
    return list(node) if isinstance(node, list) else [node]


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _holds(cond: Cond, metadata: Mapping[str, Any]) -> bool:
    values = _values(metadata, cond.path)
    op, arg = cond.op, cond.value
    if op == "exists":
        node = _raw(metadata, cond.path)
        return node is not _MISSING and node is not None and node != []
    if not values:
        return False
    if op == "eq":
        return any(_equal(v, arg) for v in values)
    if op == "in":
        return any(_equal(v, a) for v in values for a in arg)
    if op == "text":
        return any(isinstance(v, str) and arg in v for v in values)
    nums = [v for v in values if _number(v)]
    if op == "gt":
        return any(v > arg for v in nums)
    if op == "gte":
        return any(v >= arg for v in nums)
    if op == "lt":
        return any(v < arg for v in nums)
    return any(v <= arg for v in nums)  # lte


def match_filter(metadata: Mapping[str, Any], flt: FilterExpr | None) -> bool:
    """True when ``metadata`` satisfies a filter normalised by :func:`check_filter` (``None`` matches all)."""
    if flt is None:
        return True
    if isinstance(flt, Cond):
        return _holds(flt, metadata)
    if isinstance(flt, Not):
        return not match_filter(metadata, flt.item)
    if isinstance(flt, And):
        return all(match_filter(metadata, item) for item in flt.items)
    return any(match_filter(metadata, item) for item in flt.items)


def filter_paths(flt: FilterExpr | None) -> set[str]:
    """The dotted keys a filter reads."""
    if flt is None:
        return set()
    if isinstance(flt, Cond):
        return {flt.key}
    if isinstance(flt, Not):
        return filter_paths(flt.item)
    return set().union(*(filter_paths(item) for item in flt.items))
