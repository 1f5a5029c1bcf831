"""Split documents seen as one: a parent id's windows written, read, deleted and searched together.

Works on every backend through the :class:`~colbert_adapters.backends.base.Backend` protocol (window records are
ordinary documents there; the layout is in :mod:`colbert_adapters._windows`). Documents that fit the encoder are
one record with the user's id and metadata, exactly as without splitting, and cost nothing extra here.

Replacing a split document: its new windows are written in one ``upsert`` (one transaction on Voyager and the
memory backend), carrying a new ``gen``; then the previous version's windows past the new count are deleted by
id. Window 0 records ``extent``, the highest window count the id has had, so that delete and the next add find
windows left over by an interrupted replacement; readers only use windows of window 0's ``gen``.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ._filters import FilterExpr, match_filter
from ._windows import SEPARATOR, WINDOW_KEY, Splitter, is_extra_window, window_id
from .backends.base import Backend, LexicalBackend, Record
from .errors import InvalidInputError
from .types import Filter, Hit, Metadata, MultiVector

__all__ = [
    "MAX_FETCH_FACTOR",
    "GroupedLexical",
    "check_user_input",
    "delete",
    "delete_where",
    "get",
    "highlight",
    "highlight_hits",
    "log_split",
    "search",
    "search_subset",
    "source_records",
    "visible_ids",
    "write",
]

logger = logging.getLogger(__name__)

#: A search fetches windows until it has ``k`` distinct documents: ``k``, then 4 times more per round, at most
#: ``MAX_FETCH_FACTOR * k`` windows (past that, fewer than ``k`` documents may come back).
MAX_FETCH_FACTOR = 64

Pair = tuple[Hit, Hit]  # (the document's hit, the hit of the record it comes from: itself or its best window)


def _info(metadata: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """A window's reserved metadata (``None`` for a document stored whole)."""
    w = metadata.get(WINDOW_KEY) if isinstance(metadata, Mapping) else None
    return w if isinstance(w, Mapping) and "parent" in w else None


def _extent(metadata: Mapping[str, Any] | None) -> int:
    """How many window ids a stored document may occupy (1 for one that never was split)."""
    w = metadata.get(WINDOW_KEY) if isinstance(metadata, Mapping) else None
    if not isinstance(w, Mapping):
        return 1
    return max(int(w.get("extent", 1)), int(w.get("windows", 1)))


def _user(metadata: Mapping[str, Any]) -> Mapping[str, Any]:
    """The user's metadata: the reserved key removed."""
    return {k: v for k, v in metadata.items() if k != WINDOW_KEY} if WINDOW_KEY in metadata else metadata


def check_user_input(ids: Sequence[str], metadatas: Sequence[Metadata]) -> None:
    """Refuse ids and metadata that would collide with window records.

    Raises:
        InvalidInputError: an id holds the window separator, or metadata uses the reserved key.
    """
    for i, x in enumerate(ids):
        if SEPARATOR in x:
            raise InvalidInputError(
                f"ids[{i}] ({x!r:.60}) contains \\x1f, which names the windows of a split document; remove it"
            )
    for i, m in enumerate(metadatas):
        if WINDOW_KEY in m:
            raise InvalidInputError(
                f"metadatas[{i}] uses the key {WINDOW_KEY!r}, reserved for the windows of long documents; rename it"
            )


