"""Lazy imports of optional dependencies, with an error that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependencyError

__all__ = ["require"]


def require(module: str, *, extra: str, package: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming ``pip install "colbert-adapters[extra]"``.

    Args:
        module: dotted module name, e.g. ``"voyager"`` or ``"qdrant_client"``.
        extra: the colbert-adapters extra that installs it, e.g. ``"voyager"``.
        package: the PyPI distribution, when it differs from the module name (for the message only).

    Returns:
        The imported module.

    Raises:
        MissingDependencyError: the module (or one of its own dependencies) cannot be imported.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        dist = package or module.split(".")[0].replace("_", "-")
        raise MissingDependencyError(
            f"{module!r} is required for this feature but could not be imported ({err}). "
            f'Install it with: pip install "colbert-adapters[{extra}]"  (provides {dist})'
        ) from err
