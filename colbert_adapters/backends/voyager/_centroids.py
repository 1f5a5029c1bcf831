"""Per-document centroids: a few k-means centres of each document's tokens, stored beside it.

They complete the graph search's approximate score of a candidate document for the query tokens that did not
retrieve any of its tokens (see :func:`._search.candidates`): such a token counts its similarity to the nearest
centroid instead of nothing. Stored int8 in the ``centroids`` table (``codes`` ``(C, dim)`` int8, ``scales``
``(C,)`` float32, little-endian), written in the document's transaction; an index written before them gets them
at its next writable open (:func:`backfill_centroids`).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ..._codecs import F32, decode_vectors, quantise_int8
from ..._kernels import torch_module, torch_threads
from ._db import CENTROIDS_SCHEMA, FETCH_CHUNK, Database, check_blob, rollback

__all__ = [
    "CENTROID_GROUP_ENTRIES",
    "N_CENTROIDS",
    "CentroidTable",
    "backfill_centroids",
    "doc_centroids",
    "read_centroids",
]

logger = logging.getLogger("colbert_adapters.backends.voyager")

#: Centroids summarising each document's tokens.
N_CENTROIDS = 4
#: Lloyd iterations of the per-document k-means.
CENTROID_ITERS = 6
#: Padded components per group of documents in the k-means (bounds its memory: 64 MiB per float32 copy).
CENTROID_GROUP_ENTRIES = 1 << 24


def doc_centroids(
    arrays: Sequence[npt.NDArray[np.float32]], n_centroids: int = N_CENTROIDS, iters: int = CENTROID_ITERS
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float32]]:
    """Per-document centroids of token vectors, quantised to int8: ``(codes (n, C, dim), scales (n, C))``.

    Spherical k-means (``iters`` Lloyd steps) on each document's tokens ``(L_i, dim)``, started from ``C`` tokens
    evenly spaced through the document (no random state); each centroid is the direction of its tokens' mean
    times their mean norm (unit-norm tokens give unit-norm centroids), kept as int8 codes times a float32 scale.
    A document of fewer than ``C`` tokens repeats some (the maximum over them is unchanged). Documents are
    processed in groups of similar length, padded (at most 256 documents and ``CENTROID_GROUP_ENTRIES`` padded
    components per group): one batched product per step.
    """
    n = len(arrays)
    dim = arrays[0].shape[1] if n else 0
    c = n_centroids
    codes = np.zeros((n, c, dim), dtype=np.int8)
    scales = np.zeros((n, c), dtype=F32)  # little-endian: stored as its bytes
    lens = np.fromiter((a.shape[0] for a in arrays), dtype=np.int64, count=n)
    order = np.argsort(lens, kind="stable")
    # Groups of up to 256 documents and about CENTROID_GROUP_ENTRIES padded components (64 MiB of float32 for
    # each of the group's copies), so that long documents are processed a few at a time.
    sorted_lens = lens[order].tolist()
    groups: list[tuple[int, int]] = []
    g0 = 0
    while g0 < n:
        g1 = g0 + 1  # lengths ascend: the group's last document sets its width
        while g1 < n and g1 - g0 < 256 and (g1 + 1 - g0) * sorted_lens[g1] * dim <= CENTROID_GROUP_ENTRIES:
            g1 += 1
        groups.append((g0, g1))
        g0 = g1
    for g0, g1 in groups:
        idx = order[g0:g1]
        b, width = idx.size, int(lens[idx].max())
        x = np.zeros((b, width, dim), dtype=np.float32)
        mask = np.zeros((b, width), dtype=bool)
        for i, j in enumerate(idx.tolist()):
            x[i, : lens[j]] = arrays[j]
            mask[i, : lens[j]] = True
        norms = np.linalg.norm(x, axis=2)
        unit = x / np.maximum(norms, 1e-12)[..., None]
        start = (np.arange(c)[None, :] * lens[idx][:, None]) // c
        cen = unit[np.arange(b)[:, None], start]  # (b, C, dim)
        weights = np.zeros((b, width, c), dtype=np.float32)
        for _ in range(iters):
            assign = np.matmul(unit, cen.transpose(0, 2, 1)).argmax(axis=2)  # (b, width)
            weights = (assign[..., None] == np.arange(c)).astype(np.float32) * mask[..., None]
            total = np.matmul(weights.transpose(0, 2, 1), unit)  # (b, C, dim)
            size = np.linalg.norm(total, axis=2, keepdims=True)
            cen = np.where(size > 1e-12, total / np.maximum(size, 1e-12), cen)  # an empty cluster keeps its centre
        count = weights.sum(axis=1)  # (b, C)
        mean_norm = np.matmul(weights.transpose(0, 2, 1), norms[..., None])[..., 0] / np.maximum(count, 1.0)
        # An empty cluster (a document of fewer than C distinct tokens) stands for its starting token.
        mean_norm = np.where(count > 0, mean_norm, norms[np.arange(b)[:, None], start])
        vec = cen * mean_norm[..., None]
        scale = np.abs(vec).max(axis=2) / 127.0
        scale[scale == 0] = 1.0
        codes[idx] = np.clip(np.rint(vec / scale[..., None]), -127, 127).astype(np.int8)
        scales[idx] = scale
    return codes, scales


class CentroidTable:
    """In-memory per-document centroids (see :func:`doc_centroids`), by seq: ``codes (n, C, dim)`` int8 and
    ``scales (n, C)`` float32, seqs ascending (seqs only grow, so writes append). Rows of deleted documents stay
    until the next reload (they are never looked up: candidates are live documents)."""

    def __init__(self, dim: int, n_centroids: int = N_CENTROIDS) -> None:
        self.dim = dim
        self.n = 0
        self.seqs = np.zeros(0, dtype=np.int64)
        self.codes = np.zeros((0, n_centroids, dim), dtype=np.int8)
        self.scales = np.zeros((0, n_centroids), dtype=np.float32)
        #: The index's ``centroids_epoch`` when the rows were read (see :func:`read_centroids`).
        self.epoch = "0"

    @property
    def nbytes(self) -> int:
        return int(self.seqs.nbytes + self.codes.nbytes + self.scales.nbytes)

    def append(self, seqs: npt.NDArray[np.int64], codes: npt.NDArray[np.int8], scales: npt.NDArray[np.float32]) -> None:
        """Add rows ``seqs (m,)`` (all above the last seq held), ``codes (m, C, dim)``, ``scales (m, C)``."""
        m = seqs.size
        if m == 0:
            return
        if self.n and seqs[0] <= self.seqs[self.n - 1]:
            raise ValueError("centroid rows must be appended in ascending seq order")
        if self.n + m > self.seqs.size:
            cap = max(self.n + m, 2 * self.seqs.size, 1024)
            grown_seqs = np.zeros(cap, dtype=np.int64)
            grown_codes = np.zeros((cap, *self.codes.shape[1:]), dtype=np.int8)
            grown_scales = np.zeros((cap, self.scales.shape[1]), dtype=np.float32)
            grown_seqs[: self.n], grown_codes[: self.n], grown_scales[: self.n] = (
                self.seqs[: self.n],
                self.codes[: self.n],
                self.scales[: self.n],
            )
            self.seqs, self.codes, self.scales = grown_seqs, grown_codes, grown_scales
        self.seqs[self.n : self.n + m] = seqs
        self.codes[self.n : self.n + m] = codes
        self.scales[self.n : self.n + m] = scales
        self.n += m

    def retain(self, live: npt.NDArray[np.int64]) -> None:
        """Keep the rows of seqs ``live (m,)`` only (frees those of deleted documents)."""
        keep = np.flatnonzero(np.isin(self.seqs[: self.n], live))
        self.seqs, self.codes, self.scales = self.seqs[keep], self.codes[keep], self.scales[keep]
        self.n = keep.size

    def rows(self, seqs: npt.NDArray[np.int64]) -> npt.NDArray[np.int64] | None:
        """Row of each of ``seqs (u,)``, or ``None`` when any of them has no centroids."""
        held = self.seqs[: self.n]
        pos = np.searchsorted(held, seqs)
        if pos.size and (pos.max() >= self.n or not np.array_equal(held[pos], seqs)):
            return None
        return pos

    def similarities(
        self,
        rows: npt.NDArray[np.int64],
        q: npt.NDArray[np.float32],
        q8: tuple[npt.NDArray[np.float32], npt.NDArray[np.int8]] | None = None,
    ) -> npt.NDArray[np.float32]:
        """``(u, n_q)``: for the documents at ``rows (u,)`` and each query token of ``q (n_q, dim)``, the highest dot
        product with one of the document's centroids.

        An int8 product (the query rounded to int8 per token, as in
        :func:`~colbert_adapters.scoring.maxsim_int8_estimate`; within 0.003 of float32 on unit vectors); float32
        where torch's int8 product is missing. ``q8``: the query's ``quantise_int8``, if the caller has it.
        """
        c = self.codes.shape[1]
        gathered = self.codes[rows].reshape(-1, self.dim)  # (u * C, dim)
        sims: npt.NDArray[np.float32] | None = None
        torch = torch_module()
        if torch is not False and hasattr(torch, "_int_mm") and gathered.shape[0]:
            q_scales, q_codes = q8 if q8 is not None else quantise_int8(q)
            try:
                with torch_threads(1):
                    prod = torch._int_mm(torch.from_numpy(gathered), torch.from_numpy(q_codes).T).numpy()
                sims = prod.astype(np.float32)
                sims *= q_scales[None, :]
            except RuntimeError:  # pragma: no cover - a torch build without the CPU int8 product
                sims = None
        if sims is None:
            sims = gathered.astype(np.float32) @ q.T  # (u * C, n_q)
        sims *= self.scales[rows].reshape(-1, 1)
        best = sims[0::c]
        for j in range(1, c):
            np.maximum(best, sims[j::c], out=best)
        return best


def read_centroids(
    conn: sqlite3.Connection, old: CentroidTable | None, dim: int | None, epoch: str, n_docs: int, root: Path
) -> CentroidTable | None:
    """The stored per-document centroids of index ``root``, reusing ``old`` (the table held so far) when it can.

    A reload after another process's commit reads only the rows added since (seqs only grow), unless a backfill
    (``centroids_epoch`` changed) added older ones, or rows of deleted documents make up half the table. An index
    written before centroids has none (the approximate score then counts only retrieved similarities).
    """
    if not dim:
        return None
    incremental = old is not None and old.dim == dim and old.epoch == epoch and old.n <= 2 * n_docs + 1024
    table = old if incremental and old is not None else CentroidTable(dim)
    table.epoch = epoch
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'centroids'").fetchone():
        return table
    last = int(table.seqs[table.n - 1]) if table.n else -1
    rows = conn.execute("SELECT seq, scales, codes FROM centroids WHERE seq > ? ORDER BY seq", (last,)).fetchall()
    if not rows:
        return table
    c = table.codes.shape[1]
    scales = bytearray().join(r[1] for r in rows)
    codes = bytearray().join(r[2] for r in rows)
    if len(scales) != len(rows) * c * 4 or len(codes) != len(rows) * c * dim:
        logger.warning("centroids of %s have an unexpected size; the approximate score ignores them", root)
        return table
    table.append(
        np.array([r[0] for r in rows], dtype=np.int64),
        np.frombuffer(codes, dtype=np.int8).reshape(len(rows), c, dim),
        np.frombuffer(scales, dtype=F32).reshape(len(rows), c),
    )
    return table


def backfill_centroids(
    db: Database, dim: int | None, vector_dtype: str, vector_cols: str, root: Path, crc_cols: str = "NULL, NULL"
) -> bool:
    """Compute the centroids of documents stored without them (an index written by an older version), one
    transaction per chunk (a crash keeps what was committed), and drop those of documents that no longer exist.

    Returns:
        Whether centroids were added (the caller then reloads its state).
    """
    conn = db.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(CENTROIDS_SCHEMA)
        conn.execute("DELETE FROM centroids WHERE seq NOT IN (SELECT seq FROM docs)")
        missing = [
            r[0] for r in conn.execute("SELECT seq FROM docs WHERE seq NOT IN (SELECT seq FROM centroids) ORDER BY seq")
        ]
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise
    if not missing or not dim:
        return False
    logger.info("computing the centroids of %d documents stored without them in %s", len(missing), root)
    for start in range(0, len(missing), FETCH_CHUNK):
        chunk = json.dumps(missing[start : start + FETCH_CHUNK])
        rows = conn.execute(
            f"SELECT seq, n_tokens, {vector_cols}, {crc_cols} FROM docs WHERE seq IN (SELECT value FROM json_each(?))",
            (chunk,),
        ).fetchall()
        for seq, _, blob, res, vcrc, rcrc in rows:
            check_blob(blob, vcrc, f"the stored vectors of document seq {seq} in {root}")
            check_blob(res, rcrc, f"the stored residuals of document seq {seq} in {root}")
        arrays = [decode_vectors(blob, n_tok, dim, vector_dtype, res) for _, n_tok, blob, res, _, _ in rows]
        codes, scales = doc_centroids(arrays)
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                "INSERT INTO centroids VALUES (?, ?, ?)",
                [(r[0], scales[i].tobytes(), codes[i].tobytes()) for i, r in enumerate(rows)],
            )
            # Rows below the newest seq: readers reload the whole table rather than what follows their last.
            epoch = conn.execute("SELECT value FROM meta WHERE key = 'centroids_epoch'").fetchone()
            bumped = str(int(epoch[0]) + 1 if epoch else 1)
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('centroids_epoch', ?)", (bumped,))
            conn.execute("COMMIT")
        except BaseException:
            rollback(conn)
            raise
    return True
