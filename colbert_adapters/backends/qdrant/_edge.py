"""The Qdrant Edge engine: one ``qdrant_edge.EdgeShard`` embedded in the process, on disk, no server.

An Edge index directory holds the shard in ``shard/`` and our manifest in ``colbert_adapters.json``
(format ``colbert-adapters/qdrant-edge``, version 1: the layout, ``model_id``). ``qdrant_edge`` is imported
on use; client filters are converted with :func:`~colbert_adapters.backends.qdrant._filters.to_edge_filter`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from ..._optional import require
from ...errors import ColBERTError, CollectionConfigError, IndexCorruptedError, IndexLockedError, QdrantRequestError
from .._files import MANIFEST_CRC_KEY, check_manifest_crc, file_crc32, with_manifest_crc
from ._engines import Engine, StoredPoint, stored_point
from ._filters import to_edge_filter
from ._points import metadata_path
from ._sparse import SPARSE_NAME, edge_sparse_config
from .config import QdrantCollectionConfig, Schema

logger = logging.getLogger("colbert_adapters.backends.qdrant")

__all__ = ["EDGE_FORMAT", "EDGE_FORMAT_VERSION", "EDGE_META_FILE", "EDGE_SHARD_DIR", "EdgeEngine"]

_T = TypeVar("_T")

EDGE_META_FILE = "colbert_adapters.json"
EDGE_SHARD_DIR = "shard"
EDGE_FORMAT = "colbert-adapters/qdrant-edge"
EDGE_FORMAT_VERSION = 1


def _is_panic(exc: BaseException) -> bool:
    return type(exc).__name__ == "PanicException"


class EdgeEngine(Engine):
    """A Qdrant Edge shard in ``root/shard`` with our metadata in ``root/colbert_adapters.json``.

    Every call into Edge is guarded: Rust panics (``pyo3_runtime.PanicException``, a ``BaseException``) and
    Edge errors become :class:`QdrantRequestError`. Inputs are validated by the backend before they get here,
    because a malformed update that reaches Edge is written to its WAL and then panics again on every load.
    """

    kind = "edge"

    def __init__(self, root: str | os.PathLike[str], *, wal: bool = True) -> None:
        self.root = Path(root)
        self.where = f"Qdrant Edge shard {self.root}"
        self.wal = wal
        self.qe = require("qdrant_edge", extra="qdrant", package="qdrant-edge-py")
        self.shard: Any = None
        if self.root.exists() and not self.root.is_dir():
            raise CollectionConfigError(f"{self.root} exists and is not a directory; pass a directory path")
        #: The shard's files as the last clean close left them: {relative path: [size, crc32]} (see :meth:`close`).
        self._clean_files: dict[str, list[int]] = {}
        #: Modification times of those files when this engine opened them (a file changed since is not verified).
        self._opened_mtimes: dict[str, int] = {}
        if self.exists():
            self._check_clean_files()
            self.shard = self._guard("open the shard", lambda: self.qe.EdgeShard.load(str(self.shard_path)))
            self._forget_clean_files()
        elif self.meta_path.is_file() and self.shard_path.is_dir() and any(self.shard_path.iterdir()):
            # Data without its shard config: opening would start an empty shard beside it.
            raise IndexCorruptedError(
                f"{self.where}: {self.shard_path / 'edge_config.json'} is missing but the shard holds data; the index "
                "is damaged. Restore it from a backup (nothing was changed)"
            )

    @property
    def shard_path(self) -> Path:
        return self.root / EDGE_SHARD_DIR

    @property
    def meta_path(self) -> Path:
        return self.root / EDGE_META_FILE

    def _guard(self, what: str, fn: Callable[[], _T]) -> _T:
        try:
            return fn()
        except ColBERTError:
            raise
        except BaseException as exc:
            if _is_panic(exc):
                raise QdrantRequestError(
                    f"{self.where}: Qdrant Edge panicked while trying to {what} ({exc}). The input passed "
                    "colbert-adapters validation, so this is a bug: please report it"
                ) from exc
            if not isinstance(exc, Exception):
                raise
            msg = str(exc)
            if "WouldBlock" in msg or "lock" in msg.lower():
                raise IndexLockedError(
                    f"{self.where} is open in another QdrantBackend or process ({msg}). Qdrant Edge serves a shard "
                    "to one process and has no read-only mode (opening a shard rewrites its files), so a second "
                    "reader cannot share it: close the other one, search through it, or serve the collection from "
                    "a Qdrant server (QdrantBackend(url=...)) for many readers"
                ) from exc
            raise QdrantRequestError(f"{self.where}: failed to {what}: {msg}") from exc

    def _open(self) -> Any:
        if self.shard is None:
            raise ColBERTError(f"{self.where} is closed or was not created")
        return self.shard

    def exists(self) -> bool:
        return (self.shard_path / "edge_config.json").is_file()

    def create(self, spec: QdrantCollectionConfig, meta: dict[str, Any]) -> None:
        qe = self.qe
        spec = spec.resolved()
        memory = qe.Memory.Cold if spec.on_disk else qe.Memory.Cached
        datatypes = {"float16": qe.VectorStorageDatatype.Float16, "turbo8": qe.VectorStorageDatatype.Turbo8}
        tokens_hnsw = spec.first_stage == "tokens"
        mv_params = qe.EdgeVectorParams(
            size=spec.dim,
            distance=qe.Distance.Dot,
            multivector_config=qe.MultiVectorConfig(comparator=qe.MultiVectorComparator.MaxSim),
            # No graph over the token vectors (they rerank), unless the first stage is their own HNSW.
            hnsw_config=qe.HnswIndexConfig(
                m=(spec.summary_m or 0) if tokens_hnsw else 0,
                ef_construct=spec.summary_ef_construct if tokens_hnsw else 100,
                full_scan_threshold=10_000,
            ),
            datatype=datatypes.get(spec.datatype),
            quantization_config=(
                qe.ScalarQuantizationConfig(
                    type=qe.ScalarType.Int8, quantile=spec.quantization_quantile, always_ram=True
                )
                if spec.quantization == "int8"
                else None
            ),
            memory=memory,
        )
        vectors = {spec.multivector_name: mv_params}
        first = spec.layout().spec
        if first is not None:
            vectors[first.name] = qe.EdgeVectorParams(
                size=first.size,
                distance=qe.Distance.Cosine if first.distance == "cosine" else qe.Distance.Dot,
                multivector_config=(
                    qe.MultiVectorConfig(comparator=qe.MultiVectorComparator.MaxSim) if first.multivector else None
                ),
                hnsw_config=qe.HnswIndexConfig(
                    m=spec.summary_m or 0, ef_construct=spec.summary_ef_construct, full_scan_threshold=10_000
                ),
                datatype=datatypes.get(spec.summary_datatype),
                quantization_config=(
                    qe.BinaryQuantizationConfig(always_ram=True)
                    if spec.summary_quantization == "binary"
                    else qe.ScalarQuantizationConfig(type=qe.ScalarType.Int8, quantile=0.99, always_ram=True)
                    if spec.summary_quantization == "int8"
                    else None
                ),
            )
        cfg = qe.EdgeConfig(vectors=vectors, sparse_vectors=edge_sparse_config(qe, meta), wal_enabled=self.wal)
        if self.root.is_dir() and not self.meta_path.exists():
            foreign = sorted(p.name for p in self.root.iterdir() if p.name != EDGE_SHARD_DIR)
            if foreign or self.shard_path.exists():
                raise CollectionConfigError(
                    f"{self.root} is a non-empty directory ({', '.join(foreign[:3]) or EDGE_SHARD_DIR} ...) that is "
                    "not a colbert-adapters Qdrant Edge index; pass an empty or new directory"
                )
        self.root.mkdir(parents=True, exist_ok=True)
        self.write_meta(meta)
        self.shard = self._guard("create the shard", lambda: qe.EdgeShard.create(str(self.shard_path), cfg))
        for key, kind in spec.payload_indexes.items():
            self.create_payload_index(key, kind)
        self.flush()

    def create_payload_index(self, key: str, kind: str) -> None:
        schema = getattr(self.qe.PayloadSchemaType, kind.capitalize())
        shard = self._open()
        path = metadata_path(key)
        self._guard(
            f"create payload index on {path!r}",
            lambda: shard.update(self.qe.UpdateOperation.create_field_index(path, schema)),
        )

    def payload_index_paths(self) -> set[str] | None:
        shard = self._open()
        info = self._guard("read the shard's payload indexes", shard.info)
        return set((getattr(info, "payload_schema", None) or {}).keys())

    def drop(self) -> None:
        import shutil

        self.close()
        if self.shard_path.exists():
            shutil.rmtree(self.shard_path)
        with contextlib.suppress(FileNotFoundError):
            self.meta_path.unlink()

    def schema(self) -> Schema:
        try:
            cfg = json.loads((self.shard_path / "edge_config.json").read_text(encoding="utf-8"))
            vectors = cfg.get("vectors") or {}
        except (OSError, ValueError) as err:
            raise CollectionConfigError(f"{self.where}: unreadable edge_config.json ({err})") from err
        out: dict[str, dict[str, Any]] = {}
        for name, p in vectors.items():
            mvc = p.get("multivector_config") or None
            out[name] = {
                "size": p.get("size"),
                "distance": str(p.get("distance", "")).lower(),
                "multivector": str(mvc.get("comparator")).lower() if mvc else None,
                "quantized": bool(p.get("quantization_config") or cfg.get("quantization_config")),
            }
        return Schema(vectors=out)

    def read_meta(self) -> dict[str, Any] | None:
        if not self.meta_path.is_file():
            return None
        try:
            meta = json.loads(self.meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise CollectionConfigError(f"{self.meta_path} is not valid JSON ({err})") from err
        if not isinstance(meta, dict) or meta.get("format") != EDGE_FORMAT:
            raise CollectionConfigError(f"{self.meta_path} is not a colbert-adapters Edge manifest")
        check_manifest_crc(meta, self.meta_path)
        if meta.get("format_version") != EDGE_FORMAT_VERSION:
            raise CollectionConfigError(
                f"{self.meta_path} has format version {meta.get('format_version')!r}; this colbert-adapters "
                f"reads version {EDGE_FORMAT_VERSION}. Upgrade colbert-adapters"
            )
        return meta

    def write_meta(self, meta: dict[str, Any]) -> None:
        full = with_manifest_crc({"format": EDGE_FORMAT, "format_version": EDGE_FORMAT_VERSION, **meta})
        data = json.dumps(full, ensure_ascii=False, indent=1).encode("utf-8")
        tmp = self.meta_path.with_name(f".{EDGE_META_FILE}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.meta_path)
        finally:
            if tmp.exists():
                tmp.unlink()

    def _pid(self, pid: str) -> Any:
        return uuid.UUID(pid)

    def upsert(self, points: Sequence[StoredPoint], spec_names: tuple[str, str]) -> None:
        qe = self.qe
        mv_name, sum_name = spec_names
        shard = self._open()
        # Edge converts nested lists to its Rust vectors faster than numpy arrays.
        batch = [
            qe.Point(
                id=self._pid(p.pid),
                vector={
                    mv_name: p.multivector.tolist(),  # type: ignore[union-attr]
                    **({} if p.summary is None else {sum_name: p.summary.tolist()}),
                    **(
                        {}
                        if p.sparse is None
                        else {SPARSE_NAME: qe.SparseVector(indices=p.sparse[0], values=p.sparse[1])}
                    ),
                },
                payload=p.payload,
            )
            for p in points
        ]
        self._guard(f"upsert {len(batch)} points", lambda: shard.update(qe.UpdateOperation.upsert_points(batch)))

    def retrieve(
        self, pids: Sequence[str], *, with_payload: bool, with_vectors: bool, names: tuple[str, str]
    ) -> list[StoredPoint]:
        shard = self._open()
        recs = self._guard(
            f"retrieve {len(pids)} points",
            # Edge requires both flags, although its stub marks them optional.
            lambda: shard.retrieve([self._pid(p) for p in pids], with_payload, [names[0]] if with_vectors else False),
        )
        return [stored_point(r, names) for r in recs]

    def delete(self, pids: Sequence[str]) -> None:
        shard = self._open()
        ids = [self._pid(p) for p in pids]
        self._guard(f"delete {len(ids)} points", lambda: shard.update(self.qe.UpdateOperation.delete_points(ids)))

    def count(self, flt: Any = None) -> int:
        shard = self._open()
        ef = None if flt is None else to_edge_filter(flt, self.qe)
        return int(self._guard("count points", lambda: shard.count(self.qe.CountRequest(exact=True, filter=ef))))

    def query(
        self,
        q: npt.NDArray[np.float32],
        summary: npt.NDArray[np.float32] | None,
        *,
        limit: int,
        prefetch_limit: int,
        flt: Any,
        exact: bool,
        quantized: bool,
        oversampling: float,
        names: tuple[str, str],
        using: str | None = None,
        summary_quantized: bool = False,
        prefetch_exact: bool = False,
    ) -> list[StoredPoint]:
        qe = self.qe
        shard = self._open()
        ef = None if flt is None else to_edge_filter(flt, qe)
        quant = None
        if quantized:
            quant = (
                qe.QuantizationSearchParams(ignore=True)
                if exact
                # Edge returns quantized scores unless told to rescore.
                else qe.QuantizationSearchParams(rescore=True, oversampling=oversampling)
            )
        params = qe.SearchParams(exact=exact, quantization=quant)
        prefetches = []
        if summary is not None:
            pre_params = qe.SearchParams(
                exact=prefetch_exact,
                quantization=(
                    qe.QuantizationSearchParams(rescore=True, oversampling=oversampling) if summary_quantized else None
                ),
            )
            prefetches = [
                qe.Prefetch(
                    limit=prefetch_limit,
                    query=qe.Query.Nearest(summary, using=using or names[1]),
                    filter=ef,
                    params=pre_params,
                )
            ]
        req = qe.QueryRequest(
            prefetches=prefetches,
            query=qe.Query.Nearest(q, using=names[0]),
            limit=limit,
            filter=ef,
            with_payload=True,
            with_vector=False,
            params=params,
        )
        res = self._guard("query points", lambda: shard.query(req))
        return [stored_point(p, names, score=float(p.score)) for p in res]

    def scroll(
        self, offset: Any, limit: int, names: tuple[str, str], *, flt: Any = None, with_vectors: bool = True
    ) -> tuple[list[StoredPoint], Any]:
        shard = self._open()
        ef = None if flt is None else to_edge_filter(flt, self.qe)
        recs, nxt = self._guard(
            "scroll points",
            lambda: shard.scroll(
                self.qe.ScrollRequest(
                    offset=offset,
                    limit=limit,
                    filter=ef,
                    with_payload=True,
                    with_vector=list(dict.fromkeys(names)) if with_vectors else False,
                )
            ),
        )
        return [stored_point(r, names) for r in recs], nxt

    def flush(self) -> None:
        if self.shard is not None:
            shard = self.shard
            self._guard("flush", shard.flush)

    def optimize(self) -> bool:
        shard = self._open()
        return bool(self._guard("optimize", shard.optimize))

    def close(self) -> None:
        shard, self.shard = self.shard, None
        if shard is not None:
            self._guard("flush", shard.flush)
            self._guard("close", shard.close)
            self._record_clean_files()

    # ---- integrity: the files of a cleanly closed shard, checked at the next open and by verify()

    def _shard_files(self) -> dict[str, Path]:
        return {p.relative_to(self.root).as_posix(): p for p in sorted(self.shard_path.rglob("*")) if p.is_file()}

    def _record_clean_files(self) -> None:
        """After a clean close: record every shard file's size and CRC-32 in the manifest."""
        meta = self.read_meta()
        if meta is None:
            return
        try:
            meta["files"] = {rel: [p.stat().st_size, file_crc32(p)] for rel, p in self._shard_files().items()}
            meta["files_config_mtime_ns"] = (self.shard_path / "edge_config.json").stat().st_mtime_ns
            self.write_meta({k: v for k, v in meta.items() if k not in ("format", "format_version", MANIFEST_CRC_KEY)})
        except OSError as err:  # the shard is closed and intact; only the record is missing
            logger.warning("could not record the checksums of %s: %s", self.where, err)

    def _check_clean_files(self) -> None:
        """At open, before the engine reads the shard: every file the last clean close recorded is there with its
        size and CRC-32 (one sequential read of the shard, which the engine reads at open anyway), so that damaged
        data is an error here, never silently different answers later."""
        meta = self.read_meta() or {}
        record = meta.get("files")
        if not isinstance(record, dict):
            return
        config = self.shard_path / "edge_config.json"
        stamp = meta.get("files_config_mtime_ns")
        if isinstance(stamp, int) and config.is_file() and config.stat().st_mtime_ns != stamp:
            # The engine rewrites edge_config.json and every segment.json whenever it opens a shard: another
            # program (or a copy that did not keep modification times) has had it since, so the record is stale.
            logger.warning(
                "%s was opened outside colbert-adapters (or copied) since its last clean close; the file checksums "
                "recorded then no longer apply and are not checked",
                self.where,
            )
            return
        for rel, (size, crc) in record.items():
            path = self.root / rel
            if not path.is_file() or path.stat().st_size != size:
                raise IndexCorruptedError(
                    f"{self.where}: {rel} is {'missing' if not path.is_file() else 'of another size'} since the last "
                    "clean close: the index is damaged. Restore it from a backup (nothing was changed)"
                )
            if file_crc32(path) != crc:
                raise IndexCorruptedError(
                    f"{self.where}: {rel} does not match its checksum from the last clean close: the index is "
                    "damaged. Restore it from a backup (nothing was changed)"
                )
        self._clean_files = record
        self._opened_mtimes = {rel: (self.root / rel).stat().st_mtime_ns for rel in record}

    def _forget_clean_files(self) -> None:
        """Once open, the shard may change its files: the record describes the last clean close only."""
        meta = self.read_meta()
        if meta is not None and "files" in meta:
            meta.pop("files")
            meta.pop("files_config_mtime_ns", None)
            self.write_meta({k: v for k, v in meta.items() if k not in ("format", "format_version", MANIFEST_CRC_KEY)})

    def verify_files(self) -> tuple[list[str], list[str], int]:
        """(problems, notes, files checked): the recorded files unchanged since this open, against their CRC-32."""
        if not self._clean_files:
            return [], ["no file checksums recorded (the last close was not clean, or predates them)"], 0
        problems: list[str] = []
        changed = 0
        checked = 0
        for rel, (size, crc) in self._clean_files.items():
            path = self.root / rel
            if not path.is_file() or path.stat().st_mtime_ns != self._opened_mtimes.get(rel):
                changed += 1  # present at open: rewritten or removed by the engine since
            else:
                checked += 1
                if path.stat().st_size != size or file_crc32(path) != crc:
                    problems.append(f"{rel} does not match its checksum")
        notes = [f"{changed} shard files changed since this open (written since): not checked"] if changed else []
        return problems, notes, checked