def write(
    backend: Backend,
    encode: Callable[[list[str]], Sequence[MultiVector]],
    splitter: Splitter | None,
    ids: list[str],
    texts: list[str],
    metadatas: list[dict[str, Any]],
    encode_texts: list[str],
) -> tuple[int, int]:
    """Encode and upsert documents, splitting the long ones; remove what the replaced versions left over.

    Args:
        backend: where to write.
        encode: texts -> one float32 ``(n_tokens, dim)`` array per text (checked by the caller).
        splitter: splits long texts; ``None`` stores every text whole (the encoder truncates).
        ids, texts, metadatas, encode_texts: ``n`` documents (``encode_texts[i]`` is what is encoded for
            ``texts[i]``; a window encodes the part of it before the text, then the window).

    Returns:
        ``(documents split, windows written for them)``.
    """
    old = {r.id: _extent(r.metadata) for r in backend.get(ids)}
    heads: list[str | None] = []
    for t, e in zip(texts, encode_texts, strict=True):
        at = e.find(t) if t else -1
        heads.append("" if e == t else (e[:at] if at >= 0 else None))  # None: the text is not in what is encoded
    splits: list[list[tuple[int, int]] | None] = [None] * len(texts)
    if splitter is not None:
        can = [i for i, h in enumerate(heads) if h is not None]
        for i, w in zip(can, splitter.split([texts[i] for i in can], [heads[i] or "" for i in can]), strict=True):
            splits[i] = w
    rec_ids: list[str] = []
    rec_texts: list[str] = []
    rec_metas: list[dict[str, Any]] = []
    to_encode: list[str] = []
    stale: list[str] = []
    n_split = n_windows = 0
    for i, (pid, text, meta) in enumerate(zip(ids, texts, metadatas, strict=True)):
        windows = splits[i]
        extent = old.get(pid, 1)
        if windows is None or len(windows) < 2:
            marker = {WINDOW_KEY: {"windows": 1, "extent": extent}} if extent > 1 else {}
            rec_ids.append(pid)
            rec_texts.append(text)
            rec_metas.append({**meta, **marker})
            to_encode.append(encode_texts[i])
            stale += [window_id(pid, j) for j in range(1, extent)]
            continue
        n = len(windows)
        n_split, n_windows = n_split + 1, n_windows + n
        common = {"parent": pid, "windows": n, "gen": uuid.uuid4().hex[:12], "extent": max(n, extent)}
        for j, (a, b) in enumerate(windows):
            rec_ids.append(window_id(pid, j))
            rec_texts.append(text[a:b])
            rec_metas.append({**meta, WINDOW_KEY: {**common, "window": j, "start": a, "end": b}})
            to_encode.append((heads[i] or "") + text[a:b])
        stale += [window_id(pid, j) for j in range(n, extent)]
    vectors = encode(to_encode)
    backend.upsert(rec_ids, vectors, texts=rec_texts, metadatas=rec_metas)
    if stale:
        backend.delete(stale)
    return n_split, n_windows


def log_split(splitter: Splitter | None, n_split: int, n_windows: int) -> bool:
    """Say that long documents are split (INFO: the documented default at work; a store says it once)."""
    logger.info(
        "%d documents are longer than document_length=%d tokens and are stored as %d overlapping windows (one hit "
        "per document, with the window's character span); long_documents='truncate' cuts them instead",
        n_split,
        splitter.length if splitter is not None else 0,
        n_windows,
    )
    return True


def _load(backend: Backend, ids: Sequence[str], *, with_vectors: bool = False) -> dict[str, list[Record]]:
    """Per known id, the records of its current version in window order (one record for a whole document).

    Windows of another ``gen`` than window 0's (left over by an interrupted replacement) are left out."""
    out: dict[str, list[Record]] = {}
    split: list[tuple[Record, Mapping[str, Any]]] = []
    for r in backend.get(list(dict.fromkeys(ids)), with_vectors=with_vectors):
        info = _info(r.metadata)
        if info is None or info.get("parent") != r.id:
            out[r.id] = [r]
        else:
            split.append((r, info))
    if split:
        rest_ids = [window_id(r.id, j) for r, info in split for j in range(1, int(info["windows"]))]
        rest = {x.id: x for x in backend.get(rest_ids, with_vectors=with_vectors)}
        for r, info in split:
            recs = [r]
            for j in range(1, int(info["windows"])):
                x = rest.get(window_id(r.id, j))
                wi = _info(x.metadata) if x is not None else None
                if x is not None and wi is not None and wi.get("gen") == info.get("gen"):
                    recs.append(x)
            out[r.id] = recs
    return out


def _text(records: Sequence[Record]) -> str | None:
    """The parent's text from its windows' texts and spans."""
    if records[0].text is None:
        return None
    parts = [records[0].text]
    head = _info(records[0].metadata)
    reached = int(head["end"]) if head is not None else len(records[0].text)
    for r in records[1:]:
        info = _info(r.metadata)
        if info is None or r.text is None:
            continue
        start, end = int(info["start"]), int(info["end"])
        parts.append(r.text[max(0, reached - start) :])
        reached = max(reached, end)
    return "".join(parts)


