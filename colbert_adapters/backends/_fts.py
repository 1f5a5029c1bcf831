"""BM25 over stored texts with SQLite FTS5, for the backends that keep documents in SQLite (memory, Voyager).

The index is an *external-content* FTS5 table over a ``docs`` table (``seq`` integer key, ``id``, ``text``): it
stores the terms, not a second copy of the texts, and three triggers keep it equal to ``docs`` inside whatever
transaction writes ``docs``. A document is lexically searchable exactly when its row is committed, a crash loses
or keeps both together, and a document stored without text (``NULL``) has no terms.

Scores are BM25 as FTS5 computes it (``k1 = 1.2``, ``b = 0.75``), negated so that higher is better.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

from .._lexical import FTS_TOKENIZER, match_expression

__all__ = ["FTS_TABLE", "create_fts", "fts_exists", "fts_rows"]

#: The FTS5 table of a ``docs`` table.
FTS_TABLE = "docs_fts"


def fts_schema(tokenizer: str = FTS_TOKENIZER) -> list[str]:
    """The statements creating the FTS5 table over ``docs(seq, text)`` and the triggers that keep it in step."""
    return [
        f"CREATE VIRTUAL TABLE IF NOT EXISTS {FTS_TABLE} USING fts5("
        f"text, content='docs', content_rowid='seq', tokenize='{tokenizer}')",
        f"CREATE TRIGGER IF NOT EXISTS {FTS_TABLE}_ai AFTER INSERT ON docs WHEN new.text IS NOT NULL BEGIN "
        f"INSERT INTO {FTS_TABLE}(rowid, text) VALUES (new.seq, new.text); END",
        f"CREATE TRIGGER IF NOT EXISTS {FTS_TABLE}_ad AFTER DELETE ON docs WHEN old.text IS NOT NULL BEGIN "
        f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, text) VALUES ('delete', old.seq, old.text); END",
        f"CREATE TRIGGER IF NOT EXISTS {FTS_TABLE}_au AFTER UPDATE OF text ON docs BEGIN "
        f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, text) SELECT 'delete', old.seq, old.text "
        "WHERE old.text IS NOT NULL; "
        f"INSERT INTO {FTS_TABLE}(rowid, text) SELECT new.seq, new.text WHERE new.text IS NOT NULL; END",
    ]


def fts_exists(conn: sqlite3.Connection) -> bool:
    """Whether the database holds the FTS5 table (indexes created before lexical search lack it)."""
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (FTS_TABLE,)).fetchone()
    return row is not None


def create_fts(conn: sqlite3.Connection) -> bool:
    """Create the FTS5 table and its triggers when missing, indexing the stored texts (in the caller's
    transaction). Returns whether it was created."""
    if fts_exists(conn):
        return False
    for stmt in fts_schema():
        conn.execute(stmt)
    conn.execute(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('rebuild')")
    return True


def fts_rows(
    conn: sqlite3.Connection,
    query: str,
    *,
    where: str | None = None,
    params: Sequence[Any] = (),
    ids: Sequence[str] | None = None,
    limit: int | None = None,
    columns: str = "docs.id",
) -> Iterator[tuple[Any, ...]]:
    """Documents matching any word of ``query``, best BM25 first (ties: insertion order), as
    ``(score, *columns)`` rows.

    Args:
        conn: a connection to a database with ``docs`` and its FTS5 table.
        query: the query text (its words are quoted: FTS5 syntax is not interpreted).
        where: an SQL condition on ``docs`` (a compiled metadata filter), with ``params``.
        params: the parameters of ``where``.
        ids: only these document ids.
        limit: at most this many rows (``None``: every match, streamed).
        columns: the ``docs`` columns returned after the score.

    Yields:
        ``(score, *columns)`` with ``score = -bm25()`` (higher is better).
    """
    expr = match_expression(query)
    if expr is None:
        return
    sql = (
        f"SELECT -bm25({FTS_TABLE}) AS score, {columns} FROM {FTS_TABLE} JOIN docs ON docs.seq = {FTS_TABLE}.rowid "
        f"WHERE {FTS_TABLE} MATCH ?"
    )
    args: list[Any] = [expr]
    if where:
        sql += f" AND ({where})"
        args.extend(params)
    if ids is not None:
        sql += " AND docs.id IN (SELECT value FROM json_each(?))"
        args.append(json.dumps(list(ids)))
    sql += f" ORDER BY {FTS_TABLE}.rank, docs.seq"
    if limit is not None:
        sql += " LIMIT ?"
        args.append(int(limit))
    yield from conn.execute(sql, args)


class TextIndex:
    """An in-memory SQLite database of ``docs(seq, id, text)`` and its FTS5 table: the memory backend's lexical
    index, written in step with its documents and rebuilt from them when a saved index loads.

    Not thread-safe by itself: the owner serialises calls (the memory backend's lock).
    """

    def __init__(self) -> None:
        self._conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        self._conn.execute(
            "CREATE TABLE docs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, text TEXT)"
        )
        create_fts(self._conn)

    def put(self, ids: Sequence[str], texts: Sequence[str | None]) -> None:
        """Insert or replace documents (a replaced one becomes the newest, as in the memory backend)."""
        conn = self._conn
        conn.execute("BEGIN")
        try:
            conn.executemany("DELETE FROM docs WHERE id = ?", [(i,) for i in ids])
            conn.executemany("INSERT INTO docs (id, text) VALUES (?, ?)", list(zip(ids, texts, strict=True)))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def remove(self, ids: Sequence[str]) -> None:
        """Remove documents (unknown ids are ignored)."""
        self._conn.executemany("DELETE FROM docs WHERE id = ?", [(i,) for i in ids])

    def clear(self) -> None:
        """Remove every document."""
        self._conn.execute("DELETE FROM docs")

    def search(
        self, query: str, *, ids: Sequence[str] | None = None, limit: int | None = None
    ) -> Iterator[tuple[float, str]]:
        """``(score, id)`` of the documents matching ``query``, best first (see :func:`fts_rows`)."""
        for score, doc_id in fts_rows(self._conn, query, ids=ids, limit=limit):
            yield float(score), str(doc_id)

    def close(self) -> None:
        """Release the database."""
        self._conn.close()
