"""Lexical (BM25) search: the search modes, query terms and the SQLite FTS5 tokenizer every backend shares.

A lexical search ranks the stored *texts* by BM25 against the words of the query: documents that contain the
query's rare words, many times, in a short text, rank first. The memory and Voyager backends run it with SQLite
FTS5 (``backends/_fts.py``); a Qdrant collection holds the same terms as a sparse vector scored with Qdrant's IDF
modifier. Both tokenise with SQLite's ``unicode61`` tokenizer (diacritics folded, case folded) followed by the
Porter stemmer, so ``"Running"`` and ``"runs"`` are the same term everywhere.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import zlib
from collections.abc import Sequence

from .errors import InvalidInputError

__all__ = [
    "FTS_TOKENIZER",
    "MODES",
    "STOPWORDS",
    "check_mode",
    "match_expression",
    "query_words",
    "term_frequencies",
    "term_id",
]

#: The search modes of ``MultiVectorStore.search``: MaxSim, BM25 over the texts, and their fusion.
MODES = ("late", "lexical", "hybrid")

#: The FTS5 tokenizer of lexical indexes: Unicode word splitting with diacritics and case folded, then English
#: Porter stemming (chosen on the benchmark collections, see ``benchmarks/results/hybrid.md``).
FTS_TOKENIZER = "porter unicode61 remove_diacritics 2"

# Words as unicode61 sees them: runs of letters and digits (underscore and punctuation separate words).
_WORD = re.compile(r"[^\W_]+")

#: English function words left out of a query (documents keep them): they match most documents and carry almost
#: no BM25 weight, yet make the query slow. A query made only of them keeps them.
_STOPWORDS_TEXT = """
    a about above after again against all am an and any are as at be because been before being below between both
    but by can could did do does doing down during each few for from further had has have having he her here
    hers herself him himself his how i if in into is it its itself just me more most my myself no nor not now of
    off on once only or other our ours ourselves out over own same she should so some such than that the their
    theirs them themselves then there these they this those through to too under until up very was we were what
    when where which while who whom why will with would you your yours yourself yourselves
"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())


def check_mode(mode: object) -> str:
    """``mode`` checked: one of :data:`MODES`.

    Raises:
        InvalidInputError: anything else (the message lists the modes).
    """
    if not isinstance(mode, str) or mode not in MODES:
        raise InvalidInputError(f"mode must be one of {', '.join(repr(m) for m in MODES)}, got {mode!r}")
    return mode


def query_words(query: str) -> list[str]:
    """The words of ``query`` that are searched (before stemming): case-folded, in order, repeats kept (a word
    the query repeats weighs more), :data:`STOPWORDS` left out unless the query has nothing else."""
    words = [w.casefold() for w in _WORD.findall(query)]
    return [w for w in words if w not in STOPWORDS] or words


def match_expression(query: str) -> str | None:
    """An FTS5 ``MATCH`` expression matching documents holding any word of ``query`` (each word quoted, so FTS5
    syntax in the query is taken literally; a repeated word is a repeated phrase, which FTS5's ``bm25()`` counts
    once per occurrence); ``None`` when the query has no word."""
    words = query_words(query)
    if not words:
        return None
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in words)


# ---------------------------------------------------------------------------------------------- terms for Qdrant

_local = threading.local()


def _tokenizer_db() -> sqlite3.Connection:
    """A per-thread in-memory FTS5 table whose ``fts5vocab`` instance table lists the terms the tokenizer makes."""
    conn: sqlite3.Connection | None = getattr(_local, "conn", None)
    if conn is None:
        conn = sqlite3.connect(":memory:", isolation_level=None)
        conn.execute(f"CREATE VIRTUAL TABLE t USING fts5(x, tokenize='{FTS_TOKENIZER}')")
        conn.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, 'instance')")
        _local.conn = conn
    return conn


def term_frequencies(texts: Sequence[str | None]) -> list[dict[str, int]]:
    """Each text's terms (as :data:`FTS_TOKENIZER` makes them) and how often each occurs; ``{}`` for ``None``.

    The terms are exactly those an FTS5 index of the text holds, so a sparse-vector index (Qdrant) and an FTS5
    index (memory, Voyager) see the same words.
    """
    conn = _tokenizer_db()
    out: list[dict[str, int]] = [{} for _ in texts]
    rows = [(i, t) for i, t in enumerate(texts) if t]
    if not rows:
        return out
    conn.execute("BEGIN")
    try:
        conn.executemany("INSERT INTO t(rowid, x) VALUES (?, ?)", rows)
        for doc, term, n in conn.execute("SELECT doc, term, count(*) FROM v GROUP BY doc, term"):
            out[doc][term] = n
    finally:
        conn.execute("ROLLBACK")
    return out


def term_id(term: str) -> int:
    """A stable 31-bit id of a term (CRC-32 of its UTF-8 bytes, top bit cleared), the index of its sparse-vector
    dimension: the same on every machine and in every process."""
    return zlib.crc32(term.encode("utf-8")) & 0x7FFFFFFF
