"""Test doubles for code built on colbert-adapters.

:class:`FakeEncoder` implements the :class:`~colbert_adapters.types.Encoder` protocol without a model: every
word gets a fixed random unit vector derived from a hash of the word, so results are deterministic across
runs, processes and machines, and texts that share words score higher under MaxSim.

Example:
    >>> from colbert_adapters.testing import FakeEncoder
    >>> from colbert_adapters.scoring import maxsim
    >>> enc = FakeEncoder(dim=16)
    >>> q, = enc.encode_queries(["red apple"])
    >>> q.shape  # [CLS] + 2 words
    (3, 16)
    >>> a, b = enc.encode_documents(["a red apple pie", "blue sky"])
    >>> s = maxsim(q, [a, b])
    >>> bool(s[0] > s[1])
    True
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from ._validation import check_texts
from .errors import InvalidInputError
from .types import MultiVector

__all__ = ["FakeEncoder"]

_WORD = re.compile(r"\w+")


class FakeEncoder:
    """Deterministic stand-in for :class:`~colbert_adapters.encoder.ColBERTEncoder`.

    A text becomes one row for a ``[CLS]`` marker followed by one row per lowercase word (regex ``\\w+``), so
    the empty string gives a single row. Each row is an L2-normalised Gaussian vector seeded by a BLAKE2 hash
    of the token (and ``seed``), not Python's salted ``hash()``. Queries and documents are encoded the
    same way.

    Args:
        dim: dimension of the token vectors (>= 1).
        seed: changes every token vector; two encoders with the same ``dim`` and ``seed`` agree.
        document_length: most tokens (``[CLS]`` included) a document is encoded with, as
            ``ColBERTEncoder``'s; longer documents are truncated, and a store splits them into windows.
            ``None`` (default): no limit.

    Attributes:
        CLS_TOKEN: the marker token prepended to every text.
    """

    CLS_TOKEN = "[CLS]"

    def __init__(self, dim: int = 16, *, seed: int = 0, document_length: int | None = None) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise InvalidInputError(f"dim must be a positive int, got {dim!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InvalidInputError(f"seed must be an int, got {seed!r}")
        if document_length is not None and (
            isinstance(document_length, bool) or not isinstance(document_length, int) or document_length < 2
        ):
            raise InvalidInputError(f"document_length must be an int >= 2 or None, got {document_length!r}")
        self._dim = dim
        self._seed = seed
        self.document_length = document_length
        self._cache: dict[str, npt.NDArray[np.float32]] = {}

    @property
    def dim(self) -> int:
        """Dimension of the token vectors."""
        return self._dim

    @property
    def model_id(self) -> str:
        """``"fake-encoder-dim{dim}"`` (plus ``-seed{seed}`` for a non-zero seed)."""
        suffix = f"-seed{self._seed}" if self._seed else ""
        suffix += f"-d{self.document_length}" if self.document_length is not None else ""
        return f"fake-encoder-dim{self._dim}{suffix}"

    def tokenize(self, text: str) -> list[str]:
        """The tokens a text is encoded as: ``[CLS]`` then its lowercase ``\\w+`` words."""
        return [self.CLS_TOKEN, *(w.lower() for w in _WORD.findall(text))]

    def text_token_spans(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        """Each text's word ``(start, end)`` character spans (its tokens but ``[CLS]``), before truncation."""
        return [[m.span() for m in _WORD.finditer(text)] for text in check_texts(texts)]

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text (``[CLS]`` included), before truncation to ``document_length``."""
        return [len(self.tokenize(text)) for text in check_texts(texts)]

    def count_windows(self, texts: Sequence[str], *, overlap: int | None = None) -> list[int]:
        """How many windows each text makes when a store splits long documents (1: it fits)."""
        from ._windows import count_windows

        return count_windows(self, texts, overlap)

    def token_vector(self, token: str) -> npt.NDArray[np.float32]:
        """The float32 unit vector ``(dim,)`` of one token (a copy)."""
        vec = self._cache.get(token)
        if vec is None:
            digest = hashlib.blake2b(f"{self._seed}\x00{token}".encode(), digest_size=8).digest()
            rng = np.random.default_rng(int.from_bytes(digest, "little"))
            raw = rng.standard_normal(self._dim)
            vec = (raw / np.linalg.norm(raw)).astype(np.float32)
            self._cache[token] = vec
        out: MultiVector = vec.copy()
        return out

    def encode_queries(self, texts: Sequence[str], *, batch_size: int = 32) -> list[MultiVector]:
        """Encode queries.

        Args:
            texts: the query strings.
            batch_size: accepted for protocol compatibility; must be a positive int.

        Returns:
            One float32 array ``(1 + n_words, dim)`` per text, in input order.
        """
        return self._encode(texts, batch_size, "texts")

    def encode_documents(self, texts: Sequence[str], *, batch_size: int = 32) -> list[MultiVector]:
        """Encode documents; identical to :meth:`encode_queries`.

        Args:
            texts: the document strings.
            batch_size: accepted for protocol compatibility; must be a positive int.

        Returns:
            One float32 array ``(1 + n_words, dim)`` per text (at most ``document_length`` rows), in input order.
        """
        return self._encode(texts, batch_size, "texts", self.document_length)

    def _encode(self, texts: Sequence[str], batch_size: int, what: str, limit: int | None = None) -> list[MultiVector]:
        items = check_texts(texts, what=what)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidInputError(f"batch_size must be a positive int, got {batch_size!r}")
        return [np.stack([self.token_vector(t) for t in self.tokenize(text)[:limit]]) for text in items]

    def __repr__(self) -> str:
        length = f", document_length={self.document_length}" if self.document_length is not None else ""
        return f"FakeEncoder(dim={self._dim}, seed={self._seed}{length})"
