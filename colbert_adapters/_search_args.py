"""Argument checks of ``MultiVectorStore``'s searches: filters, ``ids=`` subsets, ``highlight``, batch sizes, and
the search mode with its hybrid options."""

from __future__ import annotations

import sys

from ._filters import FilterExpr, check_filter
from ._validation import check_ids
from .errors import InvalidInputError
from .types import Encoder

__all__ = ["check_batch_size", "check_highlight", "check_search_filter", "subset_ids"]


def check_search_filter(filter: object, subset: list[str] | None) -> FilterExpr | None:
    """Check a dict filter (``None`` for a native Qdrant filter, which the backend checks)."""
    native = (sys.modules.get("qdrant_client.models"), sys.modules.get("qdrant_edge"))
    if not any(module is not None and isinstance(filter, module.Filter) for module in native):
        return check_filter(filter)
    if subset is not None:
        raise InvalidInputError("ids= takes a dict filter; a native backend filter cannot be checked per document")
    return None


def subset_ids(ids: object) -> list[str]:
    """The ``ids=`` of a search: validated ids, duplicates dropped (first kept)."""
    return list(dict.fromkeys(check_ids(ids, allow_duplicates=True)))


def check_highlight(encoder: Encoder, highlight: object) -> bool:
    """``highlight`` checked: a bool, and when true an encoder that gives token offsets."""
    if not isinstance(highlight, bool):
        raise InvalidInputError(f"highlight must be True or False, got {highlight!r}")
    if highlight:
        from ._highlight import offsets_function

        offsets_function(encoder)
    return highlight


def check_batch_size(batch_size: object) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInputError(f"batch_size must be a positive int, got {batch_size!r}")
