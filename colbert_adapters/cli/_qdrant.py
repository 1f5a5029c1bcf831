"""``colbert-adapters qdrant setup | info | copy``: Qdrant collections for ColBERT multivectors.

Qdrant locations (``LOCATION`` arguments):

* ``http://host:6333`` / ``https://...``: a Qdrant server or cluster (``--api-key`` or ``$QDRANT_API_KEY``);
* ``:memory:`` or ``local:DIR``: qdrant-client local mode;
* anything else: a Qdrant Edge directory.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from ..errors import ColBERTError
from ._common import EXIT_OK, Subparsers, UsageError, logger, print_json

__all__ = ["add_qdrant_group"]


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
            raise UsageError("local: needs a directory, e.g. local:./qdrant-local (or use :memory:)")
        return {"local": rest, "collection_name": collection}
    if not location:
        raise UsageError("LOCATION must not be empty")
    return {"path": location}


def _add_location_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--collection", default="colbert", help="collection name on a server / in local mode (default: colbert)"
    )
    p.add_argument("--api-key", dest="api_key", help="server API key (default: $QDRANT_API_KEY)")
    p.add_argument("--grpc", action="store_true", help="talk gRPC to the server (smaller requests)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per server request (default: 10)")


def _add_config_options(p: argparse.ArgumentParser, *, dim_required: bool) -> None:
    g = p.add_argument_group("collection layout (used when the collection is created)")
    g.add_argument("--dim", type=int, required=dim_required, help="token vector dimension (e.g. 128, 96)")
    g.add_argument(
        "--first-stage",
        choices=("centroids", "mean", "centred-mean", "muvera", "tokens"),
        help="what the two-stage search's prefetch searches (default: centroids, k-means centroids per document)",
    )
    g.add_argument("--n-centroids", type=int, help="centroids per document of --first-stage centroids (default: 8)")
    g.add_argument(
        "--datatype",
        choices=("float32", "float16", "turbo8"),
        help="multivector storage type (default: float16; turbo8: compact, approximate scores)",
    )
    g.add_argument(
        "--summary-quantization",
        choices=("none", "int8", "binary"),
        help="quantization of the first-stage vectors, rescored (default: none)",
    )
    g.add_argument(
        "--quantization",
        choices=("none", "int8"),
        help="scalar int8 quantization of the multivector, rescored at query time (default: none)",
    )
    g.add_argument(
        "--on-disk",
        action="store_true",
        default=None,
        help="keep the original multivectors on disk (mmap) instead of RAM",
    )
    g.add_argument(
        "--payload-index",
        action="append",
        default=[],
        metavar="FIELD:TYPE",
        help="index a metadata field for filtering, e.g. source:keyword, year:integer (repeatable)",
    )
    g.add_argument("--summary-m", type=int, help="HNSW m of the summary (first-stage) vector (default: 16)")
    c = p.add_argument_group("cluster (server only)")
    c.add_argument("--shard-number", type=int, help="number of shards (default: one per node)")
    c.add_argument("--replication-factor", type=int, help="copies of each shard (fixed at creation)")
    c.add_argument("--write-consistency-factor", type=int, help="replicas that must acknowledge a write")
    c.add_argument(
        "--shard-key",
        action="append",
        default=[],
        metavar="KEY",
        help="custom sharding: create this shard key (repeatable)",
    )


def _config_from_args(args: argparse.Namespace, dim: int, base: dict[str, Any] | None = None) -> Any:
    """The collection layout: ``base`` (e.g. the copy source's layout, without cluster settings) or the
    defaults, overridden by every option given on the command line."""
    from ..backends.qdrant import QdrantCollectionConfig

    values: dict[str, Any] = dict(base or {})
    values["dim"] = dim
    indexes: dict[str, str] = dict(values.get("payload_indexes") or {})
    for item in args.payload_index:
        field, sep, kind = item.partition(":")
        if not sep or not field or not kind:
            raise UsageError(f"--payload-index expects FIELD:TYPE (e.g. source:keyword), got {item!r}")
        indexes[field] = kind.lower()
    values["payload_indexes"] = indexes
    overrides = {
        "datatype": args.datatype,
        "first_stage": getattr(args, "first_stage", None),
        "n_centroids": getattr(args, "n_centroids", None),
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
    summary_q = getattr(args, "summary_quantization", None)
    if summary_q is not None:
        values["summary_quantization"] = None if summary_q == "none" else summary_q
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


def _qdrant_setup(args: argparse.Namespace) -> int:
    from ..backends.qdrant import QdrantBackend

    if args.dim < 1:
        raise UsageError(f"--dim must be >= 1, got {args.dim}")
    config = _config_from_args(args, args.dim)
    kwargs = _location_kwargs(args.location, args.collection, args)
    with QdrantBackend(config=config, recreate=args.recreate, model_id=args.model_id, **kwargs) as backend:
        print_json({"status": "ready", **_describe(backend)})
    return EXIT_OK


def _qdrant_info(args: argparse.Namespace) -> int:
    from ..backends.qdrant import QdrantBackend

    kwargs = _location_kwargs(args.location, args.collection, args)
    if "path" in kwargs and not os.path.isdir(kwargs["path"]):
        raise ColBERTError(f"{kwargs['path']} does not exist; create it with: colbert-adapters qdrant setup")
    with QdrantBackend(optimize_on_close=False, **kwargs) as backend:
        if backend.config is None:
            raise ColBERTError(
                f"no ColBERT collection at {backend.location}; create it with: colbert-adapters qdrant setup"
            )
        print_json(_describe(backend))
    return EXIT_OK


def _qdrant_copy(args: argparse.Namespace) -> int:
    from ..backends.qdrant import QdrantBackend, copy_collection

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
            raise UsageError(f"--dim {args.dim} differs from the source's dimension {source.config.dim}")
        with QdrantBackend(config=config, recreate=args.recreate, **dst_kwargs) as target:
            total = source.count()

            def progress(n: int) -> None:
                logger.info("copied %d/%d documents", n, total)

            n = copy_collection(source, target, batch_points=args.batch_points, progress=progress)
            print_json({"status": "copied", "documents": n, "source": _describe(source), "target": _describe(target)})
    return EXIT_OK


def add_qdrant_group(subparsers: Subparsers) -> None:
    group = subparsers.add_parser(
        "qdrant",
        help="set up, inspect and copy Qdrant collections (Edge, local mode, server)",
        description="Qdrant collections for ColBERT multivectors. LOCATION is a URL (server), :memory: or "
        "local:DIR (qdrant-client local mode), or a directory (Qdrant Edge).",
    )
    sub = group.add_subparsers(dest="qdrant_command", metavar="COMMAND")
    sub.required = True

    setup = sub.add_parser(
        "setup",
        help="create (or validate) a collection",
        description="Create a ColBERT collection, or check that an existing one matches.",
    )
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
        "copy",
        aliases=["export"],
        help="stream every document from one location to another (Edge -> server)",
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
