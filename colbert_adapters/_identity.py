"""Which recorded model ids stand for the same model.

An encoder's id is ``name@fingerprint|settings``: ``name`` is how it was loaded (a hub id, or a directory that may
move between machines, virtualenvs and containers), ``fingerprint`` hashes its configs and weights, ``settings``
are the encoding settings that change the vectors. Two ids name the same model when everything after the name is
equal; ids of another shape (a custom encoder's) must be equal as they are.
"""

from __future__ import annotations

__all__ = ["same_model"]


def _content(model_id: str) -> str | None:
    name, sep, rest = model_id.partition("@")
    return rest if sep and name and "|" in rest else None


def same_model(recorded: str, model_id: str) -> bool:
    """Whether ``model_id`` is the model an index recorded as ``recorded`` (same content and settings).

    Example:
        >>> same_model("/old/dir@ab12|dim=128|q=32", "/new/dir@ab12|dim=128|q=32")
        True
        >>> same_model("/old/dir@ab12|dim=128|q=32", "/old/dir@cd34|dim=128|q=32")
        False
    """
    if recorded == model_id:
        return True
    a, b = _content(recorded), _content(model_id)
    return a is not None and a == b
