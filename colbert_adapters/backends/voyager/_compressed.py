"""The compressed token store of ``compression="2bit"`` / ``"4bit"`` indexes: codec and segment files.

A compressed index keeps no HNSW graph over its tokens. Its sealed segments are directories of memory-mapped
``.npy`` files (opened with ``np.load(mmap_mode="r")``: opening costs O(1) time and memory, pages are read as
searches touch them), written once under a temporary name, fsync'ed and renamed into place before the SQLite
transaction that references them commits (the same protocol as the HNSW segment files)::

    seg-NNNNNN.plaid/
        docs.npy       int64 (n_docs, 2): seq and first label of each document, seqs ascending
        offsets.npy    int64 (n_docs + 1,): the documents' token rows
        codes.npy      uint16 / uint32 (n_tokens,): each token's centroid id
        residuals.npy  uint8 (n_tokens, dim * nbits / 8): each token's packed residual buckets
        ivf_ptr.npy    int64 (n_centroids + 1,): inverted lists, centroid -> ``ivf_docs[ptr[c]:ptr[c + 1]]``
        ivf_docs.npy   int32 (n_pairs,): the documents (row of docs.npy) with a token on each centroid

The codec (``colbert_adapters._residual``) is one directory ``codec-NNNNNN/`` (``centroids.npy``, ``buckets.npy``:
cut-offs then weights per component) named, with its statistics, by the ``codec`` row of ``meta``. The codebook
only grows (new centroids for tokens far from every centroid, appended when a seal finds them), and a new codebook
is a new directory committed with the seal that needs it, so codes in older segments stay valid.

Deleted and replaced documents stay in their segment's files as tombstones (their labels map to no document in
``IndexState.label_seq``) until a merge or ``compact()`` rewrites the segment without them. Documents of the
mutable segment are stored as int8 rows in SQLite, as in every index; the seal that moves them into a compressed
segment empties their SQLite blob.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..._residual import COMPRESSIONS, ResidualCodec
from ...errors import IndexCorruptedError
from .._files import fsync_dir

__all__ = [
    "CODEC_DIR",
    "SEGMENT_FILES",
    "CompressedSegment",
    "codec_meta",
    "dir_crc",
    "is_compressed_file",
    "load_codec",
    "write_codec",
    "write_segment",
]

logger = logging.getLogger("colbert_adapters.backends.voyager")

#: The files of a compressed segment directory, in the order its checksum covers them.
SEGMENT_FILES = ("docs.npy", "offsets.npy", "codes.npy", "residuals.npy", "ivf_ptr.npy", "ivf_docs.npy")
#: Name pattern of a codec directory (``codec-NNNNNN``).
CODEC_DIR = "codec-{:06d}"


def is_compressed_file(name: str) -> bool:
    """Whether a segment's file name is a compressed segment directory (``seg-NNNNNN.plaid``)."""
    return name.endswith(".plaid")


def _load(path: Path) -> npt.NDArray[Any]:
    return np.load(path, mmap_mode="r", allow_pickle=False)


