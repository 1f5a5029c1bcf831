"""Documents in ``store.sqlite``: row lookups and deletions, and the cache of stored vector blobs.

A document is one row of ``docs``: ``seq`` (insertion order, never reused), ``id``, ``text``, JSON ``metadata``,
``n_tokens``, ``first_label`` (its tokens are labels ``first_label .. first_label + n_tokens - 1`` in the graphs),
``segment`` (``NULL``: the mutable segment) and its token vectors (``vectors`` and, for int14, ``residual``, in the
layouts of :mod:`colbert_adapters._codecs`). Its per-document centroids live in ``centroids`` under the same seq.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ._db import FETCH_CHUNK, check_blob

__all__ = ["BlobCache", "Row", "delete_rows", "lookup_rows"]


@dataclass(slots=True)
class Row:
    """Where a stored document's tokens are: its ``seq``, ``segment`` (``None``: mutable), first label, length."""

    seq: int
    segment: int | None
    first_label: int
    n_tokens: int


def lookup_rows(conn: sqlite3.Connection, ids: list[str]) -> dict[str, Row]:
    """The stored rows of the known ``ids``, by id."""
    out: dict[str, Row] = {}
    for start in range(0, len(ids), FETCH_CHUNK):
        chunk = ids[start : start + FETCH_CHUNK]
        for doc_id, seq, seg, first, n_tok in conn.execute(
            "SELECT id, seq, segment, first_label, n_tokens FROM docs WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(chunk),),
        ):
            out[doc_id] = Row(seq, seg, first, n_tok)
    return out


def delete_rows(conn: sqlite3.Connection, rows: list[Row]) -> None:
    """Delete documents ``rows`` and their centroids in the open transaction, and update their segments' counts."""
    if not rows:
        return
    seqs = [r.seq for r in rows]
    for start in range(0, len(seqs), FETCH_CHUNK):
        chunk = json.dumps(seqs[start : start + FETCH_CHUNK])
        conn.execute("DELETE FROM docs WHERE seq IN (SELECT value FROM json_each(?))", (chunk,))
        conn.execute("DELETE FROM centroids WHERE seq IN (SELECT value FROM json_each(?))", (chunk,))
    per_seg: dict[int, list[int]] = {}
    for r in rows:
        if r.segment is not None:
            acc = per_seg.setdefault(r.segment, [0, 0])
            acc[0] += r.n_tokens
            acc[1] += 1
    for sid, (n_tok, n_docs) in per_seg.items():
        conn.execute(
            "UPDATE segments SET n_live_tokens = n_live_tokens - ?, n_docs = n_docs - ? WHERE id = ?",
            (n_tok, n_docs, sid),
        )


class BlobCache:
    """Stored blobs of recently written or scored documents, least recently used first out past ``max_bytes``.

    Keyed by (column, seq). A document's seq is never reused (``AUTOINCREMENT``; only committed rows are read) and
    its ``vectors`` / ``residual`` blobs are never rewritten (merges and compaction change its ``segment`` only),
    so an entry stays valid as long as the document lives; deleted documents are dropped by
    the writer when it commits their deletion (their seqs no longer come up as candidates anyway), and a reload of
    the state from disk clears the cache. Writes put the ``vectors`` blobs they commit (write-through). A hit skips
    SQLite's assembly of the blob from its overflow pages.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, int], tuple[int, bytes]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        """Bytes of blobs held."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def fetch(
        self,
        conn: sqlite3.Connection,
        column: str,
        seqs: Sequence[int],
        *,
        remember: bool = True,
        crc_column: str = "NULL",
    ) -> list[tuple[int, int, bytes]]:
        """``(seq, n_tokens, blob)`` of the live documents among ``seqs``, ascending by seq: from the cache where
        held, the rest from ``conn`` (kept for later unless ``remember`` is false: an exhaustive scan would only
        push the frequently reranked documents out). A blob read from the store is checked against its checksum
        (``crc_column``; ``"NULL"``: none recorded) before it is used or kept.

        Raises:
            IndexCorruptedError: a blob does not match its checksum.
        """
        rows: list[tuple[int, int, bytes]] = []
        missing: list[int] = []
        if self.max_bytes > 0:
            with self._lock:
                entries = self._entries
                for seq in seqs:
                    key = (column, seq)
                    hit = entries.get(key)
                    if hit is None:
                        missing.append(seq)
                    else:
                        entries.move_to_end(key)
                        rows.append((seq, hit[0], hit[1]))
        else:
            missing = list(seqs)
        if missing:
            fetched: list[tuple[int, int, bytes]] = []
            for seq, n_tok, blob, crc in conn.execute(
                f"SELECT seq, n_tokens, {column}, {crc_column} FROM docs WHERE seq IN (SELECT value FROM json_each(?))",
                (json.dumps(missing),),
            ):
                check_blob(blob, crc, f"the stored {column} of document seq {seq}")
                fetched.append((seq, n_tok, blob))
            if remember:
                self.put(column, fetched)
            rows.extend(fetched)
        rows.sort(key=lambda r: r[0])
        return rows

    def put(self, column: str, rows: Iterable[tuple[int, int, bytes]]) -> None:
        """Keep ``(seq, n_tokens, blob)`` rows read from the store or just committed to it (write-through: a process
        that writes documents and then searches them finds them here), within the budget."""
        if self.max_bytes <= 0:
            return
        with self._lock:
            for seq, n_tok, blob in rows:
                key = (column, seq)
                if len(blob) <= self.max_bytes and key not in self._entries:
                    self._entries[key] = (n_tok, blob)
                    self._bytes += len(blob)
            while self._bytes > self.max_bytes:
                _, (_, old) = self._entries.popitem(last=False)
                self._bytes -= len(old)

    def discard(self, seqs: Iterable[int]) -> None:
        """Forget the blobs of documents ``seqs`` (deleted)."""
        with self._lock:
            for seq in seqs:
                for column in ("vectors", "residual"):
                    hit = self._entries.pop((column, seq), None)
                    if hit is not None:
                        self._bytes -= len(hit[1])

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0
