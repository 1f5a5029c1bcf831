"""``colbert-adapters copy SRC DST --to BACKEND``: move an index to another backend without re-encoding.

SRC is an index directory made by ``colbert-adapters index`` (DST then becomes one too: its manifest records the
same model and encoder settings, so ``search DST`` and ``MultiVectorStore.open(DST)`` load that model), a backend's
own directory (Voyager, Qdrant Edge, a saved memory index), or a Qdrant URL (``--from-collection``). DST is a
directory, or a URL for ``--to qdrant-url`` (from an index directory, ``--url`` keeps DST a directory whose manifest
points at the server collection). What is carried, resuming and the verification: :mod:`colbert_adapters._copy`.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from .._copy import COPY_TARGETS, close_target, copy_backend, is_url, open_target, target_name
from .._index_dir import DATA, MANIFEST, data_dir, read_manifest, write_manifest
from .._index_dir import open_backend as open_index_backend
from ..backends import OPENERS, Backend, create_backend, detect_backend
from ..backends import open_backend as registry_open
from ..errors import ColBERTError, CollectionConfigError, UnknownBackendError
from ._common import EXIT_OK, Subparsers, UsageError, logger, print_json

__all__ = ["add_copy_command"]

_WHAT_SRC = (
    "pass an index directory (made by colbert-adapters index, or a Voyager, Qdrant Edge or saved memory index) or a "
    "Qdrant URL"
)


def _api_key(args: argparse.Namespace) -> str | None:
    return args.api_key or os.environ.get("QDRANT_API_KEY") or None


def _open_source(args: argparse.Namespace, manifest: dict[str, Any] | None) -> Backend:
    """The source backend, opened for reading; a clear error when SRC is not an index."""
    src = args.source
    if is_url(src):
        backend = registry_open(src, collection_name=args.from_collection, api_key=_api_key(args))
        if getattr(backend, "config", None) is None:
            backend.close()
            raise ColBERTError(f"no ColBERT collection {args.from_collection!r} at {src}; nothing to copy")
        return backend
    if manifest is not None:
        kind = manifest["backend"]
        opener = OPENERS.get(kind)
        if opener is None:
            raise ColBERTError(f"unknown backend {kind!r} in {os.path.join(src, MANIFEST)}")
        if opener.location == "url":
            return create_backend(
                kind, manifest["url"], collection_name=manifest.get("collection", "colbert"), api_key=_api_key(args)
            )
        if opener.location != "local":
            data = data_dir(manifest, src)
            try:
                detect_backend(data)
            except CollectionConfigError as err:
                raise ColBERTError(
                    f"{src} is an index directory but its data is not readable as a {kind} index ({err}); "
                    "nothing to copy"
                ) from err
        return open_index_backend(manifest, src, None, read_only=True)
    if not os.path.isdir(src):
        raise ColBERTError(f"SRC {src} is not an index (no such directory); {_WHAT_SRC}")
    try:
        detect_backend(src)
    except CollectionConfigError as err:
        raise ColBERTError(f"SRC {err}; {_WHAT_SRC}") from err
    return registry_open(src, read_only=True)


def _index_target(args: argparse.Namespace, to: str, src_manifest: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(where the target's data goes, the manifest DST gets) for a copy of an index directory."""
    dst = args.target
    existing = read_manifest(dst) if os.path.isdir(dst) else None
    if existing is not None and existing["backend"] != to:
        raise CollectionConfigError(
            f"{dst} is an index on {existing['backend']}, not {to}; pass --to {existing['backend']} to resume a copy "
            "into it, or copy into a new directory"
        )
    strays = sorted(set(os.listdir(dst)) - {DATA, MANIFEST}) if os.path.isdir(dst) else []
    if strays:
        raise CollectionConfigError(
            f"{dst} is not empty (it holds {', '.join(strays[:3])}); copy into a new or empty directory"
        )
    manifest = {k: v for k, v in src_manifest.items() if k not in ("data", "url", "collection")}
    manifest["backend"] = to
    if to == "qdrant-url":
        if not args.url:
            raise UsageError(
                "--to qdrant-url from an index directory needs --url http://host:6333 (DST stays a directory whose "
                "manifest points at the collection), or pass the server URL as DST"
            )
        manifest.update(url=args.url, collection=args.collection)
        return args.url, manifest
    return os.path.join(dst, DATA), manifest


