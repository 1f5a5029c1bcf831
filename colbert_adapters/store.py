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
import logging
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

from . import _parents
from ._filters import FilterExpr
from ._identity import same_model
from ._search_args import check_batch_size as _check_batch_size
from ._search_args import check_highlight as _check_highlight
from ._search_args import check_search_filter as _check_filter
from ._search_args import subset_ids as _subset_ids
from ._store_checks import _accepts_kwarg, _is_url, _load_recorded
from ._validation import as_multivector, check_ids, check_k, check_metadatas, check_texts
from .backends import Backend, CopyReport, Record, backend_factory, open_backend
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
        long_documents: ``"split"`` (default): a text longer than the encoder's ``document_length`` is stored as
            overlapping token windows under its id, and found whole (one hit per document, the best window's
            score and ``Hit.span``); ``"truncate"``: the encoder cuts it. Splitting needs an encoder with
            ``text_token_spans`` (:class:`~colbert_adapters.encoder.ColBERTEncoder`, ``FakeEncoder(
            document_length=...)``); other encoders get whole texts.
        window_overlap: tokens consecutive windows share (default: an eighth of a window).
        **backend_kwargs: constructor arguments when ``backend`` is a name. When the backend's constructor
            takes ``dim`` and it is not given, the encoder's ``dim`` is passed.

    Raises:
        InvalidInputError: ``encoder`` or ``backend`` does not implement its protocol, ``backend_kwargs``
            are given with a backend instance, an unknown ``long_documents``, or ``window_overlap`` not below
            the window's size.
        DimensionMismatchError: the backend already stores vectors of another dimension than the encoder's.
        CollectionConfigError: the backend records another ``model_id`` than the encoder's.
        UnknownBackendError: ``backend`` is an unknown name.
        MissingDependencyError: the named backend's optional dependency is not installed.
    """

    #: Number of texts encoded and written to the backend per step in :meth:`add` (at least ``batch_size``).
    WRITE_CHUNK = 1024
    #: :meth:`add` shows a progress bar (when ``show_progress`` is ``None``) from this many texts on.
    PROGRESS_THRESHOLD = 1000

    def __init__(
        self,
        encoder: Encoder,
        backend: Backend | str = "memory",
        *,
        long_documents: str = "split",
        window_overlap: int | None = None,
        **backend_kwargs: Any,
    ) -> None:
        if not isinstance(encoder, Encoder):
            raise InvalidInputError(
                "encoder must implement the Encoder protocol (dim, model_id, encode_queries, "
                f"encode_documents), got {type(encoder).__name__}"
            )
        from ._windows import make_splitter

        self._splitter = make_splitter(encoder, long_documents, window_overlap)
        self._split_logged = False
        self._has_windows: bool | None = None  # None: not known yet (count() looks once)
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
            encoder: the encoder the index was built with. ``None``: load the model the index records (a
                ``colbert-adapters index`` directory's model and settings; another index's model id, from its
                Hub id or directory, checked to be the same weights and settings).
            read_only: open without writing where the backend allows it (Voyager: no write lock).
            device: device for an encoder loaded here.
            **backend_kwargs: passed to the backend (e.g. ``collection_name=`` for a URL, ``k_token=``).

        Returns:
            The store; a saved memory index is loaded into memory (save it again with ``store.backend.save``).

        Raises:
            CollectionConfigError: ``location`` is not an index, or ``encoder`` is another model than the index's
                (or has other encoding settings than those a ``colbert-adapters index`` directory records).
            InvalidInputError: no encoder is given and the index records no model that loads here.
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

        options = {k: backend_kwargs.pop(k) for k in ("long_documents", "window_overlap") if k in backend_kwargs}
        manifest = _index_dir.read_manifest(location) if not _is_url(location) else None
        if manifest is not None:
            if encoder is None:
                encoder = _index_dir.load_encoder(manifest["model"], manifest.get("settings", {}), device)
            _index_dir.check_settings(manifest, encoder, location)
            backend = _index_dir.open_backend(manifest, location, encoder.dim, read_only=read_only)
        else:
            backend = open_backend(location, read_only=read_only, **backend_kwargs)
            if encoder is None:
                try:
                    encoder = _load_recorded(getattr(backend, "model_id", None), location, device)
                except BaseException:
                    backend.close()
                    raise
        try:
            return cls(encoder, backend, **options)
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
        """Encode documents and insert (or replace) them; long ones are split (see ``long_documents``).

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
        _parents.check_user_input(id_list, meta_list)
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
                n_split, n_windows = _parents.write(
                    self._backend,
                    lambda chunk_texts: self._encode_documents(chunk_texts, batch_size),
                    self._splitter,
                    id_list[start:stop],
                    text_list[start:stop],
                    meta_list[start:stop],
                    to_encode[start:stop],
                )
                if n_split:
                    self._has_windows = True
                    self._split_logged = self._split_logged or _parents.log_split(self._splitter, n_split, n_windows)
                if bar is not None:
                    bar.update(stop - start)
        finally:
            if bar is not None:
                bar.close()
        logger.debug("added %d documents", n)
        return id_list

    def search(
        self,
        query: str,
        k: int = 10,
        filter: Filter | None = None,
        *,
        ids: Sequence[str] | None = None,
        score_threshold: float | None = None,
        highlight: bool = False,
        mode: str = "late",
        fusion: str = "rrf",
        alpha: float = 0.5,
        rrf_k: int = 60,
        fetch_k: int | None = None,
        rerank: bool = False,
    ) -> list[Hit]:
        """Search with one query string: by MaxSim (``mode="late"``), BM25 over the stored texts (``"lexical"``),
        or both fused (``"hybrid"``).

        Args:
            query: a non-empty, non-blank query.
            k: number of hits (>= 1).
            filter: a metadata filter: ``{"field": value}``, ``{"field": [v1, v2]}``, operators
                ``{"year": {"$gte": 2020}, "lang": {"$ne": "fr"}}`` (``$eq $ne $gt $gte $lt $lte $in $nin
                $exists $text``), ``{"$or": [...]}``, ``{"$and": [...]}``, ``{"$not": {...}}``, dotted keys for
                nested fields; a list field matches when one of its elements does. On a Qdrant backend, also a
                native ``qdrant_client.models.Filter``.
            ids: search only these documents (PyLate's ``subset=``, RAGatouille's ``doc_ids=``): they are scored
                exactly with their stored vectors; unknown ids are skipped, an empty list gives no hits.
            score_threshold: keep only hits scoring at least this. Scores are raw MaxSim, higher is better: the
                sum over the query's token vectors of the best cosine, so between ``-n`` and ``n`` for a query of
                ``n`` token vectors (``len(store.encode_query(query))``); ``score / n`` is a mean cosine.
            highlight: fill each hit's ``highlights``: the ``(start, end, weight)`` character spans of its text that
                its query tokens match best, adjacent tokens merged, ``weight`` the span's share of the score
                (render them with :func:`colbert_adapters.highlight.render`). Needs stored texts and an encoder
                with ``document_token_offsets`` (:class:`~colbert_adapters.encoder.ColBERTEncoder`).
            mode: ``"late"`` (MaxSim); ``"lexical"``: BM25 of the stored texts against the query's words (stemmed,
                case and accents folded; documents without text never match); ``"hybrid"``: the best ``fetch_k`` of
                both fused. ``score`` (and ``score_threshold``) is then the BM25 score, the fused score, or MaxSim.
            fusion: hybrid only: ``"rrf"``, reciprocal-rank fusion, ``score = sum 1 / (rrf_k + rank)`` over the
                two lists; ``"blend"``, ``alpha * late + (1 - alpha) * lexical`` of min-max normalised scores.
            alpha: the late list's weight in ``"blend"`` (``[0, 1]``).
            rrf_k: the constant of ``"rrf"``.
            fetch_k: hits of each list fused (default ``max(100, 2 * k)``).
            rerank: hybrid only: score the union of both lists by exact MaxSim (``score`` is MaxSim): lexical
                matches an approximate late stage missed compete on MaxSim.

        Returns:
            Up to ``k`` :class:`~colbert_adapters.types.Hit` by descending score (higher is better).

        Raises:
            InvalidInputError: empty query, bad ``k``, filter, ids, score_threshold, mode or hybrid option; a
                lexical mode on a backend without lexical search; ``highlight=True`` with an encoder without token
                offsets or a hit without stored text.
        """
        if not isinstance(query, str):
            raise InvalidInputError(
                f"query must be a str, got {type(query).__name__}; use search_batch() for several queries"
            )
        return self.search_batch(
            [query], k, filter, ids=ids, score_threshold=score_threshold, highlight=highlight, mode=mode,
            fusion=fusion, alpha=alpha, rrf_k=rrf_k, fetch_k=fetch_k, rerank=rerank,
        )[0]  # fmt: skip

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
        score_threshold: float | None = None,
        highlight: bool = False,
    ) -> list[Hit]:
        """Search with query token vectors already encoded (e.g. by :meth:`encode_query`).

        Args:
            query_vectors: float32 ``(n_query_tokens, dim)``.
            k: number of hits (>= 1).
            filter: as for :meth:`search`.
            ids: as for :meth:`search`.
            score_threshold: as for :meth:`search` (raw MaxSim, between ``-n_query_tokens`` and
                ``n_query_tokens``).
            highlight: fill each hit's ``highlights`` (see :meth:`search`).

        Returns:
            Up to ``k`` hits by descending MaxSim score.

        Raises:
            InvalidInputError: bad vectors, ``k``, filter or score_threshold.
            DimensionMismatchError: the vectors' dimension differs from the encoder's.
        """
        from ._mmr import check_score_threshold

        k = check_k(k)
        subset = None if ids is None else _subset_ids(ids)
        norm = _check_filter(filter, subset)
        threshold = check_score_threshold(score_threshold)
        self._check_open()
        q = as_multivector(query_vectors, dim=self._encoder.dim)
        return self._search_one(q, k, filter, norm, subset, threshold, _check_highlight(self._encoder, highlight))

    def _search_one(
        self,
        q: MultiVector,
        k: int,
        filter: Filter | None,
        norm: FilterExpr | None,
        subset: list[str] | None,
        threshold: float | None,
        highlight: bool = False,
    ) -> list[Hit]:
        """One search with checked arguments: the backend's, or exact MaxSim over ``subset``; hits below
        ``threshold`` dropped; highlights filled when ``highlight``."""
        pairs = (
            _parents.search_subset(self._backend, q, k, norm, subset)
            if subset is not None
            else _parents.search(self._backend, q, k, filter, windows=bool(self._has_windows))
        )
        self._has_windows = True if any(hit.span is not None for hit, _ in pairs) else self._has_windows
        pairs = pairs if threshold is None else [p for p in pairs if p[0].score >= threshold]
        if highlight:
            return _parents.highlight(self._encoder, self._backend, q, pairs)
        return [hit for hit, _ in pairs]

    def search_batch(
        self,
        queries: Sequence[str],
        k: int = 10,
        filter: Filter | None = None,
        *,
        batch_size: int = 32,
        ids: Sequence[str] | None = None,
        score_threshold: float | None = None,
        highlight: bool = False,
        mode: str = "late",
        fusion: str = "rrf",
        alpha: float = 0.5,
        rrf_k: int = 60,
        fetch_k: int | None = None,
        rerank: bool = False,
    ) -> list[list[Hit]]:
        """Search with several query strings, encoded together.

        Args:
            queries: non-empty, non-blank query strings.
            k: number of hits per query (>= 1).
            filter: metadata filter applied to every query.
            batch_size: encoder batch size.
            ids: search only these documents, for every query (see :meth:`search`).
            score_threshold: keep only hits scoring at least this raw MaxSim score (see :meth:`search`).
            highlight: fill each hit's ``highlights`` (see :meth:`search`).
            mode, fusion, alpha, rrf_k, fetch_k, rerank: the search mode and its hybrid options (see :meth:`search`).

        Returns:
            One list of up to ``k`` hits per query, in input order.

        Raises:
            InvalidInputError: an empty query, bad ``k``, filter, score_threshold, mode or hybrid option.
        """
        from ._fusion import check_hybrid
        from ._hybrid import lexical_backend, search_mode
        from ._lexical import check_mode
        from ._mmr import check_score_threshold

        mode = check_mode(mode)
        options = check_hybrid(fusion, alpha, rrf_k, fetch_k, rerank)

        query_list = check_texts(queries, what="queries")
        for i, q in enumerate(query_list):
            if not q.strip():
                raise InvalidInputError(f"queries[{i}] is empty or blank; pass at least one word")
        k = check_k(k)
        _check_batch_size(batch_size)
        subset = None if ids is None else _subset_ids(ids)
        norm = _check_filter(filter, subset)
        threshold = check_score_threshold(score_threshold)
        highlight = _check_highlight(self._encoder, highlight)
        self._check_open()
        if not query_list:
            return []
        lexical = None if mode == "late" else lexical_backend(self._backend)
        vectors = self._encode_for(mode, highlight, query_list, batch_size)
        if lexical is None:
            return [self._search_one(v, k, filter, norm, subset, threshold, highlight) for v in vectors]
        late = lambda q, n: self._search_one(q, n, filter, norm, subset, None)  # noqa: E731
        exact = lambda q, cand, n: [h for h, _ in _parents.search_subset(self._backend, q, n, None, cand)]  # noqa: E731
        grouped = _parents.GroupedLexical(lexical, self._backend, windows=self._windows_present())
        return [
            self._finish(
                search_mode(grouped, mode, options, t, v, k, filter, subset, late, exact), v, threshold, highlight
            )
            for t, v in zip(query_list, vectors, strict=True)
        ]

    def _finish(self, hits: list[Hit], q: MultiVector | None, threshold: float | None, highlight: bool) -> list[Hit]:
        """Hits below ``threshold`` dropped; highlights filled when ``highlight`` (``q``: the query's vectors)."""
        hits = hits if threshold is None else [h for h in hits if h.score >= threshold]
        if highlight and q is not None:
            hits = _parents.highlight_hits(self._encoder, self._backend, q, hits)
        return hits

    def _encode_for(self, mode: str, highlight: bool, queries: list[str], batch_size: int) -> list[Any]:
        """The queries' vectors when the mode or the highlights need them, else ``None`` per query."""
        if mode == "lexical" and not highlight:  # BM25 alone needs no query vectors
            return [None] * len(queries)
        vectors = self._encoder.encode_queries(queries, batch_size=batch_size)
        self._check_encoded(vectors, len(queries))
        return vectors

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Filter | None = None,
        *,
        ids: Sequence[str] | None = None,
        score_threshold: float | None = None,
    ) -> list[Hit]:
        """Relevant and diverse hits: the best ``fetch_k`` by MaxSim, then ``k`` of them picked by maximal
        marginal relevance, with MaxSim between the stored token vectors as the similarity of two documents.

        The next hit is the candidate ``d`` with the highest
        ``lambda_mult * MaxSim(q, d) / n_q - (1 - lambda_mult) * max_s sim(d, s)`` over the hits ``s`` already
        picked, where ``n_q`` is the number of query token vectors and
        ``sim(a, b) = (MaxSim(a, b) / n_a + MaxSim(b, a) / n_b) / 2`` (``n_a``, ``n_b``: the documents' token
        counts): relevance and similarity are both mean best cosines, in ``[-1, 1]``.

        Args:
            query: a non-empty, non-blank query.
            k: number of hits (>= 1).
            fetch_k: number of candidates searched (>= 1; raised to ``k`` when smaller).
            lambda_mult: ``1`` ranks by relevance alone (the order of :meth:`search`), ``0`` by diversity alone
                after the most relevant hit.
            filter: as for :meth:`search`.
            ids: search only these documents (see :meth:`search`).
            score_threshold: candidates scoring below this raw MaxSim score are dropped (see :meth:`search`).

        Returns:
            Up to ``k`` hits in the order picked, each with its raw MaxSim score for the query.

        Raises:
            InvalidInputError: empty query, bad ``k``, ``fetch_k``, ``lambda_mult``, filter, ids or
                score_threshold.

        Example:
            >>> from colbert_adapters.testing import FakeEncoder
            >>> store = MultiVectorStore(FakeEncoder(dim=16))
            >>> _ = store.add(["red apples", "red apples again", "green pears"], ids=["a", "a2", "p"])
            >>> [h.id for h in store.max_marginal_relevance_search("red apples", k=2, lambda_mult=1.0)]
            ['a', 'a2']
            >>> [h.id for h in store.max_marginal_relevance_search("red apples", k=2, lambda_mult=0.3)]
            ['a', 'p']
        """
        return self.max_marginal_relevance_search_by_vectors(
            self.encode_query(query),
            k=k,
            fetch_k=fetch_k,
            lambda_mult=lambda_mult,
            filter=filter,
            ids=ids,
            score_threshold=score_threshold,
        )

    def max_marginal_relevance_search_by_vectors(
        self,
        query_vectors: MultiVector,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Filter | None = None,
        *,
        ids: Sequence[str] | None = None,
        score_threshold: float | None = None,
    ) -> list[Hit]:
        """:meth:`max_marginal_relevance_search` with query token vectors already encoded.

        Args:
            query_vectors: float32 ``(n_query_tokens, dim)`` (e.g. from :meth:`encode_query`).
            k, fetch_k, lambda_mult, filter, ids, score_threshold: as for :meth:`max_marginal_relevance_search`.

        Returns:
            Up to ``k`` hits in the order picked, with their raw MaxSim scores.

        Raises:
            InvalidInputError: bad vectors or arguments.
            DimensionMismatchError: the vectors' dimension differs from the encoder's.
        """
        from ._mmr import check_lambda_mult, select

        k = check_k(k)
        n_fetch = max(k, check_k(fetch_k))
        lam = check_lambda_mult(lambda_mult)
        q = as_multivector(query_vectors, dim=self._encoder.dim)
        candidates = self.search_by_vectors(q, n_fetch, filter, ids=ids, score_threshold=score_threshold)
        records = _parents.source_records(self._backend, candidates, with_vectors=True)  # a window: the best one
        kept = [(h, r) for h, r in zip(candidates, records, strict=True) if r is not None and r.vectors is not None]
        candidates = [h for h, _ in kept]  # documents deleted since the search left out
        vectors = [as_multivector(r.vectors) for _, r in kept]
        picked = select([h.score / q.shape[0] for h in candidates], vectors, k, lam)
        return [candidates[i] for i in picked]

    def copy_to(
        self,
        target: Backend | str,
        location: str | os.PathLike[str] | None = None,
        *,
        resume: bool = False,
        batch_size: int = 256,
        verify: bool = True,
        sample: int = 32,
        show_progress: bool | None = None,
        progress: Callable[[int], None] | None = None,
        **backend_kwargs: Any,
    ) -> CopyReport:
        """Copy every document to another backend without re-encoding: ids, texts, metadata, the stored token
        vectors and the model id, streamed in batches, resumable, verified at the end.

        Vectors go as the backend stores them (a Voyager index: its int14 / int8 / float16 codes decoded); a new
        target gets the settings that fix what it stores (a Voyager source's ``vector_dtype``, a Qdrant source's
        layout). Documents already in the target are skipped with ``resume=True`` when equal; the verification
        compares counts, a sample of documents, and searches with sampled documents' vectors (any difference fails
        when both backends search exactly; with an approximate side the agreement is reported).

        Args:
            target: a backend instance (left open), or a name: ``"voyager"``, ``"qdrant-edge"``, ``"qdrant-url"``,
                ``"qdrant-local"`` or ``"memory"`` (opened or created at ``location``, closed at the end).
            location: for a name: a directory, a Qdrant URL, or ``":memory:"`` (``"qdrant-local"``); a memory
                target is saved there.
            resume: continue an interrupted copy into a target that already holds some of the documents.
            batch_size: documents read and written per step (the memory held is one batch of vectors).
            verify: check the target at the end.
            sample: documents checked and searched with by the verification.
            show_progress: a tqdm bar; ``None`` shows one from 1,000 documents on.
            progress: called after every written batch with the number of documents done (raise to stop).
            **backend_kwargs: for a name: passed to the backend (``collection_name=``, ``api_key=``,
                ``vector_dtype=`` ...).

        Returns:
            A :class:`~colbert_adapters.backends.base.CopyReport` (counts, tokens, rates, agreement).

        Raises:
            UnknownBackendError: an unknown target name (the message lists the accepted ones).
            DimensionMismatchError / CollectionConfigError: the target stores another dimension or model, holds
                documents without ``resume``, or holds documents this store does not.
            CopyVerificationError: the target differs from this store after the copy.

        Example:
            >>> import tempfile
            >>> from colbert_adapters.testing import FakeEncoder
            >>> with MultiVectorStore(FakeEncoder(dim=16)) as store:
            ...     _ = store.add(["the cat sat", "dogs bark"], ids=["cat", "dog"])
            ...     report = store.copy_to("memory", tempfile.mkdtemp())
            >>> report.copied, report.verified, report.agreement
            (2, True, 1.0)
        """
        from . import _copy

        self._check_open()
        options: dict[str, Any] = {
            "model_id": self._encoder.model_id,
            "resume": resume,
            "batch_size": batch_size,
            "verify": verify,
            "sample": sample,
            "show_progress": show_progress,
            "progress": progress,
        }
        if not isinstance(target, str):
            if location is not None or backend_kwargs:
                raise InvalidInputError("location and backend options apply to a target given by name only")
            if not isinstance(target, Backend):
                raise InvalidInputError(f"target must be a backend or a name, got {type(target).__name__}")
            return _copy.copy_backend(self._backend, target, **options)
        name = _copy.target_name(target)
        backend = _copy.open_target(name, location, source=self._backend, **backend_kwargs)
        done = False
        try:
            report = _copy.copy_backend(self._backend, backend, **options)
            done = True
            return report
        finally:
            _copy.close_target(backend, name, location, save=done)

    def delete(self, ids: Sequence[str] | None = None, *, filter: Filter | None = None) -> int:
        """Remove documents by id (unknown ids are ignored) or every document matching a metadata filter.

        Args:
            ids: ids to remove.
            filter: a metadata filter (the forms of :meth:`search`); removes every matching document in one
                transaction on Voyager and the memory backend (paged deletes on Qdrant).

        Returns:
            How many documents were removed.

        Raises:
            InvalidInputError: neither or both of ``ids`` and ``filter``, bad ids, an empty or malformed filter.

        Example:
            >>> from colbert_adapters.testing import FakeEncoder
            >>> with MultiVectorStore(FakeEncoder(dim=16)) as store:
            ...     _ = store.add(["a", "b", "c"], metadatas=[{"year": 2019}, {"year": 2021}, {"year": 2023}])
            ...     store.delete(filter={"year": {"$lt": 2022}}), len(store)
            (2, 1)
        """
        if (ids is None) == (filter is None):
            raise InvalidInputError("pass ids= (documents to remove) or filter= (remove every match), not both")
        self._check_open()
        if ids is not None:
            return _parents.delete(self._backend, check_ids(ids, allow_duplicates=True))
        if isinstance(filter, Mapping) and not filter:
            raise InvalidInputError("filter={} would remove every document; use store.clear() for that")
        before = self.count() if self._windows_present() else None  # windows are records: count documents
        removed = _parents.delete_where(self._backend, filter)
        return removed if before is None else before - self.count()

    def get(self, ids: Sequence[str], *, with_vectors: bool = False) -> list[Record]:
        """Stored documents in the order asked, skipping unknown ids (vectors only when ``with_vectors``); a split
        document whole: its text reassembled from its windows, its vectors the windows' rows in order."""
        self._check_open()
        return _parents.get(self._backend, check_ids(ids, allow_duplicates=True), with_vectors=with_vectors)

    def ids(self) -> list[str]:
        """Every stored document id (a snapshot; a split document's windows are not listed)."""
        self._check_open()
        return _parents.visible_ids(self._backend)

    def clear(self) -> None:
        """Remove every document; the backend keeps its configuration and recorded model."""
        self._check_open()
        self._backend.clear()

    def count(self) -> int:
        """Number of stored documents (a split document counts once; ``store.backend.count()`` counts records)."""
        self._check_open()
        return len(self.ids()) if self._windows_present() else self._backend.count()

    def _windows_present(self) -> bool:
        """Whether the backend may hold windows of split documents (looked up once, then kept up to date)."""
        if self._has_windows is None:
            self._has_windows = len(self.ids()) != self._backend.count()
        return self._has_windows

    def _encode_documents(self, texts: list[str], batch_size: int) -> list[MultiVector]:
        vectors = self._encoder.encode_documents(texts, batch_size=batch_size)
        self._check_encoded(vectors, len(texts))
        return vectors

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
