"""MultiVectorStore: an encoder tied to a backend, the object most users work with.

Example:
    >>> from colbert_adapters.store import MultiVectorStore
    >>> from colbert_adapters.testing import FakeEncoder
    >>> with MultiVectorStore(FakeEncoder(dim=16)) as store:
    ...     ids = store.add(["the cat sat", "dogs bark loudly"], ids=["cat", "dog"],
    ...                     metadatas=[{"animal": "cat"}, {"animal": "dog"}])
    ...     [h.id for h in store.search("a cat", k=1)]
    ['cat']
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import uuid
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from ._identity import same_model
from ._validation import (
    as_multivector,
    check_filter,
    check_ids,
    check_k,
    check_metadatas,
    check_texts,
    match_filter,
)
from .backends import Backend, Record, backend_factory, detect_backend, open_backend
from .errors import CollectionConfigError, DimensionMismatchError, InvalidInputError
from .types import Encoder, Filter, Hit, Metadata, MultiVector

__all__ = ["MultiVectorStore"]

logger = logging.getLogger(__name__)


class MultiVectorStore:
    """Add texts, search them with MaxSim: an :class:`~colbert_adapters.types.Encoder` plus a backend.

    Args:
        encoder: anything implementing the Encoder protocol, e.g.
            :class:`~colbert_adapters.encoder.ColBERTEncoder` or
            :class:`~colbert_adapters.testing.FakeEncoder`.
        backend: a backend instance (preferred), or a registered name (``"memory"``, ``"voyager"``,
            ``"qdrant"``, ``"qdrant-edge"``, ``"qdrant-url"``, ``"qdrant-local"``; see
            :data:`colbert_adapters.backends.OPENERS`).
        **backend_kwargs: constructor arguments when ``backend`` is a name. When the backend's constructor
            takes ``dim`` and it is not given, the encoder's ``dim`` is passed.

    Raises:
        InvalidInputError: ``encoder`` or ``backend`` does not implement its protocol, or ``backend_kwargs``
            are given with a backend instance.
        DimensionMismatchError: the backend already stores vectors of another dimension than the encoder's.
        CollectionConfigError: the backend records another ``model_id`` than the encoder's.
        UnknownBackendError: ``backend`` is an unknown name.
        MissingDependencyError: the named backend's optional dependency is not installed.
    """

    #: Number of texts encoded and written to the backend per step in :meth:`add` (at least ``batch_size``).
    WRITE_CHUNK = 1024
    #: :meth:`add` shows a progress bar (when ``show_progress`` is ``None``) from this many texts on.
    PROGRESS_THRESHOLD = 1000

    def __init__(self, encoder: Encoder, backend: Backend | str = "memory", **backend_kwargs: Any) -> None:
        if not isinstance(encoder, Encoder):
            raise InvalidInputError(
                "encoder must implement the Encoder protocol (dim, model_id, encode_queries, "
                f"encode_documents), got {type(encoder).__name__}"
            )
        if isinstance(backend, str):
            factory = backend_factory(backend)
            if "dim" not in backend_kwargs and _accepts_kwarg(factory, "dim"):
                backend_kwargs["dim"] = encoder.dim
            backend_obj = factory(**backend_kwargs)
        else:
            if backend_kwargs:
                raise InvalidInputError(
                    f"backend_kwargs ({', '.join(backend_kwargs)}) only apply when backend is a name; "
                    "pass them to the backend's constructor instead"
                )
            backend_obj = backend
        if not isinstance(backend_obj, Backend):
            raise InvalidInputError(
                "backend must implement the Backend protocol (dim, upsert, delete, get, search, ids, clear, "
                f"count, close, __enter__, __exit__), got {type(backend_obj).__name__}"
            )
        if backend_obj.dim is not None and backend_obj.dim != encoder.dim:
            raise DimensionMismatchError(
                f"the backend stores {backend_obj.dim}-d vectors but the encoder ({encoder.model_id}) "
                f"produces {encoder.dim}-d vectors; use the encoder the index was built with or a new backend"
            )
        stored_model = getattr(backend_obj, "model_id", None)
        if isinstance(stored_model, str) and not same_model(stored_model, encoder.model_id):
            raise CollectionConfigError(
                f"the backend was built with model {stored_model!r} but the encoder is {encoder.model_id!r}; "
                "use the same model, or a new backend"
            )
        if stored_model is None and hasattr(backend_obj, "model_id"):
            # Remember the model so a saved index can refuse another one later (skip read-only properties).
            with contextlib.suppress(AttributeError):
                backend_obj.model_id = encoder.model_id
        self._encoder = encoder
        self._backend: Backend = backend_obj
        self._closed = False

    @classmethod
    def open(
        cls,
        location: str | os.PathLike[str],
        encoder: Encoder | None = None,
        *,
        read_only: bool = False,
        device: str | None = None,
        **backend_kwargs: Any,
    ) -> MultiVectorStore:
        """Reopen an existing index: a directory made by ``colbert-adapters index``, a Voyager, Qdrant Edge or saved
        MemoryBackend directory, or a Qdrant server URL (what it holds is detected from its files).

        Args:
            location: the index directory or ``http(s)://`` URL.
            encoder: the encoder the index was built with. ``None``: load the model that a
                ``colbert-adapters index`` directory records (other indexes record only a model id, so they
                need one).
            read_only: open without writing where the backend allows it (Voyager: no write lock).
            device: device for an encoder loaded here.
            **backend_kwargs: passed to the backend (e.g. ``collection_name=`` for a URL, ``k_token=``).

        Returns:
            The store; a saved memory index is loaded into memory (save it again with ``store.backend.save``).

        Raises:
            CollectionConfigError: ``location`` is not an index, or ``encoder`` is another model than the index's
                (or has other encoding settings than those a ``colbert-adapters index`` directory records).
            InvalidInputError: no encoder is given and the index does not record a loadable model.
            MissingDependencyError: the backend's optional dependency is missing.

        Example:
            >>> import tempfile
            >>> from colbert_adapters.testing import FakeEncoder
            >>> path = tempfile.mkdtemp()
            >>> with MultiVectorStore(FakeEncoder(dim=16)) as store:
            ...     _ = store.add(["the cat sat"], ids=["cat"])
            ...     _ = store.backend.save(path)
            >>> with MultiVectorStore.open(path, FakeEncoder(dim=16)) as reopened:
            ...     reopened.ids()
            ['cat']
        """
        from . import _index_dir

        manifest = _index_dir.read_manifest(location) if not _is_url(location) else None
        if manifest is not None:
            if encoder is None:
                encoder = _index_dir.load_encoder(manifest["model"], manifest.get("settings", {}), device)
            _index_dir.check_settings(manifest, encoder, location)
            backend = _index_dir.open_backend(manifest, location, encoder.dim, read_only=read_only)
        else:
            if encoder is None:
                raise InvalidInputError(
                    f"{location} ({detect_backend(location)}) records only a model id, not a model to load; pass "
                    "encoder= (the encoder the index was built with)"
                )
            backend = open_backend(location, read_only=read_only, **backend_kwargs)
        try:
            return cls(encoder, backend)
        except BaseException:
            backend.close()
            raise

    @property
    def encoder(self) -> Encoder:
        """The encoder."""
        return self._encoder

    @property
    def backend(self) -> Backend:
        """The backend."""
        return self._backend

    def add(
        self,
        texts: Sequence[str],
        ids: Sequence[str] | None = None,
        metadatas: Sequence[Metadata | None] | None = None,
        *,
        batch_size: int = 32,
        show_progress: bool | None = None,
        encode_texts: Sequence[str] | None = None,
    ) -> list[str]:
        """Encode documents and insert (or replace) them.

        Everything is validated before encoding starts. Texts are encoded and written in steps of
        :attr:`WRITE_CHUNK`; if the encoder or backend fails midway, earlier steps stay stored.

        Args:
            texts: the documents.
            ids: one unique, non-empty id per text; ``None`` generates random ``uuid4().hex`` ids.
                An existing id is replaced.
            metadatas: one JSON-serialisable dict (or ``None``) per text.
            batch_size: encoder batch size.
            show_progress: show a tqdm progress bar; ``None`` shows one from
                :attr:`PROGRESS_THRESHOLD` texts on.
            encode_texts: one text per document to encode instead of the stored one (e.g. the content with its
                metadata, as LlamaIndex embeds a node, while the text stored and returned stays the content);
                ``None`` encodes ``texts``.

        Returns:
            The ids, in input order. An empty ``texts`` returns ``[]`` and does nothing.

        Raises:
            InvalidInputError: bad texts, ids, metadata, lengths or batch size.
            DimensionMismatchError: the encoder produced vectors of another dimension than the backend's.
        """
        text_list = check_texts(texts)
        _check_batch_size(batch_size)
        n = len(text_list)
        if ids is None:
            id_list = [uuid.uuid4().hex for _ in range(n)]
        else:
            id_list = check_ids(ids)
            if len(id_list) != n:
                raise InvalidInputError(f"got {len(id_list)} ids for {n} texts; pass one id per text (or ids=None)")
        meta_list = check_metadatas(metadatas, n)
        to_encode = text_list if encode_texts is None else check_texts(encode_texts, what="encode_texts")
        if len(to_encode) != n:
            raise InvalidInputError(f"got {len(to_encode)} encode_texts for {n} texts; pass one per text")
        if n == 0:
            return []
        self._check_open()
        chunk = max(batch_size, self.WRITE_CHUNK // batch_size * batch_size)
        progress = n >= self.PROGRESS_THRESHOLD if show_progress is None else show_progress
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=n, desc="Encoding documents", unit="doc")
        try:
            for start in range(0, n, chunk):
                stop = min(n, start + chunk)
                vectors = self._encoder.encode_documents(to_encode[start:stop], batch_size=batch_size)
                self._check_encoded(vectors, stop - start)
                self._backend.upsert(
                    id_list[start:stop], vectors, texts=text_list[start:stop], metadatas=meta_list[start:stop]
                )
                if bar is not None:
                    bar.update(stop - start)
        finally:
            if bar is not None:
                bar.close()
        logger.debug("added %d documents", n)
        return id_list

    def search(
        self, query: str, k: int = 10, filter: Filter | None = None, *, ids: Sequence[str] | None = None
    ) -> list[Hit]:
        """Search with one query string.

        Args:
            query: a non-empty, non-blank query.
            k: number of hits (>= 1).
            filter: ``{"field": value}`` or ``{"field": [v1, v2]}`` on document metadata (AND over fields).
            ids: search only these documents (PyLate's ``subset=``, RAGatouille's ``doc_ids=``): they are scored
                exactly with their stored vectors; unknown ids are skipped, an empty list gives no hits.

        Returns:
            Up to ``k`` :class:`~colbert_adapters.types.Hit` by descending MaxSim score.

        Raises:
            InvalidInputError: empty query, bad ``k``, filter or ids.
        """
        if not isinstance(query, str):
            raise InvalidInputError(
                f"query must be a str, got {type(query).__name__}; use search_batch() for several queries"
            )
        return self.search_batch([query], k=k, filter=filter, ids=ids)[0]

    def encode_query(self, query: str) -> MultiVector:
        """The query's token vectors, float32 ``(n_query_tokens, dim)`` (what :meth:`search` scores with).

        Raises:
            InvalidInputError: ``query`` is not a non-blank ``str``.
        """
        if not isinstance(query, str):
            raise InvalidInputError(f"query must be a str, got {type(query).__name__}")
        if not query.strip():
            raise InvalidInputError("the query is empty or blank; pass at least one word")
        self._check_open()
        vectors = self._encoder.encode_queries([query])
        self._check_encoded(vectors, 1)
        return vectors[0]

    def search_by_vectors(
        self,
        query_vectors: MultiVector,
        k: int = 10,
        filter: Filter | None = None,
        *,
        ids: Sequence[str] | None = None,
    ) -> list[Hit]:
        """Search with query token vectors already encoded (e.g. by :meth:`encode_query`).

        Args:
            query_vectors: float32 ``(n_query_tokens, dim)``.
            k: number of hits (>= 1).
            filter: as for :meth:`search`.
            ids: as for :meth:`search`.

        Returns:
            Up to ``k`` hits by descending MaxSim score.

        Raises:
            InvalidInputError: bad vectors, ``k`` or filter.
            DimensionMismatchError: the vectors' dimension differs from the encoder's.
        """
        k = check_k(k)
        norm = check_filter(filter)
        subset = None if ids is None else _subset_ids(ids)
        self._check_open()
        q = as_multivector(query_vectors, dim=self._encoder.dim)
        if subset is not None:
            return self._search_subset(q, k, norm, subset)
        return self._backend.search(q, k=k, filter=filter)

    def _search_subset(self, q: MultiVector, k: int, norm: dict[str, list[Any]] | None, ids: list[str]) -> list[Hit]:
        """Exact MaxSim of ``q`` against the stored vectors of ``ids`` (those that exist and match the filter
        ``norm``, as :func:`check_filter` returns it)."""
        from .scoring import maxsim

        records = [r for r in self._backend.get(ids, with_vectors=True) if match_filter(r.metadata, norm)]
        if not records:
            return []
        scores = maxsim(q, [r.vectors for r in records])
        order = sorted(range(len(records)), key=lambda i: -float(scores[i]))[:k]  # stable: ties keep ids' order
        return [Hit(records[i].id, float(scores[i]), records[i].text, records[i].metadata) for i in order]

    def search_batch(
        self,
        queries: Sequence[str],
        k: int = 10,
        filter: Filter | None = None,
        *,
        batch_size: int = 32,
        ids: Sequence[str] | None = None,
    ) -> list[list[Hit]]:
        """Search with several query strings, encoded together.

        Args:
            queries: non-empty, non-blank query strings.
            k: number of hits per query (>= 1).
            filter: metadata filter applied to every query.
            batch_size: encoder batch size.
            ids: search only these documents, for every query (see :meth:`search`).

        Returns:
            One list of up to ``k`` hits per query, in input order.

        Raises:
            InvalidInputError: an empty query, bad ``k`` or filter.
        """
        query_list = check_texts(queries, what="queries")
        for i, q in enumerate(query_list):
            if not q.strip():
                raise InvalidInputError(f"queries[{i}] is empty or blank; pass at least one word")
        k = check_k(k)
        norm = check_filter(filter)
        _check_batch_size(batch_size)
        subset = None if ids is None else _subset_ids(ids)
        self._check_open()
        if not query_list:
            return []
        vectors = self._encoder.encode_queries(query_list, batch_size=batch_size)
        self._check_encoded(vectors, len(query_list))
        if subset is not None:
            return [self._search_subset(v, k, norm, subset) for v in vectors]
        return [self._backend.search(v, k=k, filter=filter) for v in vectors]

    def delete(self, ids: Sequence[str]) -> int:
        """Remove documents by id (unknown ids are ignored); returns how many were removed."""
        self._check_open()
        return self._backend.delete(check_ids(ids, allow_duplicates=True))

    def get(self, ids: Sequence[str], *, with_vectors: bool = False) -> list[Record]:
        """Stored documents in the order asked, skipping unknown ids (vectors only when ``with_vectors``)."""
        self._check_open()
        return self._backend.get(check_ids(ids, allow_duplicates=True), with_vectors=with_vectors)

    def ids(self) -> list[str]:
        """Every stored id (a snapshot)."""
        self._check_open()
        return list(self._backend.ids())

    def clear(self) -> None:
        """Remove every document; the backend keeps its configuration and recorded model."""
        self._check_open()
        self._backend.clear()

    def count(self) -> int:
        """Number of stored documents."""
        self._check_open()
        return self._backend.count()

    def __len__(self) -> int:
        return self.count()

    def close(self) -> None:
        """Close the backend. Idempotent."""
        if not self._closed:
            self._closed = True
            self._backend.close()

    def __enter__(self) -> MultiVectorStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MultiVectorStore(encoder={self._encoder!r}, backend={self._backend!r})"

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidInputError("this MultiVectorStore is closed; create a new one")

    def _check_encoded(self, vectors: Sequence[MultiVector], n: int) -> None:
        # Guard against encoders that break the protocol, with a message that blames the encoder.
        if len(vectors) != n:
            raise InvalidInputError(f"the encoder returned {len(vectors)} multi-vectors for {n} texts")
        for i, v in enumerate(vectors):
            shape = getattr(v, "shape", None)
            if shape is None or len(shape) != 2 or shape[1] != self._encoder.dim:
                raise DimensionMismatchError(
                    f"the encoder returned an array of shape {shape} for text {i}; expected "
                    f"(n_tokens, {self._encoder.dim})"
                )


def _subset_ids(ids: object) -> list[str]:
    """The ``ids=`` of a search: validated ids, duplicates dropped (first kept)."""
    return list(dict.fromkeys(check_ids(ids, allow_duplicates=True)))


def _check_batch_size(batch_size: object) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInputError(f"batch_size must be a positive int, got {batch_size!r}")


def _is_url(location: str | os.PathLike[str]) -> bool:
    return os.fspath(location).startswith(("http://", "https://"))


def _accepts_kwarg(factory: Any, name: str) -> bool:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without signatures
        return False
    return name in params
