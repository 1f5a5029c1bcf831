"""``colbert-adapters audit``: recall@k and latency of an index's search settings against exact MaxSim."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from .._index_dir import load_encoder, model_ref, read_manifest
from .._index_dir import open_backend as open_index_backend
from ..backends import detect_backend
from ..backends import open_backend as registry_open
from ._common import EXIT_OK, Subparsers, UsageError, add_model_options, print_json

__all__ = ["add_audit_command", "parse_setting", "read_queries"]


def read_queries(path: str) -> list[str]:
    """Query texts from ``path``: a ``.jsonl`` file (one JSON object with a ``"text"`` field per line, as BEIR's
    ``queries.jsonl``, or one JSON string per line), else a text file with one query per line. Blank lines are
    skipped.

    Raises:
        UsageError: the file is missing or a JSONL line holds no query text.
    """
    if not os.path.isfile(path):
        raise UsageError(f"--queries {path}: no such file")
    jsonl = path.endswith(".jsonl")
    out: list[str] = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            if not jsonl:
                out.append(line.strip())
                continue
            try:
                item = json.loads(line)
            except ValueError as err:
                raise UsageError(f"--queries {path}:{n}: not JSON ({err}); one JSON object per line") from err
            text = item.get("text") if isinstance(item, dict) else item
            if not isinstance(text, str) or not text.strip():
                got = line.strip()[:60]
                raise UsageError(f'--queries {path}:{n}: expected {{"text": "..."}} or a JSON string, got {got!r}')
            out.append(text.strip())
    if not out:
        raise UsageError(f"--queries {path} holds no query")
    return out


def parse_setting(text: str) -> dict[str, Any]:
    """One ``--setting``: ``NAME=VALUE[,NAME=VALUE...]``, values read as JSON scalars (``48`` is an int) or text.

    Raises:
        UsageError: an item without ``=``.
    """
    out: dict[str, Any] = {}
    for item in text.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep or not name:
            raise UsageError(f"--setting expects NAME=VALUE[,NAME=VALUE...], got {text!r}")
        try:
            out[name] = json.loads(value)
        except ValueError:
            out[name] = value
    return out


def _open_target(args: argparse.Namespace, with_encoder: bool) -> Any:
    """The backend at ``args.index`` (no model loaded), or a store with its encoder when queries are texts."""
    location: str = args.index
    url = location.startswith(("http://", "https://"))
    manifest = None if url else read_manifest(location)
    kwargs: dict[str, Any] = {}
    if url:
        kwargs = {"collection_name": args.collection, "api_key": os.environ.get("QDRANT_API_KEY") or None}
    if not with_encoder:
        if manifest is not None:
            return open_index_backend(manifest, location, manifest.get("dim"), read_only=True)
        return registry_open(location, read_only=True, **kwargs)
    from ..store import MultiVectorStore

    encoder = None
    if args.model:
        settings = manifest.get("settings", {}) if manifest is not None else {}
        encoder = load_encoder(model_ref(args.model), settings, args.device)
    elif manifest is None:
        raise UsageError(
            f"{location} ({detect_backend(location)}) records no model to encode --queries with; pass --model "
            "(the model that indexed it)"
        )
    return MultiVectorStore.open(location, encoder, read_only=True, device=args.device, **kwargs)


def _audit(args: argparse.Namespace) -> int:
    from ..evaluation import audit

    if args.k < 1:
        raise UsageError(f"-k must be >= 1, got {args.k}")
    if args.n_queries < 1:
        raise UsageError(f"--n-queries must be >= 1, got {args.n_queries}")
    if not 0 < args.target <= 1:
        raise UsageError(f"--target must be in (0, 1], got {args.target}")
    if args.query_tokens < 1:
        raise UsageError(f"--query-tokens must be >= 1, got {args.query_tokens}")
    settings = [parse_setting(s) for s in args.setting] if args.setting else None
    queries = read_queries(args.queries) if args.queries else None
    target = _open_target(args, with_encoder=queries is not None)
    try:
        report = audit(
            target,
            queries,
            k=args.k,
            n_queries=args.n_queries,
            settings=settings,
            target_recall=args.target,
            seed=args.seed,
            query_tokens=args.query_tokens,
            show_progress=False if args.quiet else None,
        )
    finally:
        target.close()
    if args.json:
        print_json(report.to_json())
    else:
        sys.stdout.write(report.table())
    return EXIT_OK


def add_audit_command(subparsers: Subparsers) -> None:
    """The ``audit`` command."""
    a = subparsers.add_parser(
        "audit",
        help="recall@k and latency of an index's search settings against exact MaxSim",
        description="Run queries through INDEX with its current search settings and a few alternatives, score "
        "every stored document exactly for the same queries, and print recall@k and latency per setting with "
        "the fastest setting that reaches --target. Without --queries, each query is --query-tokens token "
        "vectors of a random stored document, each moved to cosine 0.8 off the stored one (no model is loaded).",
    )
    a.add_argument(
        "index",
        metavar="INDEX",
        help="an index directory (colbert-adapters index), a Voyager or Qdrant Edge directory, or a Qdrant URL",
    )
    a.add_argument(
        "--queries",
        metavar="FILE",
        help="query texts: one per line, or a .jsonl with a 'text' field per line (BEIR queries.jsonl); they are "
        "encoded with the index's model (or --model)",
    )
    a.add_argument("-k", type=int, default=10, help="the k of recall@k (default: 10)")
    a.add_argument("--n-queries", type=int, default=100, help="queries per setting (default: 100)")
    a.add_argument("--target", type=float, default=0.95, help="recall@k a suggested setting reaches (default: 0.95)")
    a.add_argument(
        "--setting",
        action="append",
        metavar="NAME=VALUE[,NAME=VALUE]",
        help="a search setting to try instead of the default alternatives (repeatable), e.g. "
        "k_token=48,ef_search=48 (Voyager: k_token, ef_search, n_rerank, exact_below_tokens; Qdrant: "
        "prefetch_limit, mode)",
    )
    a.add_argument("--seed", type=int, default=0, help="seed of the sampled documents and tokens (default: 0)")
    a.add_argument("--query-tokens", type=int, default=32, help="token vectors per sampled pseudo-query (default: 32)")
    a.add_argument("--collection", default="colbert", help="collection of a Qdrant URL (default: colbert)")
    add_model_options(a, default_help="default: the model the index records; needed with --queries otherwise")
    a.add_argument("--json", action="store_true", help="print JSON instead of a table")
    a.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    a.set_defaults(handler=_audit)
