"""Long documents: a text longer than the encoder's ``document_length`` split into overlapping token windows.

A window is a range of the text's tokens (from the encoder's tokenizer offsets) that fits ``document_length``
with the special tokens, ending on a word boundary where one is near; the next window starts ``overlap`` tokens
before its end (moved forward to a word start). Each window is stored as its own record: window 0 under the
parent's id, window ``i`` under ``"<parent>\\x1f<i>"``, each with the user's metadata plus one reserved key,
:data:`WINDOW_KEY`, holding ``{"parent", "window", "windows", "start", "end", "gen", "extent"}``.

Character spans: window ``i`` stores ``text[start_i:end_i]``; ``start_0 == 0``, the last ``end == len(text)``
and ``start_{i+1} <= end_i``, so the windows cover the text and the parent's text is reassembled from them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import InvalidInputError

__all__ = [
    "LONG_DOCUMENTS",
    "SEPARATOR",
    "WINDOW_KEY",
    "Splitter",
    "count_windows",
    "make_splitter",
    "plan_windows",
    "window_id",
]

logger = logging.getLogger(__name__)

#: The reserved metadata key of a window record (users' metadata may not use it).
WINDOW_KEY = "_colbert_window"
#: Between a parent id and a window number in a window's record id (users' ids may not contain it).
SEPARATOR = "\x1f"
#: Accepted values of ``MultiVectorStore(long_documents=)``.
LONG_DOCUMENTS = ("split", "truncate")

Span = tuple[int, int]


def window_id(parent: str, index: int) -> str:
    """The record id of window ``index`` of ``parent``: the parent id itself for window 0."""
    return parent if index == 0 else f"{parent}{SEPARATOR}{index}"


def is_extra_window(record_id: str) -> bool:
    """Whether ``record_id`` names a window after the first (``"<parent>\\x1f<i>"``, ``i >= 1``)."""
    head, sep, tail = record_id.rpartition(SEPARATOR)
    return bool(sep and head and tail.isdigit())


def document_length(encoder: object) -> int | None:
    """The encoder's ``document_length`` (``ColBERTEncoder.spec``, ``FakeEncoder.document_length``), if any."""
    spec = getattr(encoder, "spec", None)
    n = getattr(spec, "document_length", None) if spec is not None else getattr(encoder, "document_length", None)
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None


def _starts_word(text: str, start: int, previous_end: int) -> bool:
    """Whether a token starting at ``start`` begins a word: a gap after the previous token, or whitespace at or
    before its start (byte-level BPE offsets include the space before a word)."""
    return start > previous_end or text[start].isspace() or (start > 0 and text[start - 1].isspace())


