"""Persistence of :class:`ColBERTIndex`: its manifest beside LlamaIndex's storage files, and its own index struct.

``ColBERTIndex.persist(dir)`` writes LlamaIndex's storage context (docstore, index store) plus
``colbert_index.json`` (format, index id, model, backend) and, for a backend saved on request (the memory backend),
``colbert_backend/``. The index struct is a :class:`ColBERTIndexStruct`: an ``IndexDict`` whose type names
ColBERTIndex and which records the directory it was persisted to. The integration adds that type to LlamaIndex's
two registries, so ``load_index_from_storage(StorageContext.from_defaults(persist_dir=dir))`` rebuilds a
ColBERTIndex (a plain ``IndexDict`` would rebuild a ``VectorStoreIndex``, which resolves an embedding model: OpenAI's
by default). Nothing else of LlamaIndex's is changed.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from llama_index.core.data_structs.data_structs import IndexDict
from llama_index.core.data_structs.registry import INDEX_STRUCT_TYPE_TO_INDEX_STRUCT_CLASS
from llama_index.core.data_structs.struct_type import IndexStructType
from llama_index.core.indices.registry import INDEX_STRUCT_TYPE_TO_INDEX_CLASS

from ..._identity import same_model
from ..._index_dir import load_encoder
from ...backends import BACKENDS, open_backend
from ...backends.base import Backend
from ...errors import CollectionConfigError
from ...store import MultiVectorStore
from ...types import Encoder

__all__ = [
    "BACKEND_DIR",
    "MANIFEST",
    "STRUCT_TYPE",
    "ColBERTIndexStruct",
    "open_store",
    "read_manifest",
    "register",
    "write_manifest",
]

logger = logging.getLogger(__name__)

MANIFEST = "colbert_index.json"
BACKEND_DIR = "colbert_backend"
FORMAT = "colbert-adapters/llama-index-managed-index"
#: The index struct type of a ColBERTIndex in LlamaIndex's index store (``"__type__"``).
STRUCT_TYPE = "colbert_adapters"


@dataclass
class ColBERTIndexStruct(IndexDict):
    """The index struct of a :class:`ColBERTIndex`: an ``IndexDict`` of type :data:`STRUCT_TYPE`.

    Attributes:
        persist_dir: the absolute directory :meth:`ColBERTIndex.persist` last wrote, where
            ``load_index_from_storage`` finds the manifest and the saved backend; ``None`` before.
    """

    persist_dir: str | None = None

    @classmethod
    def get_type(cls) -> IndexStructType:
        """:data:`STRUCT_TYPE` (LlamaIndex's registries are keyed by these strings)."""
        return cast(IndexStructType, STRUCT_TYPE)


def register(index_cls: type[Any]) -> None:
    """Name ``index_cls`` and :class:`ColBERTIndexStruct` in LlamaIndex's registries under :data:`STRUCT_TYPE`."""
    cast(dict[str, Any], INDEX_STRUCT_TYPE_TO_INDEX_STRUCT_CLASS)[STRUCT_TYPE] = ColBERTIndexStruct
    cast(dict[str, Any], INDEX_STRUCT_TYPE_TO_INDEX_CLASS)[STRUCT_TYPE] = index_cls


def write_manifest(root: Path, index_id: str, store: MultiVectorStore) -> None:
    """Save the backend when it is saved on request, then write ``root/colbert_index.json``."""
    backend = store.backend
    backend_cls = type(backend)
    save = getattr(backend, "save", None)
    saved = callable(save) and callable(getattr(backend_cls, "load", None))
    if saved:
        assert save is not None
        save(root / BACKEND_DIR)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "version": 1,
        "index_id": index_id,
        "model_id": store.encoder.model_id,
        "backend": f"{backend_cls.__module__}:{backend_cls.__qualname__}",
        "backend_saved": saved,
    }
    spec = getattr(store.encoder, "spec", None)
    name = getattr(spec, "name", None)
    if isinstance(name, str):  # a ColBERTEncoder: what loads it again without an encoder
        manifest["model"] = os.path.abspath(name) if os.path.isdir(name) else name
        manifest["settings"] = {k: getattr(spec, k, None) for k in ("query_length", "document_length")}
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")


def read_manifest(root: Path) -> dict[str, Any]:
    """The manifest of a directory :meth:`ColBERTIndex.persist` wrote.

    Raises:
        CollectionConfigError: there is none, or it is not a ColBERTIndex manifest.
    """
    path = root / MANIFEST
    if not path.is_file():
        raise CollectionConfigError(f"{root} has no {MANIFEST}; it was not written by ColBERTIndex.persist()")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CollectionConfigError(f"{path} is unreadable ({err}); persist the index again") from err
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CollectionConfigError(f"{path} is not a ColBERTIndex manifest")
    return manifest


def open_store(
    root: Path,
    encoder: Encoder | None,
    backend: Backend | None,
    *,
    index_id: str | None = None,
    device: str | None = None,
) -> MultiVectorStore:
    """The store of an index persisted in ``root``: ``encoder`` (or the recorded model) on ``backend`` (or the
    saved one).

    Raises:
        CollectionConfigError: not a persisted ColBERTIndex, another index than ``index_id``, another model than
            ``encoder``'s, or a backend that persists itself and is not given.
    """
    manifest = read_manifest(root)
    if index_id is not None and manifest.get("index_id") != index_id:
        raise CollectionConfigError(
            f"{root / MANIFEST} belongs to index {manifest.get('index_id')!r}, not {index_id!r}; it was persisted "
            "again since: load it from there with ColBERTIndex.from_persist_dir"
        )
    recorded = str(manifest.get("model_id"))
    if encoder is None:
        encoder = _load_recorded(manifest, root, device)
    if not same_model(recorded, encoder.model_id):
        raise CollectionConfigError(
            f"the index in {root} was built with model {recorded!r} but the encoder is {encoder.model_id!r}; use the "
            "same model"
        )
    if backend is None:
        if not manifest.get("backend_saved"):
            raise CollectionConfigError(
                f"the backend of {root} ({manifest.get('backend')}) persists itself; reopen it and pass backend="
            )
        if manifest.get("backend") not in BACKENDS.values():  # never import an arbitrary class named in a file
            raise CollectionConfigError(f"{root / MANIFEST} names an unknown backend {manifest.get('backend')!r}")
        backend = open_backend(root / BACKEND_DIR)
    return MultiVectorStore(encoder, backend)


def _load_recorded(manifest: dict[str, Any], root: Path, device: str | None) -> Encoder:
    model = manifest.get("model")
    if not isinstance(model, str):
        raise CollectionConfigError(
            f"the index in {root} records the model id {manifest.get('model_id')!r} but no model to load; pass "
            "encoder= (the encoder it was built with)"
        )
    settings = manifest.get("settings") if isinstance(manifest.get("settings"), dict) else {}
    encoder: Encoder = load_encoder(model, settings, device)
    return encoder