def _copy(args: argparse.Namespace) -> int:
    try:
        to = target_name(args.to)
    except UnknownBackendError as err:
        raise UsageError(f"--to: {err}") from None
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.sample < 1:
        raise UsageError(f"--sample must be >= 1, got {args.sample}")
    if args.url and to != "qdrant-url":
        raise UsageError("--url applies to --to qdrant-url only")
    if is_url(args.target) and to != "qdrant-url":
        raise UsageError(f"DST {args.target} is a URL; a URL takes --to qdrant-url, {to} a directory")
    if os.path.abspath(args.source) == os.path.abspath(args.target):
        raise UsageError("SRC and DST are the same; copy into another location")
    src_manifest = None if is_url(args.source) else read_manifest(args.source)
    into_index = src_manifest is not None and not (to == "qdrant-url" and is_url(args.target))
    source = _open_source(args, src_manifest)
    try:
        location, manifest = (
            _index_target(args, to, src_manifest) if into_index and src_manifest else (args.target, None)
        )
        kwargs: dict[str, Any] = {}
        if OPENERS[to].location in ("url", "local"):
            kwargs["collection_name"] = args.collection
        if to == "qdrant-url":
            kwargs["api_key"] = _api_key(args)
        if manifest is not None:
            os.makedirs(args.target, exist_ok=True)
        target = open_target(to, location, source=source, **kwargs)
        done = False
        try:
            report = copy_backend(
                source,
                target,
                model_id=getattr(source, "model_id", None) or (src_manifest or {}).get("model_id"),
                resume=args.resume,
                batch_size=args.batch_size,
                verify=not args.no_verify,
                sample=args.sample,
                show_progress=not args.quiet,
            )
            done = True
        finally:
            close_target(target, to, location, save=done)
    finally:
        source.close()
    if manifest is not None:
        write_manifest(args.target, manifest)  # last: a directory without it is an unfinished copy
    logger.info("copied %s -> %s (%s)", args.source, args.target, to)
    print_json({"status": "copied", "to": to, "index_directory": manifest is not None, **report.as_dict()})
    return EXIT_OK


def add_copy_command(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "copy",
        help="copy an index to another backend without re-encoding (e.g. Voyager -> a Qdrant server)",
        description="Copy every document of SRC (ids, texts, metadata, stored token vectors, model) into DST on "
        "another backend, in batches, then verify counts, a sample of documents and a sample of searches. An "
        "interrupted copy continues with --resume. SRC: an index directory, a backend's directory or a Qdrant URL.",
    )
    p.add_argument("source", metavar="SRC", help="index directory, backend directory, or Qdrant URL")
    p.add_argument("target", metavar="DST", help="new directory (or a Qdrant URL for --to qdrant-url)")
    p.add_argument("--to", required=True, metavar="BACKEND", help=f"target backend: {', '.join(COPY_TARGETS)}")
    p.add_argument("--url", help="--to qdrant-url from an index directory: the server; DST keeps the manifest")
    p.add_argument("--collection", default="colbert", help="target collection (qdrant-url, qdrant-local)")
    p.add_argument("--from-collection", default="colbert", help="source collection when SRC is a URL")
    p.add_argument("--api-key", dest="api_key", help="Qdrant server API key (default: $QDRANT_API_KEY)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted copy into DST")
    p.add_argument("--batch-size", type=int, default=256, help="documents per read/write step (default: 256)")
    p.add_argument("--sample", type=int, default=32, help="documents the verification checks (default: 32)")
    p.add_argument("--no-verify", action="store_true", help="skip the verification")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_copy)
