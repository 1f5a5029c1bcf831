"""``colbert-adapters index | search | info``: index directories (see :mod:`colbert_adapters._index_dir`)."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import sys
from collections.abc import Sequence
from typing import Any

from .._identity import same_model
from .._index_dir import (
    MANIFEST,
    close_backend,
    effective_settings,
    load_encoder,
    model_ref,
    open_backend,
    read_manifest,
    setting_differences,
    write_manifest,
)
from .._validation import check_texts
from ..backends import OPENERS, detect_backend
from ..backends import open_backend as registry_open
from ..errors import ColBERTError, CollectionConfigError, InvalidInputError
from ._common import (
    DEFAULT_MODEL,
    EXIT_ERROR,
    EXIT_OK,
    Subparsers,
    UsageError,
    add_model_options,
    encoder_settings,
    load_options,
    logger,
    print_json,
    report_errors,
)

__all__ = ["add_index_commands", "open_index", "require_manifest"]

#: Backends an index directory can use (``--backend``).
INDEX_BACKENDS = tuple(n for n, o in OPENERS.items() if o.location in ("directory", "url") or n == "memory")


def require_manifest(index_dir: str) -> dict[str, Any]:
    """The manifest of ``index_dir``; raise a :class:`ColBERTError` saying how to create an index when absent."""
    manifest = read_manifest(index_dir)
    if manifest is None:
        raise ColBERTError(f"{index_dir} is not an index (no {MANIFEST}); create it with: colbert-adapters index")
    return manifest


def _default_backend() -> str:
    return "voyager" if importlib.util.find_spec("voyager") is not None else "memory"


def _check_model(manifest: dict[str, Any], encoder: Any, index_dir: str) -> None:
    stored = manifest.get("model_id")
    if stored and not same_model(stored, encoder.model_id):
        raise CollectionConfigError(
            f"{index_dir} was indexed with model {manifest.get('model')!r} ({stored}) but --model gives "
            f"{encoder.model_id}; use the same model (or omit --model), or index into a new directory"
        )


def _held_backend(index_dir: str) -> str | None:
    """The backend whose own index ``index_dir`` is (one ``qdrant setup`` or a program made), else ``None``."""
    if not os.path.isdir(index_dir) or not os.listdir(index_dir):
        return None
    try:
        return detect_backend(index_dir)
    except CollectionConfigError:
        return None


def _adopt(args: argparse.Namespace, held: str, *, creating: bool) -> dict[str, Any]:
    """A manifest for a backend's own directory, used in place (``"data": "."``): its collection, its settings.

    ``index`` records it (so later commands need no ``--model``); ``search`` uses it for this run only.
    """
    if getattr(args, "backend", None) is not None and args.backend != held:
        raise UsageError(
            f"{args.index} holds a {held} index; omit --backend (or pass --backend {held}), or use a new directory"
        )
    if getattr(args, "url", None):
        raise UsageError(f"{args.index} holds a {held} index; --url applies to a new index directory only")
    if not args.model:
        if not creating:
            raise UsageError(
                f"{args.index} is a {held} index without a {MANIFEST}; pass --model with the model that indexed it"
            )
        logger.info("%s holds a %s index: indexing into it with %s", args.index, held, DEFAULT_MODEL)
    return {
        "format": 1,
        "model": model_ref(args.model or DEFAULT_MODEL),
        "backend": held,
        "data": ".",
        "settings": encoder_settings(args),
    }


def _flag(key: str) -> str:
    return {
        "do_query_expansion": "--query-expansion",
        "skiplist_words": "--skiplist",
    }.get(key, "--" + key.replace("_", "-"))


def _refuse_contradicting_flags(args: argparse.Namespace, indexed_with: dict[str, Any]) -> None:
    """Flags given for an existing index must agree with the settings it was indexed with: those its manifest
    records, and (an index made before every setting was recorded) the checkpoint's own, which the loaded encoder
    holds."""
    diffs = setting_differences(indexed_with, encoder_settings(args))
    if diffs:
        key, recorded, given = diffs[0]
        raise UsageError(
            f"{args.index} was indexed with {key}={recorded!r}, but {_flag(key)} gives {given!r}; omit "
            f"{_flag(key)} (an index reopens with the settings it recorded; see `colbert-adapters info`), or "
            "index into a new directory"
        )


def open_index(args: argparse.Namespace, *, creating: bool) -> tuple[dict[str, Any], Any]:
    """(manifest, encoder) of an existing index, or of a new one when ``creating``."""
    manifest = read_manifest(args.index)
    if manifest is None and (held := _held_backend(args.index)) is not None:
        manifest = _adopt(args, held, creating=creating)
    elif manifest is None:
        if not creating:
            raise ColBERTError(f"{args.index} is not an index (no {MANIFEST}); create it with: colbert-adapters index")
        backend = args.backend or _default_backend()
        if backend == "qdrant-url" and not args.url:
            raise UsageError("--backend qdrant-url needs --url http://host:6333")
        if args.url and backend != "qdrant-url":
            if args.backend is not None:
                raise UsageError("--url only applies to --backend qdrant-url")
            backend = "qdrant-url"
        manifest = {
            "format": 1,
            "model": model_ref(args.model or DEFAULT_MODEL),
            "backend": backend,
            "settings": encoder_settings(args),
        }
        if backend == "qdrant-url":
            manifest.update(url=args.url, collection=args.collection)
    else:
        if creating and args.backend is not None and args.backend != manifest["backend"]:
            raise UsageError(
                f"{args.index} uses backend {manifest['backend']!r}; omit --backend or index into a new directory"
            )
        _refuse_contradicting_flags(args, manifest.get("settings") or {})  # before loading the model
        if args.revision is not None:  # not recorded by an index made by an earlier version
            manifest["settings"] = {**(manifest.get("settings") or {}), "revision": args.revision}
    model = model_ref(args.model) if args.model else manifest["model"]
    settings = manifest.get("settings") or {}
    encoder = load_encoder(model, settings, args.device, **load_options(args))
    _check_model(manifest, encoder, args.index)
    _refuse_contradicting_flags(args, effective_settings(encoder))
    # Record the settings in force (an index made by an earlier version recorded only its lengths).
    revision = settings.get("revision")
    manifest["settings"] = {**effective_settings(encoder), **({"revision": revision} if revision else {})}
    return manifest, encoder


def _index(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .._ingest import read_source
    from ..store import MultiVectorStore

    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    read = read_source(args.source, id_field=args.id_field, text_field=args.text_field)
    manifest, encoder = open_index(args, creating=True)
    os.makedirs(args.index, exist_ok=True)
    manifest.update(model_id=encoder.model_id, dim=encoder.dim)
    write_manifest(args.index, manifest)  # before any data: a resumed run reopens with the same settings
    backend = open_backend(manifest, args.index, encoder.dim)
    errors: list[Any] = list(read.errors)
    added = skipped = 0
    try:
        store = MultiVectorStore(encoder, backend, long_documents=args.long_documents)
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
        close_backend(manifest, args.index, backend, save=True)
    summary = {
        "index": args.index,
        "added": added,
        "skipped_existing": skipped,
        "failed": len(errors),
        "backend": manifest["backend"],
        "model": manifest["model"],
    }
    report_errors(errors, "inputs")
    sys.stdout.write(
        f"indexed {added} documents, skipped {skipped} already stored"
        f"{' (use --update to re-index them)' if skipped else ''}, {len(errors)} failed "
        f"-> {args.index} ({manifest['backend']})\n"
    )
    logger.debug("%s", summary)
    return EXIT_ERROR if errors else EXIT_OK


QUIET_HELP = "no progress bars, and no loading bars or warnings from transformers and huggingface_hub"


def _snippet(text: str | None, width: int) -> str:
    t = " ".join((text or "").split())
    return t if len(t) <= width else t[: width - 1] + "…"


FILTER_HELP = (
    "FIELD=VALUE, FIELD!=VALUE, FIELD>VALUE, FIELD>=VALUE, FIELD<VALUE or FIELD<=VALUE on document metadata "
    "(a dotted FIELD is a nested one); repeat for more conditions, all must hold (a field repeated with = or != "
    "means any/none of the values). VALUE is typed as JSON reads it: 1 is an integer, 1.5 a float, true/false a "
    'bool, null a null, "1" (with the quotes) the string 1; anything else is a string'
)
WHERE_HELP = (
    'a filter as JSON, the form MultiVectorStore.search takes, e.g. \'{"year": {"$gte": 2020}, "$or": '
    '[{"lang": "en"}, {"lang": "de"}]}\' (operators $eq $ne $gt $gte $lt $lte $in $nin $exists $text, $and $or $not)'
)
_CLI_OPS = {"=": "$in", "!=": "$nin", ">": "$gt", ">=": "$gte", "<": "$lt", "<=": "$lte"}


def _filter_value(text: str) -> Any:
    """A ``--filter`` value: a JSON scalar when it parses as one, else the text itself."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if isinstance(value, (list, dict)) or (isinstance(value, float) and not math.isfinite(value)):
        return text
    return value


