"""Exceptions raised by colbert-adapters.

Every exception derives from :class:`ColBERTError`, so ``except ColBERTError`` catches all of them.
Subclasses also derive from the matching built-in (``ValueError``, ``ImportError``, ...) so code that
catches the built-in keeps working. Messages name the problem, what was expected, and the fix.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ColBERTError",
    "CollectionConfigError",
    "CopyVerificationError",
    "DimensionMismatchError",
    "HubUnavailableError",
    "IndexCorruptedError",
    "IndexLockedError",
    "InvalidInputError",
    "MissingDependencyError",
    "QdrantRequestError",
    "QdrantUnavailableError",
    "UnknownBackendError",
]


class ColBERTError(Exception):
    """Base class of every error raised by colbert-adapters."""


class MissingDependencyError(ColBERTError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class InvalidInputError(ColBERTError, ValueError):
    """User input is malformed: wrong type, empty or ragged vectors, NaN, duplicate ids, ..."""


class DimensionMismatchError(InvalidInputError):
    """Vectors do not have the dimension the encoder or the store expects."""


class CheckpointError(ColBERTError, ValueError):
    """A model directory is not a loadable checkpoint (missing files, mismatched weights, pickle-only weights)."""


class HubUnavailableError(ColBERTError, OSError):
    """The Hugging Face Hub cannot be reached and the model is not in the local cache."""


class CollectionConfigError(ColBERTError, ValueError):
    """An existing index or collection was created with another schema (dimension, model, vector names)."""


class IndexCorruptedError(CollectionConfigError):
    """Stored index data is damaged: a size, a name or a checksum does not match what the index recorded.

    Nothing is returned from damaged data; restore the index from a backup or rebuild it.
    """


class CopyVerificationError(ColBERTError, RuntimeError):
    """A copy to another backend ended with a target that differs from its source (counts, documents or searches)."""


class IndexLockedError(ColBERTError, RuntimeError):
    """Another process holds the write lock of an index."""


class UnknownBackendError(ColBERTError, ValueError):
    """A backend name is not registered."""


class QdrantUnavailableError(ColBERTError, ConnectionError):
    """The Qdrant server cannot be reached (refused, timed out, or kept failing with 5xx/429)."""


class QdrantRequestError(ColBERTError, RuntimeError):
    """Qdrant refused a request for a reason that retrying will not fix (auth, bad request, too large)."""
