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
import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ._version import __version__
from .errors import ColBERTError, CollectionConfigError, InvalidInputError

__all__ = ["COMMANDS", "COMMAND_GROUPS", "build_parser", "main"]

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
    p.add_argument(
        "--collection", default="colbert", help="collection name on a server / in local mode (default: colbert)"
    )
    p.add_argument("--api-key", dest="api_key", help="server API key (default: $QDRANT_API_KEY)")
    p.add_argument("--grpc", action="store_true", help="talk gRPC to the server (smaller requests)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per server request (default: 10)")


def _add_config_options(p: argparse.ArgumentParser, *, dim_required: bool) -> None:
    g = p.add_argument_group("collection layout (used when the collection is created)")
    g.add_argument("--dim", type=int, required=dim_required, help="token vector dimension (e.g. 128, 96)")
    g.add_argument("--datatype", choices=("float32", "float16"), help="multivector storage type (default: float32)")
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


# ------------------------------------------------------------------------------ index, search, info, eval

DEFAULT_MODEL = "lightonai/GTE-ModernColBERT-v1"
MANIFEST = "colbert-index.json"
_BACKEND_NAMES = ("voyager", "qdrant-edge", "memory", "qdrant-url")


def _default_backend() -> str:
    import importlib.util

    return "voyager" if importlib.util.find_spec("voyager") is not None else "memory"


def _read_manifest(index_dir: str) -> dict[str, Any] | None:
    path = os.path.join(index_dir, MANIFEST)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise ColBERTError(f"{path} is unreadable ({err}); it is not a colbert-adapters index") from err
    if not isinstance(data, dict) or "backend" not in data:
        raise ColBERTError(f"{path} is not a colbert-adapters index manifest")
    return data


def _write_manifest(index_dir: str, data: dict[str, Any]) -> None:
    path = os.path.join(index_dir, MANIFEST)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, path)


def _require_manifest(index_dir: str) -> dict[str, Any]:
    manifest = _read_manifest(index_dir)
    if manifest is None:
        raise ColBERTError(f"{index_dir} is not an index (no {MANIFEST}); create it with: colbert-adapters index")
    return manifest


def _model_ref(model: str) -> str:
    # A local checkpoint is recorded by absolute path so the index reopens from any working directory.
    return os.path.abspath(model) if os.path.isdir(model) else model


def _load_encoder(model: str, settings: dict[str, Any], device: str | None) -> Any:
    from .encoder import ColBERTEncoder

    kwargs = {k: settings[k] for k in ("document_length", "query_length") if settings.get(k) is not None}
    logger.info("loading model %s", model)
    return ColBERTEncoder.from_pretrained(model, device=device, **kwargs)


def _open_backend(manifest: dict[str, Any], index_dir: str, dim: int | None, *, read_only: bool = False) -> Any:
    kind = manifest["backend"]
    data = os.path.join(index_dir, "data")
    if kind == "voyager":
        from .backends.voyager import VoyagerBackend

        return VoyagerBackend(data, dim=dim, read_only=read_only and os.path.isdir(data))
    if kind == "qdrant-edge":
        from .backends.qdrant import QdrantBackend

        return QdrantBackend.edge(data, dim=dim)
    if kind == "qdrant-url":
        from .backends.qdrant import QdrantBackend

        return QdrantBackend.from_url(
            manifest["url"],
            dim=dim,
            collection_name=manifest.get("collection", "colbert"),
            api_key=os.environ.get("QDRANT_API_KEY") or None,
        )
    if kind == "memory":
        from .backends.memory import MemoryBackend

        if os.path.isfile(os.path.join(data, "manifest.json")):
            return MemoryBackend.load(data)
        return MemoryBackend(dim)
    raise ColBERTError(f"unknown backend {kind!r} in {os.path.join(index_dir, MANIFEST)}")


def _close_backend(manifest: dict[str, Any], index_dir: str, backend: Any, *, save: bool) -> None:
    if save and manifest["backend"] == "memory":
        backend.save(os.path.join(index_dir, "data"))
    backend.close()


def _check_model(manifest: dict[str, Any], encoder: Any, index_dir: str) -> None:
    stored = manifest.get("model_id")
    if stored and stored != encoder.model_id:
        raise CollectionConfigError(
            f"{index_dir} was indexed with model {manifest.get('model')!r} ({stored}) but --model gives "
            f"{encoder.model_id}; use the same model (or omit --model), or index into a new directory"
        )