def _simplest(ops: dict[str, Any]) -> Any:
    """``{"$in": [v]}`` -> ``v``, ``{"$in": [a, b]}`` -> ``[a, b]``; one ``$in``/``$nin`` value -> ``$eq``/``$ne``."""
    if list(ops) == ["$in"]:
        return ops["$in"][0] if len(ops["$in"]) == 1 else ops["$in"]
    for many, one in (("$in", "$eq"), ("$nin", "$ne")):
        if len(ops.get(many, ())) == 1:
            ops[one] = ops.pop(many)[0]
    return ops


def _parse_filter(items: Sequence[str], where: str | None = None) -> dict[str, Any] | None:
    """The ``--filter`` conditions and the ``--where`` JSON filter, all of which must hold."""
    fields: dict[str, dict[str, Any]] = {}
    for item in items:
        cut = next((i for i, ch in enumerate(item) if ch in "=!<>"), -1)
        op = item[cut : cut + 2] if item[cut + 1 : cut + 2] == "=" else item[cut : cut + 1]
        key, value = item[:cut], item[cut + len(op) :]
        if cut <= 0 or op not in _CLI_OPS:
            raise UsageError(f"--filter expects FIELD=VALUE (or !=, >, >=, <, <=), got {item!r}")
        ops = fields.setdefault(key, {})
        name = _CLI_OPS[op]
        if name in ("$in", "$nin"):
            ops.setdefault(name, []).append(_filter_value(value))
        elif name in ops:
            raise UsageError(f"--filter gives {key}{op} twice")
        else:
            ops[name] = _filter_value(value)
    parts: list[dict[str, Any]] = [{k: _simplest(ops)} for k, ops in fields.items()]
    if where is not None:
        try:
            parsed = json.loads(where)
        except ValueError as err:
            raise UsageError(f"--where is not valid JSON ({err}); {WHERE_HELP}") from err
        if not isinstance(parsed, dict):
            raise UsageError(f"--where must be a JSON object; {WHERE_HELP}")
        parts.append(parsed)
    parts = [p for p in parts if p]
    return None if not parts else parts[0] if len(parts) == 1 else {"$and": parts}


