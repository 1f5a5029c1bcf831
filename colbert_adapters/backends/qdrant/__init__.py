"""Qdrant backend: native multivector MaxSim on Qdrant Edge (embedded), local mode, a server or a cluster.

:class:`QdrantBackend` implements the :class:`~colbert_adapters.backends.base.Backend` protocol over three
engines with the same behaviour and the same results:

* **Qdrant Edge** (``QdrantBackend.edge(path)`` or ``QdrantBackend(path=...)``): the Qdrant engine
  embedded in the process (``qdrant-edge-py``), on disk, no server. This is the default when a path is given,
  e.g. ``MultiVectorStore(encoder, backend="qdrant", path="./index")``.
* **local mode** (``QdrantBackend.local(":memory:")`` or a directory): qdrant-client's pure-Python engine,
  for quick trials and unit tests. It ignores HNSW, quantization and payload indexes and warns above
  20,000 points.
* **a server or cluster** (``QdrantBackend.from_url("http://host:6333", api_key=...)`` or
  ``QdrantBackend(client=QdrantClient(...), collection_name=...)``).

Layout of a point (one document):

* id: ``uuid5(ID_NAMESPACE, doc_id)`` (Qdrant accepts only unsigned ints and UUIDs), see :func:`point_id`;
* vector ``"colbert"``: the document's ``(n_tokens, dim)`` token vectors, DOT + MaxSim, HNSW ``m=0``, float16
  by default (``QdrantCollectionConfig.datatype``);
* vector ``"summary"``: the first-stage vector of the collection's layout (``QdrantCollectionConfig.first_stage``,
  recorded in the collection): by default ``n_centroids`` k-means centroids of the token vectors, a MaxSim
  multivector with HNSW; collections made before layouts were recorded hold the normalised mean (``"mean"``);
* payload: ``{"doc_id": str, "text": str | None, "metadata": {...}, "seq": int}``. Metadata filters on the
  raw Qdrant API therefore use keys ``metadata.<field>``.

Search is two-stage by default, in one request: ``prefetch_limit`` candidates through the HNSW of the first-stage
vectors (the centroids are searched with the query's token vectors), reranked by exact MaxSim on the multivector.
``search_mode="exact"`` (or ``mode="exact"`` per call) scans all documents with MaxSim and equals
:class:`~colbert_adapters.backends.memory.MemoryBackend` (float32 storage; float16 rounds the scores).
Scores are MaxSim sums (higher is better).

Example:
    >>> import numpy as np, tempfile
    >>> from colbert_adapters.backends.qdrant import QdrantBackend
    >>> with QdrantBackend.edge(tempfile.mkdtemp(), dim=2) as backend:
    ...     backend.upsert(["a", "b"], [np.array([[1.0, 0.0]]), np.array([[0.0, 1.0], [0.6, 0.8]])],
    ...                    texts=["first", "second"], metadatas=[{"lang": "en"}, {"lang": "fr"}])
    ...     [(h.id, round(h.score, 2)) for h in backend.search(np.array([[0.0, 1.0]]), k=2)]
    [('b', 1.0), ('a', 0.0)]

Edge and the GIL: Qdrant Edge holds the GIL during ``update``, ``query`` and ``optimize``. Other Python
threads do not run meanwhile, and a long :meth:`QdrantBackend.optimize` (segment merge, summary HNSW
build) pauses the interpreter. The backend optimizes on :meth:`~QdrantBackend.close` when there were
writes, every ``optimize_every`` written points, and when you call :meth:`~QdrantBackend.optimize`
(e.g. after a bulk load, before serving queries). Edge durability: the WAL is on by default and every
write call ends with ``flush()`` (``flush_on_write``), so a write that returned is on disk.

Moving up, Edge to a server: ``colbert-adapters qdrant copy ./index http://host:6333 --to-collection docs``
(or :func:`copy_collection`) streams every point (same ids, payload, vectors) into any QdrantClient
collection. Then change only the constructor: ``QdrantBackend.from_url("http://host:6333",
collection_name="docs", api_key=..., prefer_grpc=True)``. On a cluster, connect to any node (or a load
balancer): it fans queries out to every shard. Choose ``shard_number`` / ``replication_factor`` /
``write_consistency_factor`` when creating the collection (:class:`QdrantCollectionConfig`,
:func:`setup_collection`, ``colbert-adapters qdrant setup``); for per-tenant data use ``shard_keys`` and open
one backend per tenant with ``shard_key=``. Qdrant does not rebalance shards when nodes are added (move them
with the cluster API).

The package, from the facade down (private modules start with ``_``):

* :mod:`._backend`: :class:`QdrantBackend`, the facade: argument checks, the public methods, the write path;
* :mod:`.admin`: :func:`setup_collection` and :func:`copy_collection` (Edge to a server);
* :mod:`.config`: :class:`QdrantCollectionConfig` and the schema check of an existing collection;
* :mod:`._points`: how a document becomes a point (id, payload keys, mean vector, vector checks);
* :mod:`._first_stage`: the first-stage layouts: what a document stores and a query sends for the prefetch;
* :mod:`._verify`: :meth:`QdrantBackend.verify`;
* :mod:`._filters`: dict filters to Qdrant filters, client filters to Edge filters;
* :mod:`._engines`: the engine interface and the request-size helpers, implemented by :mod:`._client`
  (qdrant-client: a server, a cluster or local mode, with retries) and :mod:`._edge` (Qdrant Edge).
"""

from __future__ import annotations

# The names imported with noqa: F401 and missing from __all__ (payload keys, summary_vector, the request-size
# helpers, the engine classes) stay importable from here, as they were from the single-module backend.
from ...errors import QdrantRequestError, QdrantUnavailableError
from ._backend import QdrantBackend
from ._client import ClientEngine  # noqa: F401
from ._edge import EdgeEngine  # noqa: F401
from ._engines import (  # noqa: F401
    REST_LIMIT_BYTES,
    StoredPoint,
    estimate_point_bytes,
    split_by_bytes,
)
from ._points import (  # noqa: F401
    DOC_ID_KEY,
    ID_NAMESPACE,
    MAX_MULTIVECTOR_FLOATS,
    METADATA_KEY,
    SEQ_KEY,
    TEXT_KEY,
    point_id,
    summary_vector,
)
from .admin import copy_collection, setup_collection
from .config import QdrantCollectionConfig

__all__ = [
    "ID_NAMESPACE",
    "MAX_MULTIVECTOR_FLOATS",
    "QdrantBackend",
    "QdrantCollectionConfig",
    "QdrantRequestError",
    "QdrantUnavailableError",
    "copy_collection",
    "point_id",
    "setup_collection",
]