def _parent_record(pid: str, records: list[Record], with_vectors: bool) -> Record:
    head = records[0]
    if len(records) == 1 and _info(head.metadata) is None:
        return dataclasses.replace(head, metadata=_user(head.metadata)) if WINDOW_KEY in head.metadata else head
    vectors = None
    if with_vectors and all(r.vectors is not None for r in records):
        vectors = np.concatenate([np.asarray(r.vectors, dtype=np.float32) for r in records])
    return Record(pid, _text(records), _user(head.metadata), vectors)


def get(backend: Backend, ids: Sequence[str], *, with_vectors: bool = False) -> list[Record]:
    """Stored documents in the order asked, skipping unknown ids; a split document reassembled (its text from
    its windows, its vectors their rows in window order, overlapping tokens once per window)."""
    loaded = _load(backend, ids, with_vectors=with_vectors)
    return [_parent_record(i, loaded[i], with_vectors) for i in ids if i in loaded]


def delete(backend: Backend, ids: Sequence[str]) -> int:
    """Remove documents with every window; returns how many documents were removed."""
    unique = list(dict.fromkeys(ids))
    found = {r.id: _extent(r.metadata) for r in backend.get(unique)}
    doomed = [window_id(pid, j) for pid in unique for j in range(found.get(pid, 1))]
    removed = backend.delete(doomed)
    return min(removed, len(found))


def delete_where(backend: Backend, filter: Filter | None) -> int:
    """Remove every record matching a metadata filter (the backend's ``delete_where``, else a scan); returns how
    many records were removed (each window of a split document counts)."""
    from ._filters import check_filter

    delete_where = getattr(backend, "delete_where", None)
    if delete_where is not None:
        return int(delete_where(filter))
    norm = check_filter(filter)
    doomed = [r.id for r in backend.get(backend.ids()) if match_filter(r.metadata, norm)]
    return backend.delete(doomed) if doomed else 0


def visible_ids(backend: Backend) -> list[str]:
    """Every document id: the record ids less those of windows after the first."""
    return [i for i in backend.ids() if not is_extra_window(i)]


def _group(backend: Backend, hits: Sequence[Hit], k: int) -> list[Pair]:
    """One hit per document, best window first, at most ``k``: a split document's hit has its text, the user's
    metadata and the window's ``span``; windows of an older version are skipped."""
    by_parent: dict[str, list[tuple[int, Hit]]] = {}
    for pos, h in enumerate(hits):
        info = _info(h.metadata)
        by_parent.setdefault(str(info["parent"]) if info else h.id, []).append((pos, h))
    found: list[tuple[int, Pair]] = []
    parents = list(by_parent)
    done = 0
    while len(found) < k and done < len(parents):
        batch = parents[done : done + k - len(found)]
        done += len(batch)
        split = [p for p in batch if any(_info(h.metadata) for _, h in by_parent[p])]
        loaded = _load(backend, split) if split else {}
        for p in batch:
            if p not in loaded:
                if p not in split:  # a document stored whole
                    pos, h = by_parent[p][0]
                    found.append((pos, (dataclasses.replace(h, metadata=_user(h.metadata)), h)))
                continue  # a split document deleted since the search
            records = loaded[p]
            head = _info(records[0].metadata)
            gen = head.get("gen") if head else None
            for pos, h in by_parent[p]:
                info = _info(h.metadata)
                if (info.get("gen") if info else None) != gen:
                    continue
                span = (int(info["start"]), int(info["end"])) if info else None
                text = _text(records) if info else h.text
                found.append((pos, (Hit(p, h.score, text, _user(h.metadata), span=span), h)))
                break
    found.sort(key=lambda x: x[0])
    return [pair for _, pair in found[:k]]


