"""Index directories made by ``colbert-adapters index``: a manifest naming the model and the backend, and the data.

Layout::

    colbert-index.json   {"format": 1, "model": hub id or absolute path, "model_id", "dim", "backend": an
                         OPENERS name, "settings": the encoding settings in force when it was indexed (every
                         key of ``SETTING_KEYS``, plus "revision" for a Hub revision; indexes made by earlier
                         versions record only "document_length" and "query_length", possibly null: the
                         checkpoint's own configuration supplies the rest), and for "qdrant-url" "url" and
                         "collection"}
    data/                the backend's own directory (Voyager, Qdrant Edge, a saved MemoryBackend); absent for a
                         server collection. ``"data": "."`` in the manifest: the index directory itself is the
                         backend's directory (one ``qdrant setup`` or a program made, adopted by ``index``)

The CLI writes and reads them; :meth:`colbert_adapters.store.MultiVectorStore.open` reads them. Backends are
opened through the registry (:mod:`colbert_adapters.backends`).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from ._checkpoint import SETTING_KEYS
from .backends import OPENERS, Backend, MemoryBackend, create_backend, detect_backend
from .backends import open_backend as registry_open
from .backends._files import check_manifest_crc, with_manifest_crc
from .errors import ColBERTError, CollectionConfigError

__all__ = [
    "DATA",
    "MANIFEST",
    "check_settings",
    "close_backend",
    "data_dir",
    "effective_settings",
    "load_encoder",
    "model_ref",
    "open_backend",
    "read_manifest",
    "write_manifest",
]

logger = logging.getLogger("colbert_adapters.cli")

MANIFEST = "colbert-index.json"
DATA = "data"


def read_manifest(index_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The manifest of ``index_dir``, or ``None`` when it has none.

    Raises:
        ColBERTError: the manifest is unreadable or not an index manifest.
    """
    path = os.path.join(index_dir, MANIFEST)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise ColBERTError(f"{path} is unreadable ({err}); it is not a colbert-adapters index") from err
    if not isinstance(data, dict) or "backend" not in data:
        raise ColBERTError(f"{path} is not a colbert-adapters index manifest")
    return check_manifest_crc(data, path)


def write_manifest(index_dir: str | os.PathLike[str], data: dict[str, Any]) -> None:
    """Replace the manifest of ``index_dir`` (written to a temporary file, then renamed)."""
    path = os.path.join(index_dir, MANIFEST)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(with_manifest_crc(data), f, indent=2, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, path)


def model_ref(model: str) -> str:
    """How a model is recorded: a local checkpoint by absolute path (the index reopens from any working
    directory), a hub id as given."""
    return os.path.abspath(model) if os.path.isdir(model) else model


def load_encoder(model: str, settings: dict[str, Any], device: str | None, **options: Any) -> Any:
    """The :class:`~colbert_adapters.encoder.ColBERTEncoder` a manifest records.

    Args:
        model: hub id or checkpoint directory.
        settings: the manifest's ``settings``: values of :data:`SETTING_KEYS` (``None`` or absent: the
            checkpoint's own), and ``revision``.
        device: torch device, ``None`` for the best available.
        **options: more ``from_pretrained`` arguments (``dtype``, ``trust_remote_code``).
    """
    from .encoder import ColBERTEncoder

    kwargs = {k: settings[k] for k in (*SETTING_KEYS, "revision") if settings.get(k) is not None}
    logger.info("loading model %s", model)
    return ColBERTEncoder.from_pretrained(model, device=device, **kwargs, **options)


def effective_settings(encoder: Any) -> dict[str, Any]:
    """The encoding settings an encoder is in force with, as a manifest records them (JSON types)."""
    spec = encoder.spec
    out = {k: getattr(spec, k) for k in SETTING_KEYS}
    out["skiplist_words"] = list(out["skiplist_words"])
    return out


def setting_differences(recorded: dict[str, Any], given: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(key, recorded value, given value)`` for each setting both name with different values."""
    out = []
    for key in (*SETTING_KEYS, "revision"):
        a, b = recorded.get(key), given.get(key)
        if a is None or b is None:
            continue
        if key == "skiplist_words":
            a, b = sorted(a), sorted(b)
        if a != b:
            out.append((key, recorded[key], given[key]))
    return out


def check_settings(manifest: dict[str, Any], encoder: Any, index_dir: str | os.PathLike[str]) -> None:
    """Refuse an encoder whose encoding settings differ from those ``index_dir``'s manifest records.

    Encoders without a ``spec`` (custom ones) and settings the manifest does not record pass.

    Raises:
        CollectionConfigError: a recorded setting differs; the message names each one and the fix.
    """
    if getattr(encoder, "spec", None) is None:
        return
    diffs = setting_differences(manifest.get("settings") or {}, effective_settings(encoder))
    if diffs:
        listed = "; ".join(f"{k} {a!r} recorded, {b!r} given" for k, a, b in diffs)
        raise CollectionConfigError(
            f"{index_dir} was indexed with other encoder settings than this encoder's ({listed}); reopen it "
            "without an encoder (its recorded settings are used) or load the encoder with the recorded settings"
        )


def data_dir(manifest: dict[str, Any], index_dir: str | os.PathLike[str]) -> str:
    """Where the backend's own files are: ``index_dir/data``, or ``index_dir`` itself for an adopted directory
    (``"data": "."``, a backend's own index made before the manifest, e.g. by ``colbert-adapters qdrant setup``)."""
    sub = manifest.get("data", DATA)
    if sub not in (DATA, "."):
        raise ColBERTError(f"{os.path.join(index_dir, MANIFEST)}: 'data' must be {DATA!r} or '.', got {sub!r}")
    return os.path.normpath(os.path.join(index_dir, sub))


def open_backend(
    manifest: dict[str, Any], index_dir: str | os.PathLike[str], dim: int | None, *, read_only: bool = False
) -> Backend:
    """Open the backend a manifest names, on ``index_dir/data`` (or the server it records); a new one when the
    data directory holds no index yet (a memory index: empty, ``dim``).

    Raises:
        ColBERTError: the manifest names an unknown backend.
        MissingDependencyError: the backend's optional dependency is missing.
    """
    kind = manifest["backend"]
    opener = OPENERS.get(kind)
    if opener is None:
        raise ColBERTError(f"unknown backend {kind!r} in {os.path.join(index_dir, MANIFEST)}")
    if opener.location == "url":
        return create_backend(
            kind,
            manifest["url"],
            dim=dim,
            collection_name=manifest.get("collection", "colbert"),
            api_key=os.environ.get("QDRANT_API_KEY") or None,
        )
    data = data_dir(manifest, index_dir)
    try:
        held = detect_backend(data)
    except CollectionConfigError:
        held = None  # no index yet (or an interrupted first write): create it
    if held is not None:
        if held != kind:
            raise CollectionConfigError(f"{data} holds a {held} index but {MANIFEST} says {kind}")
        return registry_open(data, read_only=read_only, dim=dim)
    if opener.location == "none":
        return create_backend(kind, dim=dim)
    return create_backend(kind, data, dim=dim)


def close_backend(manifest: dict[str, Any], index_dir: str | os.PathLike[str], backend: Any, *, save: bool) -> None:
    """Close the backend of an index directory, saving a memory index's data first when ``save``."""
    if save and isinstance(backend, MemoryBackend):  # the one backend that persists on request only
        backend.save(data_dir(manifest, index_dir))
    backend.close()
