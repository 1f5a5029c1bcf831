"""``QdrantBackend.verify``: read every point and report what is damaged, changing nothing."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..base import VerifyReport
from ._edge import EdgeEngine
from ._engines import Engine, StoredPoint
from ._points import DOC_ID_KEY, point_id
from .config import QdrantCollectionConfig

__all__ = ["verify_points"]


def verify_points(
    engine: Engine, config: QdrantCollectionConfig | None, pages: Iterable[list[StoredPoint]], where: str
) -> VerifyReport:
    """Check every point of ``pages`` (scroll pages with vectors) and, on Edge, the shard files.

    Each point must carry its document id (and the id must map to the point's uuid), a finite multivector of the
    collection's dimension, and the count must match. On Edge, the shard files a clean close recorded and this
    process has not rewritten since it opened them are checked against their CRC-32.
    """
    problems: list[str] = []
    notes: list[str] = []
    checked = {"documents": 0, "tokens": 0}
    if config is not None:
        dim = config.dim
        for page in pages:
            for p in page:
                checked["documents"] += 1
                doc = p.payload.get(DOC_ID_KEY)
                mv = p.multivector
                if not isinstance(doc, str) or point_id(doc) != str(p.pid):
                    problems.append(f"point {p.pid}: its document id {doc!r} does not map to it")
                elif mv is None or mv.ndim != 2 or mv.shape[1] != dim or not np.isfinite(mv).all():
                    problems.append(f"document {doc!r}: its multivector is missing, malformed or not finite")
                else:
                    checked["tokens"] += int(mv.shape[0])
        if checked["documents"] != engine.count():
            problems.append(f"{engine.count()} points counted but {checked['documents']} read")
    if isinstance(engine, EdgeEngine):
        file_problems, file_notes, n_files = engine.verify_files()
        problems += file_problems
        notes += file_notes
        checked["files"] = n_files
    return VerifyReport(where, checked, problems, notes)