def plan_windows(text: str, spans: Sequence[Span], capacity: int, overlap: int) -> list[Span]:
    """Character spans of the windows of ``text``.

    Args:
        text: the document.
        spans: ``(start, end)`` of each of its tokens, in order (special tokens left out).
        capacity: most tokens per window (>= 1).
        overlap: tokens the next window repeats (``0 <= overlap < capacity``).

    Returns:
        ``(start, end)`` per window: the first starts at 0, the last ends at ``len(text)``, each starts where its
        first token starts (after the first) and reaches at least the next window's start.
    """
    n = len(spans)
    if n <= capacity:
        return [(0, len(text))]
    word_start = [i == 0 or _starts_word(text, spans[i][0], spans[i - 1][1]) for i in range(n)] + [True]
    ranges: list[tuple[int, int]] = []
    t0 = 0
    while True:
        end = hard = min(n, t0 + capacity)
        if hard < n:  # cut before a token that starts a word, within the last quarter of the window
            for e in range(hard, max(t0 + overlap + 1, hard - capacity // 4) - 1, -1):
                if word_start[e]:
                    end = e
                    break
        ranges.append((t0, end))
        if end >= n:
            break
        nxt = end - overlap
        while nxt < end and not word_start[nxt]:
            nxt += 1
        t0 = nxt if nxt < end else end - overlap
    chars = [[0 if j == 0 else spans[a][0], spans[b - 1][1]] for j, (a, b) in enumerate(ranges)]
    chars[-1][1] = len(text)
    for j in range(len(chars) - 1):
        chars[j][1] = max(chars[j][1], chars[j + 1][0])
    return [(a, b) for a, b in chars]


@dataclass(frozen=True, slots=True)
class Splitter:
    """Splits long texts for one encoder.

    Attributes:
        encoder: has ``count_tokens(texts)`` (lengths before truncation) and ``text_token_spans(texts)``.
        length: the encoder's ``document_length`` (input tokens of one encoded text).
        capacity: text tokens per window: ``length`` less the tokens of an empty text (``[CLS]``, prefix, ...).
        overlap: tokens consecutive windows share.
    """

    encoder: Any
    length: int
    capacity: int
    overlap: int

    def split(self, texts: Sequence[str], heads: Sequence[str] | None = None) -> list[list[Span] | None]:
        """Per text: ``None`` when it fits ``length``, else its windows' character spans.

        ``heads``: per text, what is encoded before each window (``""``: nothing; a LlamaIndex node's metadata
        header): the windows are made small enough that ``head + window`` fits.
        """
        heads = [""] * len(texts) if heads is None else list(heads)
        counts = self.encoder.count_tokens([h + t for h, t in zip(heads, texts, strict=True)])
        long = [i for i, c in enumerate(counts) if c > self.length]
        out: list[list[Span] | None] = [None] * len(texts)
        if long:
            spans = self.encoder.text_token_spans([texts[i] for i in long])
            for i, sp in zip(long, spans, strict=True):
                out[i] = self._fit(texts[i], sp, heads[i])
        return out

    def _fit(self, text: str, spans: Sequence[Span], head: str) -> list[Span]:
        """Windows whose re-tokenised ``head + window`` fits ``length`` (a window re-tokenised alone can take a
        few more tokens than its share of the whole text's tokens: the capacity shrinks by the excess)."""
        capacity = self.capacity
        windows = plan_windows(text, spans, capacity, min(self.overlap, capacity - 1))
        for _ in range(8):
            counts = self.encoder.count_tokens([head + text[a:b] for a, b in windows])
            excess = max(counts) - self.length
            if excess <= 0 or capacity <= 1:
                break
            capacity = max(1, capacity - excess)
            windows = plan_windows(text, spans, capacity, min(self.overlap, capacity - 1))
        return windows


def make_splitter(encoder: object, long_documents: object, overlap: object) -> Splitter | None:
    """The splitter a store uses, or ``None`` (``long_documents="truncate"``, or an encoder without token spans).

    Raises:
        InvalidInputError: an unknown ``long_documents``, or ``overlap`` not an int in ``[0, capacity)``.
    """
    if long_documents not in LONG_DOCUMENTS:
        raise InvalidInputError(
            f"long_documents must be 'split' (a long text becomes several windows) or 'truncate' (the encoder cuts "
            f"it at document_length), got {long_documents!r}"
        )
    if overlap is not None and (isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0):
        raise InvalidInputError(f"window_overlap must be a non-negative int (tokens) or None, got {overlap!r}")
    length = document_length(encoder)
    usable = callable(getattr(encoder, "count_tokens", None)) and callable(getattr(encoder, "text_token_spans", None))
    if long_documents == "truncate" or length is None or not usable:
        if long_documents == "split" and overlap is not None:
            raise InvalidInputError(
                f"window_overlap is given but {type(encoder).__name__} does not split long documents (it needs a "
                "document_length, count_tokens and text_token_spans); leave window_overlap out"
            )
        return None
    capacity = length - int(encoder.count_tokens([""])[0])  # type: ignore[attr-defined]
    if capacity < 2:
        raise InvalidInputError(f"document_length={length} leaves no room for text tokens in a window")
    n_overlap = capacity // 8 if overlap is None else overlap
    if n_overlap >= capacity:
        raise InvalidInputError(
            f"window_overlap={n_overlap} must be smaller than a window ({capacity} text tokens: document_length="
            f"{length} less the special tokens); pass a smaller window_overlap (default {capacity // 8})"
        )
    return Splitter(encoder, length, capacity, n_overlap)


def count_windows(encoder: object, texts: Sequence[str], overlap: int | None = None) -> list[int]:
    """How many windows each text makes when a store splits it (1 when it fits ``document_length``).

    Raises:
        InvalidInputError: bad ``overlap`` (see :func:`make_splitter`).
    """
    splitter = make_splitter(encoder, "split", overlap)
    if splitter is None:
        return [1] * len(texts)
    return [1 if w is None else len(w) for w in splitter.split(list(texts))]
