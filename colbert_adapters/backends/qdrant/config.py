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
from ._first_stage import DEFAULT_FIRST_STAGE, FIRST_STAGES, Layout, legacy_layout
from ._points import MAX_MULTIVECTOR_FLOATS, metadata_path

__all__ = ["DATATYPES", "FIRST_STAGES", "PAYLOAD_TYPES", "QdrantCollectionConfig", "Schema", "check_schema"]

logger = logging.getLogger(__name__)

#: Payload index types accepted in :attr:`QdrantCollectionConfig.payload_indexes`.
PAYLOAD_TYPES = ("keyword", "integer", "float", "bool", "text", "datetime", "uuid", "geo")
#: Storage types of the token multivector: 4, 2 or 1 byte per component (``turbo8``: Qdrant's TurboQuant codes,
#: scored as stored).
DATATYPES = ("float32", "float16", "turbo8")


@dataclass(frozen=True)
class QdrantCollectionConfig:
    """Layout and storage options of a ColBERT collection in Qdrant (or a Qdrant Edge shard).

    The collection holds per point a multivector ``multivector_name`` (the document's ``(n_tokens, dim)`` token
    vectors, DOT product with MaxSim, no HNSW graph: it is used to rerank) and, except in the ``"tokens"`` layout, a
    first-stage vector ``summary_name`` searched through HNSW by the prefetch of a two-stage search. Its kind is
    ``first_stage`` (see :mod:`._first_stage`): ``"centroids"`` (``n_centroids`` k-means centroids of the tokens, a
    MaxSim multivector; the default), ``"mean"`` (the normalised mean, the layout of collections made before
    layouts were recorded), ``"centred-mean"``, ``"muvera"`` or ``"tokens"`` (HNSW over the token multivectors).
    The layout is recorded in the collection: an opened collection keeps its own.

    Attributes:
        dim: token vector dimension.
        first_stage: the first-stage layout; ``None`` means the default (:data:`DEFAULT_FIRST_STAGE`) for a new
            collection and "whatever it holds" for an existing one. Another value than the collection's is refused.
        n_centroids: centroids per document of the ``"centroids"`` layout.
        multivector_name: name of the multivector.
        summary_name: name of the first-stage vector.
        datatype: storage of the multivector: ``"float32"``, ``"float16"`` (half the bytes; scores carry the
            float16 rounding) or ``"turbo8"`` (a quarter: Qdrant's TurboQuant 8-bit codes, scores approximate).
        summary_datatype: ``"float32"`` or ``"float16"`` storage of the first-stage vector.
        summary_quantization: ``None``, ``"int8"`` or ``"binary"`` quantization of the first-stage vector (the
            prefetch searches the codes, then rescores its candidates on the originals).
        quantization: ``None`` or ``"int8"`` (scalar quantization of the multivector, kept in RAM, with
            rescoring on the originals at query time).
        quantization_quantile: quantile for int8 scalar quantization.
        on_disk: keep the original multivectors on disk (mmap, page cache) instead of in RAM; the first-stage
            vectors and their HNSW stay in RAM.
        summary_m: HNSW ``m`` of the first-stage vector (of the multivector in the ``"tokens"`` layout); ``0``: no
            graph, the prefetch scores every first-stage vector exactly. ``None``: ``0`` for ``"centroids"`` (an HNSW
            graph over MaxSim between centroid sets navigates poorly: the exact scan of a few centroids per document
            is a fraction of a full scan and keeps recall), ``16`` for the other layouts.
        summary_ef_construct: HNSW ``ef_construct`` of the first-stage vector.
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
    datatype: str = "float16"
    quantization: str | None = None
    quantization_quantile: float = 0.99
    on_disk: bool = False
    summary_m: int | None = None
    summary_ef_construct: int = 100
    payload_indexes: Mapping[str, str] = field(default_factory=dict)
    shard_number: int | None = None
    replication_factor: int | None = None
    write_consistency_factor: int | None = None
    shard_keys: tuple[str, ...] = ()
    first_stage: str | None = None
    n_centroids: int = 8
    summary_datatype: str = "float16"
    summary_quantization: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.dim, bool) or not isinstance(self.dim, (int, np.integer)) or not 1 <= self.dim <= 65535:
            raise InvalidInputError(f"dim must be an int in [1, 65535], got {self.dim!r}")
        for name in (self.multivector_name, self.summary_name):
            if not isinstance(name, str) or not name:
                raise InvalidInputError(f"vector names must be non-empty str, got {name!r}")
        if self.multivector_name == self.summary_name:
            raise InvalidInputError("multivector_name and summary_name must differ")
        if self.datatype not in DATATYPES:
            raise InvalidInputError(f"datatype must be one of {DATATYPES}, got {self.datatype!r}")
        if self.summary_datatype not in ("float32", "float16"):
            raise InvalidInputError(f"summary_datatype must be 'float32' or 'float16', got {self.summary_datatype!r}")
        if self.summary_quantization not in (None, "int8", "binary"):
            raise InvalidInputError(
                f"summary_quantization must be None, 'int8' or 'binary', got {self.summary_quantization!r}"
            )
        if self.first_stage is not None and self.first_stage not in FIRST_STAGES:
            raise InvalidInputError(f"first_stage must be one of {FIRST_STAGES} or None, got {self.first_stage!r}")
        n_c = self.n_centroids
        if isinstance(n_c, bool) or not isinstance(n_c, (int, np.integer)) or not 1 <= n_c <= 256:
            raise InvalidInputError(f"n_centroids must be an int in [1, 256], got {n_c!r}")
        if n_c * self.dim >= MAX_MULTIVECTOR_FLOATS:
            raise InvalidInputError(
                f"n_centroids={n_c} x dim={self.dim} floats per document reach Qdrant's cap of "
                f"{MAX_MULTIVECTOR_FLOATS} per multivector; pass fewer n_centroids"
            )
        if self.datatype == "turbo8" and self.quantization is not None:
            raise InvalidInputError("datatype='turbo8' is already quantized: pass quantization=None")
        if self.quantization not in (None, "int8"):
            raise InvalidInputError(f"quantization must be None or 'int8', got {self.quantization!r}")
        for key, kind in self.payload_indexes.items():
            if not isinstance(key, str) or not key or kind not in PAYLOAD_TYPES:
                raise InvalidInputError(
                    f"payload_indexes[{key!r}] = {kind!r}: keys are metadata fields, types one of "
                    f"{', '.join(PAYLOAD_TYPES)}"
                )
            metadata_path(key)  # a key that is not a plain field name: InvalidInputError
        sm = self.summary_m
        if sm is not None and (isinstance(sm, bool) or not isinstance(sm, int) or sm < 0):
            raise InvalidInputError(f"summary_m must be an int >= 0 or None, got {sm!r}")
        for name in ("shard_number", "replication_factor", "write_consistency_factor"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise InvalidInputError(f"{name} must be a positive int or None, got {v!r}")
        object.__setattr__(self, "dim", int(self.dim))
        object.__setattr__(self, "n_centroids", int(self.n_centroids))
        object.__setattr__(self, "payload_indexes", dict(self.payload_indexes))
        object.__setattr__(self, "shard_keys", tuple(self.shard_keys))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> QdrantCollectionConfig:
        """The config recorded by :meth:`to_json`; unknown keys are ignored."""
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    def resolved(self) -> QdrantCollectionConfig:
        """This layout with the default first stage filled in (what a new collection records)."""
        first = self.first_stage if self.first_stage is not None else DEFAULT_FIRST_STAGE
        m = self.summary_m if self.summary_m is not None else (0 if first == "centroids" else 16)
        return replace(self, first_stage=first, summary_m=m)

    def layout(self, centre: Any = None) -> Layout:
        """The :class:`~._first_stage.Layout` of this config (``centre``: the corpus centre, centred layouts)."""
        cfg = self.resolved()
        return Layout(str(cfg.first_stage), cfg.dim, cfg.summary_name, cfg.multivector_name, cfg.n_centroids, centre)

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
            ``None`` for a collection created elsewhere (its first stage is then read from its vectors).
        requested: the layout the caller asked for, or ``None``; its vector names are the ones looked up.
        dim: the dimension the caller asked for, or ``None``.
        where: the collection, for messages.
        fix: how to get past a mismatch, for messages.

    Returns:
        The layout to use (the recorded one when there is one: the storage options of an existing
        collection win over the requested ones, with a warning) and whether the multivector is quantized.

    Raises:
        CollectionConfigError: missing vectors, another comparator, distance, dimension or first stage.
    """
    base = QdrantCollectionConfig.from_json(legacy_layout(stored)) if stored is not None else None
    names = (
        (requested.multivector_name, requested.summary_name)
        if requested is not None
        else (base.multivector_name, base.summary_name)
        if base is not None
        else ("colbert", "summary")
    )
    mv = schema.vectors.get(names[0])
    if mv is None:
        raise CollectionConfigError(
            f"{where} has vectors {sorted(schema.vectors)!r}, not the multivector {names[0]!r} this backend needs; "
            f"{fix}"
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
    want_dim = requested.dim if requested is not None else dim
    if want_dim is not None and want_dim != mv["size"]:
        raise CollectionConfigError(
            f"{where} stores {mv['size']}-d multivectors, not {want_dim}-d; use the model it was built with, or {fix}"
        )
    quantized = bool(mv["quantized"])
    if base is None:
        sm = schema.vectors.get(names[1])
        if sm is None:
            raise CollectionConfigError(
                f"{where} has vectors {sorted(schema.vectors)!r}: the multivector {names[0]!r} but no first-stage "
                f"vector {names[1]!r} and no colbert-adapters layout recorded; {fix}"
            )
        cfg = QdrantCollectionConfig(
            dim=mv["size"],
            multivector_name=names[0],
            summary_name=names[1],
            quantization="int8" if mv["quantized"] else None,
            first_stage="centroids" if sm["multivector"] == "max_sim" else "mean",
        )
    else:
        cfg = QdrantCollectionConfig.from_json(
            {**base.to_json(), "multivector_name": names[0], "summary_name": names[1]}
        )
    if requested is not None and requested.first_stage not in (None, cfg.first_stage):
        raise CollectionConfigError(
            f"{where} was created with first_stage={cfg.first_stage!r}, not {requested.first_stage!r}; open it with "
            f"first_stage={cfg.first_stage!r} (or None), or {fix}. To change the layout and keep the documents, "
            "copy them into a new collection (colbert-adapters qdrant copy, or copy_collection)"
        )
    cfg.layout().check_schema(schema.vectors, where, fix)
    # Payload indexes are additive: the backend creates requested ones that are missing, so they never differ.
    if requested is not None:
        asked = replace(requested, payload_indexes={}, first_stage=cfg.first_stage).resolved()
        if asked != replace(cfg, payload_indexes={}):
            logger.warning(
                "%s exists with storage options %s; using them, not the requested %s (recreate=True to change)",
                where,
                cfg,
                requested,
            )
    return cfg, quantized
