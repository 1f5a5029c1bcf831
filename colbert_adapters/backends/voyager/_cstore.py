"""The compressed store's operations on the index state: seal, merge, search, read back, convert.

The rooms that serve every index call into this one where a compressed index (``compression="2bit"`` /
``"4bit"``) differs: ``_segments`` to seal and merge (:func:`build_seal`, :func:`build_merge`), ``_search`` to
score the sealed documents (:func:`score`) and read their vectors (:func:`doc_vectors`), the facade's
``compact(compression=...)`` to convert an index (:func:`convert`). The files are ``_compressed``'s, the search
stages ``_plaid``'s.

Codec life: the first seal waits for ``train_tokens`` tokens (the mutable segment, searched exactly, holds them
meanwhile), trains the codec on them, and commits it with the segment. Later seals encode against it on the
sealer thread, never on a writer's. Each seal records its tokens' mean reconstruction error over the training
error (``IndexState.seal_errors``, in ``stats()``); when more than :data:`DRIFT_SHARE` of a seal's tokens sit
farther from every centroid than nearly all training tokens did (new topics), the seal appends centroids for
them (``ResidualCodec.extend``) and commits the grown codebook: nothing already written is re-encoded.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ..._codecs import decode_vectors
from ..._filters import FilterExpr
from ..._residual import COMPRESSIONS, ResidualCodec, code_dtype, default_n_centroids
from ...errors import InvalidInputError
from ._compressed import CompressedSegment, codec_meta, is_compressed_file, remove_dir, write_codec, write_segment
from ._db import FETCH_CHUNK, check_blob, checksum, rollback
from ._plaid import Located, Params, exact_scores, locate, search_compressed
from ._state import IndexState, SearchTrace, load_state

__all__ = [
    "DRIFT_SHARE",
    "SealParts",
    "build_merge",
    "build_seal",
    "commit_seal_rows",
    "convert",
    "doc_vectors",
    "needs_conversion",
    "score",
    "seal_threshold",
]

logger = logging.getLogger("colbert_adapters.backends.voyager")

#: Share of a seal's tokens beyond the codec's outlier norm (1% of the training tokens are) that grows the codebook.
DRIFT_SHARE = 0.05
#: Tokens whose reconstruction error a seal measures (a sample: decoding them all would double the seal's work).
ERROR_SAMPLE = 2048
#: Largest training sample of a conversion, in multiples of the centroids (k-means cost grows with both).
TRAIN_PER_CENTROID = 32


def seal_threshold(st: IndexState) -> int:
    """Mutable tokens that trigger a seal: ``mutable_max_tokens``, or, for a compressed index without a codec yet,
    at least ``train_tokens`` (the codec is trained on them)."""
    if st.compression is not None and st.codec is None:
        return max(st.tuning.mutable_max_tokens, st.tuning.train_tokens)
    return st.tuning.mutable_max_tokens


def _allocate_id(st: IndexState) -> int:
    with st.cache_lock:
        sid = st.next_segment
        st.next_segment = sid + 1
    return sid


@dataclass
class SealParts:
    """A compressed segment built by :func:`build_seal` or :func:`build_merge`, with the codec it needs
    committed (``codec`` / ``codec_meta``: ``None`` when the index's codec is unchanged)."""

    sid: int
    name: str
    segment: CompressedSegment
    crc: int
    n_tokens: int
    n_docs: int
    codec: ResidualCodec | None = None
    codec_meta: str | None = None
    error_ratio: float | None = None


def _encode(st: IndexState, flat: npt.NDArray[np.float32]) -> tuple[ResidualCodec, bool, Any, Any, float]:
    """Encode ``flat`` with the index's codec, training it first (no codec yet) or growing it (drift):
    ``(codec, whether it is new, codes, packed residuals, mean error / training error)``."""
    assert st.compression is not None
    codec: ResidualCodec | None = st.codec
    fresh = codec is None
    if codec is None:
        rng = np.random.default_rng(flat.shape[0])
        n_train = min(flat.shape[0], 2 * st.tuning.train_tokens)
        sample = flat if n_train == flat.shape[0] else flat[np.sort(rng.choice(flat.shape[0], n_train, replace=False))]
        codec = ResidualCodec.train(sample, COMPRESSIONS[st.compression])
        logger.info("trained a %s codec with %d centroids on %d tokens", st.compression, codec.n_centroids, n_train)
    codes, packed = codec.encode(flat)
    far = codec.residual_norms(flat, codes) > codec.outlier_norm
    if not fresh and far.mean() > DRIFT_SHARE:
        grown = codec.extend(flat[far])
        logger.info(
            "%.1f%% of a seal's tokens are far from every centroid: %d centroids appended",
            100 * far.mean(),
            grown.n_centroids - codec.n_centroids,
        )
        codec, fresh = grown, True
        codes = codes.astype(code_dtype(codec.n_centroids))
        codes[far], packed[far] = codec.encode(flat[far])
    step = max(1, flat.shape[0] // ERROR_SAMPLE)
    err = float(codec.reconstruction_error(flat[::step], codes[::step], packed[::step]).mean())
    return codec, fresh, codes, packed, err / max(codec.train_error, 1e-12)


def build_seal(st: IndexState, seqs: list[int], snapshot: dict[int, tuple[int, npt.NDArray[np.float32]]]) -> SealParts:
    """Encode the mutable documents ``seqs`` (ascending) of ``snapshot`` into a new compressed segment."""
    arrays = [snapshot[s][1] for s in seqs]
    lens = np.array([a.shape[0] for a in arrays], dtype=np.int64)
    codec, fresh, codes, packed, ratio = _encode(st, np.concatenate(arrays))
    sid = _allocate_id(st)
    name = f"seg-{sid:06d}.plaid"
    seg, crc = write_segment(
        st.root,
        name,
        codec.n_centroids,
        np.array(seqs, dtype=np.int64),
        np.array([snapshot[s][0] for s in seqs], dtype=np.int64),
        lens,
        codes,
        packed,
    )
    parts = SealParts(sid, name, seg, crc, int(lens.sum()), len(seqs), error_ratio=ratio)
    if fresh:
        cdir = write_codec(st.root, _allocate_id(st), codec)
        parts.codec, parts.codec_meta = codec, codec_meta(cdir, codec)
    return parts


def commit_seal_rows(st: IndexState, conn: sqlite3.Connection, parts: SealParts, present: list[int]) -> None:
    """In the seal's transaction: empty the SQLite rows of the documents now in the compressed segment, and record
    a new codec."""
    conn.execute(
        "UPDATE docs SET vectors = x'', vcrc = ?, residual = NULL, rcrc = NULL "
        "WHERE seq IN (SELECT value FROM json_each(?))",
        (checksum(b""), json.dumps(present)),
    )
    if parts.codec_meta is not None:
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('codec', ?)", (parts.codec_meta,))


def apply_seal(st: IndexState, parts: SealParts, present: list[int]) -> None:
    """After the seal's commit (exclusive lock held): the codec, the drift record, the cache."""
    if parts.codec is not None:
        st.codec, st.codec_meta = parts.codec, parts.codec_meta
    if parts.error_ratio is not None:
        st.seal_errors.append(round(parts.error_ratio, 4))
    st.blobs.discard(present)


def _segments_of(st: IndexState, seg_ids: list[int] | None = None) -> list[CompressedSegment]:
    return [
        s.index for s in st.segments.values() if is_compressed_file(s.file) and (seg_ids is None or s.id in seg_ids)
    ]


def _gather(
    segs: list[CompressedSegment], docs: Located, dtype: np.dtype[Any]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], Any, npt.NDArray[np.uint8]]:
    """First labels, token counts, codes and residuals of ``docs`` (in their order) from ``segs``."""
    lens = np.zeros(docs.seqs.size, dtype=np.int64)
    firsts = np.zeros(docs.seqs.size, dtype=np.int64)
    for si, seg in enumerate(segs):
        sel = np.flatnonzero(docs.seg == si)
        lens[sel] = seg.offsets[docs.pos[sel] + 1] - seg.offsets[docs.pos[sel]]
        firsts[sel] = seg.doc_labels[docs.pos[sel]]
    offs = np.zeros(lens.size + 1, dtype=np.int64)
    np.cumsum(lens, out=offs[1:])
    nbytes = segs[0].residuals.shape[1] if segs else 0
    codes = np.empty(int(offs[-1]), dtype=dtype)
    res = np.empty((int(offs[-1]), nbytes), dtype=np.uint8)
    for si, seg in enumerate(segs):
        sel = np.flatnonzero(docs.seg == si)
        if sel.size == 0:
            continue
        rows, sub = seg.rows(docs.pos[sel])
        dest = np.repeat(offs[sel] - sub[:-1], lens[sel]) + np.arange(int(sub[-1]), dtype=np.int64)
        codes[dest] = seg.codes[rows]
        res[dest] = seg.residuals[rows]
    return firsts, lens, codes, res


def build_merge(st: IndexState, seg_ids: list[int]) -> SealParts | None:
    """One compressed segment holding the live documents of ``seg_ids`` (codes copied, nothing re-encoded), or
    ``None`` when none is live."""
    segs = _segments_of(st, seg_ids)
    live = [s.live(st.label_seq) for s in segs]
    seqs = np.concatenate([s.doc_seqs[m] for s, m in zip(segs, live, strict=True)]) if segs else np.zeros(0, np.int64)
    if seqs.size == 0:
        return None
    docs = locate(segs, live, np.sort(seqs))
    codec: ResidualCodec = st.codec
    firsts, lens, codes, res = _gather(segs, docs, code_dtype(codec.n_centroids))
    sid = _allocate_id(st)
    name = f"seg-{sid:06d}.plaid"
    seg, crc = write_segment(st.root, name, codec.n_centroids, docs.seqs, firsts, lens, codes, res)
    return SealParts(sid, name, seg, crc, int(lens.sum()), int(docs.seqs.size))


def score(
    st: IndexState,
    conn: sqlite3.Connection,
    q: npt.NDArray[np.float32],
    k: int,
    flt: FilterExpr | None,
    trace: SearchTrace | None,
    match: Callable[[IndexState, sqlite3.Connection, npt.NDArray[np.int64], FilterExpr], npt.NDArray[np.bool_]],
    filtered: Callable[[IndexState, sqlite3.Connection, FilterExpr], npt.NDArray[np.int64]],
) -> dict[int, float]:
    """Exact scores of the best sealed documents of a compressed index (``_plaid``'s stages), with the fallbacks
    of ``_search.score``: a selective filter or too few candidates score the matching documents exhaustively."""
    codec: ResidualCodec | None = st.codec
    segs = _segments_of(st)
    if codec is None or not segs:
        return {}
    live = [s.live(st.label_seq) for s in segs]
    n_live = int(sum(int(m.sum()) for m in live))
    params = Params(st.tuning.n_probe, st.tuning.n_interact, max(st.tuning.n_full, k + max(8, k // 4)))
    if trace is not None:
        trace.path = "compressed"
    if n_live <= params.n_full:  # a small index: every (matching) document exactly
        rest = np.concatenate([s.doc_seqs[m] for s, m in zip(segs, live, strict=True)])
        if flt is not None:
            rest = rest[match(st, conn, rest, flt)]
        out = exact_scores(codec, segs, q, locate(segs, live, np.sort(rest)))
        if trace is not None:
            trace.exact.append(len(out))
        return out
    keep = None if flt is None else (lambda seqs: match(st, conn, seqs, flt))
    out, n_cand = search_compressed(codec, segs, live, q, k, params, keep)
    if trace is not None:
        trace.candidates = n_cand
        trace.exact.append(len(out))
    todo: npt.NDArray[np.int64] | None = None
    if flt is not None and len(out) < params.n_full:
        todo = filtered(st, conn, flt)
    elif flt is None and len(out) < min(k, n_live):
        todo = np.sort(np.concatenate([s.doc_seqs[m] for s, m in zip(segs, live, strict=True)]))
    if todo is not None:
        todo = todo[~np.isin(todo, np.fromiter(out.keys(), dtype=np.int64, count=len(out)))]
        if trace is not None:
            trace.fallback = int(todo.size)
        for start in range(0, todo.size, FETCH_CHUNK):
            out.update(exact_scores(codec, segs, q, locate(segs, live, todo[start : start + FETCH_CHUNK])))
    return out


def doc_vectors(st: IndexState, seqs: list[int]) -> dict[int, npt.NDArray[np.float32]]:
    """Decompressed vectors ``(n_tokens, dim)`` of the live sealed documents ``seqs`` (shared lock held)."""
    codec: ResidualCodec | None = st.codec
    segs = _segments_of(st)
    if codec is None or not segs or not seqs:
        return {}
    live = [s.live(st.label_seq) for s in segs]
    order = np.unique(np.array(seqs, dtype=np.int64))
    docs = locate(segs, live, order)
    out: dict[int, npt.NDArray[np.float32]] = {}
    for si, seg in enumerate(segs):
        sel = np.flatnonzero(docs.seg == si)
        if sel.size == 0:
            continue
        rows, offs = seg.rows(docs.pos[sel])
        dec = codec.decode(seg.codes[rows], np.asarray(seg.residuals[rows]))
        for j, i in enumerate(sel.tolist()):
            out[int(docs.seqs[i])] = dec[offs[j] : offs[j + 1]]
    return out


def needs_conversion(st: IndexState, target: str | None) -> bool:
    """Whether ``compact(compression=target)`` converts the index (``target``: a checked compression name).

    Raises:
        InvalidInputError: a conversion this version cannot do (out of a compressed store: its original vectors
            are gone).
    """
    if target is None or target == (st.compression or st.vector_dtype):
        return False
    if st.compression is not None or target not in COMPRESSIONS:
        raise InvalidInputError(
            f"the index {st.root} is stored as {st.compression or st.vector_dtype!r}; compact(compression="
            f"{target!r}) converts a vector store (int8, int14, float16, float32) to '2bit' or '4bit' only. "
            "Re-index from the original vectors (store.copy_to or colbert-adapters copy) for another encoding"
        )
    return True


def _read_chunks(st: IndexState) -> Any:
    """Every document as ``(seq, first_label, float32 vectors)``, in seq order, read in chunks."""
    last, dim = -1, st.dim or 0
    conn = st.conn
    while True:
        rows = conn.execute(
            f"SELECT seq, first_label, n_tokens, {st.vector_cols}, {st.crc_cols} FROM docs WHERE seq > ? "
            "ORDER BY seq LIMIT ?",
            (last, FETCH_CHUNK),
        ).fetchall()
        if not rows:
            return
        for seq, first, n_tok, blob, residual, vcrc, rcrc in rows:
            check_blob(blob, vcrc, f"the stored vectors of document seq {seq} in {st.root}")
            check_blob(residual, rcrc, f"the stored residuals of document seq {seq} in {st.root}")
            yield seq, first, decode_vectors(blob, n_tok, dim, st.vector_dtype, residual)
            last = seq


def convert(st: IndexState, target: str) -> None:
    """Re-encode every document of a vector-store index into one compressed segment with a codec trained on its
    vectors, in one transaction (seal lock, maintenance lock and write mutex held). A crash before the commit
    leaves the old index (the new files are orphans the next writable open removes)."""
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    conn = st.conn
    n_tokens, n_docs = (
        int(v) for v in conn.execute("SELECT COALESCE(SUM(n_tokens), 0), COUNT(*) FROM docs").fetchone()
    )
    if n_docs == 0 or st.dim is None:
        codec = None
    else:
        if (st.dim * COMPRESSIONS[target]) % 8:
            ResidualCodec.train(np.zeros((1, st.dim), dtype=np.float32), COMPRESSIONS[target])  # raises, naming dim
        n_c = default_n_centroids(n_tokens)
        share = min(1.0, max(st.tuning.train_tokens, TRAIN_PER_CENTROID * n_c) / n_tokens)
        rng = np.random.default_rng(n_tokens)
        sample = [v for _, _, v in _read_chunks(st) if rng.random() < share] or [next(_read_chunks(st))[2]]
        codec = ResidualCodec.train(np.concatenate(sample), COMPRESSIONS[target], n_c)
        del sample
    seqs, firsts, lens, codes, res = [], [], [], [], []
    if codec is not None:
        with tqdm(total=n_tokens, desc=f"compress {target}", unit="tok", disable=None) as bar:
            batch: list[tuple[int, int, npt.NDArray[np.float32]]] = []
            for item in [*_read_chunks(st), None]:
                if item is not None:
                    batch.append(item)
                if batch and (item is None or sum(b[2].shape[0] for b in batch) >= 65_536):
                    c, r = codec.encode(np.concatenate([b[2] for b in batch]))
                    seqs += [b[0] for b in batch]
                    firsts += [b[1] for b in batch]
                    lens += [b[2].shape[0] for b in batch]
                    codes.append(c)
                    res.append(r)
                    bar.update(int(c.shape[0]))
                    batch = []
    old_files = [s.file for s in st.segments.values()]
    parts: SealParts | None = None
    if codec is not None:
        sid = _allocate_id(st)
        name = f"seg-{sid:06d}.plaid"
        seg, crc = write_segment(
            st.root,
            name,
            codec.n_centroids,
            np.array(seqs, dtype=np.int64),
            np.array(firsts, dtype=np.int64),
            np.array(lens, dtype=np.int64),
            np.concatenate(codes),
            np.concatenate(res),
        )
        parts = SealParts(sid, name, seg, crc, int(sum(lens)), len(seqs))
        cdir = write_codec(st.root, _allocate_id(st), codec)
        parts.codec, parts.codec_meta = codec, codec_meta(cdir, codec)
    conn.execute("BEGIN IMMEDIATE")
    try:
        meta = {"compression": target, "vector_dtype": "int8", "generation": str(st.generation + 1)}
        if parts is not None and parts.codec_meta is not None:
            meta["codec"] = parts.codec_meta
        with st.cache_lock:
            meta["next_segment"] = str(st.next_segment)
        conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(meta.items()))
        conn.execute("DELETE FROM segments")
        conn.execute("DELETE FROM centroids")
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'projections'").fetchone():
            conn.execute("DELETE FROM projections")
        if parts is not None:
            conn.execute(
                "INSERT INTO segments (id, file, n_tokens, n_live_tokens, n_docs, crc) VALUES (?, ?, ?, ?, ?, ?)",
                (parts.sid, parts.name, parts.n_tokens, parts.n_tokens, parts.n_docs, parts.crc),
            )
            conn.execute("UPDATE docs SET segment = ?", (parts.sid,))
        residual = ", residual = NULL, rcrc = NULL" if "residual" in st.vector_cols else ""
        conn.execute(f"UPDATE docs SET vectors = x'', vcrc = ?{residual}", (checksum(b""),))
        with st.rw.write():
            conn.execute("COMMIT")
            st.compression, st.vector_dtype, st.vector_cols = target, "int8", "vectors, NULL"
            st.centroids = None
            st.segments = {}  # reloaded from the new rows
            load_state(st)
    except BaseException:
        rollback(conn)
        if parts is not None:
            remove_dir(st.root / parts.name)
        raise
    for name in old_files:
        remove_dir(st.root / name)
    logger.info(
        "converted %s to %s: %d documents, %d tokens in %.1fs", st.root, target, n_docs, n_tokens,
        time.perf_counter() - t0,
    )  # fmt: skip
