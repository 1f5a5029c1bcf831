"""Recall audit: how far a backend's top ``k`` is from exact MaxSim over the same stored vectors.

:func:`audit` runs a set of queries through a backend under its current search settings and a few alternatives,
scores every stored document exactly for the same queries (a brute-force scan over ``backend.get(ids,
with_vectors=True)`` in batches, with :func:`colbert_adapters.scoring.maxsim_batch`), and reports recall@k and
latency per setting, with the fastest setting that reaches a target recall.

Queries: given texts (encoded with the store's encoder), given query vectors, or, by default, pseudo-queries made
from the stored documents: each is ``query_tokens`` token vectors (32, a ColBERT query's length) drawn at random
from one randomly drawn document, so that a query shares its vocabulary with part of the collection, as a real
query about that document does. docs/recall-audit.md says why this shape and how its recall compares with real
queries'.

Recall@k of a query is the fraction of the exact top ``k`` that the backend returns; a returned document whose
exact score ties the ``k``-th best counts as found (ties have no preferred order). Latencies are wall-clock times
of ``backend.search`` calls, one query at a time, after one untimed warm-up search per setting; each query runs
under every setting in turn, starting from a different setting each time, so that changes of the machine's load
and what one setting leaves in the caches weigh on every setting alike.

Search settings are each backend's public knobs:

* :class:`~colbert_adapters.backends.voyager.VoyagerBackend`: ``k_token``, ``ef_search``, ``n_rerank`` and
  ``exact_below_tokens``, set on the open backend before each search and restored when the audit ends (do not
  serve searches from the same instance meanwhile);
* :class:`~colbert_adapters.backends.qdrant.QdrantBackend`: ``prefetch_limit`` and ``mode`` (``"two_stage"`` or
  ``"exact"``), passed per call;
* :class:`~colbert_adapters.backends.memory.MemoryBackend`: none; it is exact, and the audit shows it.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ._validation import as_multivector, check_k
from .errors import ColBERTError, InvalidInputError
from .types import Hit, MultiVector

__all__ = ["QUERY_TOKENS", "QUERY_TOKEN_COSINE", "SCAN_BATCH", "AuditReport", "SettingResult", "audit"]

logger = logging.getLogger("colbert_adapters.evaluation")

#: Token vectors of a pseudo-query drawn from a stored document (a ColBERT query's usual length).
QUERY_TOKENS = 32
#: Cosine between a pseudo-query token and the stored token it is drawn from (see :func:`pseudo_queries`).
QUERY_TOKEN_COSINE = 0.8
#: Documents read and scored per step of the exact scan (bounds its memory).
SCAN_BATCH = 256

Setting = dict[str, Any]


@dataclass(frozen=True)
class SettingResult:
    """Recall and latency of one search setting.

    Attributes:
        setting: the knobs set for this row (``{}``: the backend as it is), e.g. ``{"k_token": 48}``.
        label: the setting as text, ``"current"`` for the backend as it is.
        current: whether this row is the backend's current setting.
        recall: mean recall@k over the queries, in ``[0, 1]``.
        worst_recall: the lowest recall@k of a single query.
        p50_ms: median search latency in milliseconds.
        p95_ms: 95th-percentile search latency in milliseconds.
        reaches_target: whether ``recall`` is at least the audit's target.
    """

    setting: Mapping[str, Any]
    label: str
    current: bool
    recall: float
    worst_recall: float
    p50_ms: float
    p95_ms: float
    reaches_target: bool

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field."""
        return {
            "setting": dict(self.setting),
            "label": self.label,
            "current": self.current,
            "recall": self.recall,
            "worst_recall": self.worst_recall,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "reaches_target": self.reaches_target,
        }


