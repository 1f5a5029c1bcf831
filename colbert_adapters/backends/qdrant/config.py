"""The layout of a ColBERT collection in Qdrant, and the check of an existing collection against it.

:class:`QdrantCollectionConfig` is what a backend creates (vector names, storage, quantization, payload
indexes, cluster placement) and what it records next to the data. :func:`check_schema` compares what an
existing collection or Edge shard actually holds (its :class:`Schema`, read by the engine) with what this
library needs, and says how to fix a mismatch. To create a collection with explicit options, see
:func:`~colbert_adapters.backends.qdrant.setup_collection`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from ...errors import CollectionConfigError, InvalidInputError
from ._points import metadata_path

__all__ = ["PAYLOAD_TYPES", "QdrantCollectionConfig", "Schema", "check_schema"]

logger = logging.getLogger(__name__)

#: Payload index types accepted in :attr:`QdrantCollectionConfig.payload_indexes`.
PAYLOAD_TYPES = ("keyword", "integer", "float", "bool", "text", "datetime", "uuid", "geo")


@dataclass(frozen=True)
class QdrantCollectionConfig:
    """Layout and storage options of a ColBERT collection in Qdrant (or a Qdrant Edge shard).

    The collection holds two named vectors per point: a multivector ``multivector_name`` (the document's
    ``(n_tokens, dim)`` token vectors, DOT product with MaxSim, no HNSW graph: it is used to rerank) and a
    single vector ``summary_name`` (the L2-normalised mean of the token vectors, cosine, HNSW) used by the
    first stage of a two-stage search.

    Attributes:
        dim: token vector dimension.
        multivector_name: name of the multivector.
        summary_name: name of the summary vector.
        datatype: ``"float32"`` or ``"float16"`` storage of the multivector (float16 halves disk and RAM;
            scores then carry the float16 rounding of the token vectors).
        quantization: ``None`` or ``"int8"`` (scalar quantization of the multivector, kept in RAM, with
            rescoring on the originals at query time).
        quantization_quantile: quantile for int8 scalar quantization.
        on_disk: keep the original multivectors on disk (mmap, page cache) instead of in RAM; the summary
            vectors and their HNSW stay in RAM.
        summary_m: HNSW ``m`` of the summary vector.
        summary_ef_construct: HNSW ``ef_construct`` of the summary vector.
        payload_indexes: ``{metadata_field: type}`` payload indexes to create, type one of ``keyword``,
            ``integer``, ``float``, ``bool``, ``text``, ``datetime``, ``uuid``, ``geo``. Fields are
            metadata keys (stored under ``metadata.<field>``). Ignored by local mode.
        shard_number: server/cluster only: number of shards (default: the server's, one per node).
        replication_factor: server/cluster only: copies of each shard (fixed at creation).
        write_consistency_factor: server/cluster only: replicas that must acknowledge a write.
        shard_keys: server/cluster only: create the collection with custom sharding and these shard keys;
            a backend then writes to and reads from the ``shard_key`` it is given.
    """

    dim: int
    multivector_name: str = "colbert"
    summary_name: str = "summary"
    datatype: str = "float32"
    quantization: str | None = None
    quantization_quantile: float = 0.99
    on_disk: bool = False
    summary_m: int = 16
    summary_ef_construct: int = 100
    payload_indexes: Mapping[str, str] = field(default_factory=dict)
    shard_number: int | None = None
    replication_factor: int | None = None
    write_consistency_factor: int | None = None
    shard_keys: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.dim, bool) or not isinstance(self.dim, (int, np.integer)) or not 1 <= self.dim <= 65535:
            raise InvalidInputError(f"dim must be an int in [1, 65535], got {self.dim!r}")
        for name in (self.multivector_name, self.summary_name):
            if not isinstance(name, str) or not name:
                raise InvalidInputError(f"vector names must be non-empty str, got {name!r}")
        if self.multivector_name == self.summary_name:
            raise InvalidInputError("multivector_name and summary_name must differ")
        if self.datatype not in ("float32", "float16"):
            raise InvalidInputError(f"datatype must be 'float32' or 'float16', got {self.datatype!r}")
        if self.quantization not in (None, "int8"):
            raise InvalidInputError(f"quantization must be None or 'int8', got {self.quantization!r}")
        for key, kind in self.payload_indexes.items():
            if not isinstance(key, str) or not key or kind not in PAYLOAD_TYPES:
                raise InvalidInputError(
                    f"payload_indexes[{key!r}] = {kind!r}: keys are metadata fields, types one of "
                    f"{', '.join(PAYLOAD_TYPES)}"
                )
            metadata_path(key)  # a key that is not a plain field name: InvalidInputError
        for name in ("shard_number", "replication_factor", "write_consistency_factor"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise InvalidInputError(f"{name} must be a positive int or None, got {v!r}")
        object.__setattr__(self, "dim", int(self.dim))
        object.__setattr__(self, "payload_indexes", dict(self.payload_indexes))
        object.__setattr__(self, "shard_keys", tuple(self.shard_keys))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> QdrantCollectionConfig:
        """The config recorded by :meth:`to_json`; unknown keys are ignored."""
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field (recorded next to the data)."""
        out = asdict(self)
        out["payload_indexes"] = dict(self.payload_indexes)
        out["shard_keys"] = list(self.shard_keys)
        return out


@dataclass(frozen=True)
class Schema:
    """What an existing collection or shard actually holds, for validation."""

    #: vector name -> ``{"size": int, "distance": str, "multivector": comparator or None, "quantized": bool}``
    vectors: dict[str, dict[str, Any]]


def check_schema(
    schema: Schema,
    stored: Mapping[str, Any] | None,
    requested: QdrantCollectionConfig | None,
    dim: int | None,
    *,
    where: str,
    fix: str,
) -> tuple[QdrantCollectionConfig, bool]:
    """Check an existing collection against what the backend needs, and return its layout.

    Args:
        schema: what the collection holds, as read by the engine.
        stored: the layout recorded by colbert-adapters at creation (``QdrantCollectionConfig.to_json()``), or
            ``None`` for a collection created elsewhere.
        requested: the layout the caller asked for, or ``None``; its vector names are the ones looked up.
        dim: the dimension the caller asked for, or ``None``.
        where: the collection, for messages.
        fix: how to get past a mismatch, for messages.

    Returns:
        The layout to use (the recorded one when there is one: the storage options of an existing
        collection win over the requested ones, with a warning) and whether the multivector is quantized.

    Raises:
        CollectionConfigError: missing vectors, another comparator, distance or dimension.
    """
    base = QdrantCollectionConfig.from_json(stored) if stored is not None else None
    names = (
        (requested.multivector_name, requested.summary_name)
        if requested is not None
        else (base.multivector_name, base.summary_name)
        if base is not None
        else ("colbert", "summary")
    )
    mv = schema.vectors.get(names[0])
    sm = schema.vectors.get(names[1])
    if mv is None or sm is None:
        raise CollectionConfigError(
            f"{where} has vectors {sorted(schema.vectors)!r}, not the multivector {names[0]!r} and summary "
            f"{names[1]!r} this backend needs; {fix}"
        )
    if mv["multivector"] != "max_sim":
        raise CollectionConfigError(
            f"{where}: vector {names[0]!r} is not a MaxSim multivector (comparator {mv['multivector']!r}); {fix}"
        )
    if mv["distance"] != "dot":
        raise CollectionConfigError(
            f"{where}: multivector {names[0]!r} uses distance {mv['distance']!r}, expected 'dot' "
            f"(MaxSim over normalised token vectors); {fix}"
        )
    if sm["multivector"] is not None or sm["size"] != mv["size"]:
        raise CollectionConfigError(
            f"{where}: summary vector {names[1]!r} must be a single {mv['size']}-d vector; {fix}"
        )
    want_dim = requested.dim if requested is not None else dim
    if want_dim is not None and want_dim != mv["size"]:
        raise CollectionConfigError(
            f"{where} stores {mv['size']}-d multivectors, not {want_dim}-d; use the model it was built with, or {fix}"
        )
    quantized = bool(mv["quantized"])
    cfg = (
        base
        if base is not None
        else QdrantCollectionConfig(
            dim=mv["size"],
            multivector_name=names[0],
            summary_name=names[1],
            quantization="int8" if mv["quantized"] else None,
        )
    )
    # Payload indexes are additive: the backend creates requested ones that are missing, so they never differ.
    if requested is not None and replace(requested, payload_indexes={}) != replace(cfg, payload_indexes={}):
        logger.warning(
            "%s exists with storage options %s; using them, not the requested %s (recreate=True to change)",
            where,
            cfg,
            requested,
        )
    if base is not None:
        cfg = QdrantCollectionConfig.from_json(
            {**cfg.to_json(), "multivector_name": names[0], "summary_name": names[1]}
        )
    return cfg, quantized
