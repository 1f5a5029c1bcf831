"""Metadata filters in SQLite: a normalised filter compiled to a ``WHERE`` clause over ``docs.metadata``, and the
metadata indexes a user asks for.

The clause has exactly the semantics of :func:`colbert_adapters._filters.match_filter` (SQLite's JSON functions
tell ``true`` from ``1`` by ``json_type``; a list field is searched by its elements through ``json_each``), so a
filter is evaluated inside SQLite's C code, with no JSON decoding in Python.

A metadata index on a key is a pair of expression indexes, ``json_extract(metadata, path)`` and
``json_type(metadata, path)``, named ``meta_index:<key>`` in the database schema (so the index directory records
them, and SQLite keeps them current in every write transaction). An equality, membership or range condition on
an indexed key then reads the matching documents through the indexes instead of scanning every row: the first
finds scalar values, the second the documents whose field is a list (whose elements are then checked).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from ..._filters import And, Cond, FilterExpr, Not, Or
from ...errors import InvalidInputError

__all__ = ["INDEX_PREFIX", "check_index_key", "create_metadata_index", "metadata_indexes", "where_clause"]

#: Name prefix of the SQLite indexes that serve metadata filters (``meta_index:<key>`` and ``...:type``).
INDEX_PREFIX = "meta_index:"
_NUMBER = "('integer', 'real')"


def _literal(path: tuple[str, ...]) -> str:
    """The JSON path of a (dotted) key as an SQL string literal: ``'$."a"."b"'`` (identical text in the index and
    the query, which is how SQLite matches an expression index)."""
    json_path = "$" + "".join(f'."{part}"' for part in path)
    return "'" + json_path.replace("'", "''") + "'"


def metadata_indexes(conn: sqlite3.Connection) -> list[str]:
    """The metadata keys that have an index, sorted."""
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE ? || '%'", (INDEX_PREFIX,))
    return sorted({name[len(INDEX_PREFIX) :] for (name,) in rows if not name.endswith(":type")})


def check_index_key(key: object) -> str:
    """``key`` if it can be a metadata index key (a field name, dotted for a nested one), else raise."""
    if not isinstance(key, str) or not key or "" in key.split(".") or set(key) & set('[]"'):
        raise InvalidInputError(
            f"metadata index key {key!r} must be a non-empty field name without '[', ']' or '\"' (dotted: nested)"
        )
    return key


def create_metadata_index(conn: sqlite3.Connection, key: str) -> None:
    """Create the indexes of metadata key ``key`` (dotted: nested) in the open write transaction."""
    check_index_key(key)
    lit = _literal(tuple(key.split(".")))
    name = (INDEX_PREFIX + key).replace('"', '""')
    conn.execute(f'CREATE INDEX IF NOT EXISTS "{name}" ON docs(json_extract(metadata, {lit}))')
    conn.execute(f'CREATE INDEX IF NOT EXISTS "{name}:type" ON docs(json_type(metadata, {lit}))')


def where_clause(expr: FilterExpr, indexed: frozenset[str] | set[str] = frozenset()) -> tuple[str, list[Any]]:
    """``(sql, params)``: a boolean SQL expression over the ``docs`` row that holds exactly when ``expr`` does.

    Conditions on keys in ``indexed`` are written so that SQLite answers them through the metadata indexes.
    """
    params: list[Any] = []
    return _sql(expr, indexed, params), params


def _sql(expr: FilterExpr, indexed: frozenset[str] | set[str], params: list[Any]) -> str:
    if isinstance(expr, Not):
        return f"NOT ({_sql(expr.item, indexed, params)})"
    if isinstance(expr, (And, Or)):
        glue = " AND " if isinstance(expr, And) else " OR "
        return "(" + glue.join(f"({_sql(item, indexed, params)})" for item in expr.items) + ")"
    return _cond(expr, expr.key in indexed, params)


def _element(op: str, value: Any, params: list[Any]) -> str:
    """Condition on one value ``e`` (a ``json_each`` row: ``e.type``, ``e.value``)."""
    if op == "in":
        return "(" + " OR ".join(_element("eq", v, params) for v in value) + ")"
    if op == "eq":
        if value is None:
            return "e.type = 'null'"
        if isinstance(value, bool):
            return f"e.type = '{'true' if value else 'false'}'"
        params.append(value)
        return (
            f"(e.type IN {_NUMBER} AND e.value = ?)"
            if isinstance(value, (int, float))
            else "(e.type = 'text' AND e.value = ?)"
        )
    if op == "text":
        params.append(value)
        return "(e.type = 'text' AND instr(e.value, ?) > 0)"
    params.append(value)
    return f"(e.type IN {_NUMBER} AND e.value {_RANGE_SQL[op]} ?)"


_RANGE_SQL = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def _cond(c: Cond, indexed: bool, params: list[Any]) -> str:
    lit = _literal(c.path)
    kind = f"json_type(metadata, {lit})"
    if c.op == "exists":
        return (
            f"({kind} IS NOT NULL AND {kind} != 'null' AND NOT ({kind} = 'array' AND "
            f"json_array_length(metadata, {lit}) = 0))"
        )
    # The field's values: a list's elements, or the value itself (json_each yields a scalar as one row).
    each = f"EXISTS (SELECT 1 FROM json_each(docs.metadata, {lit}) AS e WHERE {kind} != 'object' AND "
    if not indexed or c.op == "text" or (c.op in ("eq", "in") and _has_null_or_bool(c)):
        return each + _element(c.op, c.value, params) + ")"
    # Through the indexes: scalar values by json_extract, list fields by json_type = 'array'.
    value = f"json_extract(metadata, {lit})"
    if c.op in ("eq", "in"):
        values = c.value if c.op == "in" else (c.value,)
        params.extend(values)
        scalar = f"{value} IN ({', '.join('?' for _ in values)}) AND {kind} IN ('text', 'integer', 'real')"
    else:
        params.append(c.value)
        scalar = f"{value} {_RANGE_SQL[c.op]} ? AND {kind} IN {_NUMBER}"
    array = f"SELECT seq FROM docs WHERE {kind} = 'array' AND " + each.replace("docs.metadata", "metadata")
    array += _element(c.op, c.value, params) + ")"
    return f"seq IN (SELECT seq FROM docs WHERE {scalar} UNION ALL {array})"


def _has_null_or_bool(c: Cond) -> bool:
    values = c.value if c.op == "in" else (c.value,)
    return any(v is None or isinstance(v, bool) for v in values)
