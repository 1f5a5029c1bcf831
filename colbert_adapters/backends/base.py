"""The backend contract: what every multi-vector store implements.

A backend stores documents (id, token vectors, text, metadata) and answers MaxSim searches. It never
encodes text: :class:`~colbert_adapters.store.MultiVectorStore` ties an encoder to a backend. The exact
in-memory backend (:class:`~colbert_adapters.backends.memory.MemoryBackend`) is the reference every other
backend is tested against (``tests/contract.py``).

Semantics every implementation follows:

* ids are non-empty ``str``; duplicate ids within one call are an error.
* ``upsert`` replaces a document with the same id completely (vectors, text, metadata): no orphans.
  It validates the whole batch before writing anything: a bad item leaves the store unchanged.
* ``delete`` of unknown ids is not an error; it returns how many documents were removed.
* ``get`` returns the stored records of the known ids, in the order asked, skipping unknown ids.
* ``search`` returns at most ``k`` hits sorted by descending score (higher is better); ties keep
  insertion order. A filter ``{"field": value}`` / ``{"field": [v1, v2]}`` restricts the candidates
  (AND across fields, membership within a list) and still returns ``k`` hits when ``k`` documents match.
* ``ids`` lists every stored id (a snapshot, insertion order where the backend keeps one); ``clear`` removes
  every document but keeps the backend's configuration (dimension, recorded model).
* ``count`` is the number of live documents; ``close`` releases files and locks (idempotent); every backend is a
  context manager that closes on exit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

from ..types import Filter, Hit, Metadata, MultiVector

__all__ = ["Backend", "CopyReport", "LexicalBackend", "Record", "VerifyReport"]


@dataclass(frozen=True, slots=True)
class Record:
    """A stored document. ``vectors`` is ``None`` unless asked for (``get(..., with_vectors=True)``)."""

    id: str
    text: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    vectors: MultiVector | None = None


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What a backend's ``verify()`` checked and what it found damaged.

    Attributes:
        location: the index checked.
        checked: how many of each part were checked, e.g. ``{"segments": 3, "documents": 1200}``.
        problems: one line per damaged part (empty: nothing is damaged).
        notes: what could not be checked and why (e.g. parts written before checksums existed).
    """

    location: str
    checked: Mapping[str, int] = field(default_factory=dict)
    problems: Sequence[str] = ()
    notes: Sequence[str] = ()

    @property
    def ok(self) -> bool:
        """Whether nothing is damaged."""
        return not self.problems


@dataclass(frozen=True, slots=True)
class CopyReport:
    """What a copy to another backend did (``MultiVectorStore.copy_to``, ``colbert-adapters copy``).

    Attributes:
        source: the backend copied from, for messages.
        target: the backend copied to.
        documents: documents in the source.
        copied: documents written to the target.
        skipped: documents the target already held, equal (a resumed copy).
        tokens: token vectors written.
        seconds: time spent reading and writing (verification excluded).
        model_id: the model recorded in the target.
        verified: whether the verification ran (it raises when it fails).
        target_count: documents in the target after the copy (verified only).
        sample: documents checked and searched with by the verification.
        k: hits compared per verification search.
        agreement: mean fraction of the source's top ``k`` that the target's top ``k`` holds or beats.
        max_score_diff: largest score difference of a document both top ``k`` hold.
        exact: whether both backends search exactly (then any disagreement fails the verification).
        verify_seconds: time the verification took.
    """

    source: str
    target: str
    documents: int
    copied: int
    skipped: int
    tokens: int
    seconds: float
    model_id: str | None = None
    verified: bool = False
    target_count: int | None = None
    sample: int = 0
    k: int = 0
    agreement: float | None = None
    max_score_diff: float | None = None
    exact: bool = False
    verify_seconds: float | None = None

    @property
    def docs_per_second(self) -> float:
        """Documents copied per second."""
        return self.copied / self.seconds if self.seconds > 0 else 0.0

    @property
    def tokens_per_second(self) -> float:
        """Token vectors copied per second."""
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """The fields and the two rates, as plain JSON-serialisable values."""
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out.update(docs_per_second=self.docs_per_second, tokens_per_second=self.tokens_per_second)
        return out


@runtime_checkable
class Backend(Protocol):
    """Structural type of a multi-vector backend (no subclassing needed)."""

    @property
    def dim(self) -> int | None:
        """Dimension of the stored token vectors, or ``None`` while the backend is empty and unconfigured."""
        ...

    def upsert(
        self,
        ids: Sequence[str],
        vectors: Sequence[MultiVector],
        texts: Sequence[str | None] | None = None,
        metadatas: Sequence[Metadata | None] | None = None,
    ) -> None:
        """Insert or replace documents.

        Args:
            ids: ``n`` unique, non-empty ids.
            vectors: ``n`` float32 arrays of shape ``(n_tokens_i, dim)``, L2-normalised rows.
            texts: ``n`` texts (or ``None`` entries), stored and returned with hits.
            metadatas: ``n`` JSON-serialisable dicts (or ``None`` entries).
        """
        ...

    def delete(self, ids: Sequence[str]) -> int:
        """Remove documents by id; unknown ids are ignored. Returns the number removed."""
        ...

    def delete_where(self, filter: Filter) -> int:
        """Remove every document matching a metadata filter (never empty). Returns the number removed."""
        ...

    def get(self, ids: Sequence[str], *, with_vectors: bool = False) -> list[Record]:
        """Fetch stored documents by id, in the order given, skipping unknown ids."""
        ...

    def search(self, query_vectors: MultiVector, k: int = 10, filter: Filter | None = None) -> list[Hit]:
        """Top ``k`` documents by MaxSim against ``query_vectors`` (``(n_query_tokens, dim)``)."""
        ...

    def ids(self) -> list[str]:
        """Every stored id (a snapshot)."""
        ...

    def clear(self) -> None:
        """Remove every document; the dimension and the recorded model stay."""
        ...

    def count(self) -> int:
        """Number of live documents."""
        ...

    def close(self) -> None:
        """Flush and release resources. Idempotent."""
        ...

    def __enter__(self) -> Backend:
        """Return the backend itself (``with`` closes it on exit)."""
        ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Close the backend."""
        ...


@runtime_checkable
class LexicalBackend(Protocol):
    """A backend that also ranks its stored texts by BM25 (``MultiVectorStore.search(mode="lexical" | "hybrid")``).

    The memory and Voyager backends implement it with SQLite FTS5, the Qdrant backend with a sparse vector scored
    with Qdrant's IDF modifier. A document stored without text has no terms and is never returned.
    """

    def lexical_search(
        self, query: str, k: int = 10, filter: Filter | None = None, *, ids: Sequence[str] | None = None
    ) -> list[Hit]:
        """Top ``k`` documents by BM25 of their texts against the words of ``query`` (any word matches; stemmed,
        case and accents folded), restricted by a metadata ``filter`` and to ``ids`` when given; scores are BM25,
        higher is better."""
        ...