def search(backend: Backend, q: MultiVector, k: int, filter: Filter | None, *, windows: bool = False) -> list[Pair]:
    """The backend's top ``k`` documents: windows fetched until ``k`` distinct documents (see
    :data:`MAX_FETCH_FACTOR`), grouped to their best window.

    ``windows``: the backend is known to hold split documents, so the first fetch is ``4 * k`` windows (else
    ``k``, exactly the search of a store without them); a next fetch grows with the windows per document seen.
    """
    cap = k * MAX_FETCH_FACTOR
    fetch = min(cap, 4 * k) if windows else k
    while True:
        hits = backend.search(q, k=fetch, filter=filter)
        parents = {str(i["parent"]) if (i := _info(h.metadata)) else h.id for h in hits}
        if len(parents) >= k or len(hits) < fetch or fetch >= cap:
            return _group(backend, hits, k)
        fetch = min(cap, max(fetch * 4, -(-fetch * k * 5 // (4 * max(1, len(parents))))))


class GroupedLexical:
    """A backend's lexical search answering one hit per document: windows grouped to their document (fetched until
    ``k`` distinct documents, as :func:`search`), ``ids=`` naming documents (every window of each is searched)."""

    def __init__(self, lexical: LexicalBackend, backend: Backend, *, windows: bool) -> None:
        self._lexical = lexical
        self._backend = backend
        self._windows = windows

    def lexical_search(
        self, query: str, k: int = 10, filter: Filter | None = None, *, ids: Sequence[str] | None = None
    ) -> list[Hit]:
        """Up to ``k`` documents by their best window's BM25 score."""
        if ids is not None and self._windows:
            loaded = _load(self._backend, list(ids))
            ids = [r.id for i in ids for r in loaded.get(i, ())]
        cap = k * MAX_FETCH_FACTOR
        fetch = min(cap, 4 * k) if self._windows else k
        while True:
            hits = self._lexical.lexical_search(query, fetch, filter, ids=ids)
            parents = {str(i["parent"]) if (i := _info(h.metadata)) else h.id for h in hits}
            if len(parents) >= k or len(hits) < fetch or fetch >= cap:
                return [hit for hit, _ in _group(self._backend, hits, k)]
            fetch = min(cap, fetch * 4)


def search_subset(backend: Backend, q: MultiVector, k: int, norm: FilterExpr | None, ids: list[str]) -> list[Pair]:
    """Exact MaxSim of ``q`` against every window of ``ids`` (those that exist and match the filter), one hit per
    document."""
    from .scoring import maxsim

    loaded = _load(backend, ids, with_vectors=True)
    records = [r for i in ids for r in loaded.get(i, ()) if match_filter(r.metadata, norm)]
    if not records:
        return []
    scores = maxsim(q, [r.vectors for r in records])
    order = sorted(range(len(records)), key=lambda i: -float(scores[i]))  # stable: ties keep ids' order
    hits = [Hit(records[i].id, float(scores[i]), records[i].text, records[i].metadata) for i in order]
    return _group(backend, hits, k)


def source_records(backend: Backend, hits: Sequence[Hit], *, with_vectors: bool = False) -> list[Record | None]:
    """Per hit, the record it comes from: the document, or the window its ``span`` names (``None``: gone)."""
    loaded = _load(backend, [h.id for h in hits], with_vectors=with_vectors)
    out: list[Record | None] = []
    for h in hits:
        match = None
        for r in loaded.get(h.id, ()):
            info = _info(r.metadata)
            if h.span is None or (info is not None and (int(info["start"]), int(info["end"])) == tuple(h.span)):
                match = r
                break
        out.append(match)
    return out


def highlight_hits(
    encoder: object, backend: Backend, q: MultiVector, hits: Sequence[Hit], encoded: Sequence[str] | None = None
) -> list[Hit]:
    """:func:`highlight` for documents' hits alone: the window of a hit with a ``span`` looked up by that span."""
    records = source_records(backend, hits) if any(h.span is not None for h in hits) else [None] * len(hits)
    pairs = [
        (h, Hit(r.id, h.score, r.text, r.metadata) if h.span is not None and r is not None else h)
        for h, r in zip(hits, records, strict=True)
    ]
    return highlight(encoder, backend, q, pairs, encoded)


def highlight(
    encoder: object, backend: Backend, q: MultiVector, pairs: Sequence[Pair], encoded: Sequence[str] | None = None
) -> list[Hit]:
    """The documents' hits with ``highlights``: a split document's found in its best window and shifted into
    the document's text (``encoded``: per hit, the text encoded when it is not the stored text but holds it)."""
    from ._highlight import add_highlights

    windows = [w for _, w in pairs]
    sources = None
    if encoded is not None:
        sources = []
        for (parent, w), e in zip(pairs, encoded, strict=True):
            at = e.find(parent.text or "") if parent.span is not None else -1
            sources.append(e[:at] + (w.text or "") if at >= 0 else e)
    lit = add_highlights(encoder, backend, q, windows, sources)
    out = []
    for (parent, _), w in zip(pairs, lit, strict=True):
        shift = parent.span[0] if parent.span is not None else 0
        spans = [(a + shift, b + shift, x) for a, b, x in w.highlights or []]
        out.append(dataclasses.replace(parent, highlights=spans))
    return out
