"""``colbert-adapters eval``: retrieval quality and latency of backends on a test collection."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np

from .._index_dir import effective_settings, load_encoder, model_ref
from ..backends import OPENERS, resolve_backend
from ..errors import ColBERTError
from ._common import (
    DEFAULT_MODEL,
    EXIT_OK,
    Subparsers,
    UsageError,
    add_model_options,
    encoder_settings,
    load_options,
    print_json,
)

__all__ = ["EVAL_BACKENDS", "add_eval_command"]

#: Backends ``eval`` can build in a scratch directory: memory and the embedded ones.
EVAL_BACKENDS = ("memory", *(n for n, o in OPENERS.items() if o.location == "directory"))


def _eval_backend(name: str, dim: int, workdir: str) -> Any:
    if name not in EVAL_BACKENDS:
        raise UsageError(f"unknown backend {name!r}; valid: {', '.join(EVAL_BACKENDS)}")
    if name == "memory":
        return resolve_backend(name, dim=dim)
    return resolve_backend(name, path=os.path.join(workdir, name), dim=dim)


class _SpilledVectors:
    """Document vectors written once to a scratch file, read back a chunk at a time for each backend.

    ``eval`` encodes the collection once and indexes it into several backends; holding every vector in memory
    next to the backends' own copies is what made its peak memory several times the vectors' size. Chunks read
    back are bit-identical float32 arrays, so each backend receives exactly what the encoder produced.
    """

    def __init__(self, path: str, dim: int) -> None:
        self._path = path
        self._dim = dim
        self._file = open(path, "wb")  # noqa: SIM115 (closed by finish())
        self.rows: list[int] = []

    def write(self, vectors: list[Any]) -> None:
        for v in vectors:
            np.ascontiguousarray(v, dtype=np.float32).tofile(self._file)
            self.rows.append(int(v.shape[0]))

    def finish(self) -> None:
        self._file.close()

    def chunks(self, size: int) -> Iterator[tuple[int, list[Any]]]:
        """``(first document's position, its chunk of up to ``size`` float32 (n_tokens, dim) arrays)``, in order."""
        with open(self._path, "rb") as f:
            for start in range(0, len(self.rows), size):
                counts = self.rows[start : start + size]
                flat = np.fromfile(f, dtype=np.float32, count=sum(counts) * self._dim).reshape(-1, self._dim)
                yield start, np.split(flat, np.cumsum(counts)[:-1])


#: Documents encoded per call, and written to a backend per upsert.
_ENCODE_CHUNK = 256
_UPSERT_CHUNK = 512


def _eval(args: argparse.Namespace) -> int:
    import tempfile
    import time

    from tqdm import tqdm

    from .. import evaluation as ev

    backends = args.backend or ["memory"]
    for b in backends:
        if b not in EVAL_BACKENDS:
            raise UsageError(f"unknown --backend {b!r}; valid: {', '.join(EVAL_BACKENDS)}")
    k_max = max(100, args.k)
    data = ev.load_dataset(args.dataset, args.format, args.split)
    data = data.subset(args.max_docs, args.max_queries)
    if not data.queries:
        raise ColBERTError(f"{args.dataset}: no judged queries")
    encoder = load_encoder(
        model_ref(args.model or DEFAULT_MODEL), encoder_settings(args), args.device, **load_options(args)
    )
    doc_ids = list(data.corpus)
    qids = list(data.queries)
    result: dict[str, Any] = {
        "dataset": data.name,
        "format": data.format,
        "path": os.path.abspath(args.dataset),
        "documents": len(doc_ids),
        "queries": len(qids),
        "tokens": 0,
        "model": encoder.model_id,
        "settings": effective_settings(encoder),
        "encode_documents_s": 0.0,
        "encode_query_ms": 0.0,
        "backends": {},
    }
    with tempfile.TemporaryDirectory(prefix="colbert-eval-") as work:
        spill = _SpilledVectors(os.path.join(work, "documents.f32"), encoder.dim)
        t0 = time.perf_counter()
        with tqdm(
            total=len(doc_ids), desc=f"Encoding {data.name}", unit="doc", disable=args.quiet, file=sys.stderr
        ) as bar:
            try:
                for s in range(0, len(doc_ids), _ENCODE_CHUNK):
                    part = [ev.document_text(data.corpus[d]) or " " for d in doc_ids[s : s + _ENCODE_CHUNK]]
                    spill.write(encoder.encode_documents(part, batch_size=args.batch_size, show_progress=False))
                    bar.update(len(part))
            finally:
                spill.finish()
        result["encode_documents_s"] = round(time.perf_counter() - t0, 2)
        result["tokens"] = sum(spill.rows)
        t0 = time.perf_counter()
        q_vecs = encoder.encode_queries(
            [data.queries[q] for q in qids], batch_size=args.batch_size, show_progress=False if args.quiet else None
        )
        result["encode_query_ms"] = round((time.perf_counter() - t0) * 1000 / max(1, len(qids)), 2)
        for name in backends:
            backend = _eval_backend(name, encoder.dim, work)
            try:
                t0 = time.perf_counter()
                for s, vecs in spill.chunks(_UPSERT_CHUNK):
                    backend.upsert(doc_ids[s : s + len(vecs)], vecs)
                index_s = time.perf_counter() - t0
                run: dict[str, dict[str, float]] = {}
                lat: list[float] = []
                for q, v in zip(qids, q_vecs, strict=True):
                    t1 = time.perf_counter()
                    hits = backend.search(v, k=k_max)
                    lat.append(time.perf_counter() - t1)
                    run[q] = {h.id: float(h.score) for h in hits}
            finally:
                backend.close()
            metrics = ev.evaluate(run, data.qrels, ks=(10, 100))
            result["backends"][name] = {
                **{k: round(v, 4) for k, v in metrics.items() if k != "n_queries"},
                "index_s": round(index_s, 2),
                "search_latency": {k: round(v, 2) for k, v in ev.latency_summary(lat).items()},
            }
    exact = result["backends"].get("memory", {}).get("nDCG@10")
    if exact:
        for entry in result["backends"].values():
            entry["vs_exact"] = round(entry["nDCG@10"] / exact, 4)
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
    if args.json:
        print_json(result)
    else:
        sys.stdout.write(_eval_table(result))
    return EXIT_OK


def _eval_table(result: dict[str, Any]) -> str:
    lines = [
        f"{result['dataset']}: {result['documents']} docs, {result['queries']} queries, model {result['model']}",
        f"{'backend':<12} {'nDCG@10':>8} {'R@10':>7} {'R@100':>7} {'MRR@10':>7} {'vs exact':>8} "
        f"{'p50 ms':>7} {'p95 ms':>7}",
    ]
    for name, e in result["backends"].items():
        vs = f"{e['vs_exact']:.1%}" if "vs_exact" in e else "-"
        lines.append(
            f"{name:<12} {e['nDCG@10']:>8.4f} {e['Recall@10']:>7.4f} {e['Recall@100']:>7.4f} "
            f"{e['MRR@10']:>7.4f} {vs:>8} {e['search_latency']['p50_ms']:>7.2f} "
            f"{e['search_latency']['p95_ms']:>7.2f}"
        )
    return "\n".join(lines) + "\n"


def add_eval_command(subparsers: Subparsers) -> None:
    """The ``eval`` command."""
    e = subparsers.add_parser(
        "eval",
        help="measure nDCG@10, Recall@10/100, MRR@10 and latency on a test collection",
        description="Encode DATASET once (BEIR folder, TREC/Vaswani, Cranfield or CISI) and evaluate each "
        "--backend on the same vectors. The vectors are streamed: written once to a scratch file (float32, "
        "tokens x dim x 4 bytes, in the system's temporary directory) and read back a chunk at a time for each "
        "backend, so memory holds one backend's index at a time.",
    )
    e.add_argument("dataset", metavar="DATASET")
    e.add_argument("--format", default="auto", choices=("auto", "beir", "trec", "cranfield", "cisi"))
    e.add_argument("--split", default="test", help="BEIR qrels split (default: test)")
    e.add_argument(
        "--backend", action="append", choices=EVAL_BACKENDS, help="backend to evaluate (repeatable; default: memory)"
    )
    add_model_options(e, default_help=f"default: {DEFAULT_MODEL}")
    e.add_argument("--batch-size", type=int, default=32, help="encoder batch size (default: 32)")
    e.add_argument("-k", type=int, default=100, help="hits retrieved per query (default: 100)")
    e.add_argument("--max-docs", type=int, help="evaluate on a slice (judged documents are kept)")
    e.add_argument("--max-queries", type=int, help="evaluate the first N judged queries")
    e.add_argument("-o", "--output", help="write the results as JSON to this file")
    e.add_argument("--json", action="store_true", help="print JSON instead of a table")
    e.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress bars, and no loading bars or warnings from transformers and huggingface_hub",
    )
    e.set_defaults(handler=_eval)
