"""The ``colbert-adapters`` command line.

Commands are grouped (``colbert-adapters <group> <command> ...``); each group registers itself in
:data:`COMMAND_GROUPS` with a function that adds its sub-parser, and each command sets ``handler`` to a
function ``(args) -> exit code``. Optional dependencies are imported inside handlers, so ``--help`` is fast
and works without them.

Exit codes: 0 success, 1 runtime error (the message names the problem and the fix), 2 usage error
(bad arguments or values), 130 interrupted.

Qdrant locations (``LOCATION`` arguments):

* ``http://host:6333`` / ``https://...``: a Qdrant server or cluster (``--api-key`` or ``$QDRANT_API_KEY``);
* ``:memory:`` or ``local:DIR``: qdrant-client local mode;
* anything else: a Qdrant Edge directory.

Examples::

    colbert-adapters qdrant setup ./index --dim 128 --datatype float16 --payload-index source:keyword
    colbert-adapters qdrant setup http://localhost:6333 --collection docs --dim 128 \\
        --shard-number 6 --replication-factor 2 --quantization int8 --on-disk
    colbert-adapters qdrant copy ./index http://localhost:6333 --to-collection docs
    colbert-adapters qdrant info ./index
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ._version import __version__
from .errors import ColBERTError, InvalidInputError

__all__ = ["COMMAND_GROUPS", "build_parser", "main"]

logger = logging.getLogger("colbert_adapters.cli")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

_Subparsers = Any  # argparse._SubParsersAction (private type)


class _UsageError(Exception):
    """A bad argument value found after parsing; reported like an argparse error (exit code 2)."""


# ------------------------------------------------------------------------------------------------ qdrant


def _location_kwargs(location: str, collection: str, args: argparse.Namespace, prefix: str = "") -> dict[str, Any]:
    """QdrantBackend keyword arguments for a LOCATION string."""
    if location.startswith(("http://", "https://")):
        api_key = getattr(args, f"{prefix}api_key", None) or os.environ.get("QDRANT_API_KEY") or None
        return {
            "url": location,
            "collection_name": collection,
            "api_key": api_key,
            "prefer_grpc": bool(getattr(args, "grpc", False)),
            "timeout": args.timeout,
        }
    if location == ":memory:":
        return {"local": ":memory:", "collection_name": collection}
    if location.startswith("local:"):
        rest = location[len("local:") :]
        if not rest:
            raise _UsageError("local: needs a directory, e.g. local:./qdrant-local (or use :memory:)")
        return {"local": rest, "collection_name": collection}
    if not location:
        raise _UsageError("LOCATION must not be empty")
    return {"path": location}


def _add_location_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--collection", default="colbert",
                   help="collection name on a server / in local mode (default: colbert)")
    p.add_argument("--api-key", dest="api_key", help="server API key (default: $QDRANT_API_KEY)")
    p.add_argument("--grpc", action="store_true", help="talk gRPC to the server (smaller requests)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per server request (default: 10)")


def _add_config_options(p: argparse.ArgumentParser, *, dim_required: bool) -> None:
    g = p.add_argument_group("collection layout (used when the collection is created)")
    g.add_argument("--dim", type=int, required=dim_required, help="token vector dimension (e.g. 128, 96)")
    g.add_argument("--datatype", choices=("float32", "float16"), help="multivector storage type (default: float32)")
    g.add_argument("--quantization", choices=("none", "int8"),
                   help="scalar int8 quantization of the multivector, rescored at query time (default: none)")
    g.add_argument("--on-disk", action="store_true", default=None,
                   help="keep the original multivectors on disk (mmap) instead of RAM")
    g.add_argument("--payload-index", action="append", default=[], metavar="FIELD:TYPE",
                   help="index a metadata field for filtering, e.g. source:keyword, year:integer (repeatable)")
    g.add_argument("--summary-m", type=int, help="HNSW m of the summary (first-stage) vector (default: 16)")
    c = p.add_argument_group("cluster (server only)")
    c.add_argument("--shard-number", type=int, help="number of shards (default: one per node)")
    c.add_argument("--replication-factor", type=int, help="copies of each shard (fixed at creation)")
    c.add_argument("--write-consistency-factor", type=int, help="replicas that must acknowledge a write")
    c.add_argument("--shard-key", action="append", default=[], metavar="KEY",
                   help="custom sharding: create this shard key (repeatable)")


def _config_from_args(args: argparse.Namespace, dim: int, base: dict[str, Any] | None = None) -> Any:
    """The collection layout: ``base`` (e.g. the copy source's layout, without cluster settings) or the
    defaults, overridden by every option given on the command line."""
    from .backends.qdrant import QdrantCollectionConfig

    values: dict[str, Any] = dict(base or {})
    values["dim"] = dim
    indexes: dict[str, str] = dict(values.get("payload_indexes") or {})
    for item in args.payload_index:
        field, sep, kind = item.partition(":")
        if not sep or not field or not kind:
            raise _UsageError(f"--payload-index expects FIELD:TYPE (e.g. source:keyword), got {item!r}")
        indexes[field] = kind.lower()
    values["payload_indexes"] = indexes
    overrides = {
        "datatype": args.datatype,
        "quantization": None if args.quantization is None else (None if args.quantization == "none" else "int8"),
        "on_disk": args.on_disk,
        "summary_m": args.summary_m,
        "shard_number": args.shard_number,
        "replication_factor": args.replication_factor,
        "write_consistency_factor": args.write_consistency_factor,
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    if args.quantization == "none":
        values["quantization"] = None
    if args.shard_key:
        values["shard_keys"] = tuple(args.shard_key)
    return QdrantCollectionConfig.from_json(values)


def _describe(backend: Any) -> dict[str, Any]:
    cfg = backend.config
    return {
        "engine": backend.engine,
        "location": backend.location,
        "dim": backend.dim,
        "count": backend.count(),
        "model_id": backend.model_id,
        "config": None if cfg is None else cfg.to_json(),
    }


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def _qdrant_setup(args: argparse.Namespace) -> int:
    from .backends.qdrant import QdrantBackend

    if args.dim < 1:
        raise _UsageError(f"--dim must be >= 1, got {args.dim}")
    config = _config_from_args(args, args.dim)
    kwargs = _location_kwargs(args.location, args.collection, args)
    with QdrantBackend(config=config, recreate=args.recreate, model_id=args.model_id, **kwargs) as backend:
        _print_json({"status": "ready", **_describe(backend)})
    return EXIT_OK


def _qdrant_info(args: argparse.Namespace) -> int:
    from .backends.qdrant import QdrantBackend

    kwargs = _location_kwargs(args.location, args.collection, args)
    if "path" in kwargs and not os.path.isdir(kwargs["path"]):
        raise ColBERTError(f"{kwargs['path']} does not exist; create it with: colbert-adapters qdrant setup")
    with QdrantBackend(optimize_on_close=False, **kwargs) as backend:
        if backend.config is None:
            raise ColBERTError(
                f"no ColBERT collection at {backend.location}; create it with: colbert-adapters qdrant setup"
            )
        _print_json(_describe(backend))
    return EXIT_OK


def _qdrant_copy(args: argparse.Namespace) -> int:
    from .backends.qdrant import QdrantBackend, copy_collection

    src_kwargs = _location_kwargs(args.source, args.from_collection, args, prefix="from_")
    dst_kwargs = _location_kwargs(args.target, args.to_collection, args, prefix="to_")
    if "path" in src_kwargs and not os.path.isdir(src_kwargs["path"]):
        raise ColBERTError(f"source {src_kwargs['path']} does not exist")
    with QdrantBackend(optimize_on_close=False, **src_kwargs) as source:
        if source.config is None:
            raise ColBERTError(f"no ColBERT collection at {source.location}; nothing to copy")
        base = source.config.to_json()
        for key in ("shard_number", "replication_factor", "write_consistency_factor", "shard_keys"):
            base.pop(key, None)  # cluster settings belong to the target, not to the source
        config = _config_from_args(args, source.config.dim, base)
        if args.dim is not None and args.dim != source.config.dim:
            raise _UsageError(f"--dim {args.dim} differs from the source's dimension {source.config.dim}")
        with QdrantBackend(config=config, recreate=args.recreate, **dst_kwargs) as target:
            total = source.count()

            def progress(n: int) -> None:
                logger.info("copied %d/%d documents", n, total)

            n = copy_collection(source, target, batch_points=args.batch_points, progress=progress)
            _print_json({"status": "copied", "documents": n, "source": _describe(source), "target": _describe(target)})
    return EXIT_OK


def _add_qdrant_group(subparsers: _Subparsers) -> None:
    group = subparsers.add_parser(
        "qdrant", help="set up, inspect and copy Qdrant collections (Edge, local mode, server)",
        description="Qdrant collections for ColBERT multivectors. LOCATION is a URL (server), :memory: or "
        "local:DIR (qdrant-client local mode), or a directory (Qdrant Edge).",
    )
    sub = group.add_subparsers(dest="qdrant_command", metavar="COMMAND")
    sub.required = True

    setup = sub.add_parser("setup", help="create (or validate) a collection",
                           description="Create a ColBERT collection, or check that an existing one matches.")
    setup.add_argument("location", metavar="LOCATION")
    _add_location_options(setup)
    _add_config_options(setup, dim_required=True)
    setup.add_argument("--model-id", help="record the encoder's model id (another model is then refused)")
    setup.add_argument("--recreate", action="store_true", help="drop an existing collection first (deletes data)")
    setup.set_defaults(handler=_qdrant_setup)

    info = sub.add_parser("info", help="show a collection's layout, size and model")
    info.add_argument("location", metavar="LOCATION")
    _add_location_options(info)
    info.set_defaults(handler=_qdrant_info)

    cp = sub.add_parser(
        "copy", aliases=["export"], help="stream every document from one location to another (Edge -> server)",
        description="Copy documents (ids, text, metadata, vectors) from SOURCE to TARGET, e.g. from a Qdrant Edge "
        "directory to a server collection. The target is created with the source's dimension and the layout "
        "options below when it does not exist.",
    )
    cp.add_argument("source", metavar="SOURCE")
    cp.add_argument("target", metavar="TARGET")
    cp.add_argument("--from-collection", default="colbert", help="source collection (server / local mode)")
    cp.add_argument("--to-collection", default="colbert", help="target collection (server / local mode)")
    cp.add_argument("--from-api-key", dest="from_api_key", help="source API key (default: $QDRANT_API_KEY)")
    cp.add_argument("--to-api-key", dest="to_api_key", help="target API key (default: $QDRANT_API_KEY)")
    cp.add_argument("--grpc", action="store_true", help="talk gRPC to servers")
    cp.add_argument("--timeout", type=float, default=30.0, help="seconds per server request (default: 30)")
    cp.add_argument("--batch-points", type=int, default=256, help="points read per page (default: 256)")
    cp.add_argument("--recreate", action="store_true", help="drop the target collection first (deletes data)")
    _add_config_options(cp, dim_required=False)
    cp.set_defaults(handler=_qdrant_copy)


#: ``(name, add_parser)`` of every command group; add yours here (e.g. ``index``, ``search``, ``eval``).
COMMAND_GROUPS: list[tuple[str, Callable[[_Subparsers], None]]] = [("qdrant", _add_qdrant_group)]


# ------------------------------------------------------------------------------------------------ main


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered command group."""
    parser = argparse.ArgumentParser(
        prog="colbert-adapters",
        description="Late-interaction (ColBERT / MaxSim) retrieval: manage indexes and backends.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)")
    sub = parser.add_subparsers(dest="group", metavar="GROUP")
    sub.required = True
    for _name, add in COMMAND_GROUPS:
        add(sub)
    return parser


def _cli_message(err: BaseException) -> str:
    # Library messages name keyword arguments; on the command line the fix is a flag.
    return str(err).replace("pass recreate=True", "pass --recreate").replace("recreate=True", "--recreate")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it).

    Args:
        argv: arguments without the program name; ``None`` reads ``sys.argv[1:]``.

    Returns:
        0 on success, 1 on a runtime error, 2 on a usage error, 130 when interrupted.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors: argparse already printed
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.handler(args))
    except _UsageError as err:
        parser.print_usage(sys.stderr)
        sys.stderr.write(f"colbert-adapters: error: {err}\n")
        return EXIT_USAGE
    except InvalidInputError as err:
        sys.stderr.write(f"colbert-adapters: error: {_cli_message(err)}\n")
        return EXIT_USAGE
    except (ColBERTError, OSError) as err:
        sys.stderr.write(f"colbert-adapters: error: {_cli_message(err)}\n")
        return EXIT_ERROR
    except KeyboardInterrupt:
        sys.stderr.write("colbert-adapters: interrupted\n")
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
