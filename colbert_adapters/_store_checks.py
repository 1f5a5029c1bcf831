"""Helpers of :class:`~colbert_adapters.store.MultiVectorStore`'s construction: loading the encoder an index
records, telling a URL from a path, and a factory's keyword arguments (a search's checks: ``_search_args``)."""

from __future__ import annotations

import inspect
import logging
import os
from typing import Any

from ._identity import same_model
from .errors import CollectionConfigError, InvalidInputError
from .types import Encoder

logger = logging.getLogger("colbert_adapters.store")


def _load_recorded(model_id: str | None, location: object, device: str | None) -> Encoder:
    """The encoder an index's recorded model id (``name@fingerprint|dim=..|q=..|d=..|exp=..``) names, loaded from
    ``name`` (a Hub id or a directory) with the recorded lengths, and checked to be that model."""
    name, sep, rest = (model_id or "").partition("@")
    settings = dict(part.split("=", 1) for part in rest.split("|")[1:] if "=" in part)
    if not (sep and name and {"q", "d"} <= settings.keys()):
        what = f"the model id {model_id!r}, which names no model to load" if model_id else "no model"
        raise InvalidInputError(f"{location} records {what}; pass encoder= (the encoder the index was built with)")
    from .encoder import ColBERTEncoder

    kwargs: dict[str, Any] = {"query_length": int(settings["q"]), "document_length": int(settings["d"])}
    if "exp" in settings:
        kwargs["do_query_expansion"] = settings["exp"] == "1"
    logger.info("loading the model %s records: %s", location, name)
    try:
        encoder = ColBERTEncoder.from_pretrained(name, device=device, **kwargs)
    except Exception as err:
        raise InvalidInputError(
            f"{location} was built with {name!r}, which does not load here ({err}); pass encoder="
        ) from err
    if not same_model(model_id or "", encoder.model_id):
        raise CollectionConfigError(
            f"{location} was built with {model_id!r} but {name!r} now loads {encoder.model_id!r} (other weights or "
            "settings); pass encoder= with the model the index was built with"
        )
    return encoder


def _is_url(location: str | os.PathLike[str]) -> bool:
    return os.fspath(location).startswith(("http://", "https://"))


def _accepts_kwarg(factory: Any, name: str) -> bool:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without signatures
        return False
    return name in params
