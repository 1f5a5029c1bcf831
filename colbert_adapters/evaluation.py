"""IR test collections and retrieval metrics, dependency-free.

Loaders return a :class:`Dataset` (``corpus {doc_id: {"title", "text"}}``, judged ``queries {qid: text}``
and ``qrels {qid: {doc_id: grade}}``) from a BEIR folder (``corpus.jsonl``, ``queries.jsonl``,
``qrels/<split>.tsv``), a TREC folder (Vaswani: ``doc-text.trec``, ``query-text.trec``, ``qrels``) or a
SMART folder (Cranfield: ``cran.all.1400``, ``cran.qry``, ``cranqrel``; CISI: ``CISI.ALL``, ``CISI.QRY``,
``CISI.REL``). :func:`load_dataset` detects the format.

:func:`audit` measures what an approximate backend's search costs in recall: its top k against exact MaxSim over
the same stored vectors, for its current and a few alternative search settings (docs/recall-audit.md).

Metrics follow trec_eval / pytrec_eval: nDCG@k with linear gain (``grade / log2(rank + 1)``), Recall@k
(relevant documents retrieved in the top k / relevant documents), MRR@k (reciprocal rank of the first
relevant document in the top k, else 0). Ties in a run are broken by document id, ascending.

Example:
    >>> run = {"q1": {"a": 2.0, "b": 1.0}}
    >>> qrels = {"q1": {"b": 1}}
    >>> round(evaluate(run, qrels)["MRR@10"], 3)
    0.5
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ._audit import AuditReport, SettingResult, audit
from .errors import InvalidInputError

__all__ = [
    "AuditReport",
    "Dataset",
    "SettingResult",
    "audit",
    "detect_format",
    "document_text",
    "evaluate",
    "latency_summary",
    "load_beir",
    "load_cisi",
    "load_cranfield",
    "load_dataset",
    "load_trec",
    "mrr_at_k",
    "ndcg_at_k",
    "recall_at_k",
]

Run = Mapping[str, Mapping[str, float]]
Qrels = Mapping[str, Mapping[str, int]]


@dataclass
class Dataset:
    """A test collection: documents, judged queries and relevance judgments."""

    name: str
    corpus: dict[str, dict[str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    format: str = ""
    info: dict[str, object] = field(default_factory=dict)

    def subset(self, max_docs: int | None = None, max_queries: int | None = None) -> Dataset:
        """A smaller dataset: the first ``max_queries`` judged queries and the first ``max_docs`` documents,
        always keeping the documents judged for the kept queries (so metrics stay meaningful)."""
        qids = list(self.queries)[: max_queries or None]
        qrels = {q: dict(self.qrels[q]) for q in qids}
        if max_docs is None:
            corpus = dict(self.corpus)
        else:
            keep = {d for q in qids for d in qrels[q] if d in self.corpus}
            for d in self.corpus:
                if len(keep) >= max_docs:
                    break
                keep.add(d)
            corpus = {d: v for d, v in self.corpus.items() if d in keep}
        return Dataset(self.name, corpus, {q: self.queries[q] for q in qids}, qrels, self.format, dict(self.info))


def _ws(text: str) -> str:
    return " ".join(text.split())


def _judged(
    name: str,
    corpus: dict[str, dict[str, str]],
    queries: dict[str, str],
    qrels: dict[str, dict[str, int]],
    fmt: str,
) -> Dataset:
    """A :class:`Dataset` keeping only the queries that have both a text and relevance judgments."""
    return Dataset(
        name,
        corpus,
        {q: queries[q] for q in qrels if q in queries},
        {q: r for q, r in qrels.items() if q in queries},
        fmt,
    )


def document_text(doc: Mapping[str, str]) -> str:
    """``title + " " + text`` (what BEIR and MTEB encode), whitespace-normalised."""
    return _ws(f"{doc.get('title', '') or ''} {doc.get('text', '') or ''}")


def load_beir(folder: str | os.PathLike[str], split: str = "test") -> Dataset:
    """A BEIR folder; only queries judged in ``qrels/<split>.tsv`` are kept."""
    root = Path(folder)
    corpus: dict[str, dict[str, str]] = {}
    with open(root / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                d = json.loads(line)
                corpus[str(d["_id"])] = {"title": d.get("title", "") or "", "text": d.get("text", "") or ""}
    queries: dict[str, str] = {}
    with open(root / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                d = json.loads(line)
                queries[str(d["_id"])] = d["text"]
    qrels_path = root / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        raise InvalidInputError(f"{qrels_path} not found; pick an existing split with --split")
    qrels: dict[str, dict[str, int]] = {}
    with open(qrels_path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t")
        for row in reader:
            if len(row) < 3 or row[0] == "query-id":
                continue
            qid, did, score = row[0], row[1], int(row[2])
            if score > 0:
                qrels.setdefault(qid, {})[did] = score
    return _judged(root.name, corpus, queries, qrels, "beir")


_TREC_DOC = re.compile(r"<DOC>\s*<DOCNO>\s*(.*?)\s*</DOCNO>(.*?)</DOC>", re.S)
_TREC_QUERY = re.compile(r"<num>\s*(\S+?)\s*</num>\s*<title>(.*?)</title>", re.S)


def load_trec(folder: str | os.PathLike[str]) -> Dataset:
    """A TREC folder as Vaswani ships it (queries are lower-cased, as the documents are)."""
    root = Path(folder)
    text = (root / "doc-text.trec").read_text(encoding="utf-8", errors="replace")
    corpus = {m.group(1): {"title": "", "text": _ws(m.group(2))} for m in _TREC_DOC.finditer(text)}
    qtext = (root / "query-text.trec").read_text(encoding="utf-8", errors="replace")
    queries = {m.group(1): _ws(m.group(2)).lower() for m in _TREC_QUERY.finditer(qtext)}
    qrels: dict[str, dict[str, int]] = {}
    with open(root / "qrels", encoding="utf-8") as f:
        for line in f:
            p = line.split()
            if len(p) == 4 and int(p[3]) > 0:
                qrels.setdefault(p[0], {})[p[2]] = int(p[3])
    return _judged(root.name, corpus, queries, qrels, "trec")


def _smart(path: Path) -> list[dict[str, list[str]]]:
    """SMART records (``.I id`` then ``.T/.A/.B/.W/.X`` fields); the id is under key ``"I"``."""
    recs: list[dict[str, list[str]]] = []
    cur: dict[str, list[str]] | None = None
    fld: str | None = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith(".I"):
                cur = {"I": [line.split()[1]]}
                recs.append(cur)
                fld = None
            elif len(line) >= 2 and line[0] == "." and line[1] in "TABWXNK" and not line[2:].strip():
                fld = line[1]
                if cur is not None:
                    cur.setdefault(fld, [])
            elif cur is not None and fld is not None:
                cur.setdefault(fld, []).append(line.rstrip("\n"))
    return recs


def _smart_corpus(path: Path) -> dict[str, dict[str, str]]:
    return {
        r["I"][0]: {"title": _ws(" ".join(r.get("T", []))), "text": _ws(" ".join(r.get("W", [])))} for r in _smart(path)
    }


def load_cranfield(folder: str | os.PathLike[str]) -> Dataset:
    """Cranfield: queries numbered 1..225 by position; grades 1 (best)..4 mapped to 4..1, -1 dropped."""
    root = Path(folder)
    corpus = _smart_corpus(root / "cran.all.1400")
    queries = {str(i + 1): _ws(" ".join(r.get("W", []))) for i, r in enumerate(_smart(root / "cran.qry"))}
    qrels: dict[str, dict[str, int]] = {}
    with open(root / "cranqrel", encoding="utf-8") as f:
        for line in f:
            p = line.split()
            if len(p) < 3 or int(p[2]) == -1:
                continue
            qrels.setdefault(p[0], {})[p[1]] = 5 - int(p[2])
    return _judged(root.name, corpus, queries, qrels, "cranfield")


def load_cisi(folder: str | os.PathLike[str]) -> Dataset:
    """CISI: binary judgments; only the judged queries are kept."""
    root = Path(folder)
    corpus = _smart_corpus(root / "CISI.ALL")
    queries = {r["I"][0]: _ws(" ".join(r.get("W", []))) for r in _smart(root / "CISI.QRY")}
    qrels: dict[str, dict[str, int]] = {}
    with open(root / "CISI.REL", encoding="utf-8") as f:
        for line in f:
            p = line.split()
            if len(p) >= 2:
                qrels.setdefault(p[0], {})[p[1]] = 1
    return _judged(root.name, corpus, queries, qrels, "cisi")


FORMATS = ("beir", "trec", "cranfield", "cisi")


def detect_format(folder: str | os.PathLike[str]) -> str:
    """``"beir"``, ``"trec"``, ``"cranfield"`` or ``"cisi"`` from the files in ``folder``."""
    root = Path(folder)
    if not root.is_dir():
        raise InvalidInputError(f"{root} is not a directory")
    if (root / "corpus.jsonl").is_file():
        return "beir"
    if (root / "doc-text.trec").is_file():
        return "trec"
    if (root / "cran.all.1400").is_file():
        return "cranfield"
    if (root / "CISI.ALL").is_file():
        return "cisi"
    raise InvalidInputError(
        f"{root}: unknown collection format; expected a BEIR folder (corpus.jsonl, queries.jsonl, qrels/), "
        "TREC (doc-text.trec, query-text.trec, qrels), Cranfield (cran.all.1400) or CISI (CISI.ALL)"
    )


def load_dataset(folder: str | os.PathLike[str], fmt: str = "auto", split: str = "test") -> Dataset:
    """Load a collection in any supported format (``fmt="auto"`` detects it)."""
    fmt = detect_format(folder) if fmt == "auto" else fmt
    if fmt == "beir":
        return load_beir(folder, split)
    if fmt == "trec":
        return load_trec(folder)
    if fmt == "cranfield":
        return load_cranfield(folder)
    if fmt == "cisi":
        return load_cisi(folder)
    raise InvalidInputError(f"unknown format {fmt!r}; valid: auto, {', '.join(FORMATS)}")


# ------------------------------------------------------------------------------------------------ metrics


def _ranked(scores: Mapping[str, float], k: int) -> list[str]:
    return [d for d, _ in sorted(scores.items(), key=lambda x: (-x[1], x[0]))[:k]]


def ndcg_at_k(scores: Mapping[str, float], rel: Mapping[str, int], k: int = 10) -> float:
    """nDCG@k of one query, linear gain (trec_eval's ``ndcg_cut``)."""
    ranked = _ranked(scores, k)
    dcg = sum(rel.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked) if rel.get(d, 0) > 0)
    ideal = sorted((g for g in rel.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(scores: Mapping[str, float], rel: Mapping[str, int], k: int = 100) -> float:
    """Relevant documents in the top k / all relevant documents of one query."""
    n_rel = sum(1 for g in rel.values() if g > 0)
    if n_rel == 0:
        return 0.0
    return sum(1 for d in _ranked(scores, k) if rel.get(d, 0) > 0) / n_rel


def mrr_at_k(scores: Mapping[str, float], rel: Mapping[str, int], k: int = 10) -> float:
    """Reciprocal rank of the first relevant document in the top k (0 if none)."""
    for i, d in enumerate(_ranked(scores, k)):
        if rel.get(d, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def evaluate(run: Run, qrels: Qrels, ks: Sequence[int] = (10, 100), mrr_k: int = 10) -> dict[str, float]:
    """Mean nDCG@k, Recall@k (for each k) and MRR@mrr_k over the queries with a relevant document.

    A judged query missing from ``run`` scores 0. Returns also ``n_queries``.
    """
    qids = [q for q in qrels if any(g > 0 for g in qrels[q].values())]
    if not qids:
        raise InvalidInputError("qrels hold no query with a relevant document")
    out: dict[str, float] = {}
    for k in ks:
        out[f"nDCG@{k}"] = sum(ndcg_at_k(run.get(q, {}), qrels[q], k) for q in qids) / len(qids)
        out[f"Recall@{k}"] = sum(recall_at_k(run.get(q, {}), qrels[q], k) for q in qids) / len(qids)
    out[f"MRR@{mrr_k}"] = sum(mrr_at_k(run.get(q, {}), qrels[q], mrr_k) for q in qids) / len(qids)
    out["n_queries"] = len(qids)
    return out


def latency_summary(seconds: Iterable[float]) -> dict[str, float]:
    """Mean, p50, p95 and p99 in milliseconds (nearest-rank percentiles)."""
    xs = sorted(float(s) * 1000.0 for s in seconds)
    if not xs:
        return {"mean_ms": 0.0, "p50_ms": 0.0, "p95_ms": 0.0, "p99_ms": 0.0}

    def pct(p: float) -> float:
        return xs[min(len(xs) - 1, max(0, math.ceil(p / 100.0 * len(xs)) - 1))]

    return {"mean_ms": sum(xs) / len(xs), "p50_ms": pct(50), "p95_ms": pct(95), "p99_ms": pct(99)}