def _open_index(args: argparse.Namespace, *, creating: bool) -> tuple[dict[str, Any], Any]:
    """(manifest, encoder) of an existing index, or of a new one when ``creating``."""
    manifest = _read_manifest(args.index)
    if manifest is None:
        if not creating:
            raise ColBERTError(f"{args.index} is not an index (no {MANIFEST}); create it with: colbert-adapters index")
        backend = args.backend or _default_backend()
        if backend == "qdrant-url" and not args.url:
            raise _UsageError("--backend qdrant-url needs --url http://host:6333")
        if args.url and backend != "qdrant-url":
            if args.backend is not None:
                raise _UsageError("--url only applies to --backend qdrant-url")
            backend = "qdrant-url"
        manifest = {
            "format": 1,
            "model": _model_ref(args.model or DEFAULT_MODEL),
            "backend": backend,
            "settings": {"document_length": args.document_length, "query_length": args.query_length},
        }
        if backend == "qdrant-url":
            manifest.update(url=args.url, collection=args.collection)
    else:
        if creating and args.backend is not None and args.backend != manifest["backend"]:
            raise _UsageError(
                f"{args.index} uses backend {manifest['backend']!r}; omit --backend or index into a new directory"
            )
        for key in ("document_length", "query_length"):
            given = getattr(args, key, None)
            stored = manifest.get("settings", {}).get(key)
            if given is not None and stored is not None and given != stored:
                raise _UsageError(f"{args.index} was indexed with --{key.replace('_', '-')} {stored}, not {given}")
    model = _model_ref(args.model) if args.model else manifest["model"]
    encoder = _load_encoder(model, manifest.get("settings", {}), args.device)
    _check_model(manifest, encoder, args.index)
    return manifest, encoder


def _report_errors(errors: Sequence[Any], what: str) -> None:
    for err in errors:
        sys.stderr.write(f"colbert-adapters: {err}\n")
    if errors:
        sys.stderr.write(f"colbert-adapters: {len(errors)} {what} failed\n")


