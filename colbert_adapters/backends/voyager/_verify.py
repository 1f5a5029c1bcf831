"""``VoyagerBackend.verify()``: read every part of an index and report what is damaged, changing nothing.

Checks SQLite's own structure (``PRAGMA quick_check``), every segment file (its name, presence and checksum, then
that its graph holds the tokens of its documents), and every document (its blobs' checksums and sizes, its
metadata, its segment). Parts written before checksums existed are reported as notes, not problems.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import numpy as np

from ..._codecs import blob_parts, residual_widths
from ...errors import IndexCorruptedError
from .._files import check_manifest_crc, file_crc32
from ..base import VerifyReport
from ._compressed import SEGMENT_FILES, CompressedSegment, dir_crc, is_compressed_file
from ._db import FETCH_CHUNK, checksum, columns
from ._layout import MANIFEST
from ._state import IndexState, segment_path

__all__ = ["verify"]


def verify(st: IndexState) -> VerifyReport:
    """Check every part of the index ``st`` holds open (shared lock held by the caller's reader)."""
    problems: list[str] = []
    notes: list[str] = []
    checked = {"segments": 0, "documents": 0, "tokens": 0}
    _check_manifest(st, problems)
    with st.db.reader() as conn:
        conn.execute("BEGIN")  # one snapshot for the whole check
        try:
            _check_sqlite(conn, problems)
            seg_files = _check_segments(st, conn, problems, notes, checked)
            _check_documents(st, conn, seg_files, problems, notes, checked)
        finally:
            conn.execute("ROLLBACK")
    return VerifyReport(str(st.root), checked, problems, notes)


def _check_manifest(st: IndexState, problems: list[str]) -> None:
    """``manifest.json`` (a mirror of the database, rewritten at every commit) parses and matches its checksum."""
    path = st.root / MANIFEST
    if not path.is_file():
        return  # not written yet, or removed: the database is the source of truth, the next commit rewrites it
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        check_manifest_crc(data, MANIFEST)
    except (OSError, UnicodeDecodeError, ValueError, IndexCorruptedError) as err:
        problems.append(f"{MANIFEST}: {err}")


def _check_sqlite(conn: sqlite3.Connection, problems: list[str]) -> None:
    try:
        rows = [r[0] for r in conn.execute("PRAGMA quick_check")]
    except sqlite3.DatabaseError as err:
        problems.append(f"store.sqlite: {err}")
        return
    if rows != ["ok"]:
        problems += [f"store.sqlite: {r}" for r in rows[:20]]


def _check_segments(
    st: IndexState, conn: sqlite3.Connection, problems: list[str], notes: list[str], checked: dict[str, int]
) -> dict[int, Any]:
    """The graphs of the segments that are intact (id -> voyager.Index); damaged ones are reported."""
    has_crc = "crc" in columns(conn, "segments")
    graphs: dict[int, Any] = {}
    for sid, file, crc in conn.execute(f"SELECT id, file, {'crc' if has_crc else 'NULL'} FROM segments ORDER BY id"):
        checked["segments"] += 1
        try:
            path = segment_path(st.root, sid, file)
        except IndexCorruptedError as err:
            problems.append(str(err))
            continue
        if is_compressed_file(file):
            if not path.is_dir() or any(not (path / f).is_file() for f in SEGMENT_FILES):
                problems.append(f"segment {sid}: {file} is missing or incomplete")
            elif crc is not None and dir_crc(path) != crc:
                problems.append(f"segment {sid}: {file} does not match its checksum")
            else:
                graphs[sid] = CompressedSegment(path)
            continue
        if not path.is_file():
            problems.append(f"segment {sid}: {file} is missing")
            continue
        if crc is None:
            notes.append(f"segment {sid}: {file} has no checksum (written before checksums; a writable open adds it)")
            continue  # loading an unverified file could crash on damage: its graph is not checked
        if file_crc32(path) != crc:
            problems.append(f"segment {sid}: {file} does not match its checksum")
            continue
        loaded = st.segments.get(sid)
        graphs[sid] = loaded.index if loaded is not None and loaded.file == file else st.voyager.Index.load(str(path))
    return graphs


def _check_documents(
    st: IndexState,
    conn: sqlite3.Connection,
    graphs: dict[int, Any],
    problems: list[str],
    notes: list[str],
    checked: dict[str, int],
) -> None:
    dim = st.dim or 0
    have = columns(conn, "docs")
    crc_cols = "vcrc, rcrc" if "vcrc" in have else "NULL, NULL"
    segments = {r[0] for r in conn.execute("SELECT id FROM segments")}
    labels: dict[int, list[np.ndarray]] = {sid: [] for sid in graphs}
    unverified = 0
    compressed: dict[int, list[tuple[int, int]]] = {}
    last = -1
    half, quarter = residual_widths(dim) if dim else (0, 0)
    while True:
        rows = conn.execute(
            f"SELECT seq, id, metadata, n_tokens, first_label, segment, {st.vector_cols}, {crc_cols} FROM docs "
            "WHERE seq > ? ORDER BY seq LIMIT ?",
            (last, FETCH_CHUNK),
        ).fetchall()
        if not rows:
            break
        for seq, doc_id, meta, n_tok, first, seg, blob, residual, vcrc, rcrc in rows:
            last = seq
            checked["documents"] += 1
            checked["tokens"] += int(n_tok)
            where = f"document {doc_id!r} (seq {seq})"
            if vcrc is None:
                unverified += 1
            elif checksum(blob) != vcrc:
                problems.append(f"{where}: stored vectors do not match their checksum")
                continue
            if rcrc is not None and residual is not None and checksum(residual) != rcrc:
                problems.append(f"{where}: stored residuals do not match their checksum")
                continue
            if not blob and n_tok and isinstance(graphs.get(seg), CompressedSegment):
                compressed.setdefault(seg, []).append((seq, int(n_tok)))
                continue
            try:
                rows_, _ = blob_parts(blob, dim, st.vector_dtype)
                if rows_.shape[0] != n_tok:
                    raise ValueError(f"{rows_.shape[0]} token vectors where {n_tok} were recorded")
                if st.vector_dtype == "int14" and (residual is None or len(residual) != n_tok * (half + quarter)):
                    raise ValueError("its residuals are missing or of the wrong size")
                json.loads(meta)
            except (ValueError, TypeError) as err:
                problems.append(f"{where}: {err}")
                continue
            if seg is not None and seg not in segments:
                problems.append(f"{where}: belongs to segment {seg}, which does not exist")
            elif seg in labels:
                labels[seg].append(np.arange(first, first + n_tok, dtype=np.int64))
    for sid, docs in compressed.items():
        cseg = graphs[sid]
        seqs = np.array([d[0] for d in docs], dtype=np.int64)
        here, pos = cseg.locate(seqs)
        lens = np.where(here, cseg.offsets[pos + 1] - cseg.offsets[pos], -1)
        bad = int((lens != np.array([d[1] for d in docs])).sum())
        if bad:
            problems.append(f"segment {sid}: {bad} of its documents are missing from its files or of the wrong size")
    for sid, parts in labels.items():
        if not parts or isinstance(graphs[sid], CompressedSegment):
            continue
        want = np.concatenate(parts)
        missing = int((~np.isin(want, np.fromiter(graphs[sid].ids, dtype=np.int64))).sum())
        if missing:
            problems.append(f"segment {sid}: its graph lacks {missing} tokens of its documents")
    if unverified:
        notes.append(f"{unverified} documents have no checksums (written before checksums): sizes checked only")
