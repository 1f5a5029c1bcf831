"""Shared value types: multi-vectors, hits, filters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias, runtime_checkable

import numpy as np
import numpy.typing as npt

__all__ = ["Encoder", "Filter", "Hit", "Metadata", "MultiVector"]

#: One text's token vectors: a float32 array of shape ``(n_tokens, dim)``, rows L2-normalised.
MultiVector: TypeAlias = npt.NDArray[np.float32]

#: JSON-serialisable metadata attached to a document.
Metadata: TypeAlias = Mapping[str, Any]

#: Metadata filter: ``{"field": value}`` (equality) or ``{"field": [v1, v2]}`` (membership); all fields must
#: match (AND). ``None`` means no filter.
Filter: TypeAlias = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Hit:
    """One search result. Higher ``score`` is better (MaxSim: sum over query tokens of the best cosine).

    ``highlights`` is ``None`` unless the search was asked for them (``highlight=True``): then the
    ``(start, end, weight)`` character spans of ``text`` the score comes from, in text order, ``weight`` being the
    span's share of ``score`` (see :func:`colbert_adapters.highlight.render`).

    ``span`` is ``None`` unless the document was stored split into windows (a text longer than the encoder's
    ``document_length``, ``MultiVectorStore(long_documents="split")``): then ``(start, end)``, the characters of
    ``text`` (the whole document) covered by the window the score comes from.
    """

    id: str
    score: float
    text: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    highlights: list[tuple[int, int, float]] | None = None
    span: tuple[int, int] | None = None


@runtime_checkable
class Encoder(Protocol):
    """What :class:`~colbert_adapters.store.MultiVectorStore` needs from an encoder.

    :class:`~colbert_adapters.encoder.ColBERTEncoder` implements it; so does the deterministic
    :class:`~colbert_adapters.testing.FakeEncoder` used in tests.
    """

    @property
    def dim(self) -> int:
        """Dimension of the token vectors."""
        ...

    @property
    def model_id(self) -> str:
        """A string identifying the model and its settings; stores remember it to refuse mixing models."""
        ...

    def encode_queries(self, texts: Sequence[str], *, batch_size: int = 32) -> list[MultiVector]:
        """One float32 ``(n_tokens, dim)`` array per query, in input order."""
        ...

    def encode_documents(self, texts: Sequence[str], *, batch_size: int = 32) -> list[MultiVector]:
        """One float32 ``(n_tokens, dim)`` array per document, in input order."""
        ...