def _index(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ._ingest import read_source
    from .store import MultiVectorStore

    if args.batch_size < 1:
        raise _UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    read = read_source(args.source, id_field=args.id_field, text_field=args.text_field)
    manifest, encoder = _open_index(args, creating=True)
    os.makedirs(args.index, exist_ok=True)
    manifest.update(model_id=encoder.model_id, dim=encoder.dim)
    _write_manifest(args.index, manifest)  # before any data: a resumed run reopens with the same settings
    backend = _open_backend(manifest, args.index, encoder.dim)
    errors: list[Any] = list(read.errors)
    added = skipped = 0
    try:
        store = MultiVectorStore(encoder, backend)
        docs = read.docs
        chunk = max(args.batch_size, 256)
        with tqdm(total=len(docs), desc="Indexing", unit="doc", disable=args.quiet, file=sys.stderr) as bar:
            for start in range(0, len(docs), chunk):
                part = docs[start : start + chunk]
                if not args.update:
                    have = {r.id for r in backend.get([d.id for d in part])}
                    skipped += sum(1 for d in part if d.id in have)
                    bar.update(sum(1 for d in part if d.id in have))
                    part = [d for d in part if d.id not in have]
                if not part:
                    continue
                try:
                    store.add(
                        [d.text for d in part],
                        ids=[d.id for d in part],
                        metadatas=[d.metadata for d in part],
                        batch_size=args.batch_size,
                        show_progress=False,
                    )
                    added += len(part)
                except InvalidInputError:
                    for d in part:  # find the bad document(s); keep the good ones
                        try:
                            store.add([d.text], ids=[d.id], metadatas=[d.metadata], show_progress=False)
                            added += 1
                        except InvalidInputError as err:
                            errors.append(f"{d.where}: {err}")
                bar.update(len(part))
    finally:
        _close_backend(manifest, args.index, backend, save=True)
    summary = {
        "index": args.index,
        "added": added,
        "skipped_existing": skipped,
        "failed": len(errors),
        "backend": manifest["backend"],
        "model": manifest["model"],
    }
    _report_errors(errors, "inputs")
    sys.stdout.write(
        f"indexed {added} documents, skipped {skipped} already stored"
        f"{' (use --update to re-index them)' if skipped else ''}, {len(errors)} failed "
        f"-> {args.index} ({manifest['backend']})\n"
    )
    logger.debug("%s", summary)
    return EXIT_ERROR if errors else EXIT_OK


def _snippet(text: str | None, width: int) -> str:
    t = " ".join((text or "").split())
    return t if len(t) <= width else t[: width - 1] + "…"


def _parse_filter(items: Sequence[str]) -> dict[str, Any] | None:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise _UsageError(f"--filter expects FIELD=VALUE, got {item!r}")
        out.setdefault(key, []).append(value)
    return {k: v[0] if len(v) == 1 else v for k, v in out.items()} or None


def _search(args: argparse.Namespace) -> int:
    if args.k < 1:
        raise _UsageError(f"-k must be >= 1, got {args.k}")
    if not args.query.strip():
        raise _UsageError("the query is empty")
    manifest, encoder = _open_index(args, creating=False)
    backend = _open_backend(manifest, args.index, encoder.dim, read_only=True)
    try:
        from .store import MultiVectorStore

        hits = MultiVectorStore(encoder, backend).search(args.query, k=args.k, filter=_parse_filter(args.filter))
    finally:
        _close_backend(manifest, args.index, backend, save=False)
    if args.json:
        _print_json(
            [
                {"rank": i + 1, "id": h.id, "score": h.score, "text": h.text, "metadata": h.metadata}
                for i, h in enumerate(hits)
            ]
        )
        return EXIT_OK
    if not hits:
        sys.stdout.write("no results\n")
        return EXIT_OK
    idw = min(40, max(2, *(len(h.id) for h in hits)))
    sys.stdout.write(f"{'#':>3}  {'id':<{idw}}  {'score':>8}  snippet\n")
    for i, h in enumerate(hits, start=1):
        sys.stdout.write(f"{i:>3}  {_snippet(h.id, idw):<{idw}}  {h.score:>8.3f}  {_snippet(h.text, args.width)}\n")
    return EXIT_OK


def _dir_bytes(path: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.path.getsize(os.path.join(root, name))
    return total


def _info(args: argparse.Namespace) -> int:
    manifest = _require_manifest(args.index)
    backend = _open_backend(manifest, args.index, manifest.get("dim"), read_only=True)
    try:
        docs = backend.count()
        tokens: int | None = None
        if hasattr(backend, "stats"):
            tokens = int(backend.stats().get("n_live_tokens", 0))
        elif manifest["backend"] == "memory":
            tokens = sum(
                int(r.vectors.shape[0])
                for r in backend.get(list(backend.ids()), with_vectors=True)
                if r.vectors is not None
            )
    finally:
        backend.close()
    info = {
        "index": os.path.abspath(args.index),
        "documents": docs,
        "tokens": tokens,
        "bytes_on_disk": _dir_bytes(args.index),
        "model": manifest.get("model"),
        "model_id": manifest.get("model_id"),
        "dim": manifest.get("dim"),
        "backend": manifest["backend"],
        "settings": manifest.get("settings", {}),
    }
    if manifest["backend"] == "qdrant-url":
        info.update(url=manifest.get("url"), collection=manifest.get("collection"))
    if args.json:
        _print_json(info)
    else:
        for key, value in info.items():
            sys.stdout.write(f"{key + ':':<15}{json.dumps(value) if isinstance(value, dict) else value}\n")
    return EXIT_OK


# ------------------------------------------------------------------------------------------------ eval

_EVAL_BACKENDS = ("memory", "voyager", "qdrant-edge")


def _eval_backend(name: str, dim: int, workdir: str, args: argparse.Namespace) -> Any:
    path = os.path.join(workdir, name)
    if name == "memory":
        from .backends.memory import MemoryBackend

        return MemoryBackend(dim)
    if name == "voyager":
        from .backends.voyager import VoyagerBackend

        return VoyagerBackend(path, dim=dim)
    if name == "qdrant-edge":
        from .backends.qdrant import QdrantBackend

        return QdrantBackend.edge(path, dim=dim)
    raise _UsageError(f"unknown backend {name!r}; valid: {', '.join(_EVAL_BACKENDS)}")


def _eval(args: argparse.Namespace) -> int:
    import tempfile
    import time

    from tqdm import tqdm

    from . import evaluation as ev

    backends = args.backend or ["memory"]
    for b in backends:
        if b not in _EVAL_BACKENDS:
            raise _UsageError(f"unknown --backend {b!r}; valid: {', '.join(_EVAL_BACKENDS)}")
    k_max = max(100, args.k)
    data = ev.load_dataset(args.dataset, args.format, args.split)
    data = data.subset(args.max_docs, args.max_queries)
    if not data.queries:
        raise ColBERTError(f"{args.dataset}: no judged queries")
    settings = {"document_length": args.document_length, "query_length": args.query_length}
    encoder = _load_encoder(_model_ref(args.model or DEFAULT_MODEL), settings, args.device)
    doc_ids = list(data.corpus)
    texts = [ev.document_text(data.corpus[d]) or " " for d in doc_ids]
    qids = list(data.queries)
    t0 = time.perf_counter()
    doc_vecs: list[Any] = []
    with tqdm(total=len(texts), desc=f"Encoding {data.name}", unit="doc", disable=args.quiet, file=sys.stderr) as bar:
        for s in range(0, len(texts), 256):
            doc_vecs.extend(encoder.encode_documents(texts[s : s + 256], batch_size=args.batch_size))
            bar.update(len(texts[s : s + 256]))
    encode_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    q_vecs = encoder.encode_queries([data.queries[q] for q in qids], batch_size=args.batch_size)
    q_encode_ms = (time.perf_counter() - t0) * 1000 / max(1, len(qids))
    result: dict[str, Any] = {
        "dataset": data.name,
        "format": data.format,
        "path": os.path.abspath(args.dataset),
        "documents": len(doc_ids),
        "queries": len(qids),
        "tokens": int(sum(v.shape[0] for v in doc_vecs)),
        "model": encoder.model_id,
        "settings": settings,
        "encode_documents_s": round(encode_s, 2),
        "encode_query_ms": round(q_encode_ms, 2),
        "backends": {},
    }
    with tempfile.TemporaryDirectory(prefix="colbert-eval-") as work:
        for name in backends:
            backend = _eval_backend(name, encoder.dim, work, args)
            try:
                t0 = time.perf_counter()
                for s in range(0, len(doc_ids), 512):
                    backend.upsert(doc_ids[s : s + 512], doc_vecs[s : s + 512])
                index_s = time.perf_counter() - t0
                run: dict[str, dict[str, float]] = {}
                lat: list[float] = []
                for q, v in zip(qids, q_vecs, strict=True):
                    t1 = time.perf_counter()
                    hits = backend.search(v, k=k_max)
                    lat.append(time.perf_counter() - t1)
                    run[q] = {h.id: float(h.score) for h in hits}
            finally:
                backend.close()
            metrics = ev.evaluate(run, data.qrels, ks=(10, 100))
            result["backends"][name] = {
                **{k: round(v, 4) for k, v in metrics.items() if k != "n_queries"},
                "index_s": round(index_s, 2),
                "search_latency": {k: round(v, 2) for k, v in ev.latency_summary(lat).items()},
            }
    exact = result["backends"].get("memory", {}).get("nDCG@10")
    if exact:
        for entry in result["backends"].values():
            entry["vs_exact"] = round(entry["nDCG@10"] / exact, 4)
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
    if args.json:
        _print_json(result)
    else:
        sys.stdout.write(_eval_table(result))
    return EXIT_OK


def _eval_table(result: dict[str, Any]) -> str:
    lines = [
        f"{result['dataset']}: {result['documents']} docs, {result['queries']} queries, model {result['model']}",
        f"{'backend':<12} {'nDCG@10':>8} {'R@10':>7} {'R@100':>7} {'MRR@10':>7} {'vs exact':>8} "
        f"{'p50 ms':>7} {'p95 ms':>7}",
    ]
    for name, e in result["backends"].items():
        vs = f"{e['vs_exact']:.1%}" if "vs_exact" in e else "-"
        lines.append(
            f"{name:<12} {e['nDCG@10']:>8.4f} {e['Recall@10']:>7.4f} {e['Recall@100']:>7.4f} "
            f"{e['MRR@10']:>7.4f} {vs:>8} {e['search_latency']['p50_ms']:>7.2f} "
            f"{e['search_latency']['p95_ms']:>7.2f}"
        )
    return "\n".join(lines) + "\n"


def _add_model_options(p: argparse.ArgumentParser, *, default_help: str) -> None:
    p.add_argument("--model", help=f"hub id or local checkpoint directory ({default_help})")
    p.add_argument("--device", help="cpu, cuda, mps (default: best available)")


def _add_index_commands(subparsers: _Subparsers) -> None:
    p = subparsers.add_parser(
        "index",
        help="index a folder of .txt/.md files, a JSONL or a CSV",
        description="Encode documents and store them in INDEX (a directory). Re-running skips ids already "
        "stored (resumable) unless --update. Bad files/lines are reported and skipped; the exit code is 1 "
        "when anything failed.",
    )
    p.add_argument("source", metavar="SOURCE", help="a folder of .txt/.md files, a .jsonl or a .csv file")
    p.add_argument("index", metavar="INDEX", help="index directory (created if missing)")
    _add_model_options(p, default_help=f"default: the index's model, else {DEFAULT_MODEL}")
    p.add_argument(
        "--backend", choices=_BACKEND_NAMES, help="storage of a new index (default: voyager if installed, else memory)"
    )
    p.add_argument("--url", help="Qdrant server URL for --backend qdrant-url ($QDRANT_API_KEY for the key)")
    p.add_argument("--collection", default="colbert", help="collection on the Qdrant server (default: colbert)")
    p.add_argument("--update", action="store_true", help="re-encode and replace documents whose id is stored")
    p.add_argument("--id-field", default="id", help="JSONL key / CSV column of the id (default: id)")
    p.add_argument("--text-field", default="text", help="JSONL key / CSV column of the text (default: text)")
    p.add_argument("--document-length", type=int, help="max document tokens (default: the model's)")
    p.add_argument("--query-length", type=int, help="max query tokens (default: the model's)")
    p.add_argument("--batch-size", type=int, default=32, help="encoder batch size (default: 32)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_index)

    s = subparsers.add_parser("search", help="search an index", description="Print the top hits for QUERY.")
    s.add_argument("index", metavar="INDEX")
    s.add_argument("query", metavar="QUERY")
    s.add_argument("-k", type=int, default=10, help="number of hits (default: 10)")
    s.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="metadata filter (repeatable; same field twice = any of)",
    )
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.add_argument("--width", type=int, default=80, help="snippet width (default: 80)")
    _add_model_options(s, default_help="default: the index's model; another model is refused")
    s.set_defaults(handler=_search, document_length=None, query_length=None)

    i = subparsers.add_parser("info", help="show an index's size, model and settings")
    i.add_argument("index", metavar="INDEX")
    i.add_argument("--json", action="store_true", help="print JSON")
    i.set_defaults(handler=_info)

    e = subparsers.add_parser(
        "eval",
        help="measure nDCG@10, Recall@10/100, MRR@10 and latency on a test collection",
        description="Encode DATASET once (BEIR folder, TREC/Vaswani, Cranfield or CISI) and evaluate each "
        "--backend on the same vectors.",
    )
    e.add_argument("dataset", metavar="DATASET")
    e.add_argument("--format", default="auto", choices=("auto", "beir", "trec", "cranfield", "cisi"))
    e.add_argument("--split", default="test", help="BEIR qrels split (default: test)")
    e.add_argument(
        "--backend", action="append", choices=_EVAL_BACKENDS, help="backend to evaluate (repeatable; default: memory)"
    )
    _add_model_options(e, default_help=f"default: {DEFAULT_MODEL}")
    e.add_argument("--document-length", type=int, help="max document tokens (default: the model's)")
    e.add_argument("--query-length", type=int, help="max query tokens (default: the model's)")
    e.add_argument("--batch-size", type=int, default=32, help="encoder batch size (default: 32)")
    e.add_argument("-k", type=int, default=100, help="hits retrieved per query (default: 100)")
    e.add_argument("--max-docs", type=int, help="evaluate on a slice (judged documents are kept)")
    e.add_argument("--max-queries", type=int, help="evaluate the first N judged queries")
    e.add_argument("-o", "--output", help="write the results as JSON to this file")
    e.add_argument("--json", action="store_true", help="print JSON instead of a table")
    e.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    e.set_defaults(handler=_eval)


#: ``(name, add_parser)`` of every command group; add yours here (e.g. ``index``, ``search``, ``eval``).
COMMAND_GROUPS: list[tuple[str, Callable[[_Subparsers], None]]] = [("qdrant", _add_qdrant_group)]

#: ``(name, add_parsers)`` of top-level commands (no group): ``index``, ``search``, ``info``, ``eval``.
COMMANDS: list[tuple[str, Callable[[_Subparsers], None]]] = [("index/search/info/eval", _add_index_commands)]


# ------------------------------------------------------------------------------------------------ main


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered command group."""
    parser = argparse.ArgumentParser(
        prog="colbert-adapters",
        description="Late-interaction (ColBERT / MaxSim) retrieval: manage indexes and backends.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)")
    sub = parser.add_subparsers(dest="group", metavar="COMMAND")
    sub.required = True
    for _name, add in COMMANDS + COMMAND_GROUPS:
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
