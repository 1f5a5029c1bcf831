"""The input limits every backend enforces, identically and before anything is written.

A value beyond a limit raises :class:`~colbert_adapters.errors.InvalidInputError` naming it and the fix; the index
is left unchanged. ``README.md`` ("Limits") lists them for users.

Example:
    >>> from colbert_adapters.limits import MAX_ID_CHARS, MAX_METADATA_DEPTH
    >>> MAX_ID_CHARS, MAX_METADATA_DEPTH
    (1024, 32)
"""

from __future__ import annotations

from ._validation import (
    MAX_DIM,
    MAX_ID_CHARS,
    MAX_K,
    MAX_KEY_CHARS,
    MAX_METADATA_DEPTH,
    MAX_TEXT_CHARS,
    MAX_TOKENS_PER_DOCUMENT,
    METADATA_INT_RANGE,
)

__all__ = [
    "MAX_DIM",
    "MAX_ID_CHARS",
    "MAX_K",
    "MAX_KEY_CHARS",
    "MAX_METADATA_DEPTH",
    "MAX_TEXT_CHARS",
    "MAX_TOKENS_PER_DOCUMENT",
    "METADATA_INT_RANGE",
]
