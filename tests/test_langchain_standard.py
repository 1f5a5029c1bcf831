"""langchain-tests' official standard suites, run against every backend.

``VectorStoreIntegrationTests`` (24 tests) is parametrized over the backends of ``tests/_backends.py``;
``RetrieversIntegrationTests`` gets one generated subclass per backend (its ``retriever_constructor_params``
is a property, not a fixture). The deterministic :class:`~colbert_adapters.testing.FakeEncoder` keeps them
fast; ``test_langchain_integration.py`` covers the real encoder.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langchain_tests", reason="langchain-tests is a test dependency")

from _backends import BACKEND_NAMES, make_backend
from colbert_adapters.integrations.langchain import ColBERTRetriever, ColBERTVectorStore
from langchain_core.retrievers import BaseRetriever
from langchain_tests.integration_tests import (
    RetrieversIntegrationTests,
    VectorStoreIntegrationTests,
)

from colbert_adapters.store import MultiVectorStore
from colbert_adapters.testing import FakeEncoder

DIM = 32

CORPUS = [
    "ColBERT scores documents by late interaction over token embeddings",
    "Paris is the capital and largest city of France",
    "Photosynthesis turns sunlight into chemical energy in plants",
    "Rust guarantees memory safety without a garbage collector",
    "Qdrant is a vector database with native multivector support",
    "Voyager is an approximate nearest neighbour library built on HNSW",
]


class TestColBERTVectorStoreStandard(VectorStoreIntegrationTests):
    @pytest.fixture(params=BACKEND_NAMES)
    def vectorstore(self, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ColBERTVectorStore]:  # type: ignore[override]
        backend = make_backend(request.param, tmp_path / request.param, DIM)
        store = MultiVectorStore(FakeEncoder(dim=DIM), backend)
        try:
            # embedding is accepted (and unused) like a single-vector store's.
            yield ColBERTVectorStore(store, embedding=self.get_embeddings())
        finally:
            store.close()


class _RetrieverStandardBase(RetrieversIntegrationTests):
    backend_name: str = "memory"

    @pytest.fixture(autouse=True)
    def _workdir(self, tmp_path: Path) -> Iterator[None]:
        self._tmp = tmp_path
        self._counter = itertools.count()
        self._stores: list[MultiVectorStore] = []
        yield
        for store in self._stores:
            store.close()

    @property
    def retriever_constructor(self) -> type[BaseRetriever]:
        return ColBERTRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        # A new index per access: test_k_constructor_param builds two retrievers.
        backend = make_backend(self.backend_name, self._tmp / f"r{next(self._counter)}", DIM)
        store = MultiVectorStore(FakeEncoder(dim=DIM), backend)
        self._stores.append(store)
        store.add(CORPUS, ids=[f"doc{i}" for i in range(len(CORPUS))])
        return {"store": store, "k": 2}

    @property
    def retriever_query_example(self) -> str:
        return "late interaction token embeddings"


# One concrete class per backend, e.g. TestColBERTRetrieverStandard_memory.
for _name in BACKEND_NAMES:
    _cls = type(f"TestColBERTRetrieverStandard_{_name}", (_RetrieverStandardBase,), {"backend_name": _name})
    _cls.__module__ = __name__
    globals()[_cls.__name__] = _cls
del _name, _cls
