"""What an index directory holds and how its format is recognised, created, checked and upgraded.

Layout::

    store.sqlite       documents, segments and settings (WAL journal, synchronous=FULL); the commit point
    seg-000001.voyager sealed HNSW segments, immutable once written (temp file + fsync + rename)
    manifest.json      read-only mirror of the segment list and generation, for humans and tools
    write.lock         flock'ed by the one process that has the index open for writing

Format versions: 1 (float16 vectors, no ``vector_dtype`` setting), 2 (``vector_dtype``), 3 (a segment's graph
indexes a projection, ``graph_dim``). Later versions read all of them; a writable open adds what an older index
lacks (the centroids table, see ``_centroids``) without changing its version.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

from ..._codecs import VECTOR_DTYPES
from ..._identity import same_model
from ...errors import CollectionConfigError
from .._files import file_crc32, fsync_dir, is_temp, with_manifest_crc, write_atomic
from ._compressed import remove_dir
from ._db import DB, SCHEMA, SEGMENT_FILE, add_checksum_columns, rollback
from ._state import IndexState, segment_path

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "LOCK",
    "MANIFEST",
    "PROJECTED_FORMAT_VERSION",
    "READABLE_VERSIONS",
    "SEGMENT_FILE",
    "apply_graph_dim",
    "apply_meta",
    "create_db",
    "default_graph_dim",
    "migrate",
    "read_meta",
    "remove_orphans",
    "segment_name",
    "write_manifest",
]

logger = logging.getLogger("colbert_adapters.backends.voyager")

FORMAT = "colbert-adapters/voyager-index"
#: Version written by new indexes. Version 1 (no ``vector_dtype`` setting, float16 vectors) is still read;
#: version 2 adds ``vector_dtype`` (int8 vectors), which version-1 readers must refuse rather than misread.
FORMAT_VERSION = 2
READABLE_VERSIONS = ("1", "2", "3")
#: Format version of an index holding a segment whose graph indexes a projection (``graph_dim``): older readers,
#: which would query such a graph with full-dimension vectors, refuse it.
PROJECTED_FORMAT_VERSION = 3
MANIFEST = "manifest.json"
LOCK = "write.lock"
#: Codec directories of compressed indexes (``_compressed``).
CODEC_NAME = re.compile(r"codec-\d{6,}")


def segment_name(sid: int) -> str:
    """The file name of segment ``sid``."""
    return f"seg-{sid:06d}.voyager"


def default_graph_dim(dim: int, minimum: int) -> int:
    """Graph dimensions of a new index of ``dim``-d vectors: ``max(minimum, dim // 3)``."""
    return max(minimum, dim // 3)


def create_db(db_path: Path, settings: dict[str, str | None]) -> None:
    """Create an empty index database with ``settings`` in ``meta`` (``None`` values are left out), under a
    temporary name renamed into place (atomic creation)."""
    tmp = db_path.with_name(f".{DB}.{uuid.uuid4().hex}.tmp")
    conn = sqlite3.connect(tmp, isolation_level=None)
    try:
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("PRAGMA journal_mode = DELETE")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("BEGIN")
        for stmt in SCHEMA.split(";"):
            if stmt.strip():
                conn.execute(stmt)
        meta = {
            "format": FORMAT,
            "format_version": str(FORMAT_VERSION),
            "space": "cosine",
            **settings,
            "next_label": "0",
            "next_segment": "1",
            "generation": "0",
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        conn.executemany("INSERT INTO meta VALUES (?, ?)", [(k, v) for k, v in meta.items() if v is not None])
        conn.execute("COMMIT")
    finally:
        conn.close()
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, db_path)
    fsync_dir(db_path.parent)
    logger.info("created Voyager index %s", db_path.parent)


def read_meta(conn: sqlite3.Connection, root: Path) -> dict[str, str]:
    """The ``meta`` table of index ``root``, checked to be a Voyager index of a readable format version.

    Raises:
        CollectionConfigError: not a Voyager index database, or a version this code cannot read.
    """
    try:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.DatabaseError as err:
        raise CollectionConfigError(
            f"{root / DB} is not a Voyager index database ({err}); pass a directory created by VoyagerBackend"
        ) from err
    if meta.get("format") != FORMAT:
        raise CollectionConfigError(
            f"{root / DB} is not a Voyager index (format {meta.get('format')!r}, expected {FORMAT!r})"
        )
    if meta.get("format_version") not in READABLE_VERSIONS:
        raise CollectionConfigError(
            f"{root} uses Voyager index format version {meta.get('format_version')!r}; this version of "
            f"colbert-adapters reads versions {', '.join(READABLE_VERSIONS)}. Upgrade colbert-adapters or "
            "rebuild the index"
        )
    return meta


def apply_meta(
    st: IndexState,
    meta: dict[str, str],
    dim: int | None,
    model_id: str | None,
    M: int | None,
    ef_construction: int | None,
    storage: str | None,
    vector_dtype: str | None,
    compression: str | None = None,
) -> None:
    """Check the constructor's arguments against the index's settings, take the settings into ``st``, and (writer)
    persist explicit settings that differ.

    Raises:
        CollectionConfigError: the index stores another dimension, model, vector encoding or compression than
            asked for.
    """
    stored_comp = meta.get("compression") or None
    asked = compression or vector_dtype
    have = stored_comp or meta.get("vector_dtype", "float16")
    if (compression is not None or (stored_comp is not None and vector_dtype is not None)) and asked != have:
        raise CollectionConfigError(
            f"the index {st.root} is stored with compression {have!r} but compression={asked!r} was given; open "
            f"it with compression=None (or {have!r}), or convert it with VoyagerBackend(path).compact("
            f"compression={asked!r}) (CLI: colbert-adapters compact {st.root} --compression {asked})"
        )
    st.compression = stored_comp
    if stored_comp is not None:
        vector_dtype = None  # the int8 rows of the unsealed documents
    stored_dim = int(meta["dim"]) if meta.get("dim") else None
    stored_vdt = meta.get("vector_dtype", "float16")  # format version 1 stored float16 only
    if stored_vdt not in VECTOR_DTYPES:
        raise CollectionConfigError(
            f"{st.root} stores vectors as {stored_vdt!r}, which this version cannot read; upgrade colbert-adapters"
        )
    if vector_dtype is not None and vector_dtype.lower() != stored_vdt:
        raise CollectionConfigError(
            f"the index {st.root} stores its vectors as {stored_vdt} but vector_dtype={vector_dtype!r} was "
            f"given; open it with vector_dtype=None (or {stored_vdt!r}), or use a new directory"
        )
    st.vector_dtype = stored_vdt
    st.vector_cols = "vectors, residual" if stored_vdt == "int14" else "vectors, NULL"
    st.format_version = int(meta["format_version"])
    stored_model = meta.get("model_id")
    if dim is not None and stored_dim is not None and dim != stored_dim:
        raise CollectionConfigError(
            f"the index {st.root} stores {stored_dim}-d vectors but dim={dim} was given; open it with "
            f"dim={stored_dim} (or None), or use a new directory for {dim}-d vectors"
        )
    if model_id is not None and stored_model is not None and not same_model(stored_model, model_id):
        raise CollectionConfigError(
            f"the index {st.root} was built with model {stored_model!r} but model_id={model_id!r} was "
            "given; use the same model, or a new directory"
        )
    st.dim = stored_dim if stored_dim is not None else dim
    st.model_id = stored_model if stored_model is not None else model_id
    st.M = M or int(meta["M"])
    st.ef_construction = ef_construction or int(meta["ef_construction"])
    large = meta.get("ef_construction_large")
    st.ef_construction_large = int(large) if large and ef_construction is None else None
    st.storage = (storage or meta["storage_data_type"]).lower()
    if st.read_only:
        return
    updates = {
        "dim": None if stored_dim is not None or dim is None else str(dim),
        "model_id": None if stored_model is not None or model_id is None else model_id,
        "M": str(st.M) if str(st.M) != meta["M"] else None,
        "ef_construction": str(st.ef_construction) if str(st.ef_construction) != meta["ef_construction"] else None,
        "storage_data_type": st.storage if st.storage != meta["storage_data_type"] else None,
    }
    stmts: list[tuple[str, tuple[Any, ...]]] = [
        ("INSERT OR REPLACE INTO meta VALUES (?, ?)", (k, v)) for k, v in updates.items() if v is not None
    ]
    if ef_construction is not None and meta.get("ef_construction_large"):
        # An explicit beam replaces the size-dependent default for good (as any explicit setting does).
        stmts.append(("DELETE FROM meta WHERE key = ?", ("ef_construction_large",)))
    if stmts:
        st.db.execute_write(stmts)


def apply_graph_dim(st: IndexState, meta: dict[str, str], graph_dim: int | None) -> None:
    """Take ``graph_dim`` (or the index's stored setting) for new segments; persist an explicit one.

    An index that has never held a document and has no setting gets :func:`default_graph_dim` of its dimension
    (``tuning.graph_dim_min``: the smallest default), persisted (at once when the dimension is known, else with
    the first upsert, see ``_writes.write_docs``); an older index without the setting keeps full-dimension graphs.
    """
    stored = int(meta["graph_dim"]) if meta.get("graph_dim") else None
    st.graph_dim = graph_dim if graph_dim is not None else stored
    st.graph_dim_pending = False
    if st.read_only:
        return
    if graph_dim is None and stored is None and meta.get("next_label") == "0":
        if st.dim is None:
            st.graph_dim_pending = True
            return
        graph_dim = st.graph_dim = default_graph_dim(st.dim, st.tuning.graph_dim_min)
    if graph_dim is not None and graph_dim != stored:
        st.db.execute_write([("INSERT OR REPLACE INTO meta VALUES (?, ?)", ("graph_dim", str(graph_dim)))])


def migrate(st: IndexState) -> None:
    """Writable open: add what an index written by an older version lacks, without changing its format version:
    the checksum columns, and the checksums of its segment files (computed once, from the files as they are)."""
    conn = st.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        add_checksum_columns(conn)
        missing = conn.execute("SELECT id, file FROM segments WHERE crc IS NULL").fetchall()
        for sid, file in missing:
            path = segment_path(st.root, sid, file)
            if path.is_file():  # a missing file is reported when the state loads
                conn.execute("UPDATE segments SET crc = ? WHERE id = ?", (file_crc32(path), sid))
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise
    if missing:
        logger.info("recorded the checksums of %d segment files of %s", len(missing), st.root)


def write_manifest(st: IndexState) -> None:
    """Atomically rewrite ``manifest.json``, a mirror of the committed state (SQLite stays authoritative)."""
    manifest = {
        "format": FORMAT,
        "format_version": st.format_version,
        "generation": st.generation,
        "dim": st.dim,
        "model_id": st.model_id,
        "space": "cosine",
        "M": st.M,
        "ef_construction": st.ef_construction,
        "ef_construction_large": st.ef_construction_large,
        "storage_data_type": st.storage,
        "vector_dtype": st.vector_dtype,
        "compression": st.compression or st.vector_dtype,
        "segments": [{"id": s.id, "file": s.file, "n_tokens": s.n_tokens} for s in st.segments.values()],
        "note": f"mirror of {DB} (the source of truth) at this generation; do not edit",
    }
    data = json.dumps(with_manifest_crc(manifest), indent=1).encode("utf-8")
    write_atomic(st.root / MANIFEST, lambda f: f.write(data))


def remove_orphans(st: IndexState) -> None:
    """Delete segment files no committed state references and temporary files of crashed writes."""
    live = {segment_path(st.root, sid, file).name for sid, file in st.conn.execute("SELECT id, file FROM segments")}
    row = st.conn.execute("SELECT value FROM meta WHERE key = 'codec'").fetchone()
    if row is not None:
        live.add(str(json.loads(row[0]).get("dir")))
    for p in st.root.iterdir():
        if ((SEGMENT_FILE.fullmatch(p.name) or CODEC_NAME.fullmatch(p.name)) and p.name not in live) or is_temp(p.name):
            remove_dir(p)
            logger.debug("removed orphan %s", p)
