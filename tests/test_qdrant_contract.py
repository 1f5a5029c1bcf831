"""QdrantBackend against the shared backend contract, on Qdrant Edge and on qdrant-client local mode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from contract import BackendContract

pytest.importorskip("qdrant_client")
pytest.importorskip("qdrant_edge")

from colbert_adapters.backends.base import Backend
from colbert_adapters.backends.qdrant import QdrantBackend, QdrantCollectionConfig


class TestQdrantEdgeExact(BackendContract):
    """Edge, full-scan MaxSim on float32 token vectors: equal to the exact MemoryBackend (ids, order, scores)."""

    lexical_fts_bm25 = False  # Qdrant's IDF: ln(1 + (N - n + 0.5) / (n + 0.5))

    supports_persistence = True

    def make_backend(self, tmp_path: Path, dim: int) -> Backend:
        config = QdrantCollectionConfig(dim=dim, datatype="float32")
        return QdrantBackend.edge(tmp_path / "edge", config=config, search_mode="exact")

    def reopen(self, backend: Backend) -> Backend:
        backend.close()
        return QdrantBackend.edge(self.tmp_path / "edge", search_mode="exact")


class TestQdrantEdgeTwoStage(BackendContract):
    """Edge, two-stage (summary prefetch + MaxSim rerank): exact whenever the prefetch covers the corpus."""

    lexical_fts_bm25 = False  # Qdrant's IDF: ln(1 + (N - n + 0.5) / (n + 0.5))

    # Edge stores the token vectors as float16 by default: scores carry its rounding, near-ties may swap.
    exact = False
    min_recall = 0.9
    score_atol = 5e-3
    vector_atol = 1e-3

    supports_persistence = True

    def make_backend(self, tmp_path: Path, dim: int) -> Backend:
        return QdrantBackend.edge(tmp_path / "edge", dim=dim, prefetch_limit=256)

    def reopen(self, backend: Backend) -> Backend:
        backend.close()
        return QdrantBackend.edge(self.tmp_path / "edge", prefetch_limit=256)


class TestQdrantEdgeLazyDim(BackendContract):
    """Edge created at the first upsert (dim unknown at construction), as MultiVectorStore may do."""

    lexical_fts_bm25 = False  # Qdrant's IDF: ln(1 + (N - n + 0.5) / (n + 0.5))

    # Edge stores the token vectors as float16 by default: scores carry its rounding, near-ties may swap.
    exact = False
    min_recall = 0.9
    score_atol = 5e-3
    vector_atol = 1e-3

    dim = 5

    def make_backend(self, tmp_path: Path, dim: int) -> Backend:
        return QdrantBackend(path=tmp_path / "edge", search_mode="exact")


class TestQdrantLocalExact(BackendContract):
    """qdrant-client local mode (':memory:'), full-scan MaxSim."""

    lexical_fts_bm25 = False  # Qdrant's IDF: ln(1 + (N - n + 0.5) / (n + 0.5))

    def make_backend(self, tmp_path: Path, dim: int) -> Backend:
        return QdrantBackend.local(":memory:", dim=dim, search_mode="exact")


class TestQdrantLocalTwoStage(BackendContract):
    """qdrant-client local mode on disk, two-stage search, persistence through the directory."""

    lexical_fts_bm25 = False  # Qdrant's IDF: ln(1 + (N - n + 0.5) / (n + 0.5))

    supports_persistence = True

    def make_backend(self, tmp_path: Path, dim: int) -> Backend:
        return QdrantBackend.local(tmp_path / "local", dim=dim, prefetch_limit=256)

    def reopen(self, backend: Backend) -> Backend:
        backend.close()
        return QdrantBackend.local(self.tmp_path / "local", prefetch_limit=256)


def _unused(_: Any) -> None:  # keep the Any import meaningful for type checkers
    return None
