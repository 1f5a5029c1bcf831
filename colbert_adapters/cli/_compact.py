"""``colbert-adapters compact INDEX [--compression 2bit|4bit]``: compact a Voyager index, or convert it to the
compressed store (``VoyagerBackend.compact``)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from .._index_dir import close_backend
from ..errors import InvalidInputError
from ._common import EXIT_OK, Subparsers, print_json
from ._index import _open_any

__all__ = ["add_compact_command"]

#: What ``--compression`` accepts (``VoyagerBackend.compact``'s targets).
TARGETS = ("2bit", "4bit")


def _sizes(backend: Any) -> dict[str, Any]:
    stats = backend.stats()
    out = {"compression": stats.get("compression"), "disk_bytes": stats.get("disk_bytes")}
    live = int(stats.get("n_live_tokens") or 0)
    if live:
        out["bytes_per_token"] = round(int(stats["disk_bytes"]) / live, 1)
    return out


def _compact(args: argparse.Namespace) -> int:
    manifest, backend, own = _open_any(args.index, read_only=False)
    try:
        if manifest["backend"] != "voyager":
            raise InvalidInputError(
                f"{args.index} holds a {manifest['backend']} index; compact works on Voyager indexes only"
            )
        before = _sizes(backend)
        backend.compact(compression=args.compression)
        after = _sizes(backend)
    finally:
        if own:
            backend.close()
        else:
            close_backend(manifest, args.index, backend, save=False)
    print_json({"status": "compacted", "index": os.path.abspath(args.index), "before": before, "after": after})
    return EXIT_OK


def add_compact_command(subparsers: Subparsers) -> None:
    """Register ``compact``."""
    c = subparsers.add_parser(
        "compact",
        help="compact a Voyager index (drop deleted documents), or convert it to a compressed store",
        description="Merge a Voyager index's segments without deleted documents and shrink its files. With "
        "--compression, convert it to the compressed store: a residual codec is trained on its stored vectors and "
        "every document is re-encoded (about 40 or 72 bytes per 128-d token for 2bit / 4bit).",
    )
    c.add_argument("index", metavar="INDEX", help="an index directory or a Voyager index directory")
    c.add_argument("--compression", choices=TARGETS, help="convert to this compressed store")
    c.set_defaults(handler=_compact)
