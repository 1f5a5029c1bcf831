"""Backend factories for the integration tests: every backend the integrations must work with.

``BACKEND_FACTORIES`` maps a registry name (:data:`colbert_adapters.backends.OPENERS`) to
``factory(tmp_path, dim) -> Backend`` (a new, empty backend). Tests take the ``backend_name`` parameter from
:data:`BACKEND_NAMES` and call :func:`make_backend`. Any error while importing or constructing a backend fails
the test: a broken backend never hides behind a skip.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from colbert_adapters.backends import OPENERS, Backend, create_backend

__all__ = ["BACKEND_FACTORIES", "BACKEND_NAMES", "SCORE_ATOL", "SpyEncoder", "make_backend"]


def _factory(name: str) -> Callable[[Path, int], Backend]:
    """``factory(tmp_path, dim)`` for the registry name ``name``: a new backend at a location under ``tmp_path``."""
    opener = OPENERS[name.replace("_", "-")]

    def make(tmp_path: Path, dim: int) -> Backend:
        if opener.location == "directory":
            return create_backend(name, tmp_path / name, dim=dim)
        if opener.location == "local":
            return create_backend(name, ":memory:", dim=dim)  # qdrant-client local mode
        return create_backend(name, dim=dim)

    return make


def _compressed(compression: str) -> Callable[[Path, int], Backend]:
    """``factory(tmp_path, dim)``: a Voyager index with the compressed store, whose codec is trained after 64 tokens
    (so that small test corpora reach compressed segments), sealing inline."""

    def make(tmp_path: Path, dim: int) -> Backend:
        from colbert_adapters.backends.voyager import VoyagerBackend

        return VoyagerBackend(
            tmp_path / f"voyager_{compression}",
            dim=dim,
            compression=compression,
            train_tokens=64,
            mutable_max_tokens=32,
            background_maintenance=False,
        )

    return make


#: name -> factory(tmp_path, dim) returning a new, empty backend (names from the registry, ``_`` for ``-``; the
#: Voyager compressed stores as ``voyager_2bit`` / ``voyager_4bit``).
BACKEND_FACTORIES: dict[str, Callable[[Path, int], Backend]] = {
    **{name: _factory(name) for name in ("memory", "voyager", "qdrant_edge", "qdrant_local")},
    "voyager_2bit": _compressed("2bit"),
    "voyager_4bit": _compressed("4bit"),
}

BACKEND_NAMES: list[str] = list(BACKEND_FACTORIES)

#: How far a backend's scores may sit from exact float32 MaxSim (its stored vectors are lossy): the residual codes of
#: the compressed Voyager stores. Backends not listed score within 1e-4.
SCORE_ATOL: dict[str, float] = {"voyager_2bit": 1.0, "voyager_4bit": 0.3}  # as their contract classes


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
