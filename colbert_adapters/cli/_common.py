"""What every command shares: exit codes, usage errors, JSON output, model options."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

__all__ = [
    "DEFAULT_MODEL",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "Subparsers",
    "UsageError",
    "add_model_options",
    "print_json",
    "report_errors",
]

logger = logging.getLogger("colbert_adapters.cli")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

DEFAULT_MODEL = "lightonai/GTE-ModernColBERT-v1"

Subparsers = Any  # argparse._SubParsersAction (private type)


class UsageError(Exception):
    """A bad argument value found after parsing; reported like an argparse error (exit code 2)."""


def print_json(obj: Any) -> None:
    """Print ``obj`` as indented JSON on stdout."""
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def report_errors(errors: Sequence[Any], what: str) -> None:
    """One stderr line per error, then a count (nothing when there are none)."""
    for err in errors:
        sys.stderr.write(f"colbert-adapters: {err}\n")
    if errors:
        sys.stderr.write(f"colbert-adapters: {len(errors)} {what} failed\n")


def add_model_options(p: argparse.ArgumentParser, *, default_help: str) -> None:
    """``--model`` and ``--device``."""
    p.add_argument("--model", help=f"hub id or local checkpoint directory ({default_help})")
    p.add_argument("--device", help="cpu, cuda, mps (default: best available)")
