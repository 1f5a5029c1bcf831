"""Multi-vector backends and their name registry.

The primary way to choose a backend is to pass an instance
(``MultiVectorStore(encoder, backend=MemoryBackend())``). As a convenience, a backend can be named:
:data:`BACKENDS` maps each name to ``"module:Class"`` and :func:`resolve_backend` imports the module only
when asked, so ``import colbert_adapters.backends`` never imports voyager or qdrant-client.

Example:
    >>> from colbert_adapters.backends import resolve_backend
    >>> backend = resolve_backend("memory", dim=4)
    >>> type(backend).__name__, backend.dim
    ('MemoryBackend', 4)
"""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import MissingDependencyError, UnknownBackendError
from .base import Backend, Record
from .memory import MemoryBackend

# VoyagerBackend and QdrantBackend are importable by name (lazily, through __getattr__) but are left out
# of __all__ so that a star import never pulls in optional dependencies.
__all__ = [
    "BACKENDS",
    "Backend",
    "MemoryBackend",
    "Record",
    "backend_class",
    "resolve_backend",
]

#: Registered backend names and the ``"module:Class"`` each resolves to (imported on demand).
BACKENDS: dict[str, str] = {
    "memory": "colbert_adapters.backends.memory:MemoryBackend",
    "voyager": "colbert_adapters.backends.voyager:VoyagerBackend",
    "qdrant": "colbert_adapters.backends.qdrant:QdrantBackend",
}

# Extra that installs each backend's third-party dependencies (named in MissingDependencyError).
_EXTRAS: dict[str, str] = {"voyager": "voyager", "qdrant": "qdrant"}

_LAZY_CLASSES = {"VoyagerBackend": "voyager", "QdrantBackend": "qdrant"}


def backend_class(name: str) -> type[Any]:
    """Import and return the class registered under ``name`` (see :data:`BACKENDS`).

    Args:
        name: a registered name such as ``"memory"``, ``"voyager"`` or ``"qdrant"`` (case-insensitive).

    Returns:
        The backend class (not an instance).

    Raises:
        UnknownBackendError: ``name`` is not registered, or is registered but not shipped in this version.
        MissingDependencyError: the backend's optional dependency is not installed; the message names the
            extra to install.
    """
    if not isinstance(name, str) or name.strip().lower() not in BACKENDS:
        raise UnknownBackendError(
            f"unknown backend {name!r}; valid names are {', '.join(repr(n) for n in BACKENDS)}, "
            "or pass a backend instance"
        )
    key = name.strip().lower()
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


def resolve_backend(name: str, **kwargs: Any) -> Backend:
    """Create a backend from its registered name.

    Args:
        name: a key of :data:`BACKENDS` (case-insensitive).
        **kwargs: passed to the backend's constructor (e.g. ``dim=128`` for ``"memory"``).

    Returns:
        A new backend instance.

    Raises:
        UnknownBackendError: the name is not registered, or its module is not shipped in this version.
        MissingDependencyError: the backend's optional dependency is missing.
    """
    instance: Backend = backend_class(name)(**kwargs)
    return instance


def __getattr__(attr: str) -> Any:
    # PEP 562: `from colbert_adapters.backends import VoyagerBackend` imports voyager only when asked.
    if attr in _LAZY_CLASSES:
        return backend_class(_LAZY_CLASSES[attr])
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