@dataclass(frozen=True)
class AuditReport:
    """What :func:`audit` found.

    Attributes:
        backend: the backend audited (``"memory"``, ``"voyager"``, ``"qdrant-edge"``, ``"qdrant-server"`` ...).
        exact: whether the backend's current setting scores every document exactly (recall 1.0 by design).
        k: the ``k`` of recall@k.
        n_docs: documents scanned exactly.
        n_queries: queries run per setting.
        queries: where the queries came from, in words.
        target_recall: the recall a suggestion must reach.
        current_setting: the backend's search settings as they were (knob -> value; ``{}`` when it has none).
        results: one row per setting, the current one first.
        suggestion: the fastest row (by p50 latency) whose recall reaches ``target_recall``, or ``None``.
        notes: what the reader should know (an exact backend, a small index searched by a scan, no row reaching
            the target).
    """

    backend: str
    exact: bool
    k: int
    n_docs: int
    n_queries: int
    queries: str
    target_recall: float
    current_setting: Mapping[str, Any]
    results: tuple[SettingResult, ...]
    suggestion: SettingResult | None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def current(self) -> SettingResult:
        """The row of the backend's current setting."""
        return next(r for r in self.results if r.current)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict: every field, rows and suggestion as dicts."""
        return {
            "backend": self.backend,
            "exact": self.exact,
            "k": self.k,
            "n_docs": self.n_docs,
            "n_queries": self.n_queries,
            "queries": self.queries,
            "target_recall": self.target_recall,
            "current_setting": dict(self.current_setting),
            "results": [r.to_json() for r in self.results],
            "suggestion": None if self.suggestion is None else self.suggestion.to_json(),
            "notes": list(self.notes),
        }

    def table(self) -> str:
        """The report as a plain-text table (what ``colbert-adapters audit`` prints)."""
        now = ", ".join(f"{k}={v}" for k, v in self.current_setting.items()) or "no search settings"
        lines = [
            f"{self.backend}: {self.n_docs} documents, {self.n_queries} queries ({self.queries}); "
            f"recall@{self.k} against exact MaxSim over the stored vectors",
            f"current: {now}",
            "",
        ]
        width = max(7, *(len(r.label) for r in self.results))
        lines.append(
            f"  {'setting':<{width}}  {f'recall@{self.k}':>9}  {'worst':>6}  {'p50 ms':>8}  {'p95 ms':>8}  target"
        )
        for r in self.results:
            mark = "*" if r.current else " "
            ok = "yes" if r.reaches_target else "no"
            lines.append(
                f"{mark} {r.label:<{width}}  {r.recall:>9.4f}  {r.worst_recall:>6.3f}  {r.p50_ms:>8.2f}  "
                f"{r.p95_ms:>8.2f}  {ok}"
            )
        lines.append("")
        s = self.suggestion
        if s is None:
            lines.append(f"suggestion: none of these settings reaches recall@{self.k} >= {self.target_recall:g}")
        elif s.current:
            lines.append(
                f"suggestion: keep the current setting (recall@{self.k} {s.recall:.4f} >= {self.target_recall:g}, "
                f"fastest of those that reach it)"
            )
        else:
            lines.append(
                f"suggestion: {s.label} (recall@{self.k} {s.recall:.4f} >= {self.target_recall:g}, "
                f"p50 {s.p50_ms:.2f} ms, the fastest that reaches it)"
            )
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ knobs


class _Knobs:
    """A backend's search settings: what they are, how to set them for a while, which alternatives to try."""

    kind = "unknown"
    names: tuple[str, ...] = ()

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    def describe(self) -> str:
        return type(self.backend).__name__

    def current(self) -> Setting:
        return {}

    def is_exact(self) -> bool:
        return False

    def alternatives(self, n_docs: int, k: int) -> list[Setting]:
        return []

    def check(self, setting: Mapping[str, Any]) -> Setting:
        unknown = [key for key in setting if key not in self.names]
        if unknown:
            accepted = ", ".join(self.names) if self.names else "none (it has no search settings)"
            raise InvalidInputError(
                f"settings name {', '.join(map(repr, unknown))}, not a search setting of {self.describe()}; "
                f"accepted: {accepted}"
            )
        return dict(setting)

    def search(self, setting: Setting, q: MultiVector, k: int) -> list[Hit]:
        """``backend.search`` under ``setting`` (knobs not in it as they were)."""
        return list(self.backend.search(q, k=k))

    @contextlib.contextmanager
    def restoring(self) -> Iterator[None]:
        """Put the backend's settings back as they were on exit (settings applied in place are changed)."""
        yield

    def notes(self, n_docs: int) -> list[str]:
        return []


