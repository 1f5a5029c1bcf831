"""The SQLite document store's connections and transactions (the bottom room of the Voyager backend).

``store.sqlite`` is the index's source of truth and its commit point: WAL journal, ``synchronous=FULL``, so a
committed transaction survives a crash of the process or the machine. One connection writes (the writer process's
main connection); reading threads borrow pooled connections (:meth:`Database.reader`).

Tables (inspect them with ``sqlite3 store.sqlite``)::

    meta(key, value)                         format, format_version, dim, model_id, HNSW settings, vector_dtype,
                                             graph_dim, next_label, next_segment, generation, centroids_epoch
    docs(seq, id, text, metadata, n_tokens,  one row per live document: ``seq`` orders insertions, labels
         first_label, segment, vectors,      ``first_label .. first_label + n_tokens - 1`` are its tokens in
         residual)                           segment ``segment`` (NULL: the mutable segment); ``vectors`` is
                                             a little-endian blob of ``n_tokens`` rows: vector_dtype int8 and
                                             int14: per token a float32 scale then ``dim`` int8 codes (the
                                             vector is codes * scale); float16 / float32: ``dim`` values per
                                             token. ``residual`` (int14 only, else NULL; indexes created before
                                             int14 lack the column): 6-bit remainders of the codes, 0.75 byte
                                             per component (layout: ``colbert_adapters._codecs.quantise_int14``)
    centroids(seq, scales, codes)            per document (``seq`` of docs) 4 centroids of its tokens (spherical
                                             k-means): ``codes`` int8 ``(4, dim)``, ``scales`` float32 ``(4,)``;
                                             written in the document's transaction (indexes created before them
                                             get the table, and the rows, at their next writable open)
    segments(id, file, n_tokens,             the sealed segments and how many of their tokens are still live
             n_live_tokens, n_docs)
    projections(segment, matrix)             only with ``graph_dim``: the float32 ``(graph_dim, dim)`` projection
                                             whose image of the tokens the segment's graph indexes (format 3)
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sqlite3
import threading
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ...errors import CollectionConfigError, IndexCorruptedError

__all__ = [
    "CENTROIDS_SCHEMA",
    "CHECKPOINT_BYTES",
    "CHECKSUM_COLUMNS",
    "DB",
    "FETCH_CHUNK",
    "SCHEMA",
    "SEGMENT_FILE",
    "Database",
    "add_checksum_columns",
    "check_blob",
    "checksum",
    "columns",
    "json_text",
    "rollback",
]

logger = logging.getLogger("colbert_adapters.backends.voyager")

#: The database file of an index directory.
DB = "store.sqlite"
#: A write of at least this many vector bytes checkpoints the WAL right away (keeps the WAL small).
CHECKPOINT_BYTES = 8 << 20
#: Rows fetched per SQLite round trip when scanning many documents.
FETCH_CHUNK = 2048
#: The only file names a segment may have: a name read from the database that is not one (``../x``, an absolute
#: path) is damage, never a path to follow.
SEGMENT_FILE = re.compile(r"seg-\d{6,}\.(?:voyager|plaid)")

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE segments (
    id INTEGER PRIMARY KEY,
    file TEXT NOT NULL,
    n_tokens INTEGER NOT NULL,
    n_live_tokens INTEGER NOT NULL,
    n_docs INTEGER NOT NULL,
    crc INTEGER
);
CREATE TABLE docs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    text TEXT,
    metadata TEXT NOT NULL,
    n_tokens INTEGER NOT NULL,
    first_label INTEGER NOT NULL,
    segment INTEGER,
    vectors BLOB NOT NULL,
    residual BLOB,
    vcrc INTEGER,
    rcrc INTEGER
);
CREATE INDEX docs_segment ON docs(segment);
CREATE TABLE centroids (seq INTEGER PRIMARY KEY, scales BLOB NOT NULL, codes BLOB NOT NULL);
"""
#: Checksum columns (CRC-32 of a segment file, of a document's vectors and residual blobs), added by a writable
#: open of an index created before them; rows written before stay NULL (not verified).
CHECKSUM_COLUMNS = {"segments": ("crc",), "docs": ("vcrc", "rcrc")}

#: The centroids table, created by a writable open of an index created before it.
CENTROIDS_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS centroids (seq INTEGER PRIMARY KEY, scales BLOB NOT NULL, codes BLOB NOT NULL)"
)


