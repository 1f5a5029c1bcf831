"""Lexical search on Qdrant: a BM25 sparse vector on every point, scored by Qdrant with ``Modifier.IDF``.

A collection created by this version holds, next to the token multivector and the summary vector, a named sparse
vector (:data:`SPARSE_NAME`) whose dimensions are the terms of the document's text (SQLite FTS5's tokenizer, the
same terms as the memory and Voyager backends, ``colbert_adapters._lexical``), each dimension id a stable hash of
the term (:func:`~colbert_adapters._lexical.term_id`). A term's value is BM25's saturated term frequency,
``tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / avgdl))``, computed here; Qdrant multiplies it by the term's IDF,
``ln(1 + (N - n + 0.5) / (n + 0.5))`` over the points that have the vector, at query time (``Modifier.IDF``),
so the sum over the query's terms is BM25. ``k1``, ``b`` and ``avgdl`` are recorded in the collection's metadata
(``lexical``): ``avgdl`` is the mean length of the first texts written, then fixed, so every point is weighted
alike. This works the same on Qdrant Edge, local mode and a server.

A document stored without text gets no sparse vector and is never a lexical hit. A collection created before
lexical search has no sparse vector (Qdrant cannot add one to an existing collection): ``lexical_search`` says
how to copy it into a new one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..._filters import match_filter
from ..._lexical import query_words, term_frequencies, term_id
from ..._validation import check_ids, check_k
from ...errors import CollectionConfigError, InvalidInputError
from ...types import Filter, Hit
from ._engines import StoredPoint, ranked_hits, stored_point
from ._filters import resolve_filter
from ._points import DOC_ID_KEY, METADATA_KEY, TEXT_KEY

if TYPE_CHECKING:
    from ._engines import Engine

__all__ = ["SPARSE_NAME", "LexicalSearch", "add_sparse_vectors", "client_sparse_config", "edge_sparse_config"]

#: The name of the BM25 sparse vector in a collection.
SPARSE_NAME = "bm25"
#: BM25's term-frequency saturation and length normalisation (the values of SQLite FTS5 and Lucene).
K1, B = 1.2, 0.75


def new_layout() -> dict[str, Any]:
    """The ``lexical`` entry of a new collection's metadata (``avgdl`` set by the first texts written)."""
    return {"sparse": SPARSE_NAME, "k1": K1, "b": B, "avgdl": None}


def layout(meta: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``lexical`` entry of a collection's recorded metadata, or ``None`` (a collection created before it)."""
    entry = meta.get("lexical")
    return dict(entry) if isinstance(entry, Mapping) and entry.get("sparse") else None


def edge_sparse_config(qe: Any, meta: Mapping[str, Any]) -> dict[str, Any]:
    """``EdgeConfig(sparse_vectors=...)`` of a new Edge shard."""
    entry = layout(meta)
    return {} if entry is None else {entry["sparse"]: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)}


def client_sparse_config(models: Any, meta: Mapping[str, Any]) -> dict[str, Any] | None:
    """``create_collection(sparse_vectors_config=...)`` of a new qdrant-client collection."""
    entry = layout(meta)
    return None if entry is None else {entry["sparse"]: models.SparseVectorParams(modifier=models.Modifier.IDF)}


def bm25_weights(tf: Mapping[str, int], avgdl: float, k1: float = K1, b: float = B) -> tuple[list[int], list[float]]:
    """A text's sparse vector: ``(term ids, saturated term frequencies)``, ids unique (colliding terms summed).

    Example:
        >>> ids, values = bm25_weights({"cat": 2}, avgdl=2.0)
        >>> round(values[0], 4)  # 2 * 2.2 / (2 + 1.2)
        1.375
    """
    length = sum(tf.values())
    norm = k1 * (1.0 - b + b * length / avgdl)
    out: dict[int, float] = {}
    for term, n in tf.items():
        tid = term_id(term)
        out[tid] = out.get(tid, 0.0) + n * (k1 + 1.0) / (n + norm)
    return list(out), list(out.values())


def add_sparse_vectors(backend: Any, points: Sequence[StoredPoint]) -> None:
    """Give each point with a text its BM25 sparse vector (a collection with one; the first texts written fix
    ``avgdl``, recorded in the collection's metadata)."""
    entry = backend._lexical
    if entry is None:
        return
    tfs = term_frequencies([p.payload.get(TEXT_KEY) for p in points])
    if entry.get("avgdl") is None:
        lengths = [sum(tf.values()) for tf in tfs if tf]
        if not lengths:
            return
        entry["avgdl"] = sum(lengths) / len(lengths)
        backend._save_meta()
    for p, tf in zip(points, tfs, strict=True):
        p.sparse = bm25_weights(tf, float(entry["avgdl"]), float(entry["k1"]), float(entry["b"])) if tf else None


