"""ColBERT encoder: per-token vectors identical to PyLate 1.6.0's, for GTE-ModernColBERT-v1 and any
PyLate-format checkpoint, plus plain transformers / sentence-transformers backbones.

Semantics (``shared/reference/pylate-spec.md``): texts are stripped, tokenized to ``length - 1`` tokens,
the prefix token (``[Q] `` / ``[D] ``) is inserted after ``[CLS]``; queries are padded with ``[MASK]`` to
``query_length`` only when the checkpoint asks for query expansion (GTE-ModernColBERT-v1 does not); the
backbone's last hidden states go through the Dense projection(s); document tokens whose id is in the
punctuation skiplist are dropped (queries never); every kept row is L2-normalised.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ._checkpoint import (
    CheckpointFiles,
    DenseSpec,
    describe_plain_backbone,
    load_hf_model,
    load_tokenizer,
    prefix_advice,
    read_checkpoint,
    resolve_model_dir,
    resolve_settings,
)
from ._validation import check_texts
from .errors import CheckpointError, InvalidInputError
from .types import MultiVector

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

__all__ = ["ColBERTEncoder", "ModelSpec", "Tokenized", "cpu_has_native_bf16"]

# Upper bound on tokens per forward pass (all sequences of a batch together); bounds activation memory
# for long documents while short texts still batch ``batch_size`` at a time.
_MAX_TOKENS_PER_BATCH = 16384
# Show a progress bar by default when a call has more batches than this.
_PROGRESS_MIN_BATCHES = 8
# Tokenizer max_length that truncates nothing (counting a long document's tokens, splitting it).
_NO_LIMIT = 1 << 30
# Plain backbones whose assumed settings were logged already in this process: (directory, settings).
_EXPLAINED: set[tuple[str, str]] = set()

_DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
}


@dataclass(frozen=True, slots=True)
class Tokenized:
    """One text as the encoder's model sees it (:meth:`ColBERTEncoder.tokenize`).

    Attributes:
        ids: input ids: ``[CLS]``, the ``[Q] ``/``[D] `` prefix id, the text's tokens (truncated to the query or
            document length), ``[SEP]``, then ``[MASK]`` padding when queries are expanded.
        attended: how many leading ids the attention sees (all real ids; the padding too when the checkpoint
            attends to expansion tokens).
        keep: bool ``(len(ids),)``: which positions become output vectors (documents: punctuation of the skiplist
            dropped; queries: every real id, or every id with expansion).
    """

    ids: list[int]
    attended: int
    keep: npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """The encoding settings in force (after argument > config file > default precedence)."""

    name: str
    dim: int
    backbone: str
    query_prefix: str
    document_prefix: str
    query_length: int
    document_length: int
    do_query_expansion: bool
    attend_to_expansion_tokens: bool
    skiplist_words: tuple[str, ...]
    fingerprint: str


class _Projection:
    """The chain of Dense layers, applied to kept rows only (row-wise, so equivalent to PyLate)."""

    def __init__(self, specs: Sequence[DenseSpec], hidden: int) -> None:
        from safetensors.torch import load_file

        self.layers: list[tuple[torch.Tensor, torch.Tensor | None, str, torch.Tensor | None, bool]] = []
        expected_in = hidden
        for d in specs:
            if d.in_features != expected_in:
                raise CheckpointError(
                    f"Dense layer {d.path.name} expects {d.in_features}-d inputs but receives {expected_in}-d "
                    "vectors from the previous module; the projection does not belong to this backbone"
                )
            sd = load_file(str(d.path / "model.safetensors"))
            w = sd.get("linear.weight")
            if w is None or tuple(w.shape) != (d.out_features, d.in_features):
                raise CheckpointError(
                    f"{d.path / 'model.safetensors'}: 'linear.weight' is "
                    f"{None if w is None else tuple(w.shape)}, config.json says {(d.out_features, d.in_features)}"
                )
            b = sd.get("linear.bias")
            if d.bias and (b is None or tuple(b.shape) != (d.out_features,)):
                raise CheckpointError(f"{d.path}: bias=true in config.json but 'linear.bias' is missing or misshapen")
            residual = None
            if d.use_residual and d.in_features != d.out_features:
                residual = sd.get("residual.weight")
                if residual is None:
                    raise CheckpointError(f"{d.path}: use_residual=true but 'residual.weight' is missing")
            self.layers.append(
                (
                    w.float(),
                    b.float() if d.bias and b is not None else None,
                    d.activation,
                    residual,
                    d.use_residual,
                )
            )
            expected_in = d.out_features
        self.out_dim = expected_in

    def to(self, device: torch.device) -> None:
        self.layers = [
            (w.to(device), None if b is None else b.to(device), a, None if r is None else r.to(device), u)
            for w, b, a, r, u in self.layers
        ]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        acts = {
            "identity": lambda t: t,
            "tanh": torch.tanh,
            "relu": F.relu,
            "gelu": F.gelu,
            "sigmoid": torch.sigmoid,
            "silu": F.silu,
        }
        for w, b, act, residual, use_residual in self.layers:
            y = acts[act](F.linear(x, w, b))
            if use_residual:
                y = y + (x if residual is None else F.linear(x, residual.to(x.dtype)))
            x = y
        return x


class ColBERTEncoder:
    """Encode queries and documents into per-token vectors (late interaction / MaxSim).

    Create it with :meth:`from_pretrained`. Outputs are lists of float32 ``(n_tokens, dim)`` numpy arrays,
    L2-normalised rows, in input order — identical (within 1e-5) to PyLate 1.6.0's ``encode``.

    Example:
        >>> enc = ColBERTEncoder.from_pretrained("lightonai/GTE-ModernColBERT-v1")  # doctest: +SKIP
        >>> q = enc.encode_queries(["what is late interaction?"])[0]                 # doctest: +SKIP
        >>> q.shape                                                                    # doctest: +SKIP
        (8, 128)
    """

    def __init__(
        self,
        *,
        _files: CheckpointFiles,
        _name: str,
        _settings: dict[str, Any],
        _model: Any,
        _projection: _Projection | None,
        _tokenizer: Any,
        _device: torch.device,
        _dtype: torch.dtype,
        _packed: bool,
    ) -> None:
        self._files = _files
        self._model = _model
        self._projection = _projection
        self._tokenizer = _tokenizer
        self._device = _device
        self._dtype = _dtype
        self._packed = _packed
        s = _settings
        self._prompt: str = s["prompt"]
        self._query_prefix_id = self._prefix_id(s["query_prefix"], "query_prefix")
        self._document_prefix_id = self._prefix_id(s["document_prefix"], "document_prefix")
        # PyLate: skiplist ids by exact vocabulary lookup (convert_tokens_to_ids), pad id = [MASK].
        self._skiplist_ids = np.array(
            sorted({int(i) for i in _tokenizer.convert_tokens_to_ids(list(s["skiplist_words"])) if i is not None}),
            dtype=np.int64,
        )
        pad = _tokenizer.mask_token_id
        if pad is None:
            pad = _tokenizer.eos_token_id if _tokenizer.eos_token_id is not None else _tokenizer.pad_token_id
        if pad is None and s["do_query_expansion"]:
            raise CheckpointError("query expansion needs a [MASK] (or EOS/pad) token, and the tokenizer has none")
        self._pad_id = int(pad) if pad is not None else 0
        hidden = int(_files.config["hidden_size"])
        dim = _projection.out_dim if _projection is not None else hidden
        self._spec = ModelSpec(
            name=_name,
            dim=dim,
            backbone=str(_files.config.get("model_type", "unknown")),
            query_prefix=s["query_prefix"],
            document_prefix=s["document_prefix"],
            query_length=int(s["query_length"]),
            document_length=int(s["document_length"]),
            do_query_expansion=bool(s["do_query_expansion"]),
            attend_to_expansion_tokens=bool(s["attend_to_expansion_tokens"]),
            skiplist_words=tuple(s["skiplist_words"]),
            fingerprint=_files.fingerprint(),
        )

    # ------------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        model_name_or_path: str | os.PathLike[str],
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        query_length: int | None = None,
        document_length: int | None = None,
        query_prefix: str | None = None,
        document_prefix: str | None = None,
        do_query_expansion: bool | None = None,
        attend_to_expansion_tokens: bool | None = None,
        skiplist_words: Sequence[str] | None = None,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        token: str | bool | None = None,
        local_files_only: bool = False,
        trust_remote_code: bool = False,
    ) -> ColBERTEncoder:
        """Load a checkpoint from a local directory or the Hugging Face Hub.

        Accepts PyLate checkpoints (``modules.json`` + Transformer + ``1_Dense``) in both on-disk layouts
        (sentence-transformers 3.x as on the Hub, PyLate 1.6 / transformers 5 re-saves), and plain
        transformers / sentence-transformers encoders without a projection (token vectors = last hidden
        state, ``dim`` = hidden size; no prefixes, no query expansion unless asked for).

        Every setting follows PyLate's precedence: this argument > ``config_sentence_transformers.json`` >
        PyLate's default.

        Args:
            model_name_or_path: a directory, or a Hub id such as ``"lightonai/GTE-ModernColBERT-v1"``.
            device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``; ``None`` picks cuda, then mps, then cpu.
            dtype: ``"float32"`` (default on CPU), ``"bfloat16"``, ``"float16"``; ``None`` picks float32 on CPU,
                bfloat16 (or float16 where unsupported) on CUDA, float16 on MPS. Projection and normalisation
                always run in float32.
            query_length: max query tokens including ``[CLS]``, prefix and ``[SEP]`` (PyLate default 32).
            document_length: max document tokens (GTE-ModernColBERT-v1: 300; up to 8192 and beyond for
                ModernBERT, whose RoPE positions are computed on the fly).
            query_prefix / document_prefix: prefix tokens (``"[Q] "`` / ``"[D] "``); ``""`` disables.
            do_query_expansion: pad queries with ``[MASK]`` to ``query_length`` (kept in the output).
            attend_to_expansion_tokens: let the model attend to those ``[MASK]`` tokens.
            skiplist_words: tokens dropped from documents (default: the 32 characters of string.punctuation).
            revision, cache_dir, token, local_files_only: passed to huggingface_hub for Hub ids.
            trust_remote_code: allow custom modelling code for non-ModernBERT backbones (off by default).

        Returns:
            A ready encoder in inference mode.

        Raises:
            CheckpointError: not a checkpoint, pickle-only weights, mismatched projection weights.
            HubUnavailableError: a Hub id while offline and not cached (the message says how to pass a directory).
            InvalidInputError: an unavailable device or an unknown dtype, or invalid lengths.
        """

        dev = _resolve_device(device)
        dt = _resolve_dtype(dtype, dev)
        for name, val in (("query_length", query_length), ("document_length", document_length)):
            if val is not None and (isinstance(val, bool) or not isinstance(val, int) or val < 3):
                raise InvalidInputError(f"{name} must be an int >= 3 ([CLS], prefix and [SEP] take 3), got {val!r}")
        root = resolve_model_dir(
            model_name_or_path,
            revision=revision,
            cache_dir=cache_dir,
            token=token,
            local_files_only=local_files_only,
        )
        files = read_checkpoint(root)
        settings = resolve_settings(
            files,
            dict(
                query_length=query_length,
                document_length=document_length,
                query_prefix=query_prefix,
                document_prefix=document_prefix,
                do_query_expansion=do_query_expansion,
                attend_to_expansion_tokens=attend_to_expansion_tokens,
                skiplist_words=list(skiplist_words) if skiplist_words is not None else None,
            ),
        )
        tokenizer = load_tokenizer(files.transformer_dir, trust_remote_code)
        model_type = str(files.config.get("model_type", ""))
        packed = model_type == "modernbert"
        if packed:
            from ._modernbert import load_packed_modernbert

            model = load_packed_modernbert(files.config, files.weight_files)
            max_pos = model.spec.max_position_embeddings
            if int(settings["document_length"]) > max_pos:
                logger.warning(
                    "document_length=%d exceeds the backbone's trained context (%d tokens); ModernBERT computes "
                    "positions on the fly so it runs, but quality beyond %d tokens is not guaranteed",
                    settings["document_length"],
                    max_pos,
                    max_pos,
                )
        else:
            model = load_hf_model(files, trust_remote_code)
            max_pos = int(files.config.get("max_position_embeddings", 0) or 0)
            for key in ("query_length", "document_length"):
                if max_pos and int(settings[key]) > max_pos:
                    raise InvalidInputError(
                        f"{key}={settings[key]} exceeds this {model_type or 'model'} backbone's "
                        f"max_position_embeddings={max_pos}; pass {key}<={max_pos}"
                    )
        model.eval().requires_grad_(False)
        model.to(device=dev, dtype=dt)
        projection = _Projection(files.dense, int(files.config["hidden_size"])) if files.dense else None
        if projection is not None:
            projection.to(dev)
        name = os.fspath(model_name_or_path)
        enc = cls(
            _files=files,
            _name=name,
            _settings=settings,
            _model=model,
            _projection=projection,
            _tokenizer=tokenizer,
            _device=dev,
            _dtype=dt,
            _packed=packed,
        )
        logger.info("loaded %s (%s, dim %d) on %s/%s", name, enc.spec.backbone, enc.dim, dev, dt)
        if not files.is_colbert:
            _explain_plain_backbone(enc, files, settings, assumed=query_prefix is None or document_prefix is None)
        return enc

    # ------------------------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Dimension of the output token vectors (128 for GTE-ModernColBERT-v1)."""
        return self._spec.dim

    @property
    def spec(self) -> ModelSpec:
        """The settings in force."""
        return self._spec

    @property
    def model_id(self) -> str:
        """Identifies model and settings; backends store it to refuse documents from another model."""
        s = self._spec
        return (
            f"{s.name}@{s.fingerprint}|dim={s.dim}|q={s.query_length}|d={s.document_length}"
            f"|exp={int(s.do_query_expansion)}"
        )

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    @property
    def tokenizer(self) -> Any:
        """The underlying transformers tokenizer."""
        return self._tokenizer

    def __repr__(self) -> str:
        s = self._spec
        return (
            f"ColBERTEncoder({s.name!r}, dim={s.dim}, backbone={s.backbone}, query_length={s.query_length}, "
            f"document_length={s.document_length}, do_query_expansion={s.do_query_expansion}, "
            f"device={self._device}, dtype={self._dtype})"
        )

    # ------------------------------------------------------------------------------------------------
    def encode_queries(
        self, texts: Sequence[str], *, batch_size: int = 32, show_progress: bool | None = None
    ) -> list[MultiVector]:
        """Encode queries.

        Args:
            texts: ``n`` query strings (a list; a bare ``str`` is rejected).
            batch_size: texts per forward pass.
            show_progress: tqdm bar; ``None`` shows it only for long jobs.

        Returns:
            ``n`` float32 arrays of shape ``(n_tokens_i, dim)``: ``query_length`` rows each with query
            expansion, otherwise one row per query token (``[CLS]``, prefix, tokens, ``[SEP]``).
        """
        return self._encode(texts, is_query=True, batch_size=batch_size, show_progress=show_progress)

    def encode_documents(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 32,
        pool_factor: int = 1,
        protected_tokens: int = 1,
        show_progress: bool | None = None,
    ) -> list[MultiVector]:
        """Encode documents.

        Documents longer than ``document_length`` tokens are truncated (the final ``[SEP]`` is kept), exactly
        as PyLate does; an INFO log line counts them. Raise ``document_length`` to keep more, or let a
        ``MultiVectorStore`` split them into windows (its default, ``long_documents="split"``).

        Args:
            texts: ``n`` document strings.
            batch_size: documents per forward pass (long documents are further grouped by token count).
            pool_factor: ``> 1`` pools token vectors by hierarchical clustering (PyLate's ``pool_factor``;
                needs scipy).
            protected_tokens: leading rows excluded from pooling.
            show_progress: tqdm bar; ``None`` shows it only for long jobs.

        Returns:
            ``n`` float32 arrays ``(n_kept_tokens_i, dim)``: all tokens but padding and skiplist punctuation.
        """
        vecs = self._encode(texts, is_query=False, batch_size=batch_size, show_progress=show_progress)
        if pool_factor != 1 or not isinstance(pool_factor, int):
            from .pooling import pool_tokens

            vecs = [pool_tokens(v, pool_factor, protected_tokens) for v in vecs]
        return vecs

    def tokenize(self, texts: Sequence[str], *, is_query: bool = False) -> list[Tokenized]:
        """Each text as the model sees it: input ids, attended length and the positions kept as vectors.

        Args:
            texts: the texts (queries when ``is_query``, else documents).
            is_query: tokenize as queries (``[Q] `` prefix, ``query_length``, expansion) or documents.

        Returns:
            One :class:`Tokenized` per text; ``encode_queries`` / ``encode_documents`` return one row per kept
            position, in order.

        Raises:
            InvalidInputError: ``texts`` is not a sequence of ``str``.
        """
        return [
            Tokenized(ids, n_keys, self._keep_mask(np.array(ids), n_real, is_query))
            for ids, n_keys, n_real in self._tokenize(check_texts(texts), is_query)
        ]

    def document_token_offsets(self, texts: Sequence[str]) -> list[list[tuple[int, int] | None]]:
        """Each document row's ``(start, end)`` character offsets in its text, aligned with
        :meth:`encode_documents`' rows; ``None`` for ``[CLS]``, the prefix, ``[SEP]`` and prompt tokens.

        Raises:
            InvalidInputError: ``texts`` is not a sequence of ``str``, or the tokenizer has no offsets (slow).
        """
        from ._highlight import token_offsets

        return [
            [span for span, kept in zip(spans, self._keep_mask(np.asarray(ids), len(ids), False), strict=True) if kept]
            for ids, spans in token_offsets(
                self._tokenizer,
                check_texts(texts, what="documents"),
                prompt=self._prompt,
                lower=bool(self._files.do_lower_case),
                prefix_id=self._document_prefix_id,
                length=self._spec.document_length,
            )
        ]

    def count_tokens(self, texts: Sequence[str], *, is_query: bool = False, truncate: bool = False) -> list[int]:
        """Number of input tokens (``[CLS]``, prefix and ``[SEP]`` included) of each text, before truncation to
        ``query_length`` / ``document_length``; ``truncate=True``: after (what is encoded, expansion padding
        included). A store splits a longer document into :meth:`count_windows` windows."""
        return [len(ids) if truncate else n for ids, _, n in self._tokenize(check_texts(texts), is_query, truncate)]

    def count_windows(self, texts: Sequence[str], *, overlap: int | None = None) -> list[int]:
        """How many token windows each document makes when a store splits long documents (1: it fits
        ``document_length``); ``overlap``: tokens consecutive windows share (``None``: the store's default)."""
        from ._windows import count_windows

        return count_windows(self, texts, overlap)

    def text_token_spans(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        """Each document's token ``(start, end)`` character spans, before truncation, without ``[CLS]``, prefix,
        ``[SEP]`` and prompt tokens (what long documents are split by)."""
        from ._highlight import token_offsets

        lower, pid = bool(self._files.do_lower_case), self._document_prefix_id
        found = token_offsets(
            self._tokenizer, check_texts(texts), prompt=self._prompt, lower=lower, prefix_id=pid, length=_NO_LIMIT
        )
        return [[span for span in spans if span is not None] for _, spans in found]

    # ------------------------------------------------------------------------------------------------
    def _prefix_id(self, prefix: str, what: str) -> int | None:
        if prefix == "":
            return None
        tok = self._tokenizer
        pid = tok.convert_tokens_to_ids(prefix)
        if pid is None or (tok.unk_token_id is not None and pid == tok.unk_token_id and prefix != tok.unk_token):
            raise CheckpointError(
                f"{what} {prefix!r} is not a token of this tokenizer (PyLate checkpoints store it as an added "
                f"token). {prefix_advice(tok.get_vocab())}"
            )
        return int(pid)

    def _tokenize(self, texts: list[str], is_query: bool, truncate: bool = True) -> list[tuple[list[int], int, int]]:
        """Per text: (input ids, number of attended leading ids, number of real (non-padding) ids)."""
        s = self._spec
        length = s.query_length if is_query else s.document_length
        prefix_id = self._query_prefix_id if is_query else self._document_prefix_id
        max_len = (length - 1 if prefix_id is not None else length) if truncate else _NO_LIMIT
        prepared = [self._prompt + t.strip() if self._prompt else t.strip() for t in texts]
        if self._files.do_lower_case:
            prepared = [t.lower() for t in prepared]
        batch = self._tokenizer(
            prepared,
            truncation=True,
            max_length=max_len,
            padding=False,
            add_special_tokens=True,
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]
        out = []
        expand = is_query and s.do_query_expansion
        for ids in batch:
            ids = list(ids)
            if prefix_id is not None:
                ids = [*ids[:1], prefix_id, *ids[1:]]
            n_real = len(ids)
            if expand and len(ids) < length:
                ids = ids + [self._pad_id] * (length - len(ids))
            n_keys = len(ids) if (expand and s.attend_to_expansion_tokens) else n_real
            out.append((ids, n_keys, n_real))
        return out

    def _keep_mask(self, ids: np.ndarray, n_real: int, is_query: bool) -> np.ndarray:
        if is_query:
            if self._spec.do_query_expansion:
                return np.ones(len(ids), dtype=bool)
            keep = np.zeros(len(ids), dtype=bool)
            keep[:n_real] = True
            return keep
        keep = ~np.isin(ids, self._skiplist_ids)
        keep[n_real:] = False
        return keep

    def _encode(
        self, texts: Sequence[str], *, is_query: bool, batch_size: int, show_progress: bool | None
    ) -> list[MultiVector]:
        import torch

        items = check_texts(texts, what="queries" if is_query else "documents")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidInputError(f"batch_size must be a positive int, got {batch_size!r}")
        if not items:
            return []
        tokenized = self._tokenize(items, is_query)
        if not is_query:
            limit = self._spec.document_length
            n_trunc = sum(1 for ids, _, n in tokenized if n >= limit)
            if n_trunc:
                logger.info(
                    "%d of %d documents reached document_length=%d tokens and were truncated to it; "
                    "pass a larger document_length to keep more",
                    n_trunc,
                    len(items),
                    limit,
                )
        # Sort by token count so batches have little padding (outputs do not depend on batching).
        order = sorted(range(len(items)), key=lambda i: -len(tokenized[i][0]))
        batches: list[list[int]] = []
        cur: list[int] = []
        cur_tokens = 0
        for i in order:
            n = len(tokenized[i][0])
            if cur and (len(cur) >= batch_size or cur_tokens + n > _MAX_TOKENS_PER_BATCH):
                batches.append(cur)
                cur, cur_tokens = [], 0
            cur.append(i)
            cur_tokens += n
        if cur:
            batches.append(cur)
        if show_progress is None:
            show_progress = len(batches) > _PROGRESS_MIN_BATCHES
        results: list[MultiVector | None] = [None] * len(items)
        from tqdm.auto import tqdm

        bar = tqdm(
            total=len(items),
            desc="Encoding queries" if is_query else "Encoding documents",
            unit="text",
            disable=not show_progress,
        )
        try:
            with torch.inference_mode():
                for b in batches:
                    for i, vec in zip(b, self._forward([tokenized[i] for i in b], is_query), strict=True):
                        results[i] = vec
                    bar.update(len(b))
        finally:
            bar.close()
        return [r for r in results if r is not None]

    def _forward(self, batch: list[tuple[list[int], int, int]], is_query: bool) -> list[MultiVector]:
        import torch
        import torch.nn.functional as F

        dev = self._device
        keeps = [self._keep_mask(np.asarray(ids, dtype=np.int64), n_real, is_query) for ids, _, n_real in batch]
        if self._packed:
            flat = torch.tensor([t for ids, _, _ in batch for t in ids], dtype=torch.long, device=dev)
            hidden = self._model(flat, [len(ids) for ids, _, _ in batch], [nk for _, nk, _ in batch])
            keep_flat = torch.from_numpy(np.concatenate(keeps)).to(dev)
            rows = hidden[keep_flat]
        else:
            t_max = max(len(ids) for ids, _, _ in batch)
            input_ids = torch.full((len(batch), t_max), self._pad_id, dtype=torch.long)
            attn = torch.zeros((len(batch), t_max), dtype=torch.long)
            keep_pad = torch.zeros((len(batch), t_max), dtype=torch.bool)
            for j, (ids, n_keys, _) in enumerate(batch):
                input_ids[j, : len(ids)] = torch.tensor(ids)
                attn[j, :n_keys] = 1
                keep_pad[j, : len(ids)] = torch.from_numpy(keeps[j])
            kwargs: dict[str, torch.Tensor] = {"input_ids": input_ids.to(dev), "attention_mask": attn.to(dev)}
            if self._accepts_token_type_ids():
                kwargs["token_type_ids"] = torch.zeros_like(kwargs["input_ids"])
            hidden = self._model(**kwargs).last_hidden_state
            rows = hidden[keep_pad.to(dev)]
        rows = rows.float()
        if self._projection is not None:
            rows = self._projection(rows)
        rows = F.normalize(rows, p=2, dim=-1)
        out_np = rows.cpu().numpy().astype(np.float32, copy=False)
        counts = np.cumsum([int(k.sum()) for k in keeps])[:-1]
        return [np.ascontiguousarray(a) for a in np.split(out_np, counts)]

    def _accepts_token_type_ids(self) -> bool:
        cached = getattr(self, "_tt_cache", None)
        if cached is None:
            import inspect

            cached = (
                "token_type_ids" in inspect.signature(self._model.forward).parameters
                and int(self._files.config.get("type_vocab_size", 0) or 0) > 0
            )
            self._tt_cache = cached
        return bool(cached)


# ----------------------------------------------------------------------------------------------------
def _explain_plain_backbone(
    enc: ColBERTEncoder, files: CheckpointFiles, settings: dict[str, Any], *, assumed: bool
) -> None:
    """Log, once per checkpoint and settings, what a backbone without a PyLate configuration is encoded with.

    A WARNING when the prefixes are assumed (the caller gave neither), with what the tokenizer offers as
    markers; INFO when the caller chose them.
    """
    key = (str(files.root.resolve()), repr(sorted(settings.items())))
    if key in _EXPLAINED:
        return
    _EXPLAINED.add(key)
    message = describe_plain_backbone(enc.spec.name, files, settings, enc.dim)
    if assumed:
        logger.warning("%s %s", message, prefix_advice(enc.tokenizer.get_vocab()))
    else:
        logger.info("%s", message)


def _resolve_device(device: str | torch.device | None) -> torch.device:
    import torch

    if device is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise InvalidInputError(
            f"device {device!r} is not a torch device; use 'cpu', 'cuda', 'cuda:0' or 'mps'"
        ) from err
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidInputError(
                f"device {device!r} requested but CUDA is not available (torch {torch.__version__}); use device='cpu'"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InvalidInputError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise InvalidInputError(f"device {device!r} requested but MPS is not available; use device='cpu'")
    elif dev.type != "cpu":
        raise InvalidInputError(f"device type {dev.type!r} is not supported; use 'cpu', 'cuda' or 'mps'")
    return dev


def _resolve_dtype(dtype: str | torch.dtype | None, dev: torch.device) -> torch.dtype:
    import torch

    if dtype is None:
        if dev.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if dev.type == "mps":
            return torch.float16
        return torch.float32
    if isinstance(dtype, torch.dtype):
        name = str(dtype).removeprefix("torch.")
    elif isinstance(dtype, str):
        name = dtype.lower().removeprefix("torch.")
    else:
        raise InvalidInputError(f"dtype must be a str or torch.dtype, got {type(dtype).__name__}")
    if name not in _DTYPES:
        raise InvalidInputError(f"unsupported dtype {dtype!r}; use 'float32', 'bfloat16' or 'float16'")
    out = getattr(torch, _DTYPES[name])
    if out is torch.bfloat16 and dev.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise InvalidInputError("this CUDA device does not support bfloat16; use dtype='float16'")
    if out is torch.bfloat16 and dev.type == "cpu" and cpu_has_native_bf16() is False:
        logger.warning(
            "dtype='bfloat16' on a CPU without native bfloat16 instructions (avx512_bf16 / amx_bf16): "
            "PyTorch emulates it and it is usually slower than float32 here; use dtype='float32'"
        )
    return out  # type: ignore[no-any-return]


def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool | None:
    """Whether this x86 CPU computes bfloat16 natively (``avx512_bf16`` or ``amx_bf16``).

    The opt-in ``dtype="bfloat16"`` fast path pays off on CPUs with AMX (Intel Sapphire Rapids and later); it is
    slower than float32 on CPUs without native bfloat16, where PyTorch emulates it, and ``avx512_bf16`` alone
    may not make it faster (``benchmarks/results/encoder-quiet.md``): measure on your CPU.

    Returns:
        ``True`` / ``False`` when the CPU flags can be read (Linux), ``None`` when they cannot.
    """
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.partition(":")[2].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        return None
    return None
