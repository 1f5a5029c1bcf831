"""Data sets of ``bench_compact.py``, read the same way by our side and by fast-plaid's worker.

Standard library and numpy only (fast-plaid's virtualenv imports this module too; never colbert_adapters).

A data set is a folder under ``benchmarks/_work/compact/`` with a ``meta.json``:

* ``"kind": "synthetic"``: nothing else is stored; the documents are generated again, chunk by chunk, from the
  seed whenever a system reads them (the 20M-token set is 10 GB of float32: it never exists whole, on disk or in
  memory). The model is ``_voyager_systems.synthetic``'s (each document mixes 8 of ``n_topics`` topics; tokens
  are noisy copies of topic centres; a query is 32 tokens drawn from the topics of one document), with two
  changes: document lengths vary (uniform in ``[min_tokens, max_tokens]``) and the topic centres lie in a narrow
  cone around one axis, as the tokens of modern ColBERT models do (``meta.json`` records the mean cosine).
* ``"kind": "npy"``: real vectors in ``flat.npy`` / ``lens.npy`` / ``qflat.npy`` / ``qlens.npy`` (float32 and
  int64, read memory-mapped).

Every set also defines its *extra* documents, the 1% added by the update measurement (synthetic: new documents
of the same model; npy: copies of 1% of the documents under new ids).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

#: Documents per generated chunk. Part of the synthetic sets' definition (each chunk has its own random stream).
GEN_DOCS = 1000
#: Noise of a token around its topic centre (norm of the noise vector, before normalisation).
SIGMA = 0.6
#: Spread of the topic centres around the cone's axis (norm of the offset from the unit axis).
CONE_SPREAD = 0.8
PER_DOC_TOPICS = 8
QUERY_TOKENS = 32


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def synthetic_meta(
    n_docs: int, dim: int = 128, *, n_queries: int = 100, seed: int = 0, min_tokens: int = 100, max_tokens: int = 228
) -> dict[str, Any]:
    """The ``meta.json`` of a synthetic set (topics scale with the corpus: ``max(4096, n_docs // 2)``)."""
    return {
        "kind": "synthetic",
        "n_docs": n_docs,
        "dim": dim,
        "n_queries": n_queries,
        "seed": seed,
        "min_tokens": min_tokens,
        "max_tokens": max_tokens,
        "n_topics": max(4096, n_docs // 2),
        "per_doc_topics": PER_DOC_TOPICS,
        "sigma": SIGMA,
        "cone_spread": CONE_SPREAD,
        "gen_docs": GEN_DOCS,
    }


class Dataset:
    """Documents (streamed in chunks), queries and the extra 1% of one data set folder."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.meta: dict[str, Any] = json.loads((self.folder / "meta.json").read_text(encoding="utf-8"))
        self.kind = self.meta["kind"]
        if self.kind == "synthetic":
            m = self.meta
            rng = np.random.default_rng([m["seed"], 0])
            self.lens = rng.integers(m["min_tokens"], m["max_tokens"] + 1, size=m["n_docs"]).astype(np.int64)
            self._topics = rng.integers(m["n_topics"], size=(m["n_docs"], m["per_doc_topics"]))
            axis = _unit(rng.standard_normal(m["dim"]))
            self._centres = _unit(axis + m["cone_spread"] * _unit(rng.standard_normal((m["n_topics"], m["dim"]))))
        else:
            self.lens = np.load(self.folder / "lens.npy")
        self.n_docs = len(self.lens)
        self.n_tokens = int(self.lens.sum())
        self.offsets = np.concatenate([[0], np.cumsum(self.lens)]).astype(np.int64)
        self.dim = int(self.meta["dim"])

    # ------------------------------------------------------------------------------------------ documents

    def _tokens(self, rng: np.random.Generator, topics: np.ndarray, lens: np.ndarray) -> np.ndarray:
        """Token vectors of documents with topic lists ``topics`` ``(n, per_doc)`` and lengths ``lens``."""
        n_tok = int(lens.sum())
        owner = np.repeat(np.arange(len(lens)), lens)
        pick = topics[owner, rng.integers(topics.shape[1], size=n_tok)]
        noise = rng.standard_normal((n_tok, self.dim), dtype=np.float32) * np.float32(
            self.meta["sigma"] / np.sqrt(self.dim)
        )
        return _unit(self._centres[pick] + noise)

    def chunks(self, start_doc: int = 0) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """``(first_doc, lens, flat)`` per chunk of about ``GEN_DOCS`` documents, from ``start_doc`` (a multiple of
        ``GEN_DOCS``) to the end; ``flat`` is float32 ``(lens.sum(), dim)``."""
        if self.kind == "synthetic":
            seed = self.meta["seed"]
            for c in range(start_doc // GEN_DOCS, -(-self.n_docs // GEN_DOCS)):
                d0, d1 = c * GEN_DOCS, min(self.n_docs, (c + 1) * GEN_DOCS)
                rng = np.random.default_rng([seed, 1, c])
                yield d0, self.lens[d0:d1], self._tokens(rng, self._topics[d0:d1], self.lens[d0:d1])
        else:
            flat = np.load(self.folder / "flat.npy", mmap_mode="r")
            for d0 in range(start_doc, self.n_docs, GEN_DOCS):
                d1 = min(self.n_docs, d0 + GEN_DOCS)
                yield d0, self.lens[d0:d1], np.asarray(flat[self.offsets[d0] : self.offsets[d1]], dtype=np.float32)

    def documents(self, chunk_docs: int) -> Iterator[tuple[list[str], list[np.ndarray]]]:
        """``(ids, vectors)`` batches of ``chunk_docs`` documents (ids ``d<index>``), in order."""
        ids: list[str] = []
        docs: list[np.ndarray] = []
        for d0, lens, flat in self.chunks():
            parts = np.split(flat, np.cumsum(lens)[:-1])
            for i, part in enumerate(parts):
                ids.append(f"d{d0 + i}")
                docs.append(part)
                if len(ids) == chunk_docs:
                    yield ids, docs
                    ids, docs = [], []
        if ids:
            yield ids, docs

    # ------------------------------------------------------------------------------------------ queries, extra

    def queries(self) -> list[np.ndarray]:
        """The timed queries: float32 ``(n_tokens, dim)`` each."""
        if self.kind == "npy":
            qlens = np.load(self.folder / "qlens.npy")
            return list(np.split(np.load(self.folder / "qflat.npy"), np.cumsum(qlens)[:-1]))
        return self._queries(self.meta["n_queries"], salt=2)

    def warmup_queries(self, n: int = 20) -> list[np.ndarray]:
        """Untimed queries answered after opening, before the timed ones (never the timed ones themselves)."""
        if self.kind == "synthetic":
            return self._queries(n, salt=3)
        rng = np.random.default_rng(3)
        flat = np.load(self.folder / "flat.npy", mmap_mode="r")
        out = []
        for d in rng.choice(self.n_docs, size=n, replace=False):
            o0, o1 = int(self.offsets[d]), int(self.offsets[d + 1])
            rows = np.sort(rng.choice(np.arange(o0, o1), size=QUERY_TOKENS, replace=o1 - o0 < QUERY_TOKENS))
            out.append(np.asarray(flat[rows], dtype=np.float32))
        return out

    def _queries(self, n: int, salt: int) -> list[np.ndarray]:
        rng = np.random.default_rng([self.meta["seed"], salt])
        targets = rng.integers(self.n_docs, size=n)
        topics = self._topics[targets]
        return list(self._tokens(rng, topics, np.full(n, QUERY_TOKENS, dtype=np.int64)).reshape(n, QUERY_TOKENS, -1))

    def n_extra(self) -> int:
        """Documents the update measurement adds (and deletes): 1% of the set."""
        return max(1, self.n_docs // 100)

    def extra(self) -> tuple[list[str], list[np.ndarray]]:
        """The 1% added by the update measurement: ids ``x<i>`` and their vectors."""
        n = self.n_extra()
        rng = np.random.default_rng([self.meta.get("seed", 0), 4])
        if self.kind == "synthetic":
            m = self.meta
            lens = rng.integers(m["min_tokens"], m["max_tokens"] + 1, size=n).astype(np.int64)
            topics = rng.integers(m["n_topics"], size=(n, m["per_doc_topics"]))
            docs = list(np.split(self._tokens(rng, topics, lens), np.cumsum(lens)[:-1]))
        else:
            flat = np.load(self.folder / "flat.npy", mmap_mode="r")
            picks = rng.choice(self.n_docs, size=n, replace=False)
            docs = [np.asarray(flat[self.offsets[d] : self.offsets[d + 1]], dtype=np.float32) for d in picks]
        return [f"x{i}" for i in range(n)], docs

    def delete_indexes(self) -> list[int]:
        """The 1% of the original documents the update measurement deletes (indexes, sorted)."""
        rng = np.random.default_rng([self.meta.get("seed", 0), 5])
        return sorted(int(i) for i in rng.choice(self.n_docs, size=self.n_extra(), replace=False))

    def mean_cosine(self, n_pairs: int = 20000) -> float:
        """Mean cosine of random token pairs of the first chunk (how narrow the cone is)."""
        _, _, flat = next(self.chunks())
        rng = np.random.default_rng(6)
        a, b = rng.integers(len(flat), size=(2, n_pairs))
        return float(np.mean(np.sum(flat[a] * flat[b], axis=1)))
