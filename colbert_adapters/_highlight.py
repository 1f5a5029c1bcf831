"""Highlights: which characters of a hit's text its MaxSim score comes from.

MaxSim sums, over the query's token vectors, the best cosine with any document token vector. Each document token
gets the cosines of the query tokens it is the best match of; a hit's highlights are its tokens with such a
contribution, as character spans of its stored text (re-tokenised for offsets), adjacent tokens merged.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .errors import InvalidInputError
from .types import Hit, MultiVector

__all__ = ["add_highlights", "offsets_function", "spans_for", "token_offsets"]

logger = logging.getLogger(__name__)

#: ``(start, end, weight)``: characters ``text[start:end]`` and their share of the MaxSim score.
Span = tuple[int, int, float]
OffsetsFn = Callable[[Sequence[str]], list[list[tuple[int, int] | None]]]


def token_offsets(
    tokenizer: Any, texts: Sequence[str], *, prompt: str, lower: bool, prefix_id: int | None, length: int
) -> list[tuple[list[int], list[tuple[int, int] | None]]]:
    """Per document, its input ids as :class:`~colbert_adapters.encoder.ColBERTEncoder` builds them (prefix id
    after ``[CLS]``) and each id's ``(start, end)`` in the text as given (``None``: special, prefix, prompt).

    The encoder strips the text, puts ``prompt`` before it and lowercases it when the checkpoint asks; offsets
    are mapped back through those steps.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise InvalidInputError(
            f"{type(tokenizer).__name__} is a slow tokenizer without character offsets; save the checkpoint with a "
            "tokenizer.json (a fast tokenizer) to get document token offsets"
        )
    if not texts:
        return []
    base = len(prompt)
    leads, prepared, maps = [], [], []
    for text in texts:
        leads.append(len(text) - len(text.lstrip()))
        p = prompt + text.strip()
        to_source = None  # lowercasing may change the length ("İ" -> "i̇"): map back per character
        if lower:
            lowered = p.lower()
            if len(lowered) != len(p):
                to_source = [i for i, c in enumerate(p) for _ in c.lower()]
            p = lowered
        prepared.append(p)
        maps.append(to_source)
    enc = tokenizer(
        prepared,
        truncation=True,
        max_length=length - 1 if prefix_id is not None else length,
        add_special_tokens=True,
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
        return_attention_mask=False,
        return_token_type_ids=False,
    )
    out = []
    for i, lead in enumerate(leads):
        ids = list(enc["input_ids"][i])
        spans: list[tuple[int, int] | None] = []
        to_source = maps[i]
        for (a, b), special in zip(enc["offset_mapping"][i], enc["special_tokens_mask"][i], strict=True):
            if to_source is not None and b > a:
                a, b = to_source[a], to_source[b - 1] + 1
            ok = not special and b > a and a >= base
            spans.append((a - base + lead, b - base + lead) if ok else None)
        if prefix_id is not None:
            ids.insert(1, prefix_id)
            spans.insert(1, None)
        out.append((ids, spans))
    return out


def offsets_function(encoder: object) -> OffsetsFn:
    """The encoder's ``document_token_offsets``, or a clear error when it has none."""
    fn = getattr(encoder, "document_token_offsets", None)
    if not callable(fn):
        raise InvalidInputError(
            f"highlight=True needs the document token offsets of the encoder, and {type(encoder).__name__} has no "
            "document_token_offsets(texts) method; use a ColBERTEncoder, give your encoder that method (one "
            "(start, end) or None per row of encode_documents), or search without highlight=True"
        )
    return fn  # type: ignore[no-any-return]


def spans_for(
    query: MultiVector, doc: MultiVector, offsets: Sequence[tuple[int, int] | None], text: str
) -> list[Span] | None:
    """The highlights of one document: ``None`` when ``offsets`` does not have one entry per row of ``doc``.

    Each query row's best document row gets that cosine; rows with a contribution, offsets and a letter or digit
    (punctuation the skiplist misses, such as a space-prefixed ``(``, is left out) become spans (surrounding
    whitespace trimmed, a word piece widened to its whole word), sorted, and spans separated by nothing or
    whitespace only are merged, their weights added.
    """
    if len(offsets) != doc.shape[0] or doc.shape[0] == 0:
        return None
    sims = query.astype(np.float64) @ doc.astype(np.float64).T
    best = sims.argmax(axis=1)
    weights = np.zeros(doc.shape[0])
    np.add.at(weights, best, sims[np.arange(len(best)), best])
    tokens = []
    for j in sorted(set(best.tolist())):
        off = offsets[j]
        if off is None:
            continue
        a, b = off
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if any(c.isalnum() for c in text[a:b]):  # not a punctuation-only token such as "Ġ("
            while a > 0 and text[a - 1].isalnum() and text[a].isalnum():  # whole words: "sav" of "savanna"
                a -= 1
            while b < len(text) and text[b].isalnum() and text[b - 1].isalnum():
                b += 1
            tokens.append((a, b, float(weights[j])))
    tokens.sort()
    merged: list[Span] = []
    for a, b, w in tokens:
        if merged and not text[merged[-1][1] : a].strip():
            pa, pb, pw = merged[-1]
            merged[-1] = (pa, max(pb, b), pw + w)
        else:
            merged.append((a, b, w))
    return merged


def add_highlights(
    encoder: object,
    backend: Any,
    query: MultiVector,
    hits: list[Hit],
    encoded_texts: Sequence[str] | None = None,
) -> list[Hit]:
    """``hits`` with :attr:`~colbert_adapters.types.Hit.highlights` filled from the stored vectors and texts.

    ``encoded_texts``: per hit, the text its vectors were encoded from when it is not the stored text but
    contains it (``store.add(encode_texts=)``, e.g. a LlamaIndex node's content with its metadata before it);
    spans are found in it and kept, shifted, where they fall inside the stored text.

    A hit whose document was deleted since the search, or whose stored vectors do not match its re-tokenised
    text (the text stored is not the text encoded, or the vectors were pooled), gets ``[]`` and a warning.

    Raises:
        InvalidInputError: the encoder gives no token offsets, or a hit has no stored text.
    """
    offsets_of = offsets_function(encoder)
    for h in hits:
        if h.text is None:
            raise InvalidInputError(
                f"highlight=True needs the hits' texts, and document {h.id!r} has no stored text (its backend "
                "was given vectors without texts); store documents with their texts (store.add) or search "
                "without highlight=True"
            )
    if not hits:
        return hits
    records = {r.id: r for r in backend.get([h.id for h in hits], with_vectors=True)}
    texts = [h.text or "" for h in hits]
    sources = texts if encoded_texts is None else list(encoded_texts)
    out = []
    for h, text, source, offs in zip(hits, texts, sources, offsets_of(sources), strict=True):
        rec = records.get(h.id)
        spans = None
        if rec is not None and rec.vectors is not None:
            spans = spans_for(query, np.asarray(rec.vectors, dtype=np.float32), offs, source)
        shift = source.find(text)
        if spans is not None and source != text:
            end = shift + len(text)
            spans = None if shift < 0 else [(a - shift, b - shift, w) for a, b, w in spans if shift <= a and b <= end]
        if spans is None:
            logger.warning(
                "no highlights for %r: its stored vectors do not line up with its re-tokenised text (a text "
                "stored other than the one encoded, pooled vectors, or a document deleted since the search)",
                h.id,
            )
            spans = []
        out.append(dataclasses.replace(h, highlights=spans))
    return out