def _search(args: argparse.Namespace) -> int:
    if args.k < 1:
        raise UsageError(f"-k must be >= 1, got {args.k}")
    if not args.query.strip():
        raise UsageError("the query is empty")
    check_texts([args.query], what="the query")  # before loading anything: e.g. bytes that are not UTF-8
    if args.mmr and args.mode != "late":
        raise UsageError("--mmr ranks by MaxSim: use it with --mode late (the default)")
    manifest, encoder = open_index(args, creating=False)
    backend = open_backend(manifest, args.index, encoder.dim, read_only=True)
    try:
        from ..store import MultiVectorStore

        store = MultiVectorStore(encoder, backend)
        flt = _parse_filter(args.filter, args.where)
        ids = args.ids or None
        if args.mmr:
            q = store.encode_query(args.query)
            hits = store.max_marginal_relevance_search_by_vectors(
                q, args.k, args.fetch_k, args.lambda_mult, flt, ids=ids, score_threshold=args.score_threshold
            )
            if args.highlight:
                from ..highlight import highlight_hits

                hits = highlight_hits(store, q, hits)
        else:
            hits = store.search(
                args.query,
                k=args.k,
                filter=flt,
                ids=ids,
                score_threshold=args.score_threshold,
                highlight=args.highlight,
                mode=args.mode,
                fusion=args.fusion,
                alpha=args.alpha,
                rerank=args.rerank,
            )
    finally:
        close_backend(manifest, args.index, backend, save=False)
    if args.json:
        print_json(
            [
                {
                    "rank": i + 1,
                    "id": h.id,
                    "score": h.score,
                    "text": h.text,
                    "metadata": h.metadata,
                    **({"highlights": [list(s) for s in h.highlights or []]} if args.highlight else {}),
                    **({"span": list(h.span)} if h.span is not None else {}),
                }
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
        if args.highlight:
            from ..highlight import render

            snippet = render(h.text or "", h.highlights, width=args.width)
        elif h.span is not None:  # a long document: the window that matched, and where it is
            snippet = f"[{h.span[0]}:{h.span[1]}] " + _snippet((h.text or "")[h.span[0] : h.span[1]], args.width)
        else:
            snippet = _snippet(h.text, args.width)
        sys.stdout.write(f"{i:>3}  {_snippet(h.id, idw):<{idw}}  {h.score:>8.3f}  {snippet}\n")
    return EXIT_OK


def _open_any(index: str, *, read_only: bool) -> tuple[dict[str, Any], Any, bool]:
    """``(manifest, backend, own)`` for an index directory, or for a backend's own directory (Voyager, Qdrant Edge,
    a saved MemoryBackend: ``own``, manifest ``{"backend": kind}``); no model is loaded."""
    manifest = read_manifest(index)
    if manifest is not None:
        return manifest, open_backend(manifest, index, manifest.get("dim"), read_only=read_only), False
    kind = detect_backend(index)  # not an index: a clear error
    return {"backend": kind}, registry_open(index, read_only=read_only), True


def _delete(args: argparse.Namespace) -> int:
    flt = _parse_filter(args.filter, args.where)
    if bool(args.ids) == (flt is not None):
        raise UsageError("delete takes --id (repeatable) or --filter/--where, not both and not neither")
    manifest, backend, own = _open_any(args.index, read_only=False)
    try:
        from .._parents import delete as delete_documents  # a long document: every window

        removed = delete_documents(backend, args.ids) if args.ids else backend.delete_where(flt)
    finally:
        if own:
            if manifest["backend"] == "memory":
                backend.save(args.index)
            backend.close()
        else:
            close_backend(manifest, args.index, backend, save=True)
    print_json({"status": "deleted", "documents": removed, "index": os.path.abspath(args.index)})
    return EXIT_OK


def _dir_bytes(path: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.path.getsize(os.path.join(root, name))
    return total


def _info(args: argparse.Namespace) -> int:
    manifest, backend, own = _open_any(args.index, read_only=True)
    if own:
        manifest.update(model_id=backend.model_id, dim=backend.dim)
    report = None
    try:
        from .._parents import visible_ids

        records = backend.count()
        docs = len(visible_ids(backend)) if records else 0  # a long document's windows count once
        tokens: int | None = None
        if hasattr(backend, "stats"):
            tokens = int(backend.stats().get("n_live_tokens", 0))
        elif manifest["backend"] == "memory":
            tokens = sum(
                int(r.vectors.shape[0])
                for r in backend.get(list(backend.ids()), with_vectors=True)
                if r.vectors is not None
            )
        if args.verify:
            report = backend.verify()
    finally:
        backend.close()
    info: dict[str, Any] = {
        "index": os.path.abspath(args.index),
        "documents": docs,
        **({"records": records} if records != docs else {}),  # a long document stored as windows
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
    if report is not None:
        info["verify"] = {
            "ok": report.ok,
            "checked": dict(report.checked),
            "problems": list(report.problems),
            "notes": list(report.notes),
        }
    if args.json:
        print_json(info)
    else:
        for key, value in info.items():
            sys.stdout.write(f"{key + ':':<15}{json.dumps(value) if isinstance(value, dict) else value}\n")
        if report is not None and report.problems:
            for line in report.problems:
                sys.stderr.write(f"colbert-adapters: damaged: {line}\n")
    return EXIT_ERROR if report is not None and not report.ok else EXIT_OK


def add_index_commands(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "index",
        help="index a folder of .txt/.md files, a JSONL or a CSV",
        description="Encode documents and store them in INDEX (a directory). Re-running skips ids already "
        "stored (resumable) unless --update. Bad files/lines are reported and skipped; the exit code is 1 "
        "when anything failed.",
    )
    p.add_argument("source", metavar="SOURCE", help="a folder of .txt/.md files, a .jsonl or a .csv file")
    p.add_argument("index", metavar="INDEX", help="index directory (created if missing)")
    add_model_options(p, default_help=f"default: the index's model, else {DEFAULT_MODEL}")
    p.add_argument(
        "--backend", choices=INDEX_BACKENDS, help="storage of a new index (default: voyager if installed, else memory)"
    )
    p.add_argument("--url", help="Qdrant server URL for --backend qdrant-url ($QDRANT_API_KEY for the key)")
    p.add_argument("--collection", default="colbert", help="collection on the Qdrant server (default: colbert)")
    p.add_argument("--update", action="store_true", help="re-encode and replace documents whose id is stored")
    p.add_argument("--id-field", default="id", help="JSONL key / CSV column of the id (default: id)")
    p.add_argument("--text-field", default="text", help="JSONL key / CSV column of the text (default: text)")
    p.add_argument("--batch-size", type=int, default=32, help="encoder batch size (default: 32)")
    p.add_argument(
        "--long-documents",
        choices=("split", "truncate"),
        default="split",
        help="a text longer than the model's document length: split into overlapping windows, found whole "
        "(default), or truncate",
    )
    p.add_argument("-q", "--quiet", action="store_true", help=QUIET_HELP)
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
        help=FILTER_HELP,
    )
    s.add_argument("--where", metavar="JSON", help=WHERE_HELP)
    s.add_argument("--id", dest="ids", action="append", default=[], metavar="ID", help="search only these documents")
    s.add_argument("--score-threshold", type=float, help="keep hits whose score (MaxSim, BM25, fused) is at least this")
    s.add_argument(
        "--mode",
        choices=("late", "lexical", "hybrid"),
        default="late",
        help="late: MaxSim (default); lexical: BM25 over the texts; hybrid: both fused",
    )
    s.add_argument(
        "--fusion",
        choices=("rrf", "blend"),
        default="rrf",
        help="--mode hybrid: reciprocal-rank fusion (default) or a blend of normalised scores (--alpha)",
    )
    s.add_argument("--alpha", type=float, default=0.5, help="--fusion blend: weight of MaxSim, 0..1 (default: 0.5)")
    s.add_argument("--rerank", action="store_true", help="--mode hybrid: score both lists' documents by MaxSim")
    s.add_argument("--mmr", action="store_true", help="diverse hits: maximal marginal relevance, MaxSim between docs")
    s.add_argument("--fetch-k", type=int, default=20, help="--mmr: candidates to choose from (default: 20)")
    s.add_argument("--lambda-mult", type=float, default=0.5, help="--mmr: 1 = relevance only, 0 = diversity only")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.add_argument("--width", type=int, default=80, help="snippet width (default: 80)")
    s.add_argument(
        "--highlight",
        action="store_true",
        help="mark the words each hit matches (**word**, the snippet centred on the best); --json adds each hit's "
        "[start, end, weight] character spans",
    )
    add_model_options(s, default_help="default: the index's model; another model is refused")
    s.add_argument("-q", "--quiet", action="store_true", help=QUIET_HELP)
    s.set_defaults(handler=_search)

    d = subparsers.add_parser(
        "delete", help="delete documents by id or by filter", description="Delete documents from an index."
    )
    d.add_argument("index", metavar="INDEX")
    d.add_argument("--id", dest="ids", action="append", default=[], metavar="ID", help="a document to delete")
    d.add_argument("--filter", action="append", default=[], metavar="FIELD=VALUE", help=FILTER_HELP)
    d.add_argument("--where", metavar="JSON", help=WHERE_HELP)
    d.set_defaults(handler=_delete)

    i = subparsers.add_parser("info", help="show an index's size, model and settings")
    i.add_argument("index", metavar="INDEX")
    i.add_argument("--json", action="store_true", help="print JSON")
    i.add_argument(
        "--verify", action="store_true", help="read every part of the index; list what is damaged (exit code 1)"
    )
    i.set_defaults(handler=_info)
