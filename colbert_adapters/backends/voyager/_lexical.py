"""Lexical search in a Voyager index: BM25 over the stored texts with the FTS5 table of ``store.sqlite``.

The FTS5 table ``docs_fts`` indexes ``docs.text`` (external content: terms only, no second copy of the texts) and
triggers on ``docs`` keep it equal to the documents inside each write's transaction (``backends/_fts.py``), so it
is exactly as durable as the documents: an upsert, delete or clear commits both or neither. An index created
before lexical search gets the table, built from its texts, at its next writable open (:func:`migrate`).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Sequence

from ..._filters import check_filter
from ..._validation import check_ids, check_k
from ...errors import CollectionConfigError, InvalidInputError
from ...types import Filter, Hit
from .._fts import create_fts, fts_exists, fts_rows
from ._sqlfilter import where_clause
from ._state import IndexState, refresh_if_stale

__all__ = ["LexicalSearch", "migrate"]

logger = logging.getLogger("colbert_adapters.backends.voyager")


def migrate(conn: sqlite3.Connection) -> None:
    """Writable open (in the caller's transaction): create and fill the FTS5 table an older index lacks."""
    if create_fts(conn):
        n = conn.execute("SELECT count(*) FROM docs WHERE text IS NOT NULL").fetchone()[0]
        logger.info("built the lexical (FTS5) index of %d stored texts", n)


def lexical_search(st: IndexState, query: str, k: int, filter: Filter | None, ids: Sequence[str] | None) -> list[Hit]:
    """Top ``k`` documents by BM25 (see ``VoyagerBackend.lexical_search``)."""
    k = check_k(k)
    flt = check_filter(filter)
    subset = None if ids is None else check_ids(ids, allow_duplicates=True)
    if not isinstance(query, str):
        raise InvalidInputError(f"query must be a str, got {type(query).__name__}")
    refresh_if_stale(st)
    with st.rw.read(), st.db.reader() as conn:
        st.check_open()
        if not fts_exists(conn):
            raise CollectionConfigError(
                f"the Voyager index {st.root} was created before lexical search and has no lexical (FTS5) index; "
                "open it once writable (read_only=False), which builds it from the stored texts"
            )
        where, params = where_clause(flt, st.metadata_indexes) if flt is not None else (None, [])
        rows = list(
            fts_rows(
                conn,
                query,
                where=where,
                params=params,
                ids=subset,
                limit=k,
                columns="docs.id, docs.text, docs.metadata",
            )
        )
    return [Hit(str(doc_id), float(score), text, json.loads(meta)) for score, doc_id, text, meta in rows]


class LexicalSearch:
    """``VoyagerBackend.lexical_search``: the facade's lexical capability, delegating to :func:`lexical_search`."""

    _st: IndexState

    def lexical_search(
        self, query: str, k: int = 10, filter: Filter | None = None, *, ids: Sequence[str] | None = None
    ) -> list[Hit]:
        """Top ``k`` documents by BM25 of their stored texts against the words of ``query`` (SQLite FTS5).

        Args:
            query: the query text; any of its words matches (stemmed, case and accents folded).
            k: number of hits (>= 1).
            filter: a metadata filter, as for :meth:`search`.
            ids: only these documents.

        Returns:
            Up to ``k`` hits by descending BM25 score (``-bm25()`` of FTS5, higher is better); documents stored
            without text, or without any query word, are never returned.

        Raises:
            InvalidInputError: bad ``query``, ``k``, filter or ids.
            CollectionConfigError: a read-only index created before lexical search (no FTS5 table).
        """
        return lexical_search(self._st, query, k, filter, ids)
