"""Moving an index to another backend without re-encoding: what ``MultiVectorStore.copy_to`` and
``colbert-adapters copy`` run.

:func:`copy_backend` streams the source's documents into the target in batches of ``batch_size`` ids: each batch is
read with ``get(ids, with_vectors=True)`` (ids, texts, metadata, token vectors) and written with ``upsert``, so
memory holds one batch of vectors at a time (plus the list of ids). :func:`open_target` opens or creates a target
by its registry name (:data:`COPY_TARGETS`).

Decisions a user can rely on:

* **Vectors as stored.** The target gets what the source's ``get`` returns: float32 from memory and Qdrant
  (float16-rounded where the collection stores float16), and from Voyager its stored codes decoded to float32
  (``vector_dtype``: int14 within ``max|x| / 15,748`` of the vectors first written, int8 within ``max|x| / 254``,
  float16 rounded, float32 exact). A Voyager target encodes them again with its own ``vector_dtype`` (a Voyager
  source's setting is carried over, so int14 to int14 stays within two int14 steps of the original); Qdrant and
  memory targets store them as they come. Nothing is re-encoded from text.
* **Carried along:** ids, texts, metadata, vectors, the recorded model id, and the settings that fix what is
  stored: a Voyager source's ``vector_dtype``, ``M`` and ``storage_data_type`` for a new Voyager target, a Qdrant
  source's layout (datatype, quantization, payload indexes; not its cluster placement) for a new Qdrant target.
  Documents keep the source's order (insertion order for Voyager and memory; point-id order for Qdrant, which keeps
  none), which breaks ties between equal scores.
* **Resumable.** Writes are upserts by id, so a batch written twice leaves one copy, and an interrupted copy
  (an exception, ``kill -9``) leaves every batch that was written. A target that already holds documents is
  refused unless ``resume=True``: then each batch is also read from the target, documents whose text, metadata
  and vectors are equal (every component within 1% of its token's largest one: above any codec's error) are
  skipped, and the others are written. A target holding ids the source does not hold is not a copy of it, and is
  refused. A memory target is saved once, at the end, so an interrupted copy into memory starts over.
* **Verified** (``verify=True``): the counts must be equal; a sample of ``sample`` documents, spread over the
  source's order, must be stored equal in the target; and each sampled document's first :data:`QUERY_TOKENS` token
  vectors are searched (top :data:`VERIFY_K`) in both. ``agreement`` is the fraction of the source's hits that the
  target's top ``k`` also holds, or beats (an exact score at least as high: ties at the cut and better
  candidates an approximate source missed). When both backends search exactly (memory, Qdrant with
  ``search_mode="exact"``), anything below full agreement, or a score apart by more than the tolerance, is an error.
  With an approximate side (Voyager, two-stage Qdrant) the agreement is reported (and logged as a warning below
  :data:`WARN_AGREEMENT`), not failed: two approximate indexes over the same vectors may differ slightly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._identity import same_model
from ._validation import positive_int
from .backends import (
    OPENERS,
    Backend,
    CopyReport,
    MemoryBackend,
    Record,
    backend_class,
    create_backend,
    detect_backend,
    open_backend,
)
from .errors import (
    CollectionConfigError,
    CopyVerificationError,
    DimensionMismatchError,
    InvalidInputError,
    UnknownBackendError,
)
from .types import Hit

__all__ = [
    "COPY_TARGETS",
    "QUERY_TOKENS",
    "VERIFY_K",
    "WARN_AGREEMENT",
    "close_target",
    "copy_backend",
    "describe",
    "is_url",
    "open_target",
    "target_name",
]

logger = logging.getLogger(__name__)

#: Registry names a copy can write to (``--to``), in the order help texts list them.
COPY_TARGETS = ("voyager", "qdrant-edge", "qdrant-url", "qdrant-local", "memory")
#: Token vectors of a sampled document used as the verification query (about a ColBERT query's length).
QUERY_TOKENS = 32
#: Hits compared per verification query.
VERIFY_K = 10
#: Below this agreement an approximate verification logs a warning.
WARN_AGREEMENT = 0.9
#: A stored component may differ from the source's by this fraction of its token's largest component.
CONTENT_TOLERANCE = 0.01
#: Score tolerance of the verification, per query token (float16 storage moves a cosine by about 1e-3).
SCORE_TOLERANCE = 2e-3
#: Cluster settings of a Qdrant layout: they belong to the target, not to the source.
_CLUSTER_KEYS = ("shard_number", "replication_factor", "write_consistency_factor", "shard_keys")


def target_name(name: object) -> str:
    """The :data:`COPY_TARGETS` name ``name`` stands for (case-insensitive, ``_`` for ``-``).

    Raises:
        UnknownBackendError: ``name`` is not a copy target; the message lists the accepted names.
    """
    key = name.strip().lower().replace("_", "-") if isinstance(name, str) else None
    if key not in COPY_TARGETS:
        raise UnknownBackendError(
            f"cannot copy to {name!r}; accepted targets are {', '.join(COPY_TARGETS)} (or pass a backend instance)"
        )
    return str(key)


def is_url(location: str | os.PathLike[str] | None) -> bool:
    """Whether ``location`` is a server URL (``http://`` / ``https://``)."""
    return location is not None and os.fspath(location).startswith(("http://", "https://"))


def describe(backend: Any) -> str:
    """A backend for messages: its kind and where it lives."""
    where = getattr(backend, "location", None) or getattr(backend, "path", None)
    return f"{type(backend).__name__}({where})" if where else type(backend).__name__


def _held(location: str | os.PathLike[str]) -> str | None:
    """The registry name of the index at directory ``location``; ``None`` for a missing or empty directory.

    Raises:
        CollectionConfigError: a non-empty directory that holds no index.
    """
    path = Path(location)
    if not path.is_dir() or not any(path.iterdir()):
        return None
    return detect_backend(path)


def _carried(source: Backend, name: str) -> dict[str, Any]:
    """Settings of ``source`` that fix what a new ``name`` target stores (see the module docstring)."""
    if name == "voyager" and isinstance(source, backend_class("voyager")):
        stats = source.stats()
        return {key: stats[key] for key in ("vector_dtype", "M", "storage_data_type")}
    if name.startswith("qdrant") and isinstance(source, backend_class("qdrant")) and source.config is not None:
        layout = {k: v for k, v in source.config.to_json().items() if k not in _CLUSTER_KEYS}
        return {"config": type(source.config).from_json(layout)}
    return {}


def open_target(
    name: str,
    location: str | os.PathLike[str] | None,
    *,
    source: Backend,
    **kwargs: Any,
) -> Backend:
    """Open the copy target ``name`` at ``location``, or create it with the source's dimension and settings.

    Args:
        name: one of :data:`COPY_TARGETS`.
        location: a directory (``voyager``, ``qdrant-edge``, ``qdrant-local``; ``memory``: where it is saved), a URL
            (``qdrant-url``), or ``":memory:"`` (``qdrant-local``).
        source: the backend copied from (its dimension and storage settings shape a new target).
        **kwargs: passed to the backend (``collection_name=``, ``api_key=``, ``vector_dtype=``, ``config=`` ...);
            they override the carried settings.

    Returns:
        The open target; the caller closes it (a memory target: saves it first, see :func:`close_target`).

    Raises:
        UnknownBackendError: ``name`` is not a copy target.
        InvalidInputError: ``location`` is missing or of the wrong kind.
        CollectionConfigError: ``location`` holds an index of another kind, or something that is not an index.
    """
    name = target_name(name)
    opener = OPENERS[name]
    if location is None:
        kind = "a URL" if opener.location == "url" else "a directory"
        keep = "; or pass MemoryBackend() to keep the copy in memory" if name == "memory" else ""
        raise InvalidInputError(f"copying to {name} needs a location ({kind}){keep}")
    if opener.location == "url" and not is_url(location):
        raise InvalidInputError(f"copying to qdrant-url needs an http(s):// URL, got {os.fspath(location)!r}")
    if opener.location in ("directory", "none") and is_url(location):
        raise InvalidInputError(f"copying to {name} needs a directory, got the URL {location}; use --to qdrant-url")
    dim = source.dim
    if opener.location in ("url", "local"):
        target = create_backend(name, location, **kwargs)
        carried = _carried(source, name)
        if getattr(target, "config", None) is None and "config" not in kwargs:
            target.close()  # a new collection: create it with the source's layout
            target = create_backend(name, location, **{"dim": dim, **carried, **kwargs})
        return target
    try:
        held = _held(location)
    except CollectionConfigError as err:
        raise CollectionConfigError(f"the target {err}; copy into a new or empty directory") from err
    if held is not None and held != name:
        raise CollectionConfigError(
            f"the target {os.fspath(location)} holds a {held} index, not {name}; pass --to {held} (to_backend="
            f"{held!r}) to resume a copy into it, or copy into a new directory"
        )
    if held is not None:
        return open_backend(location, **kwargs)
    if name == "memory":
        if kwargs:
            raise InvalidInputError(f"a memory target takes no options, got {', '.join(kwargs)}")
        return MemoryBackend(dim=dim)
    return create_backend(name, location, **{"dim": dim, **_carried(source, name), **kwargs})


def close_target(target: Backend, name: str, location: str | os.PathLike[str] | None, *, save: bool = True) -> None:
    """Close a target :func:`open_target` opened; a memory target is saved to ``location`` first when ``save`` (or
    when it holds documents: a copy that failed midway keeps what it wrote, for ``resume``)."""
    try:
        if isinstance(target, MemoryBackend) and location is not None and (save or target.count()):
            target.save(location)
    finally:
        target.close()


def copy_backend(
    source: Backend,
    target: Backend,
    *,
    model_id: str | None = None,
    resume: bool = False,
    batch_size: int = 256,
    verify: bool = True,
    sample: int = 32,
    show_progress: bool | None = None,
    progress: Callable[[int], None] | None = None,
) -> CopyReport:
    """Copy every document of ``source`` into ``target`` (same ids, texts, metadata, stored vectors), then verify.

    Neither backend is closed. See the module docstring for what is carried, resuming and verification.

    Args:
        source: the backend to read.
        target: the backend to write (empty, or an interrupted copy of ``source`` with ``resume``).
        model_id: the model to record in the target; ``None``: the source's ``model_id``.
        resume: continue a copy into a target that already holds some of the documents.
        batch_size: documents read and written per step.
        verify: check counts, a sample of documents and a sample of searches at the end.
        sample: documents checked (and searched with) by the verification.
        show_progress: a tqdm bar on stderr; ``None`` shows one from 1,000 documents on.
        progress: called after every written batch with the number of documents done (copied or skipped), e.g.
            to log, or to stop the copy by raising.

    Returns:
        A :class:`~colbert_adapters.backends.base.CopyReport`.

    Raises:
        DimensionMismatchError: the target stores vectors of another dimension.
        CollectionConfigError: the target records another model, holds documents without ``resume``, or holds
            documents the source does not.
        CopyVerificationError: the verification found the target different from the source.
        InvalidInputError: a document the target refuses (e.g. over Qdrant's per-document cap); the copy stops
            there, every earlier batch stays written.
    """
    batch_size = positive_int(batch_size, "batch_size")
    sample = positive_int(sample, "sample") if verify else 0
    src_name, dst_name = describe(source), describe(target)
    model = model_id if model_id is not None else getattr(source, "model_id", None)
    ids = source.ids()
    n_existing = _check_target(source, target, ids, model, resume, src_name, dst_name)
    if model is not None and hasattr(target, "model_id") and getattr(target, "model_id", None) is None:
        with contextlib.suppress(AttributeError):  # read-only property: the target records none
            target.model_id = model
    total = len(ids)
    bar = None
    if show_progress or (show_progress is None and total >= 1000):
        from tqdm import tqdm

        bar = tqdm(total=total, desc="Copying", unit="doc")
    copied = skipped = tokens = 0
    start = time.perf_counter()
    try:
        for lo in range(0, total, batch_size):
            batch = source.get(ids[lo : lo + batch_size], with_vectors=True)
            if n_existing:
                have = {r.id: r for r in target.get([r.id for r in batch], with_vectors=True)}
                todo = [r for r in batch if r.id not in have or not _same_content(r, have[r.id])]
            else:
                todo = batch
            if todo:
                try:
                    target.upsert(
                        [r.id for r in todo],
                        [_vectors(r) for r in todo],
                        texts=[r.text for r in todo],
                        metadatas=[dict(r.metadata) for r in todo],
                    )
                except InvalidInputError as err:
                    raise type(err)(
                        f"{dst_name} refused documents {todo[0].id!r}..{todo[-1].id!r}: {err}. The copy stopped "
                        f"after {copied + skipped} documents; every earlier batch is in the target"
                    ) from err
            copied += len(todo)
            skipped += len(batch) - len(todo)
            tokens += sum(_vectors(r).shape[0] for r in todo)
            if bar is not None:
                bar.update(len(batch))
                bar.set_postfix(tokens=tokens, refresh=False)
            if progress is not None:
                progress(lo + len(batch))
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - start
    logger.info("copied %d documents (%d tokens), skipped %d, in %.2fs", copied, tokens, skipped, seconds)
    report = CopyReport(
        source=src_name,
        target=dst_name,
        documents=total,
        copied=copied,
        skipped=skipped,
        tokens=tokens,
        seconds=seconds,
        model_id=model,
    )
    return _verify(source, target, ids, sample, report) if verify else report


def _check_target(
    source: Backend, target: Backend, ids: Sequence[str], model: str | None, resume: bool, src: str, dst: str
) -> int:
    """Refuse a target that cannot receive this copy; return how many documents it holds."""
    if source is target:
        raise InvalidInputError("the source and the target are the same backend; copy into another one")
    if target.dim is not None and source.dim is not None and target.dim != source.dim:
        raise DimensionMismatchError(
            f"{dst} stores {target.dim}-d vectors but {src} holds {source.dim}-d ones; copy into a new, empty target"
        )
    stored = getattr(target, "model_id", None)
    if model is not None and isinstance(stored, str) and not same_model(stored, model):
        raise CollectionConfigError(
            f"{dst} records model {stored!r} but {src} was built with {model!r}; copy into a new, empty target"
        )
    n = target.count()
    if n and not resume:
        raise CollectionConfigError(
            f"{dst} already holds {n} documents; pass resume=True (--resume) to continue an interrupted copy of "
            "this source into it, or copy into a new, empty target"
        )
    if n:
        known = set(ids)
        others = [i for i in target.ids() if i not in known]
        if others:
            raise CollectionConfigError(
                f"{dst} holds {len(others)} document(s) that {src} does not (e.g. {others[:3]!r}), so it is not a "
                "copy of this source; copy into a new, empty target"
            )
        logger.info("resuming: %s already holds %d of %d documents", dst, n, len(ids))
    return n


def _vectors(record: Record) -> Any:
    if record.vectors is None:  # a backend breaking the protocol: say which document
        raise CollectionConfigError(f"document {record.id!r} came back without its vectors; it cannot be copied")
    return record.vectors


def _same_content(a: Record, b: Record) -> bool:
    """Whether two stored documents are equal: text, metadata, and vectors within :data:`CONTENT_TOLERANCE`."""
    if a.text != b.text or dict(a.metadata) != dict(b.metadata) or a.vectors is None or b.vectors is None:
        return False
    va, vb = np.asarray(a.vectors, dtype=np.float32), np.asarray(b.vectors, dtype=np.float32)
    if va.shape != vb.shape:
        return False
    bound = CONTENT_TOLERANCE * np.abs(va).max(axis=1, keepdims=True) + 1e-6
    return bool((np.abs(va - vb) <= bound).all())


def _exact(backend: Backend) -> bool:
    """Whether ``backend``'s search is exact MaxSim over everything (memory; Qdrant with ``search_mode="exact"``)."""
    return isinstance(backend, MemoryBackend) or getattr(backend, "search_mode", None) == "exact"


def _agreement(want: list[Hit], got: list[Hit], tol: float) -> tuple[float, float]:
    """(fraction of ``want`` that ``got`` holds or beats, largest score difference of the ids both hold)."""
    if not want:
        return 1.0, 0.0
    floor = got[-1].score if len(got) >= len(want) else -math.inf
    scores = {h.id: h.score for h in got}
    covered = sum(1 for h in want if h.id in scores or h.score <= floor + tol)
    diff = max((abs(h.score - scores[h.id]) for h in want if h.id in scores), default=0.0)
    return covered / len(want), diff


def _verify(source: Backend, target: Backend, ids: Sequence[str], sample: int, report: CopyReport) -> CopyReport:
    start = time.perf_counter()
    n_target = target.count()
    if n_target != len(ids):
        raise CopyVerificationError(
            f"{report.target} holds {n_target} documents after the copy but {report.source} holds {len(ids)}; was "
            "either written to during the copy? Run the copy again with --resume (resume=True)"
        )
    picked = [ids[i * len(ids) // sample] for i in range(min(sample, len(ids)))] if ids else []
    src_docs = source.get(picked, with_vectors=True)
    dst_docs = {r.id: r for r in target.get(picked, with_vectors=True)}
    differ = [r.id for r in src_docs if r.id not in dst_docs or not _same_content(r, dst_docs[r.id])]
    if differ:
        raise CopyVerificationError(
            f"{len(differ)} of {len(src_docs)} sampled documents differ between {report.source} and {report.target} "
            f"(e.g. {differ[:3]!r}); run the copy again with --resume (resume=True) to rewrite them"
        )
    exact = _exact(source) and _exact(target)
    k = min(VERIFY_K, len(ids))
    agreements: list[float] = []
    worst_diff = 0.0
    for doc in src_docs:
        q = _vectors(doc)[:QUERY_TOKENS]
        tol = SCORE_TOLERANCE * q.shape[0]
        agree, diff = _agreement(source.search(q, k=k), target.search(q, k=k), tol)
        if exact and (agree < 1.0 or diff > tol):
            raise CopyVerificationError(
                f"searching with document {doc.id!r}'s vectors, {report.target} answers differently from "
                f"{report.source} (agreement {agree:.2f}, score difference {diff:.2g}) although both search exactly; "
                "run the copy again with --resume (resume=True)"
            )
        agreements.append(agree)
        worst_diff = max(worst_diff, diff)
    agreement = float(np.mean(agreements)) if agreements else 1.0
    if not exact and agreement < WARN_AGREEMENT:
        logger.warning(
            "the target's top %d agrees with the source's on %.0f%% of the sampled hits (approximate search on at "
            "least one side); check the target's search settings (e.g. Voyager k_token / n_rerank, Qdrant "
            "prefetch_limit)",
            k,
            100 * agreement,
        )
    return dataclasses.replace(
        report,
        verified=True,
        target_count=n_target,
        sample=len(src_docs),
        k=k,
        agreement=agreement,
        max_score_diff=worst_diff,
        exact=exact,
        verify_seconds=time.perf_counter() - start,
    )
