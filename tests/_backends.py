"""Backend factories for the integration tests: every backend the integrations must work with.

``BACKEND_FACTORIES`` maps a name to ``factory(tmp_path, dim) -> Backend`` (a new, empty backend). Tests take
the ``backend_name`` parameter from :data:`BACKEND_NAMES` and call :func:`make_backend`.

A factory skips its test only when the backend's *module does not exist yet* in this checkout (the Voyager
and Qdrant backends are developed in parallel). Once the module exists, any error while importing or
constructing it fails the test: a broken backend never hides behind a skip.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from colbert_adapters.backends.base import Backend
from colbert_adapters.backends.memory import MemoryBackend

__all__ = ["BACKEND_FACTORIES", "BACKEND_NAMES", "SpyEncoder", "make_backend"]


def _backend_module(name: str) -> ModuleType:
    """Import ``colbert_adapters.backends.<name>``; skip only if that module is not in the checkout."""
    module_name = f"colbert_adapters.backends.{name}"
    if importlib.util.find_spec(module_name) is None:
        pytest.skip(f"{module_name} does not exist yet (backend under development)")
    return importlib.import_module(module_name)  # any ImportError here is a real failure


def _call_with_supported(factory: Callable[..., Any], **candidates: Any) -> Any:
    """Call ``factory`` with the candidate keyword arguments its signature accepts."""
    params = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return factory(**candidates)
    return factory(**{k: v for k, v in candidates.items() if k in params})


def _memory(tmp_path: Path, dim: int) -> Backend:
    return MemoryBackend(dim=dim)


def _voyager(tmp_path: Path, dim: int) -> Backend:
    module = _backend_module("voyager")
    backend: Backend = _call_with_supported(module.VoyagerBackend, path=tmp_path / "voyager", dim=dim)
    return backend


def _qdrant_edge(tmp_path: Path, dim: int) -> Backend:
    module = _backend_module("qdrant")
    backend: Backend = module.QdrantBackend.edge(tmp_path / "edge", dim=dim)  # default two-stage search
    return backend


def _qdrant_local(tmp_path: Path, dim: int) -> Backend:
    module = _backend_module("qdrant")
    backend: Backend = module.QdrantBackend.local(":memory:", dim=dim)  # qdrant-client local mode
    return backend


#: name -> factory(tmp_path, dim) returning a new, empty backend.
BACKEND_FACTORIES: dict[str, Callable[[Path, int], Backend]] = {
    "memory": _memory,
    "voyager": _voyager,
    "qdrant_edge": _qdrant_edge,
    "qdrant_local": _qdrant_local,
}

BACKEND_NAMES: list[str] = list(BACKEND_FACTORIES)


def make_backend(name: str, tmp_path: Path, dim: int) -> Backend:
    """A new, empty backend named ``name`` storing ``dim``-d vectors, with its files under ``tmp_path``."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    return BACKEND_FACTORIES[name](tmp_path, dim)


class SpyEncoder:
    """A :class:`~colbert_adapters.testing.FakeEncoder` that records what it encodes (and can be slow).

    ``documents`` lists every text passed to ``encode_documents``; ``queries`` every query. ``delay`` seconds
    are slept per call, to show that async methods do not block the event loop.
    """

    def __init__(self, dim: int = 32, *, delay: float = 0.0) -> None:
        from colbert_adapters.testing import FakeEncoder

        self._inner = FakeEncoder(dim=dim)
        self.delay = delay
        self.documents: list[str] = []
        self.queries: list[str] = []

    @property
    def dim(self) -> int:
        return self._inner.dim

    @property
    def model_id(self) -> str:
        return self._inner.model_id

    def encode_queries(self, texts: Any, *, batch_size: int = 32) -> Any:
        import time

        time.sleep(self.delay)
        self.queries += list(texts)
        return self._inner.encode_queries(texts, batch_size=batch_size)

    def encode_documents(self, texts: Any, *, batch_size: int = 32) -> Any:
        import time

        time.sleep(self.delay)
        self.documents += list(texts)
        return self._inner.encode_documents(texts, batch_size=batch_size)