class Database:
    """The connections to one index's ``store.sqlite``: the main connection and a pool for reading threads.

    Args:
        path: the database file.
        read_only: open every connection with ``mode=ro`` (no writes, no write lock).
    """

    def __init__(self, path: Path, read_only: bool) -> None:
        self.path = path
        self.read_only = read_only
        self.closed = False
        #: Opened with SQLite's ``immutable`` flag (read-only media): no locks, changes by others not seen.
        self.immutable = False
        self._readers: list[sqlite3.Connection] = []
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        #: The main connection: writes (writer process) and state loading.
        self.conn = self.connect()

    def connect(self) -> sqlite3.Connection:
        """A new connection with the index's pragmas, closed by :meth:`close`.

        Raises:
            CollectionConfigError: the file is not a readable SQLite database.
        """
        db = self.path
        try:
            if self.read_only:
                conn = self._connect_read_only()
            else:
                conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA busy_timeout = 10000")
            conn.execute("PRAGMA cache_size = -65536")  # 64 MiB page cache per connection
            # Read pages through a memory map (up to SQLite's compiled-in cap, 2 GiB by default): the exact rerank
            # reads hundreds of vector blobs per query, and mapped reads skip a pread() per page. Writes still go
            # through write() and the journal.
            conn.execute("PRAGMA mmap_size = 2147418112")
            conn.execute("PRAGMA journal_size_limit = 4194304")
        except sqlite3.DatabaseError as err:
            raise CollectionConfigError(f"{db} is not a readable SQLite database ({err}); not a Voyager index") from err
        with self._lock:
            self._all.append(conn)
        return conn

    def _connect_read_only(self) -> sqlite3.Connection:
        """A ``mode=ro`` connection; on read-only media (where SQLite cannot create the WAL's shared-memory file)
        an ``immutable`` one, which needs no lock and no file of its own."""
        uri = self.path.resolve().as_uri()
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            return conn
        except sqlite3.OperationalError:
            conn.close()
        wal = self.path.with_name(self.path.name + "-wal")
        if wal.is_file() and wal.stat().st_size > 0:
            raise CollectionConfigError(
                f"{self.path} cannot be opened read-only here: its write-ahead log {wal.name} holds writes not yet "
                "copied into the database, and this directory cannot be written. Open the index once where it is "
                "writable (a writable open or close checkpoints the log), then copy it"
            )
        if not self.immutable:
            self.immutable = True
            logger.info(
                "%s is on read-only media: opened immutable (changes by other processes are not seen)", self.path
            )
        return sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, isolation_level=None, check_same_thread=False)

    @contextlib.contextmanager
    def reader(self) -> Iterator[sqlite3.Connection]:
        """A pooled connection for one reading thread, returned to the pool afterwards."""
        with self._lock:
            conn = self._readers.pop() if self._readers else None
        if conn is None:
            conn = self.connect()
        try:
            yield conn
        finally:
            with self._lock:
                if self.closed:
                    conn.close()
                else:
                    self._readers.append(conn)

    def execute_write(self, stmts: list[tuple[str, tuple[Any, ...]]]) -> None:
        """Run ``(sql, params)`` statements in one write transaction on the main connection."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in stmts:
                conn.execute(sql, params)
            conn.execute("COMMIT")
        except BaseException:
            rollback(conn)
            raise

    def checkpoint(self) -> None:
        """Copy the WAL into the database file and truncate it (after large writes; best effort)."""
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        """Close every connection; connections lent to readers close when they come back. Idempotent."""
        with self._lock:
            self.closed = True
            for conn in self._all:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._all = []
            self._readers = []


def columns(conn: sqlite3.Connection, table: str) -> set[str]:
    """The column names of ``table``."""
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def add_checksum_columns(conn: sqlite3.Connection) -> None:
    """Add the checksum columns an index created before them lacks (in the caller's transaction or its own)."""
    for table, wanted in CHECKSUM_COLUMNS.items():
        have = columns(conn, table)
        for col in wanted:
            if col not in have:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {col} INTEGER")


def checksum(data: bytes | bytearray | memoryview) -> int:
    """The CRC-32 the index records for a blob."""
    return zlib.crc32(data)


def check_blob(blob: bytes | None, expected: int | None, what: str) -> None:
    """Raise :class:`IndexCorruptedError` when ``blob`` does not match its recorded checksum (``None``: none)."""
    if expected is not None and blob is not None and zlib.crc32(blob) != expected:
        raise IndexCorruptedError(
            f"{what} does not match its checksum: the index is damaged. Restore it from a backup "
            "(VoyagerBackend.verify() lists every damaged part)"
        )


def rollback(conn: sqlite3.Connection) -> None:
    """Roll back the open transaction of ``conn``, if any (never raises)."""
    with contextlib.suppress(sqlite3.Error):
        if conn.in_transaction:
            conn.execute("ROLLBACK")


def json_text(meta: Mapping[str, Any]) -> str:
    """The compact JSON a document's metadata is stored as."""
    return json.dumps(meta, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