class CompressedSegment:
    """A compressed segment's arrays, memory-mapped (read-only; see the module docstring for the files)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            docs = _load(path / "docs.npy")
            self.doc_seqs: npt.NDArray[np.int64] = docs[:, 0]
            self.doc_labels: npt.NDArray[np.int64] = docs[:, 1]
            self.offsets: npt.NDArray[np.int64] = _load(path / "offsets.npy")
            self.codes: npt.NDArray[Any] = _load(path / "codes.npy")
            self.residuals: npt.NDArray[np.uint8] = _load(path / "residuals.npy")
            self.ivf_ptr: npt.NDArray[np.int64] = _load(path / "ivf_ptr.npy")
            self.ivf_docs: npt.NDArray[np.int32] = _load(path / "ivf_docs.npy")
        except (OSError, ValueError) as err:
            raise IndexCorruptedError(f"compressed segment {path} cannot be loaded: {err}") from err
        if self.offsets.shape[0] != self.doc_seqs.shape[0] + 1 or self.codes.shape[0] != self.residuals.shape[0]:
            raise IndexCorruptedError(f"compressed segment {path} has inconsistent array sizes; restore a backup")

    @property
    def n_docs(self) -> int:
        return int(self.doc_seqs.shape[0])

    @property
    def n_tokens(self) -> int:
        return int(self.codes.shape[0])

    def live(self, label_seq: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        """``(n_docs,)``: which of the segment's documents are live (their first label still maps to them)."""
        return label_seq[self.doc_labels] == self.doc_seqs

    def rows(self, local: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Token rows of the documents at positions ``local``: ``(row indices (T,), offsets (len(local) + 1,))``."""
        starts = np.asarray(self.offsets[local], dtype=np.int64)
        lens = np.asarray(self.offsets[local + 1], dtype=np.int64) - starts
        offs = np.zeros(local.size + 1, dtype=np.int64)
        np.cumsum(lens, out=offs[1:])
        return np.repeat(starts - offs[:-1], lens) + np.arange(int(offs[-1]), dtype=np.int64), offs

    def locate(self, seqs: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64]]:
        """For ``seqs``: whether each is in this segment, and its position there (meaningless where not)."""
        if self.n_docs == 0:
            return np.zeros(seqs.size, dtype=bool), np.zeros(seqs.size, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.doc_seqs, seqs), self.n_docs - 1)
        return np.asarray(self.doc_seqs[pos] == seqs), pos.astype(np.int64)


def write_segment(
    root: Path,
    name: str,
    n_centroids: int,
    seqs: npt.NDArray[np.int64],
    first_labels: npt.NDArray[np.int64],
    lens: npt.NDArray[np.int64],
    codes: npt.NDArray[Any],
    residuals: npt.NDArray[np.uint8],
) -> tuple[CompressedSegment, int]:
    """Write segment directory ``name`` atomically (documents in ascending seq order) and open it.

    Returns:
        ``(the segment, the CRC-32 of its files)``.
    """
    order = np.argsort(seqs, kind="stable")
    if not np.array_equal(order, np.arange(seqs.size)):
        raise ValueError("documents must come in ascending seq order")
    offsets = np.zeros(lens.size + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    doc_of_token = np.repeat(np.arange(lens.size, dtype=np.int64), lens)
    pairs = np.unique(np.asarray(codes, dtype=np.int64) * max(1, lens.size) + doc_of_token)
    pair_codes = pairs // max(1, lens.size)
    ivf_ptr = np.zeros(n_centroids + 1, dtype=np.int64)
    np.cumsum(np.bincount(pair_codes, minlength=n_centroids), out=ivf_ptr[1:])
    arrays = {
        "docs.npy": np.stack([seqs, first_labels], axis=1).astype(np.int64),
        "offsets.npy": offsets,
        "codes.npy": np.ascontiguousarray(codes),
        "residuals.npy": np.ascontiguousarray(residuals, dtype=np.uint8),
        "ivf_ptr.npy": ivf_ptr,
        "ivf_docs.npy": (pairs % max(1, lens.size)).astype(np.int32),
    }
    crc = _write_dir(root, name, arrays, SEGMENT_FILES)
    return CompressedSegment(root / name), crc


def _write_dir(root: Path, name: str, arrays: dict[str, npt.NDArray[Any]], order: Sequence[str]) -> int:
    """Write ``arrays`` as ``.npy`` files into a temporary directory, fsync them, rename it to ``root / name``;
    returns the CRC-32 of the files' bytes in ``order``."""
    tmp = root / f".{name}.{uuid.uuid4().hex}.tmp"
    tmp.mkdir()
    try:
        for fname in order:
            with open(tmp / fname, "wb") as f:
                np.save(f, arrays[fname], allow_pickle=False)
                f.flush()
                os.fsync(f.fileno())
        fsync_dir(tmp)
        crc = dir_crc(tmp, order)
        os.replace(tmp, root / name)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    fsync_dir(root)
    return crc


def dir_crc(path: Path, order: Sequence[str] = SEGMENT_FILES) -> int:
    """CRC-32 of the files ``order`` of directory ``path``, one after the other."""
    crc = 0
    for fname in order:
        with open(path / fname, "rb") as f:
            while chunk := f.read(4 << 20):
                crc = zlib.crc32(chunk, crc)
    return crc


def write_codec(root: Path, cid: int, codec: ResidualCodec) -> str:
    """Write ``codec`` as directory ``codec-<cid>`` (atomically); returns its name."""
    name = CODEC_DIR.format(cid)
    buckets = np.concatenate([codec.cutoffs, codec.weights], axis=1)
    _write_dir(root, name, {"centroids.npy": codec.centroids, "buckets.npy": buckets}, ("centroids.npy", "buckets.npy"))
    return name


def codec_meta(name: str, codec: ResidualCodec) -> str:
    """The ``meta`` row (JSON) naming codec directory ``name`` with its statistics."""
    return json.dumps(
        {"dir": name, "nbits": codec.nbits, "train_error": codec.train_error, "outlier_norm": codec.outlier_norm}
    )


def load_codec(root: Path, meta_value: str) -> ResidualCodec:
    """The codec a ``meta`` ``codec`` row names (its centroids memory-mapped).

    Raises:
        IndexCorruptedError: the row or the files are damaged.
    """
    try:
        info = json.loads(meta_value)
        name = str(info["dir"])
        if not name.startswith("codec-") or "/" in name or "\\" in name or name.startswith("."):
            raise ValueError(f"not a codec directory name: {name!r}")
        nbits = int(info["nbits"])
        if nbits not in COMPRESSIONS.values():
            raise ValueError(f"unsupported bits per component {nbits}")
        centroids = _load(root / name / "centroids.npy")
        buckets = np.asarray(_load(root / name / "buckets.npy"))
        levels = 1 << nbits
        if buckets.shape != (centroids.shape[1], 2 * levels - 1):
            raise ValueError(f"buckets of shape {buckets.shape} for {centroids.shape[1]}-d {nbits}-bit codes")
        return ResidualCodec(
            centroids,
            np.ascontiguousarray(buckets[:, : levels - 1]),
            np.ascontiguousarray(buckets[:, levels - 1 :]),
            nbits,
            float(info["train_error"]),
            float(info["outlier_norm"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise IndexCorruptedError(f"the codec of the compressed index {root} cannot be loaded: {err}") from err


def remove_dir(path: Path) -> None:
    """Delete a segment or codec directory (or a stray file), ignoring one already gone."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@dataclass
class Encoded:
    """Documents encoded for a compressed segment: seqs ascending, their first labels, token counts, codes and
    packed residuals (rows in document order)."""

    seqs: npt.NDArray[np.int64]
    first_labels: npt.NDArray[np.int64]
    lens: npt.NDArray[np.int64]
    codes: npt.NDArray[Any]
    residuals: npt.NDArray[np.uint8]
