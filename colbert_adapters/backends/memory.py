"""Exact in-memory backend: brute-force MaxSim with numpy.

:class:`MemoryBackend` keeps every document in process memory and scores all candidates exactly with
:func:`colbert_adapters.scoring.maxsim_flat`. It suits small collections (up to roughly a million token
vectors), tests, and is the oracle every other backend is compared against (``tests/contract.py``).

Persistence is explicit: :meth:`MemoryBackend.save` writes a directory of ``.npy`` arrays and JSON files
(never pickle), and :meth:`MemoryBackend.load` reads it back.

Example:
    >>> import numpy as np
    >>> from colbert_adapters.backends.memory import MemoryBackend
    >>> backend = MemoryBackend(dim=2)
    >>> backend.upsert(["a", "b"], [np.array([[1.0, 0.0]]), np.array([[0.0, 1.0], [0.6, 0.8]])],
    ...                texts=["first", "second"], metadatas=[{"lang": "en"}, {"lang": "fr"}])
    >>> [(h.id, round(h.score, 2)) for h in backend.search(np.array([[0.0, 1.0]]), k=2)]
    [('b', 1.0), ('a', 0.0)]
    >>> [h.id for h in backend.search(np.array([[0.0, 1.0]]), k=2, filter={"lang": "en"})]
    ['a']
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt

from .._filters import check_filter, match_filter
from .._validation import as_multivector, check_ids, check_k, check_upsert_batch
from ..errors import ColBERTError, CollectionConfigError, DimensionMismatchError, IndexCorruptedError, InvalidInputError
from ..scoring import maxsim_flat
from ..types import Filter, Hit, Metadata, MultiVector
from ._files import check_manifest_crc, file_crc32, fsync_dir, with_manifest_crc, write_atomic
from ._fts import TextIndex
from .base import Record, VerifyReport

__all__ = ["MemoryBackend"]

logger = logging.getLogger(__name__)

_FORMAT = "colbert-adapters/memory-index"
_FORMAT_VERSION = 1
_MANIFEST = "manifest.json"
_GENERATION_FILE = re.compile(r"^(vectors|offsets|docs)\.[0-9a-f]{32}\.(npy|json)$")


@dataclass(slots=True)
class _Doc:
    vectors: npt.NDArray[np.float32]
    text: str | None
    metadata: dict[str, Any]


class MemoryBackend:
    """Exact brute-force MaxSim over documents held in memory.

    Implements the :class:`~colbert_adapters.backends.base.Backend` protocol. Token vectors are kept per
    document and concatenated into one contiguous ``(n_total_tokens, dim)`` float32 matrix on the first
    search after a write, so searches run one chunked matrix product over all tokens.

    All public methods are thread-safe (one re-entrant lock).

    Args:
        dim: dimension of the token vectors; ``None`` fixes it at the first :meth:`upsert`.
        model_id: identifier of the encoder that produced the vectors; stored by :meth:`save` so a reloaded
            index can refuse queries from another model
            (see :class:`~colbert_adapters.store.MultiVectorStore`).

    Raises:
        InvalidInputError: ``dim`` is not a positive int.
    """

    def __init__(self, dim: int | None = None, *, model_id: str | None = None) -> None:
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1):
            raise InvalidInputError(f"dim must be a positive int or None, got {dim!r}")
        if model_id is not None and not isinstance(model_id, str):
            raise InvalidInputError(f"model_id must be a str or None, got {type(model_id).__name__}")
        self._dim: int | None = None if dim is None else int(dim)
        self.model_id: str | None = model_id
        self._docs: dict[str, _Doc] = {}
        self._lock = threading.RLock()
        self._closed = False
        # Concatenation cache, rebuilt lazily after writes: ids in insertion order, flat tokens, offsets.
        self._cache: tuple[list[str], npt.NDArray[np.float32], npt.NDArray[np.int64]] | None = None
        self._texts = TextIndex()  # BM25 over the texts (lexical_search), written with the documents

    # ------------------------------------------------------------------------------------------ protocol

    @property
    def dim(self) -> int | None:
        """Dimension of the stored token vectors, or ``None`` before the first upsert (when not given)."""
        return self._dim

    def upsert(
        self,
        ids: Sequence[str],
        vectors: Sequence[MultiVector],
        texts: Sequence[str | None] | None = None,
        metadatas: Sequence[Metadata | None] | None = None,
    ) -> None:
        """Insert or replace documents; the whole batch is validated before anything is written.

        Args:
            ids: ``n`` unique, non-empty ids. An existing id is replaced completely.
            vectors: ``n`` array-likes of shape ``(n_tokens_i, dim)``, finite; stored as float32 copies.
            texts: ``n`` texts (``str`` or ``None``), or ``None``.
            metadatas: ``n`` JSON-serialisable dicts (or ``None`` entries), or ``None``; stored as deep
                copies.

        Raises:
            InvalidInputError: bad ids, lengths, texts, metadata, or vectors (empty, ragged, NaN/inf).
            DimensionMismatchError: a vector's dimension differs from the backend's (or from the batch's).
        """
        with self._lock:
            self._check_open()
            id_list, text_list, meta_list = check_upsert_batch(ids, vectors, texts, metadatas)
            n = len(id_list)
            dim = self._dim
            arrays: list[npt.NDArray[np.float32]] = []
            for i, v in enumerate(vectors):
                try:
                    arr = as_multivector(v, dim=dim, where=f"vectors[{i}]")
                except DimensionMismatchError as err:
                    if self._dim is None:  # the batch disagrees with its own first item
                        raise DimensionMismatchError(
                            f"vectors[{i}] has dimension {np.shape(v)[-1]} but vectors[0] has {dim}; "
                            "all documents must come from the same encoder"
                        ) from err
                    raise
                dim = arr.shape[1]
                # as_multivector may return the caller's array (or a view of it): copy so later edits by the
                # caller cannot change the stored vectors.
                arrays.append(arr.copy() if arr is v or not arr.flags.owndata else arr)
            if n == 0:
                return
            # Validated: write.
            self._texts.put(id_list, text_list)
            for doc_id, arr, text, meta in zip(id_list, arrays, text_list, meta_list, strict=True):
                self._docs.pop(doc_id, None)  # a replaced document counts as newly inserted
                self._docs[doc_id] = _Doc(arr, text, copy.deepcopy(meta))
            if self._dim is None:
                self._dim = dim
                logger.debug("MemoryBackend dimension fixed to %d by the first upsert", dim)
            self._cache = None

    def delete(self, ids: Sequence[str]) -> int:
        """Remove documents by id; unknown ids are ignored.

        Args:
            ids: ids to remove (duplicates are counted once).

        Returns:
            The number of documents removed.

        Raises:
            InvalidInputError: ``ids`` is not a sequence of non-empty ``str``.
        """
        with self._lock:
            self._check_open()
            removed = 0
            unique = list(dict.fromkeys(check_ids(ids, allow_duplicates=True)))
            for doc_id in unique:
                if self._docs.pop(doc_id, None) is not None:
                    removed += 1
            self._texts.remove(unique)
            if removed:
                self._cache = None
            return removed

    def delete_where(self, filter: Filter) -> int:
        """Remove every document matching a metadata filter (the forms of :meth:`search`); returns the count.

        Raises:
            InvalidInputError: an empty or malformed filter (:meth:`clear` deletes everything).
        """
        flt = check_filter(filter)
        if flt is None:
            raise InvalidInputError("delete_where needs a non-empty filter (clear() deletes everything)")
        with self._lock:
            self._check_open()
            doomed = [doc_id for doc_id, doc in self._docs.items() if match_filter(doc.metadata, flt)]
            for doc_id in doomed:
                del self._docs[doc_id]
            self._texts.remove(doomed)
            if doomed:
                self._cache = None
            return len(doomed)

    def get(self, ids: Sequence[str], *, with_vectors: bool = False) -> list[Record]:
        """Fetch stored documents in the order asked, skipping unknown ids.

        Args:
            ids: ids to fetch.
            with_vectors: include a copy of each document's float32 ``(n_tokens, dim)`` vectors.

        Returns:
            One :class:`~colbert_adapters.backends.base.Record` per known id.

        Raises:
            InvalidInputError: ``ids`` is not a sequence of non-empty ``str``.
        """
        with self._lock:
            self._check_open()
            out: list[Record] = []
            for doc_id in check_ids(ids, allow_duplicates=True):
                doc = self._docs.get(doc_id)
                if doc is None:
                    continue
                out.append(
                    Record(
                        id=doc_id,
                        text=doc.text,
                        metadata=copy.deepcopy(doc.metadata),
                        vectors=doc.vectors.copy() if with_vectors else None,
                    )
                )
            return out

    def search(self, query_vectors: MultiVector, k: int = 10, filter: Filter | None = None) -> list[Hit]:
        """Exact top-``k`` documents by MaxSim.

        Args:
            query_vectors: float32 array-like ``(n_query_tokens, dim)``.
            k: number of hits (>= 1); more than the number of matching documents returns them all.
            filter: a metadata filter restricting candidates (``{"field": value}``, ``{"field": [v1, v2]}``,
                ``{"year": {"$gte": 2020}}``, ``{"$or": [...]}``; see ``MultiVectorStore.search``).

        Returns:
            Up to ``k`` hits by descending score; ties keep insertion order (a replaced document counts as
            newly inserted). An empty backend returns ``[]``.

        Raises:
            InvalidInputError: bad query, ``k`` or filter.
            DimensionMismatchError: the query's dimension differs from the stored vectors'.
        """
        k = check_k(k)
        flt = check_filter(filter)
        with self._lock:
            self._check_open()
            q = as_multivector(query_vectors, dim=self._dim, where="query_vectors")
            if not self._docs:
                return []
            order, flat, offsets = self._index()
            if flt is None:
                candidates = np.arange(len(order))
                scores = maxsim_flat(q, flat, offsets, validate=False)
            else:
                candidates = np.array(
                    [i for i, doc_id in enumerate(order) if match_filter(self._docs[doc_id].metadata, flt)],
                    dtype=np.int64,
                )
                if candidates.size == 0:
                    return []
                if candidates.size * 2 >= len(order):
                    scores = maxsim_flat(q, flat, offsets, validate=False)[candidates]
                else:  # selective filter: score only the matching documents
                    docs = [self._docs[order[i]].vectors for i in candidates.tolist()]
                    sub_offsets = np.zeros(len(docs) + 1, dtype=np.int64)
                    np.cumsum([d.shape[0] for d in docs], out=sub_offsets[1:])
                    scores = maxsim_flat(q, np.concatenate(docs), sub_offsets, validate=False)
            top = _top_k(scores, k)
            hits: list[Hit] = []
            for j in top.tolist():
                doc_id = order[int(candidates[j])]
                doc = self._docs[doc_id]
                hits.append(Hit(id=doc_id, score=float(scores[j]), text=doc.text, metadata=copy.deepcopy(doc.metadata)))
            return hits

    def lexical_search(
        self, query: str, k: int = 10, filter: Filter | None = None, *, ids: Sequence[str] | None = None
    ) -> list[Hit]:
        """Top ``k`` documents by BM25 of their texts against the words of ``query`` (SQLite FTS5, in memory).

        Args:
            query: the query text; its words are matched (any of them), stemmed, case and accents folded.
            k: number of hits (>= 1).
            filter: a metadata filter, as for :meth:`search`.
            ids: only these documents.

        Returns:
            Up to ``k`` hits by descending BM25 score (``-bm25()`` of FTS5, higher is better); documents without
            text or without a query word are never returned.

        Raises:
            InvalidInputError: bad ``query``, ``k``, filter or ids.
        """
        k = check_k(k)
        flt = check_filter(filter)
        subset = None if ids is None else check_ids(ids, allow_duplicates=True)
        if not isinstance(query, str):
            raise InvalidInputError(f"query must be a str, got {type(query).__name__}")
        with self._lock:
            self._check_open()
            hits: list[Hit] = []
            for score, doc_id in self._texts.search(query, ids=subset, limit=None if flt else k):
                doc = self._docs[doc_id]
                if flt is None or match_filter(doc.metadata, flt):
                    hits.append(Hit(doc_id, score, doc.text, copy.deepcopy(doc.metadata)))
                    if len(hits) == k:
                        break
            return hits

    def count(self) -> int:
        """Number of stored documents."""
        with self._lock:
            return len(self._docs)

    def close(self) -> None:
        """Release the stored data; later calls raise :class:`~colbert_adapters.errors.ColBERTError`.

        Idempotent. Call :meth:`save` first to keep the data.
        """
        with self._lock:
            if not self._closed:
                self._texts.close()
            self._closed = True
            self._docs = {}
            self._cache = None

    # ------------------------------------------------------------------------------------------ extras

    def __len__(self) -> int:
        return self.count()

    def __contains__(self, doc_id: object) -> bool:
        with self._lock:
            return isinstance(doc_id, str) and doc_id in self._docs

    def ids(self) -> list[str]:
        """The stored ids in insertion order (a snapshot taken when called)."""
        with self._lock:
            return list(self._docs)

    def clear(self) -> None:
        """Remove every document. The dimension stays fixed."""
        with self._lock:
            self._check_open()
            self._docs.clear()
            self._texts.clear()
            self._cache = None

    def __enter__(self) -> MemoryBackend:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MemoryBackend(dim={self._dim}, count={len(self._docs)}, model_id={self.model_id!r})"

    # ------------------------------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the index to a directory, atomically; no pickle is involved.

        The directory holds ``manifest.json`` (format, version, dim, count, ``model_id`` and the data file
        names), ``vectors.<gen>.npy`` (float32 ``(n_total_tokens, dim)``), ``offsets.<gen>.npy`` (int64
        ``(n_docs + 1,)``) and ``docs.<gen>.json`` (ids, texts, metadatas). Data files are written under a
        fresh generation name, then the manifest is swapped in with ``os.replace``: a reader (or a crash)
        sees either the old index or the new one, never a mix. Files of the previous generation are removed
        afterwards.

        Args:
            path: target directory; created if missing. An existing directory must be empty or hold a
                memory index (which is overwritten).

        Returns:
            The directory as a :class:`~pathlib.Path`.

        Raises:
            CollectionConfigError: ``path`` is a file, or a non-empty directory that is not a memory index.
        """
        target = Path(path)
        with self._lock:
            self._check_open()
            if target.exists() and not target.is_dir():
                raise CollectionConfigError(f"{target} exists and is not a directory; pass a directory path")
            old_files: list[str] = []
            if target.is_dir():
                if (target / _MANIFEST).is_file():
                    old_files = [n for n in os.listdir(target) if _GENERATION_FILE.match(n)]
                elif any(target.iterdir()):
                    raise CollectionConfigError(
                        f"{target} is a non-empty directory without a {_MANIFEST}; refusing to overwrite it. "
                        "Save to an empty or new directory"
                    )
            target.mkdir(parents=True, exist_ok=True)
            order = list(self._docs)
            if order:
                _, flat, offsets = self._index()
            else:
                flat = np.zeros((0, self._dim or 0), dtype=np.float32)
                offsets = np.zeros(1, dtype=np.int64)
            gen = uuid.uuid4().hex
            files = {
                "vectors": f"vectors.{gen}.npy",
                "offsets": f"offsets.{gen}.npy",
                "docs": f"docs.{gen}.json",
            }
            write_atomic(target / files["vectors"], lambda f: np.save(f, flat, allow_pickle=False))
            write_atomic(target / files["offsets"], lambda f: np.save(f, offsets, allow_pickle=False))
            docs_json = {
                "ids": order,
                "texts": [self._docs[i].text for i in order],
                "metadatas": [self._docs[i].metadata for i in order],
            }
            write_atomic(target / files["docs"], lambda f: f.write(_json_bytes(docs_json)))
            checksums = {name: file_crc32(target / name) for name in files.values()}
            manifest = {
                "format": _FORMAT,
                "format_version": _FORMAT_VERSION,
                "dim": self._dim,
                "count": len(order),
                "n_tokens": int(flat.shape[0]),
                "model_id": self.model_id,
                "files": files,
                "crc32": checksums,
            }
            write_atomic(target / _MANIFEST, lambda f: f.write(_json_bytes(with_manifest_crc(manifest))))
            fsync_dir(target)
            for name in old_files:
                if name not in files.values():
                    with contextlib.suppress(FileNotFoundError):  # removed concurrently
                        (target / name).unlink()
            logger.info("saved MemoryBackend (%d documents, %d tokens) to %s", len(order), flat.shape[0], target)
            return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> MemoryBackend:
        """Read an index written by :meth:`save`.

        Args:
            path: the directory given to :meth:`save`.

        Returns:
            A new :class:`MemoryBackend` with the same documents, insertion order, dimension and ``model_id``.

        Raises:
            CollectionConfigError: ``path`` is not a memory index, was written by an unsupported format
                version, or its files are missing or inconsistent.
            IndexCorruptedError: a file does not match the checksum :meth:`save` recorded.
        """
        root = Path(path)
        manifest_path = root / _MANIFEST
        if not manifest_path.is_file():
            raise CollectionConfigError(
                f"{root} is not a MemoryBackend index (no {_MANIFEST}); pass a directory written by "
                "MemoryBackend.save()"
            )
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise CollectionConfigError(f"{manifest_path} is not valid JSON ({err}); the index is corrupted") from err
        if not isinstance(manifest, dict) or manifest.get("format") != _FORMAT:
            raise CollectionConfigError(
                f"{root} holds a {_MANIFEST} that is not a MemoryBackend index manifest (expected format {_FORMAT!r})"
            )
        check_manifest_crc(manifest, manifest_path)
        version = manifest.get("format_version")
        if version != _FORMAT_VERSION:
            raise CollectionConfigError(
                f"{root} uses memory index format version {version!r}; this version of colbert-adapters "
                f"reads version {_FORMAT_VERSION}. Upgrade colbert-adapters or re-create the index"
            )
        try:
            files = manifest["files"]
            dim = manifest["dim"]
            for name, crc in (manifest.get("crc32") or {}).items():  # saved before checksums: none recorded
                if file_crc32(root / str(name)) != crc:
                    raise IndexCorruptedError(
                        f"{root / str(name)} does not match its checksum: the saved index is damaged. Restore it "
                        "from a backup, or save the documents again"
                    )
            flat = np.load(root / files["vectors"], allow_pickle=False)
            offsets = np.load(root / files["offsets"], allow_pickle=False)
            docs = json.loads((root / files["docs"]).read_text(encoding="utf-8"))
            ids, texts, metadatas = docs["ids"], docs["texts"], docs["metadatas"]
        except IndexCorruptedError:
            raise
        except (KeyError, TypeError, OSError, ValueError) as err:
            raise CollectionConfigError(f"{root} is an incomplete or corrupted MemoryBackend index: {err}") from err
        n = len(ids) if isinstance(ids, list) else -1
        problems: list[str] = []
        if not (dim is None or (isinstance(dim, int) and dim >= 1)):
            problems.append(f"dim {dim!r}")
        if n < 0 or not isinstance(texts, list) or not isinstance(metadatas, list):
            problems.append("docs file lists")
        elif len(texts) != n or len(metadatas) != n or manifest.get("count") != n:
            problems.append(
                f"{n} ids but {len(texts)} texts, {len(metadatas)} metadatas, count {manifest.get('count')}"
            )
        if flat.dtype != np.float32 or flat.ndim != 2 or (n > 0 and flat.shape[1] != dim):
            problems.append(f"vectors array {flat.dtype} {flat.shape} for dim {dim}")
        if offsets.ndim != 1 or offsets.shape[0] != max(n, 0) + 1 or not np.issubdtype(offsets.dtype, np.integer):
            problems.append(f"offsets array {offsets.dtype} {offsets.shape} for {n} documents")
        elif offsets[0] != 0 or offsets[-1] != flat.shape[0] or (n > 0 and not (np.diff(offsets) > 0).all()):
            problems.append("offsets do not partition the vectors")
        if problems:
            raise CollectionConfigError(f"{root} is an inconsistent MemoryBackend index: " + "; ".join(problems))
        backend = cls(dim=dim, model_id=manifest.get("model_id"))
        if n:
            try:
                backend.upsert(
                    ids,
                    [flat[offsets[i] : offsets[i + 1]] for i in range(n)],
                    texts=texts,
                    metadatas=metadatas,
                )
            except InvalidInputError as err:
                raise CollectionConfigError(f"{root} holds invalid documents: {err}") from err
        logger.info("loaded MemoryBackend (%d documents) from %s", n, root)
        return backend

    def verify(self) -> VerifyReport:
        """Check the documents held in memory (shapes, finite values); a saved copy is checked by :meth:`load`.

        Returns:
            A :class:`~colbert_adapters.backends.base.VerifyReport`.
        """
        with self._lock:
            self._check_open()
            problems = [
                f"document {doc_id!r}: vectors of shape {d.vectors.shape} are not finite {self._dim}-d rows"
                for doc_id, d in self._docs.items()
                if d.vectors.ndim != 2 or d.vectors.shape[1] != self._dim or not np.isfinite(d.vectors).all()
            ]
            tokens = sum(d.vectors.shape[0] for d in self._docs.values())
            return VerifyReport("memory", {"documents": len(self._docs), "tokens": tokens}, problems)

    # ------------------------------------------------------------------------------------------ internals

    def _check_open(self) -> None:
        if self._closed:
            raise ColBERTError("this MemoryBackend is closed; create a new one or MemoryBackend.load() a saved one")

    def _index(self) -> tuple[list[str], npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """(ids in insertion order, flat tokens ``(N, dim)``, offsets ``(n + 1,)``), rebuilt after writes."""
        if self._cache is None:
            order = list(self._docs)
            arrays = [self._docs[i].vectors for i in order]
            offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
            np.cumsum([a.shape[0] for a in arrays], out=offsets[1:])
            flat = np.concatenate(arrays) if arrays else np.zeros((0, self._dim or 0), dtype=np.float32)
            self._cache = (order, flat, offsets)
        return self._cache


def _top_k(scores: npt.NDArray[np.float32], k: int) -> npt.NDArray[np.intp]:
    """Indices of the ``k`` best scores, descending, ties broken by lower index first."""
    n = scores.shape[0]
    if k < n and n > 64:
        # Keep every score >= the k-th best (ties included), then sort just those stably.
        kth = np.partition(scores, n - k)[n - k]
        pool = np.flatnonzero(scores >= kth)
        return pool[np.argsort(-scores[pool], kind="stable")][:k]
    return np.argsort(-scores, kind="stable")[:k]


def _json_bytes(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
