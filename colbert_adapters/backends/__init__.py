"""Multi-vector backends and the one registry of their names.

The primary way to choose a backend is to pass an instance
(``MultiVectorStore(encoder, backend=MemoryBackend())``). As a convenience, a backend can be named, and this
module is the only place where names meet classes:

* :data:`BACKENDS` maps each backend class's name to ``"module:Class"``;
* :data:`OPENERS` maps every name a user types (Python, the CLI, tests) to a class and how it is constructed:
  ``"memory"``, ``"voyager"``, ``"qdrant"`` (the constructor), ``"qdrant-edge"`` (an embedded Qdrant Edge
  directory), ``"qdrant-url"`` (a Qdrant server or cluster), ``"qdrant-local"`` (qdrant-client's local mode);
* :func:`detect_backend` says which backend an existing index directory (or URL) holds, from its files alone.

Modules are imported only when asked, so ``import colbert_adapters.backends`` never imports voyager or
qdrant-client.

Example:
    >>> from colbert_adapters.backends import resolve_backend
    >>> backend = resolve_backend("memory", dim=4)
    >>> type(backend).__name__, backend.dim
    ('MemoryBackend', 4)
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import (
    CollectionConfigError,
    DimensionMismatchError,
    InvalidInputError,
    MissingDependencyError,
    UnknownBackendError,
)
from .base import Backend, CopyReport, LexicalBackend, Record
from .memory import MemoryBackend

# VoyagerBackend and QdrantBackend are importable by name (lazily, through __getattr__) but are left out
# of __all__ so that a star import never pulls in optional dependencies.
__all__ = [
    "BACKENDS",
    "OPENERS",
    "Backend",
    "CopyReport",
    "LexicalBackend",
    "MemoryBackend",
    "Opener",
    "Record",
    "backend_class",
    "backend_factory",
    "create_backend",
    "detect_backend",
    "open_backend",
    "resolve_backend",
]

#: Registered backend classes: name -> ``"module:Class"`` (imported on demand).
BACKENDS: dict[str, str] = {
    "memory": "colbert_adapters.backends.memory:MemoryBackend",
    "voyager": "colbert_adapters.backends.voyager:VoyagerBackend",
    "qdrant": "colbert_adapters.backends.qdrant:QdrantBackend",
}

# Extra that installs each backend's third-party dependencies (named in MissingDependencyError).
_EXTRAS: dict[str, str] = {"voyager": "voyager", "qdrant": "qdrant"}

_LAZY_CLASSES = {"VoyagerBackend": "voyager", "QdrantBackend": "qdrant"}


@dataclass(frozen=True, slots=True)
class Opener:
    """How a name a user types becomes a backend.

    Attributes:
        name: the name (``"qdrant-edge"``); ``_`` is accepted for ``-``.
        backend: the key of :data:`BACKENDS` whose class it constructs.
        factory: the classmethod that constructs it (``"edge"``), or ``None`` for the constructor.
        location: what its first argument is: ``"directory"`` (an index directory), ``"url"`` (a server),
            ``"local"`` (``":memory:"`` or a directory of qdrant-client's local mode) or ``"none"`` (in memory).
        marker: for directories, the file that identifies an index of this kind, and the ``"format"`` value its
            JSON holds (``None``: any content), as written by the backend.
        description: one line for help texts.
    """

    name: str
    backend: str
    factory: str | None
    location: str
    marker: tuple[str, str | None] | None
    description: str


#: Every name users type, in the order help texts list them.
OPENERS: dict[str, Opener] = {
    o.name: o
    for o in (
        Opener(
            "voyager",
            "voyager",
            None,
            "directory",
            ("store.sqlite", None),
            "embedded, on disk: HNSW over token vectors + exact MaxSim rerank (SQLite store)",
        ),
        Opener(
            "qdrant-edge",
            "qdrant",
            "edge",
            "directory",
            ("colbert_adapters.json", "colbert-adapters/qdrant-edge"),
            "embedded Qdrant engine (Qdrant Edge) in a directory",
        ),
        Opener(
            "memory",
            "memory",
            None,
            "none",
            ("manifest.json", "colbert-adapters/memory-index"),
            "exact, in RAM; saved with MemoryBackend.save(dir)",
        ),
        Opener("qdrant-url", "qdrant", "from_url", "url", None, "a Qdrant server or cluster (qdrant-client)"),
        Opener("qdrant-local", "qdrant", "local", "local", None, "qdrant-client's local mode (pure Python)"),
        Opener("qdrant", "qdrant", None, "none", None, "QdrantBackend(path= | url= | local= | client=)"),
    )
}


def _normalise(name: object) -> str | None:
    if not isinstance(name, str):
        return None
    return name.strip().lower().replace("_", "-")


def _valid_names() -> str:
    extra = [n for n in OPENERS if n not in BACKENDS]
    return f"{', '.join(repr(n) for n in BACKENDS)} (or {', '.join(repr(n) for n in extra)})"


def _opener(name: object) -> Opener:
    key = _normalise(name)
    if key is not None and key in BACKENDS and key not in OPENERS:  # registered at run time (BACKENDS only)
        return Opener(key, key, None, "none", None, "")
    if key is None or key not in OPENERS:
        raise UnknownBackendError(
            f"unknown backend {name!r}; valid names are {_valid_names()}, or pass a backend instance"
        )
    return OPENERS[key]


def backend_class(name: str) -> type[Any]:
    """Import and return the class registered under ``name`` (a key of :data:`BACKENDS` or :data:`OPENERS`).

    Args:
        name: a registered name such as ``"memory"``, ``"voyager"``, ``"qdrant"`` or ``"qdrant-edge"``
            (case-insensitive).

    Returns:
        The backend class (not an instance).

    Raises:
        UnknownBackendError: ``name`` is not registered, or is registered but not shipped in this version.
        MissingDependencyError: the backend's optional dependency is not installed; the message names the
            extra to install.
    """
    key = _opener(name).backend
    module_name, _, class_name = BACKENDS[key].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name is not None and (err.name == module_name or module_name.startswith(err.name + ".")):
            raise UnknownBackendError(
                f"backend {key!r} is registered but not available in this version of colbert-adapters "
                f"(module {module_name} is missing); use one of the available backends, e.g. 'memory', "
                "or upgrade colbert-adapters"
            ) from err
        extra = _EXTRAS.get(key, key)
        raise MissingDependencyError(
            f"backend {key!r} needs {err.name!r}, which is not installed. "
            f'Install it with: pip install "colbert-adapters[{extra}]"'
        ) from err
    cls = getattr(module, class_name, None)
    if cls is None:
        raise UnknownBackendError(
            f"backend {key!r} is registered as {BACKENDS[key]} but {module_name} has no {class_name}; "
            "this is a packaging bug, please report it"
        )
    return cls  # type: ignore[no-any-return]


def backend_factory(name: str) -> Callable[..., Backend]:
    """The callable that constructs the backend named ``name``: its class, or a classmethod such as
    ``QdrantBackend.edge`` for ``"qdrant-edge"``.

    Raises:
        UnknownBackendError / MissingDependencyError: as :func:`backend_class`.
    """
    opener = _opener(name)
    cls = backend_class(opener.backend)
    factory: Callable[..., Backend] = cls if opener.factory is None else getattr(cls, opener.factory)
    return factory


def resolve_backend(name: str, **kwargs: Any) -> Backend:
    """Create a backend from its registered name.

    Args:
        name: a key of :data:`BACKENDS` or :data:`OPENERS` (case-insensitive, ``_`` for ``-`` accepted).
        **kwargs: passed to the backend's constructor or factory (e.g. ``dim=128`` for ``"memory"``,
            ``path=...`` for ``"voyager"`` and ``"qdrant-edge"``, ``url=...`` for ``"qdrant-url"``).

    Returns:
        A new backend instance.

    Raises:
        UnknownBackendError: the name is not registered, or its module is not shipped in this version.
        MissingDependencyError: the backend's optional dependency is missing.
    """
    instance: Backend = backend_factory(name)(**kwargs)
    return instance


def detect_backend(location: str | os.PathLike[str]) -> str:
    """The :data:`OPENERS` name of the index at ``location``, from its files alone (nothing is imported).

    Args:
        location: an index directory (Voyager, Qdrant Edge, a saved MemoryBackend) or a server URL
            (``http://`` / ``https://``: ``"qdrant-url"``).

    Returns:
        ``"voyager"``, ``"qdrant-edge"``, ``"memory"`` or ``"qdrant-url"``.

    Raises:
        CollectionConfigError: ``location`` holds none of them (the message says what it holds).
    """
    text = os.fspath(location)
    if text.startswith(("http://", "https://")):
        return "qdrant-url"
    root = Path(text)
    if not root.is_dir():
        raise CollectionConfigError(
            f"{root} is not an index (no such directory); pass an index directory or a Qdrant URL"
        )
    for opener in OPENERS.values():
        if opener.marker is None:
            continue
        file, fmt = opener.marker
        path = root / file
        if not path.is_file():
            continue
        if fmt is None:
            return opener.name
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("format") == fmt:
            return opener.name
    held = sorted(p.name for p in root.iterdir())[:5]
    raise CollectionConfigError(
        f"{root} is not an index directory (it holds {', '.join(held) if held else 'nothing'}); expected a "
        "Voyager index (store.sqlite), a Qdrant Edge index (colbert_adapters.json) or a saved MemoryBackend "
        "(manifest.json)"
    )


def create_backend(name: str, location: str | os.PathLike[str] | None = None, **kwargs: Any) -> Backend:
    """Create (or open) the backend named ``name`` at ``location``, whatever kind of location it takes.

    Args:
        name: a key of :data:`OPENERS`.
        location: a directory (``"voyager"``, ``"qdrant-edge"``), a URL (``"qdrant-url"``), ``":memory:"`` or a
            directory (``"qdrant-local"``); must be ``None`` for backends without one (``"memory"``).
        **kwargs: passed to the backend (``dim=``, ``model_id=``, ...).

    Raises:
        InvalidInputError: a location for a backend without one, or none for a backend that needs one.
        UnknownBackendError / MissingDependencyError: as :func:`backend_class`.
    """
    opener = _opener(name)
    keyword = {"directory": "path", "url": "url", "local": "location"}.get(opener.location)
    if keyword is None:
        if location is not None:
            raise InvalidInputError(f"backend {opener.name!r} takes no location, got {location!r}")
        return resolve_backend(opener.name, **kwargs)
    if location is None:
        raise InvalidInputError(f"backend {opener.name!r} needs a location ({opener.location})")
    return resolve_backend(opener.name, **{keyword: location}, **kwargs)


def open_backend(location: str | os.PathLike[str], *, read_only: bool = False, **kwargs: Any) -> Backend:
    """Open the existing index at ``location`` with the backend :func:`detect_backend` finds there.

    Args:
        location: an index directory or a Qdrant server URL.
        read_only: open without writing (Voyager: no write lock, other processes may write). A saved
            MemoryBackend is loaded into memory either way; Qdrant opens read-write.
        **kwargs: passed to the backend (e.g. ``collection_name=`` for a URL, ``k_token=`` for Voyager).

    Returns:
        The open backend.

    Raises:
        CollectionConfigError: ``location`` is not an index.
        MissingDependencyError: the backend's optional dependency is missing.
    """
    name = detect_backend(location)
    if name == "memory":
        dim = kwargs.pop("dim", None)
        if kwargs:
            raise InvalidInputError(f"a saved MemoryBackend opens without options, got {', '.join(kwargs)}")
        loaded: Backend = MemoryBackend.load(location)
        if dim is not None and loaded.dim not in (None, dim):
            raise DimensionMismatchError(f"{location} stores {loaded.dim}-d vectors, not {dim}-d ones")
        return loaded
    if name == "voyager":
        kwargs["read_only"] = read_only
    return create_backend(name, location if name != "qdrant-url" else os.fspath(location), **kwargs)


def __getattr__(attr: str) -> Any:
    # PEP 562: `from colbert_adapters.backends import VoyagerBackend` imports voyager only when asked.
    if attr in _LAZY_CLASSES:
        return backend_class(_LAZY_CLASSES[attr])
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