class _MemoryKnobs(_Knobs):
    kind = "memory"

    def is_exact(self) -> bool:
        return True

    def notes(self, n_docs: int) -> list[str]:
        return ["MemoryBackend scores every document exactly: its recall is 1.0 by design, confirmed by the scan"]


def _positive(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InvalidInputError(f"setting {name} must be an int >= {minimum}, got {value!r}")
    return int(value)


class _VoyagerKnobs(_Knobs):
    kind = "voyager"
    names = ("k_token", "ef_search", "n_rerank", "exact_below_tokens")
    #: k_token values tried around the backend's default (an eighth of it to four times it).
    FACTORS = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0)

    def __init__(self, backend: Any) -> None:
        super().__init__(backend)
        stats = backend.stats()
        self.sealed_tokens = int(stats["n_live_tokens"]) - int(stats["mutable_tokens"])
        self.before = self.current()

    def current(self) -> Setting:
        return {name: int(getattr(self.backend, name)) for name in self.names}

    def path(self) -> str:
        """How the current setting searches: ``"mutable"`` (every document is in the mutable segment, scored
        exactly), ``"scan"`` (a small index: every document ranked by an estimate, the best scored exactly) or
        ``"graph"`` (HNSW candidates, then the exact rerank)."""
        if self.sealed_tokens == 0:
            return "mutable"
        return "scan" if self.sealed_tokens <= self.backend.exact_below_tokens else "graph"

    def is_exact(self) -> bool:
        # The scan ranks every document by an int8 estimate and scores the best exactly: near exact, not exact.
        return self.path() == "mutable"

    def check(self, setting: Mapping[str, Any]) -> Setting:
        out = super().check(setting)
        for name, value in out.items():
            out[name] = _positive(name, value, 0 if name == "exact_below_tokens" else 1)
        return out

    def alternatives(self, n_docs: int, k: int) -> list[Setting]:
        cur = self.current()
        kt, ef = cur["k_token"], cur["ef_search"]
        default = int(type(self.backend).DEFAULT_K_TOKEN)
        values = {max(1, round(default * f)) for f in self.FACTORS} | {max(1, kt // 2), 2 * kt}
        values.discard(kt)
        out = []
        for v in sorted(values):
            row: Setting = {"k_token": v, "ef_search": max(v, round(v * ef / kt))}
            if self.path() == "scan":
                row["exact_below_tokens"] = 0  # what the graph would give: the current setting scans
            out.append(row)
        return out

    def search(self, setting: Setting, q: MultiVector, k: int) -> list[Hit]:
        for name in self.names:
            setattr(self.backend, name, setting.get(name, self.before[name]))
        return list(self.backend.search(q, k=k))

    @contextlib.contextmanager
    def restoring(self) -> Iterator[None]:
        self.before = self.current()
        try:
            yield
        finally:
            for name, value in self.before.items():
                setattr(self.backend, name, value)

    def notes(self, n_docs: int) -> list[str]:
        if self.path() == "mutable":
            return ["every document is still in the mutable segment, which searches score exactly"]
        if self.path() == "scan":
            return [
                f"the index is small ({self.sealed_tokens} sealed tokens <= exact_below_tokens="
                f"{self.backend.exact_below_tokens}): searches skip the graph and score every document, so the "
                "graph settings take effect only past that size; the rows with exact_below_tokens=0 show what "
                "the graph gives"
            ]
        return []


class _QdrantKnobs(_Knobs):
    kind = "qdrant"
    names = ("prefetch_limit", "mode")
    #: prefetch_limit values tried (capped below the number of documents; ``mode="exact"`` covers the rest).
    LIMITS = (50, 100, 200, 400, 800, 1600, 3200)
    #: Largest collection whose default alternatives include ``mode="exact"`` (a full scan per query).
    EXACT_MAX_DOCS = 10_000

    def describe(self) -> str:
        return f"QdrantBackend ({self.backend.engine})"

    def current(self) -> Setting:
        return {"mode": self.backend.search_mode, "prefetch_limit": int(self.backend.prefetch_limit)}

    def is_exact(self) -> bool:
        return bool(self.backend.search_mode == "exact")

    def check(self, setting: Mapping[str, Any]) -> Setting:
        out = super().check(setting)
        if "prefetch_limit" in out:
            out["prefetch_limit"] = _positive("prefetch_limit", out["prefetch_limit"])
        if "mode" in out and out["mode"] not in ("two_stage", "exact"):
            raise InvalidInputError(f"setting mode must be 'two_stage' or 'exact', got {out['mode']!r}")
        return out

    def alternatives(self, n_docs: int, k: int) -> list[Setting]:
        cur = self.current()
        pl = cur["prefetch_limit"]
        values = set(self.LIMITS) | {max(1, pl // 2), 2 * pl}
        if cur["mode"] == "two_stage":
            values.discard(pl)
        out: list[Setting] = [{"mode": "two_stage", "prefetch_limit": v} for v in sorted(values) if k < v < n_docs]
        if cur["mode"] != "exact" and n_docs <= self.EXACT_MAX_DOCS:
            out.append({"mode": "exact"})
        return out

    def notes(self, n_docs: int) -> list[str]:
        if self.backend.search_mode != "exact" and n_docs > self.EXACT_MAX_DOCS:
            return [
                f"mode=exact is not tried on more than {self.EXACT_MAX_DOCS} documents (a full scan per query); "
                "add it with settings=[{'mode': 'exact'}] (--setting mode=exact)"
            ]
        return []

    def search(self, setting: Setting, q: MultiVector, k: int) -> list[Hit]:
        kwargs = {**self.current(), **setting}
        return list(self.backend.search(q, k=k, mode=kwargs["mode"], prefetch_limit=kwargs["prefetch_limit"]))


def _knobs(backend: Any) -> _Knobs:
    from .backends import MemoryBackend

    if isinstance(backend, MemoryBackend):
        return _MemoryKnobs(backend)
    voyager = sys.modules.get("colbert_adapters.backends.voyager")
    if voyager is not None and isinstance(backend, voyager.VoyagerBackend):
        return _VoyagerKnobs(backend)
    qdrant = sys.modules.get("colbert_adapters.backends.qdrant")
    if qdrant is not None and isinstance(backend, qdrant.QdrantBackend):
        return _QdrantKnobs(backend)
    return _Knobs(backend)


def _label(setting: Mapping[str, Any], current: Mapping[str, Any]) -> str:
    """The knobs ``setting`` changes from ``current``, as ``name=value`` pairs (``"current"`` for none)."""
    if not setting:
        return "current"
    changed = [f"{k}={v}" for k, v in setting.items() if current.get(k) != v]
    return " ".join(changed) if changed else "same as current"


# ------------------------------------------------------------------------------------------------ queries


def pseudo_queries(backend: Any, ids: Sequence[str], n_queries: int, query_tokens: int, seed: int) -> list[MultiVector]:
    """``n_queries`` pseudo-queries, each ``query_tokens`` token vectors of one stored document, moved off them.

    Documents are drawn at random (without replacement while there are enough), then ``query_tokens`` of a
    document's token vectors (without replacement, kept in order), and each is turned to cosine
    :data:`QUERY_TOKEN_COSINE` with the stored one in a random orthogonal direction: a query token is then never an
    exact copy of an indexed token, which a graph finds whatever its search settings (a setting starved enough to
    retrieve only those copies would look exact).

    Returns:
        float32 arrays ``(min(query_tokens, n_tokens_of_its_document), dim)``, rows L2-normalised.
    """
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(ids), size=n_queries, replace=n_queries > len(ids))
    wanted = [ids[int(i)] for i in picks]
    records = {r.id: r for r in backend.get(list(dict.fromkeys(wanted)), with_vectors=True)}
    out: list[MultiVector] = []
    cos = QUERY_TOKEN_COSINE
    for doc_id in wanted:
        rec = records.get(doc_id)
        if rec is None or rec.vectors is None:
            continue  # deleted meanwhile
        vecs = _unit_rows(np.asarray(rec.vectors, dtype=np.float64))
        if vecs.shape[0] > query_tokens:
            vecs = vecs[np.sort(rng.choice(vecs.shape[0], size=query_tokens, replace=False))]
        noise = rng.standard_normal(vecs.shape)
        noise = _unit_rows(noise - (noise * vecs).sum(axis=1, keepdims=True) * vecs)
        out.append(_unit_rows(cos * vecs + np.sqrt(1.0 - cos * cos) * noise).astype(np.float32))
    return out


def _unit_rows(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def _given_queries(queries: object, encoder: Any, dim: int | None, n_queries: int) -> list[MultiVector]:
    if isinstance(queries, (str, bytes)) or not isinstance(queries, Sequence):
        raise InvalidInputError(
            "queries must be a list of query texts or of (n_tokens, dim) query vectors, got "
            f"{type(queries).__name__}; wrap a single query in a list"
        )
    items = list(queries)[:n_queries]
    if not items:
        raise InvalidInputError("queries is empty; pass some queries, or None to sample stored documents")
    if all(isinstance(q, str) for q in items):
        if encoder is None:
            raise InvalidInputError(
                "query texts need an encoder: pass a MultiVectorStore (MultiVectorStore.open(path) loads the model "
                "an index records), or encoded query vectors"
            )
        blank = [i for i, q in enumerate(items) if not q.strip()]
        if blank:
            raise InvalidInputError(f"queries[{blank[0]}] is empty or blank; every query needs a word")
        return [np.asarray(v, dtype=np.float32) for v in encoder.encode_queries(items)]
    if any(isinstance(q, str) for q in items):
        raise InvalidInputError("queries mixes texts and vectors; pass only texts or only (n_tokens, dim) arrays")
    return [as_multivector(q, dim=dim, where=f"queries[{i}]") for i, q in enumerate(items)]


# ------------------------------------------------------------------------------------------------ exact scan


def _exact_scan(
    backend: Any,
    ids: Sequence[str],
    queries: Sequence[MultiVector],
    k: int,
    returned: Sequence[set[str]],
    progress: Any,
) -> tuple[npt.NDArray[np.float32], list[dict[str, float]], int]:
    """Exact MaxSim of every stored document, ``SCAN_BATCH`` documents at a time.

    Returns:
        ``(kth (n_q,), scores, n_docs)``: each query's ``min(k, n_docs)``-th best exact score, the exact score of
        every document in ``returned[i]`` for query ``i``, and the documents scanned.
    """
    from .scoring import maxsim_batch

    n_q = len(queries)
    top = np.full((n_q, k), -np.inf, dtype=np.float32)
    scores: list[dict[str, float]] = [{} for _ in range(n_q)]
    wanted: dict[str, list[int]] = {}
    for qi, got in enumerate(returned):
        for doc_id in got:
            wanted.setdefault(doc_id, []).append(qi)
    n_docs = 0
    for start in range(0, len(ids), SCAN_BATCH):
        chunk = list(ids[start : start + SCAN_BATCH])
        records = [r for r in backend.get(chunk, with_vectors=True) if r.vectors is not None]
        if records:
            batch = maxsim_batch(queries, [r.vectors for r in records])  # (n_q, n_batch)
            n_docs += len(records)
            merged = np.concatenate([top, batch], axis=1)
            top = np.partition(merged, merged.shape[1] - k, axis=1)[:, -k:]  # each query's k best so far
            for j, rec in enumerate(records):
                for qi in wanted.get(rec.id, ()):
                    scores[qi][rec.id] = float(batch[qi, j])
        progress.update(len(chunk))
    depth = max(1, min(k, n_docs))
    return -np.sort(-top, axis=1)[:, depth - 1], scores, n_docs


# ------------------------------------------------------------------------------------------------ the audit


def audit(
    backend_or_store: Any,
    queries: Sequence[str] | Sequence[MultiVector] | None = None,
    *,
    k: int = 10,
    n_queries: int = 100,
    settings: Sequence[Mapping[str, Any]] | None = None,
    target_recall: float = 0.95,
    seed: int = 0,
    query_tokens: int = QUERY_TOKENS,
    show_progress: bool | None = None,
) -> AuditReport:
    """Recall@k and latency of a backend's search settings against exact MaxSim over its stored vectors.

    Args:
        backend_or_store: a backend (``VoyagerBackend``, ``QdrantBackend``, ``MemoryBackend``, any
            :class:`~colbert_adapters.backends.base.Backend`) or a
            :class:`~colbert_adapters.store.MultiVectorStore` (needed for query texts: its encoder encodes them).
        queries: query texts, or query vectors (float32 ``(n_tokens, dim)`` each); ``None`` draws pseudo-queries
            of ``query_tokens`` token vectors from randomly chosen stored documents. At most ``n_queries`` are
            used (the first ones).
        k: the ``k`` of recall@k (>= 1).
        n_queries: queries run per setting (>= 1).
        settings: search settings to try besides the current one, e.g. ``[{"k_token": 48}, {"k_token": 192}]``
            (Voyager: ``k_token``, ``ef_search``, ``n_rerank``, ``exact_below_tokens``; Qdrant: ``prefetch_limit``,
            ``mode``); ``None``: a ladder around the backend's defaults.
        target_recall: the mean recall@k a suggested setting must reach, in ``(0, 1]``.
        seed: seed of the pseudo-queries' random draws.
        query_tokens: token vectors per pseudo-query (>= 1).
        show_progress: a progress bar on stderr (``None``: when stderr is a terminal).

    Returns:
        An :class:`AuditReport`: one :class:`SettingResult` per setting (current first) and the fastest setting
        that reaches ``target_recall`` (``None`` when none does).

    Raises:
        InvalidInputError: bad ``k``, ``n_queries``, ``target_recall``, ``query_tokens``, queries (texts without
            an encoder, mixed texts and vectors, wrong dimension) or settings (a knob the backend does not have, a
            bad value); an empty backend.
        ColBERTError: every document drawn for the pseudo-queries was deleted while the audit ran.

    Example:
        >>> import numpy as np
        >>> from colbert_adapters.backends.memory import MemoryBackend
        >>> backend = MemoryBackend(dim=8)
        >>> rng = np.random.default_rng(0)
        >>> backend.upsert([f"d{i}" for i in range(50)], [rng.standard_normal((6, 8)) for _ in range(50)])
        >>> report = audit(backend, k=5, n_queries=10, show_progress=False)
        >>> report.current.recall, report.exact
        (1.0, True)
    """
    from tqdm import tqdm

    k = check_k(k)
    n_queries = _positive("n_queries", n_queries)
    query_tokens = _positive("query_tokens", query_tokens)
    if isinstance(target_recall, bool) or not isinstance(target_recall, (int, float)) or not 0 < target_recall <= 1:
        raise InvalidInputError(f"target_recall must be a number in (0, 1], got {target_recall!r}")
    if settings is not None and (isinstance(settings, Mapping) or not isinstance(settings, Sequence)):
        raise InvalidInputError(
            "settings must be a list of dicts (one per setting to try), e.g. [{'k_token': 48}]; "
            f"got {type(settings).__name__}"
        )
    from .store import MultiVectorStore

    store = backend_or_store if isinstance(backend_or_store, MultiVectorStore) else None
    backend = store.backend if store is not None else backend_or_store
    if not callable(getattr(backend, "search", None)) or not callable(getattr(backend, "get", None)):
        raise InvalidInputError(f"audit needs a backend or a MultiVectorStore, got {type(backend_or_store).__name__}")
    knobs = _knobs(backend)
    rows: list[Setting] = [{}]
    tried = settings if settings is not None else knobs.alternatives(max(1, backend.count()), k)
    for i, s in enumerate(tried):
        if not isinstance(s, Mapping):
            raise InvalidInputError(f"settings[{i}] must be a dict of search settings, got {type(s).__name__}")
        rows.append(knobs.check(s))
    ids = list(backend.ids())
    if not ids:
        raise InvalidInputError("the backend holds no documents; there is nothing to audit")
    if queries is None:
        qs = pseudo_queries(backend, ids, n_queries, query_tokens, seed)
        source = f"{query_tokens} tokens of a random stored document each, at cosine {QUERY_TOKEN_COSINE:g}"
    else:
        qs = _given_queries(queries, None if store is None else store.encoder, backend.dim, n_queries)
        source = "given query texts" if isinstance(next(iter(queries)), str) else "given query vectors"
    if not qs:
        raise ColBERTError("the documents drawn for pseudo-queries were deleted during the audit; run it again")
    total = len(rows) * (len(qs) + 1) + len(ids)
    with tqdm(total=total, desc="Auditing", unit="step", disable=_disable(show_progress), file=sys.stderr) as bar:
        got, times = _timed_searches(knobs, rows, qs, k, bar)
        returned = [{h.id for row in got for h in row[qi][:k]} for qi in range(len(qs))]
        kth, exact_scores, n_docs = _exact_scan(backend, ids, qs, k, returned, bar)
    depth = max(1, min(k, n_docs))
    now = knobs.current()
    results = []
    for setting, hits_row, t_row in zip(rows, got, times, strict=True):
        per_query = [_recall(hits[:k], exact_scores[qi], float(kth[qi]), depth) for qi, hits in enumerate(hits_row)]
        p50, p95 = _percentile_ms(t_row, 50), _percentile_ms(t_row, 95)
        recall = float(np.mean(per_query))
        results.append(
            SettingResult(
                setting=dict(setting),
                label=_label(setting, now),
                current=not setting,
                recall=recall,
                worst_recall=float(min(per_query)),
                p50_ms=p50,
                p95_ms=p95,
                reaches_target=recall >= target_recall,
            )
        )
    reaching = [r for r in results if r.reaches_target]
    suggestion = min(reaching, key=lambda r: r.p50_ms) if reaching else None
    notes = knobs.notes(n_docs)
    if suggestion is None:
        notes.append(
            f"no setting reaches recall@{k} >= {target_recall:g}: try larger settings (settings=[...] / --setting)"
            + ("" if knobs.kind != "qdrant" else ", or mode=exact")
        )
    report = AuditReport(
        backend=_backend_name(backend, knobs),
        exact=knobs.is_exact(),
        k=k,
        n_docs=n_docs,
        n_queries=len(qs),
        queries=source,
        target_recall=float(target_recall),
        current_setting=now,
        results=tuple(results),
        suggestion=suggestion,
        notes=tuple(notes),
    )
    logger.info("audit of %s: current recall@%d %.4f", report.backend, k, report.current.recall)
    return report


def _timed_searches(
    knobs: _Knobs, rows: Sequence[Setting], qs: Sequence[MultiVector], k: int, progress: Any
) -> tuple[list[list[list[Hit]]], list[list[float]]]:
    """Every query under every setting: ``(hits[row][query], seconds[row][query])``; the settings are restored."""
    got: list[list[list[Hit]]] = [[[] for _ in qs] for _ in rows]
    times: list[list[float]] = [[0.0] * len(qs) for _ in rows]
    with knobs.restoring():
        for setting in rows:
            knobs.search(setting, qs[0], k)  # warm-up: lazily loaded graphs, caches, the page cache
            progress.update(1)
        for qi, q in enumerate(qs):
            # Each query starts from another setting, so that the machine's load and the caches one setting
            # warms for the next weigh on all settings alike.
            for j in range(len(rows)):
                r = (qi + j) % len(rows)
                t0 = time.perf_counter()
                got[r][qi] = knobs.search(rows[r], q, k)
                times[r][qi] = time.perf_counter() - t0
                progress.update(1)
    return got, times


def _recall(hits: Sequence[Hit], exact: Mapping[str, float], kth: float, depth: int) -> float:
    """Returned documents whose exact score reaches the ``depth``-th best (ties count), over ``depth``."""
    tol = 1e-5 * max(1.0, abs(kth))
    found = sum(1 for h in dict.fromkeys(h.id for h in hits) if exact.get(h, -np.inf) >= kth - tol)
    return min(found, depth) / depth


def _percentile_ms(seconds: Sequence[float], p: float) -> float:
    xs = sorted(seconds)
    return 1000.0 * xs[min(len(xs) - 1, max(0, int(np.ceil(p / 100.0 * len(xs))) - 1))]


def _disable(show_progress: bool | None) -> bool | None:
    return None if show_progress is None else not show_progress


def _backend_name(backend: Any, knobs: _Knobs) -> str:
    if knobs.kind == "qdrant":
        return f"qdrant-{backend.engine}"
    return knobs.kind if knobs.kind != "unknown" else type(backend).__name__
