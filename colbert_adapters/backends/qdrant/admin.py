"""Administering collections: create one with explicit options, and copy one to another (Edge to a server).

Moving up from Edge to a server: ``colbert-adapters qdrant copy ./index http://host:6333 --to-collection
docs`` (or :func:`copy_collection`) streams every point (same ids, payload, vectors) into any QdrantClient
collection; then open it with ``QdrantBackend.from_url("http://host:6333", collection_name="docs", ...)``.
:func:`setup_collection` (``colbert-adapters qdrant setup``) creates a collection with storage and cluster
options (:class:`~colbert_adapters.backends.qdrant.config.QdrantCollectionConfig`) before the first write.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from ..._validation import positive_int
from ...errors import CollectionConfigError
from ._backend import QdrantBackend
from .config import QdrantCollectionConfig

__all__ = ["copy_collection", "setup_collection"]

logger = logging.getLogger(__name__)


def setup_collection(
    target: QdrantBackend | Any,
    config: QdrantCollectionConfig,
    *,
    collection_name: str = "colbert",
    recreate: bool = False,
    model_id: str | None = None,
) -> QdrantBackend:
    """Create (or validate) a ColBERT collection with explicit storage and cluster options.

    Args:
        target: a ``QdrantClient``, an Edge directory path (``str``/``PathLike``), or a URL string starting
            with ``http://`` / ``https://``.
        config: the layout: dimension, datatype, quantization, placement, payload indexes, cluster params.
        collection_name: the collection (client engines).
        recreate: drop an existing collection first (deletes its documents).
        model_id: encoder identifier to record.

    Returns:
        An open :class:`QdrantBackend` on the collection (close it, or use it).

    Raises:
        CollectionConfigError: an existing collection has another schema (and ``recreate`` is false).

    Example:
        >>> import tempfile
        >>> from colbert_adapters.backends.qdrant import QdrantCollectionConfig, setup_collection
        >>> cfg = QdrantCollectionConfig(dim=96, datatype="float16", payload_indexes={"source": "keyword"})
        >>> with setup_collection(tempfile.mkdtemp(), cfg) as backend:
        ...     backend.dim, backend.count()
        (96, 0)
    """
    if isinstance(target, (str, os.PathLike)):
        s = os.fspath(target)
        if s.startswith(("http://", "https://")):
            return QdrantBackend(
                url=s, config=config, collection_name=collection_name, recreate=recreate, model_id=model_id
            )
        if s == ":memory:":
            return QdrantBackend(
                local=s, config=config, collection_name=collection_name, recreate=recreate, model_id=model_id
            )
        return QdrantBackend(path=s, config=config, recreate=recreate, model_id=model_id)
    return QdrantBackend(
        client=target, config=config, collection_name=collection_name, recreate=recreate, model_id=model_id
    )


def copy_collection(
    source: QdrantBackend,
    target: QdrantBackend,
    *,
    batch_points: int = 256,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Stream every document from one Qdrant backend to another (e.g. an Edge directory to a server).

    Points keep their ids, payload (id, text, metadata, insertion order) and vectors; the target is created
    with the source's layout when it does not exist yet (create it first, e.g. with :func:`setup_collection`,
    to change storage or cluster options). Vectors are validated on the way (Qdrant's per-point cap
    included), so a document that Edge accepted but a server would refuse fails with a clear error.

    Args:
        source: the backend to read (any engine).
        target: the backend to write (any engine); documents with the same ids are replaced.
        batch_points: points read per scroll page (writes are further split by request bytes).
        progress: called with the running number of copied documents after every page.

    Returns:
        The number of documents copied.

    Raises:
        CollectionConfigError: the dimensions differ, or the models recorded differ.
    """
    batch_points = positive_int(batch_points, "batch_points")
    src_cfg = source.config
    if src_cfg is None:
        return 0
    with source._lock, target._lock:
        source._check_open()
        target._check_open()
        target._ensure_created(
            QdrantCollectionConfig.from_json(
                {
                    **src_cfg.to_json(),
                    "shard_keys": [],
                    "shard_number": None,
                    "replication_factor": None,
                    "write_consistency_factor": None,
                }
            )
        )
        if target.dim != source.dim:
            raise CollectionConfigError(
                f"cannot copy {source.dim}-d documents from {source._describe()} into {target._describe()}, "
                f"which stores {target.dim}-d vectors"
            )
        if source.model_id is not None:
            target.model_id = source.model_id  # refuses a target built with another model
        copied = 0
        for points in source._pages(batch_points, with_vectors=True):
            if points:
                target._write_stored(points)
                copied += len(points)
                if progress is not None:
                    progress(copied)
        target.flush()
        logger.info("copied %d documents from %s to %s", copied, source._describe(), target._describe())
        return copied
