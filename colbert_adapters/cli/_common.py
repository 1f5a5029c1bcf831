"""What every command shares: exit codes, usage errors, JSON output, model options."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import string
import sys
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from .._checkpoint import SETTING_KEYS

__all__ = [
    "DEFAULT_MODEL",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "Subparsers",
    "UsageError",
    "add_model_options",
    "encoder_settings",
    "load_options",
    "print_json",
    "quiet_libraries",
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


def _skiplist(text: str) -> list[str]:
    """A ``--skiplist`` value: ``punctuation``, ``none``, or a JSON list of tokens."""
    if text == "punctuation":
        return list(string.punctuation)
    if text == "none":
        return []
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise argparse.ArgumentTypeError(
            f"expected 'punctuation', 'none' or a JSON list of tokens such as '[\".\", \",\"]', got {text!r}"
        )
    return value


def add_model_options(p: argparse.ArgumentParser, *, default_help: str) -> None:
    """``--model``, ``--device``, ``--dtype``, ``--revision``, ``--trust-remote-code`` and a flag per encoding
    setting (:data:`~colbert_adapters._checkpoint.SETTING_KEYS`; ``None`` when not given)."""
    p.add_argument("--model", help=f"hub id or local checkpoint directory ({default_help})")
    p.add_argument("--device", help="cpu, cuda, mps (default: best available)")
    p.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "float16"),
        help="model weights' dtype (default: float32 on CPU, bfloat16 or float16 on GPU)",
    )
    p.add_argument("--revision", help="Hub revision (branch, tag or commit) of --model; recorded in a new index")
    p.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow a non-ModernBERT checkpoint's own modelling code (only for authors you trust)",
    )
    g = p.add_argument_group(
        "encoder settings",
        "Default: what the checkpoint configures (config_sentence_transformers.json), else PyLate's defaults; a "
        "plain backbone gets no prefixes and no query expansion. `index` records them in the index; reopening "
        "uses the recorded ones, and a flag that contradicts them is an error.",
    )
    g.add_argument(
        "--query-prefix",
        metavar="TOKEN",
        help="token inserted after [CLS] in queries, e.g. '[Q] ' (with its space) or '[unused0]'; '' for none",
    )
    g.add_argument(
        "--document-prefix",
        metavar="TOKEN",
        help="token inserted after [CLS] in documents, e.g. '[D] ' or '[unused1]'; '' for none",
    )
    g.add_argument("--query-length", type=int, metavar="N", help="max query tokens, [CLS] prefix [SEP] included")
    g.add_argument("--document-length", type=int, metavar="N", help="max document tokens, truncated beyond")
    g.add_argument(
        "--query-expansion",
        dest="do_query_expansion",
        action=argparse.BooleanOptionalAction,
        help="pad queries with [MASK] to --query-length, each pad a query vector (Stanford ColBERT's default)",
    )
    g.add_argument(
        "--attend-to-expansion-tokens",
        dest="attend_to_expansion_tokens",
        action=argparse.BooleanOptionalAction,
        help="let the model attend to those [MASK] pads (with --query-expansion)",
    )
    g.add_argument(
        "--skiplist",
        dest="skiplist_words",
        type=_skiplist,
        metavar="WORDS",
        help="document tokens dropped from the vectors: 'punctuation' (PyLate's default), 'none', or a JSON list",
    )


def encoder_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The encoding settings given on the command line (flags left out are absent), and ``revision``."""
    keys = (*SETTING_KEYS, "revision")
    return {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}


def load_options(args: argparse.Namespace) -> dict[str, Any]:
    """``from_pretrained`` arguments that choose how the model runs, not what it computes (not recorded)."""
    out: dict[str, Any] = {}
    if getattr(args, "dtype", None):
        out["dtype"] = args.dtype
    if getattr(args, "trust_remote_code", False):
        out["trust_remote_code"] = True
    return out


@contextlib.contextmanager
def quiet_libraries(enabled: bool) -> Iterator[None]:
    """While the block runs (``-q``): no progress bars, warnings or log lines below ERROR from transformers and
    huggingface_hub (and no Python warnings from them or torch); their previous state is restored afterwards."""
    if not enabled:
        yield
        return
    import importlib

    # Typed as Any: neither library annotates or re-exports these functions.
    hub_utils: Any = importlib.import_module("huggingface_hub.utils")
    hf_logging: Any = importlib.import_module("transformers.utils.logging")

    hub_bars_off = hub_utils.are_progress_bars_disabled()
    hf_bars_on = hf_logging.is_progress_bar_enabled()
    hf_level = hf_logging.get_verbosity()
    hub_logger = logging.getLogger("huggingface_hub")
    hub_level = hub_logger.level
    try:
        with warnings.catch_warnings():
            for module in ("transformers", "huggingface_hub", "torch"):
                warnings.filterwarnings("ignore", module=rf"{module}(\.|$)")
            hf_logging.set_verbosity_error()
            hf_logging.disable_progress_bar()  # transformers' bars and huggingface_hub's
            hub_logger.setLevel(logging.ERROR)
            yield
    finally:
        hub_logger.setLevel(hub_level)
        hf_logging.set_verbosity(hf_level)
        with warnings.catch_warnings():  # HF_HUB_DISABLE_PROGRESS_BARS, when set, wins (with a warning)
            warnings.simplefilter("ignore")
            if hf_bars_on:
                hf_logging.enable_progress_bar()
            if not hub_bars_off:
                hub_utils.enable_progress_bars()
            else:
                hub_utils.disable_progress_bars()
