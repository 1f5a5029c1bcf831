"""colbert-adapters: late-interaction retrieval (ColBERT, MaxSim) for vector databases and RAG frameworks.

The public names are imported lazily (PEP 562), so ``import colbert_adapters`` loads neither torch nor
any optional backend or framework::

    from colbert_adapters import ColBERTEncoder, MultiVectorStore

    encoder = ColBERTEncoder.from_pretrained("lightonai/GTE-ModernColBERT-v1")
    store = MultiVectorStore(encoder, backend="memory")
    store.add(["Paris is the capital of France."], ids=["paris"])
    hits = store.search("capital of France", k=5)   # list[Hit], higher score is better
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import (
    CheckpointError,
    ColBERTError,
    CollectionConfigError,
    CopyVerificationError,
    DimensionMismatchError,
    HubUnavailableError,
    IndexCorruptedError,
    IndexLockedError,
    InvalidInputError,
    MissingDependencyError,
    QdrantRequestError,
    QdrantUnavailableError,
    UnknownBackendError,
)
from .types import Encoder, Filter, Hit, Metadata, MultiVector

if TYPE_CHECKING:
    from .backends.base import Backend, Record
    from .backends.memory import MemoryBackend
    from .encoder import ColBERTEncoder, ModelSpec
    from .scoring import maxsim, maxsim_batch, rerank
    from .store import MultiVectorStore
    from .testing import FakeEncoder

_LAZY = {
    "ColBERTEncoder": "colbert_adapters.encoder",
    "ModelSpec": "colbert_adapters.encoder",
    "MultiVectorStore": "colbert_adapters.store",
    "Backend": "colbert_adapters.backends.base",
    "Record": "colbert_adapters.backends.base",
    "MemoryBackend": "colbert_adapters.backends.memory",
    "maxsim": "colbert_adapters.scoring",
    "maxsim_batch": "colbert_adapters.scoring",
    "rerank": "colbert_adapters.scoring",
    "FakeEncoder": "colbert_adapters.testing",
}

__all__ = [
    "Backend",
    "CheckpointError",
    "ColBERTEncoder",
    "ColBERTError",
    "CollectionConfigError",
    "CopyVerificationError",
    "DimensionMismatchError",
    "Encoder",
    "FakeEncoder",
    "Filter",
    "Hit",
    "HubUnavailableError",
    "IndexCorruptedError",
    "IndexLockedError",
    "InvalidInputError",
    "MemoryBackend",
    "Metadata",
    "MissingDependencyError",
    "ModelSpec",
    "MultiVector",
    "MultiVectorStore",
    "QdrantRequestError",
    "QdrantUnavailableError",
    "Record",
    "UnknownBackendError",
    "__version__",
    "maxsim",
    "maxsim_batch",
    "rerank",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'colbert_adapters' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
