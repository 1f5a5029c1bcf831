"""Render a hit's highlights (``store.search(query, highlight=True)``) as Markdown bold or HTML ``<mark>``.

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
from typing import Literal

from .errors import InvalidInputError

__all__ = ["render"]

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
