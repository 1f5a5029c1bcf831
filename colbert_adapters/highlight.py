"""Highlights: the characters of a hit's text its MaxSim score comes from (``store.search(query, highlight=True)``
fills ``Hit.highlights``), rendered as Markdown bold or HTML ``<mark>``.

Example:
    >>> from colbert_adapters.highlight import render
    >>> render("the cat sat", [(4, 7, 1.5)])
    'the **cat** sat'
    >>> render("a < b & cat", [(8, 11, 0.9)], style="html")
    'a &lt; b &amp; <mark>cat</mark>'
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from ._validation import as_multivector
from .errors import InvalidInputError
from .types import Hit, MultiVector

if TYPE_CHECKING:
    from .store import MultiVectorStore

__all__ = ["highlight_hits", "render"]

_STYLES = ("markdown", "html")


def render(
    text: str,
    spans: Sequence[tuple[int, int, float]] | None,
    *,
    style: Literal["markdown", "html"] = "markdown",
    min_weight: float | None = None,
    width: int | None = None,
) -> str:
    """``text`` with its highlighted spans marked.

    Args:
        text: the hit's text (``hit.text``).
        spans: ``(start, end, weight)`` character spans (``hit.highlights``); ``None`` or ``[]`` marks nothing.
        style: ``"markdown"`` wraps spans in ``**…**``; ``"html"`` in ``<mark>…</mark>`` and escapes the rest.
        min_weight: mark only spans weighing at least this (a share of the MaxSim score; a query token's best
            cosine is at most 1).
        width: ``None`` renders the whole text; a number renders a window of about ``width`` characters of the
            text around its heaviest marked span, ``…`` where text is cut, whitespace runs shown as one space.

    Returns:
        The marked text.

    Raises:
        InvalidInputError: unknown ``style``, a bad ``width``, or a span outside ``text``.
    """
    if style not in _STYLES:
        raise InvalidInputError(f"style must be one of {', '.join(_STYLES)}, got {style!r}")
    if width is not None and (isinstance(width, bool) or not isinstance(width, int) or width < 1):
        raise InvalidInputError(f"width must be a positive int or None, got {width!r}")
    marked = []
    for span in spans or ():
        start, end, weight = span
        if not (0 <= start < end <= len(text)):
            raise InvalidInputError(
                f"span {span!r} is not inside the text ({len(text)} characters); pass the hit's own text and spans"
            )
        if min_weight is None or weight >= min_weight:
            marked.append((start, end, weight))
    marked.sort()
    lo, hi = 0, len(text)
    if width is not None and len(text) > width:
        center = max(marked, key=lambda s: s[2]) if marked else (0, 0, 0.0)
        lo = max(0, min(center[0] - width // 3, len(text) - width))
        hi = lo + width
        if lo > 0 and not text[lo - 1].isspace():  # start and end on word boundaries
            lo = next((i + 1 for i in range(lo, center[0]) if text[i].isspace()), lo)
        if hi < len(text) and not text[hi].isspace():
            hi = next((i - 1 for i in range(hi, center[1], -1) if text[i - 1].isspace()), hi)
    escape = html.escape if style == "html" else str
    opening, closing = ("<mark>", "</mark>") if style == "html" else ("**", "**")
    parts = ["…"] if lo > 0 else []
    pos = lo
    for start, end, _ in marked:
        start, end = max(start, pos), min(end, hi)
        if start >= end:
            continue
        parts += [escape(text[pos:start]), opening, escape(text[start:end]), closing]
        pos = end
    parts.append(escape(text[pos:hi]))
    if hi < len(text):
        parts.append("…")
    out = "".join(parts)
    return out if width is None else " ".join(out.split())


def highlight_hits(
    store: MultiVectorStore,
    query_vectors: MultiVector,
    hits: Sequence[Hit],
    *,
    encoded_texts: Sequence[str] | None = None,
) -> list[Hit]:
    """``hits`` of a search with ``query_vectors``, with their ``highlights`` filled (for results that did not ask
    for them, such as :meth:`~colbert_adapters.store.MultiVectorStore.max_marginal_relevance_search`'s).

    Args:
        store: the store the hits come from.
        query_vectors: float32 ``(n_query_tokens, dim)``, the query the hits were searched with
            (``store.encode_query(query)``).
        hits: the hits.
        encoded_texts: per hit, the text its vectors were encoded from when it is not the stored text but contains
            it (``store.add(encode_texts=...)``, e.g. a LlamaIndex node's content after its metadata): spans are
            found in it and kept, shifted, where they fall in the stored text.

    Returns:
        New hits with ``highlights`` set, in order; ``[]`` with a logged warning for a hit whose stored vectors do
        not line up with its text.

    Raises:
        InvalidInputError: the store's encoder gives no token offsets, a hit has no stored text, bad vectors, or
            ``encoded_texts`` of another length than ``hits``.
    """
    from ._parents import highlight_hits as add_highlights

    q = as_multivector(query_vectors, dim=store.encoder.dim, where="query_vectors")
    if encoded_texts is not None and len(encoded_texts) != len(hits):
        raise InvalidInputError(f"got {len(encoded_texts)} encoded_texts for {len(hits)} hits; pass one per hit")
    return add_highlights(store.encoder, store.backend, q, list(hits), encoded_texts)