def query_vector(query: str) -> tuple[list[int], list[float]] | None:
    """The query's sparse vector: each term weighted by its count in the query (Qdrant applies the IDF), as the
    FTS5 backends weigh a repeated word; ``None`` without terms."""
    tf = term_frequencies([" ".join(query_words(query))])[0]
    out: dict[int, float] = {}
    for term, n in tf.items():
        out[term_id(term)] = out.get(term_id(term), 0.0) + float(n)
    ids = sorted(out)
    return (ids, [out[i] for i in ids]) if ids else None


def _query(engine: Engine, vector: tuple[list[int], list[float]], limit: int, flt: Any, name: str) -> list[Any]:
    """The engine's top ``limit`` points by the sparse vector ``name`` (scored with IDF), with payloads."""
    names = ("", "")
    if engine.kind == "edge":
        qe = engine.qe  # type: ignore[attr-defined]
        from ._filters import to_edge_filter

        req = qe.QueryRequest(
            query=qe.Query.Nearest(qe.SparseVector(indices=vector[0], values=vector[1]), using=name),
            limit=limit,
            filter=None if flt is None else to_edge_filter(flt, qe),
            with_payload=True,
            with_vector=False,
        )
        shard = engine._open()  # type: ignore[attr-defined]
        res = engine._guard("query the sparse vector", lambda: shard.query(req))  # type: ignore[attr-defined]
        return [stored_point(p, names, score=float(p.score)) for p in res]
    m = engine.models  # type: ignore[attr-defined]
    res = engine.call(  # type: ignore[attr-defined]
        "query the sparse vector",
        lambda: engine.client.query_points(  # type: ignore[attr-defined]
            engine.collection,  # type: ignore[attr-defined]
            query=m.SparseVector(indices=vector[0], values=vector[1]),
            using=name,
            query_filter=flt,
            limit=limit,
            with_payload=True,
            with_vectors=False,
            shard_key_selector=engine._shard_selector(),  # type: ignore[attr-defined]
            timeout=engine.timeout,  # type: ignore[attr-defined]
        ),
    )
    return [stored_point(p, names, score=float(p.score)) for p in res.points]


class LexicalSearch:
    """``QdrantBackend.lexical_search``: BM25 through the collection's sparse vector."""

    _lexical: dict[str, Any] | None
    _engine: Engine
    _config: Any
    _lock: Any

    def lexical_search(
        self, query: str, k: int = 10, filter: Filter | Any | None = None, *, ids: Sequence[str] | None = None
    ) -> list[Hit]:
        """Top ``k`` documents by BM25 of their texts against the words of ``query``, scored by Qdrant (sparse
        vector with ``Modifier.IDF``).

        Args:
            query: the query text; any of its words matches (stemmed, case and accents folded).
            k: number of hits (>= 1).
            filter: a metadata filter (the forms of :meth:`search`, or a native Qdrant filter).
            ids: only these documents.

        Returns:
            Up to ``k`` hits by descending BM25 score (higher is better; Qdrant's IDF
            ``ln(1 + (N - n + 0.5) / (n + 0.5))``); documents without text or without a query word are never
            returned; ties keep insertion order.

        Raises:
            InvalidInputError: bad ``query``, ``k``, filter or ids.
            CollectionConfigError: a collection created before lexical search (no sparse vector).
        """
        k = check_k(k)
        if not isinstance(query, str):
            raise InvalidInputError(f"query must be a str, got {type(query).__name__}")
        subset = None if ids is None else set(check_ids(ids, allow_duplicates=True))
        native, post = resolve_filter(filter, self._engine.kind)
        guard = self._lock if self._engine.kind == "edge" else contextlib.nullcontext()
        with guard:
            self._check_open()  # type: ignore[attr-defined]
            if self._config is None:
                return []
            if self._lexical is None:
                raise CollectionConfigError(
                    f"{self._describe()} was created before lexical search and has no BM25 sparse vector (Qdrant "  # type: ignore[attr-defined]
                    "cannot add one to an existing collection); copy it into a new one, which computes them from the "
                    "stored texts: store.copy_to('qdrant-edge', NEW_PATH) (or colbert-adapters copy)"
                )
            vector = query_vector(query)
            if vector is None or subset == set():
                return []
            limit = k + 1 if subset is None else max(k + 1, 4 * len(subset))
            while True:
                raw = _query(self._engine, vector, limit, native, self._lexical["sparse"])
                hits = [
                    p
                    for p in raw
                    if (post is None or match_filter(p.payload.get(METADATA_KEY) or {}, post))
                    and (subset is None or p.payload.get(DOC_ID_KEY) in subset)
                ]
                if len(raw) < limit or (len(hits) > k and hits[k].score < hits[k - 1].score):
                    break  # every match seen, or k hits without a tie across the cut
                limit *= 4
        return ranked_hits(hits, k)
