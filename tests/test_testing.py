"""FakeEncoder: deterministic, protocol-conforming, and similarity-preserving."""

from __future__ import annotations

import doctest
import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import colbert_adapters.testing as testing_module
from colbert_adapters.errors import InvalidInputError
from colbert_adapters.scoring import maxsim
from colbert_adapters.testing import FakeEncoder
from colbert_adapters.types import Encoder


def test_implements_encoder_protocol() -> None:
    enc = FakeEncoder()
    assert isinstance(enc, Encoder)
    assert enc.dim == 16
    assert enc.model_id == "fake-encoder-dim16"
    assert FakeEncoder(dim=4, seed=3).model_id == "fake-encoder-dim4-seed3"


def test_shapes_dtype_and_norms() -> None:
    enc = FakeEncoder(dim=8)
    out = enc.encode_documents(["Hello, World!", "", "one two three four"])
    assert [v.shape for v in out] == [(3, 8), (1, 8), (5, 8)]
    assert all(v.dtype == np.float32 for v in out)
    for v in out:
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-6)


def test_tokenization_lowercases_words() -> None:
    assert FakeEncoder().tokenize("The CAT, the cat!") == ["[CLS]", "the", "cat", "the", "cat"]


def test_equal_texts_give_equal_multivectors_and_case_is_ignored() -> None:
    enc = FakeEncoder()
    a, b, c = enc.encode_queries(["Red apple", "red APPLE", "red apple pie"])
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c[:3])
    np.testing.assert_array_equal(enc.encode_queries(["x y"])[0], enc.encode_documents(["x y"])[0])


def test_vectors_match_the_documented_recipe() -> None:
    # Recompute one token vector independently from the documented construction.
    digest = hashlib.blake2b(b"0\x00apple", digest_size=8).digest()
    raw = np.random.default_rng(int.from_bytes(digest, "little")).standard_normal(16)
    want = (raw / np.linalg.norm(raw)).astype(np.float32)
    np.testing.assert_array_equal(FakeEncoder().encode_documents(["apple"])[0][1], want)


def test_deterministic_across_processes() -> None:
    # Python's hash() is salted per process; the encoder must not depend on it.
    code = (
        "from colbert_adapters.testing import FakeEncoder;"
        "print(FakeEncoder().encode_documents(['stable words'])[0].tobytes().hex())"
    )
    root = str(Path(__file__).resolve().parents[1])
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env={"PYTHONPATH": root, "PYTHONHASHSEED": seed},
            check=True,
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert len(outs) == 1
    assert outs == {FakeEncoder().encode_documents(["stable words"])[0].tobytes().hex()}


def test_different_dims_and_seeds_differ() -> None:
    a = FakeEncoder(dim=16).encode_documents(["word"])[0]
    b = FakeEncoder(dim=16, seed=1).encode_documents(["word"])[0]
    assert not np.allclose(a, b)
    assert FakeEncoder(dim=32).encode_documents(["word"])[0].shape == (2, 32)


def test_shared_words_score_higher() -> None:
    enc = FakeEncoder(dim=32)
    (q,) = enc.encode_queries(["solar panel efficiency"])
    docs = enc.encode_documents(["efficiency of a solar panel", "panel discussion", "medieval castle architecture"])
    s = maxsim(q, docs)
    assert s[0] > s[1] > s[2]
    assert s[0] == pytest.approx(4.0, abs=1e-5)  # [CLS] + 3 words all present


def test_returned_arrays_are_independent() -> None:
    enc = FakeEncoder()
    v = enc.encode_documents(["alpha"])[0]
    v[:] = 0
    assert np.abs(enc.encode_documents(["alpha"])[0]).sum() > 0


@pytest.mark.parametrize("texts", ["a single string", [1, 2], None, ["ok", None]])
def test_rejects_non_list_of_str(texts: Any) -> None:
    with pytest.raises(InvalidInputError):
        FakeEncoder().encode_documents(texts)


@pytest.mark.parametrize("kwargs", [{"dim": 0}, {"dim": 2.5}, {"dim": True}, {"seed": "x"}])
def test_rejects_bad_constructor_args(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError):
        FakeEncoder(**kwargs)


def test_rejects_bad_batch_size() -> None:
    with pytest.raises(InvalidInputError):
        FakeEncoder().encode_queries(["a"], batch_size=0)


def test_empty_list() -> None:
    assert FakeEncoder().encode_documents([]) == []


def test_module_doctests() -> None:
    result = doctest.testmod(testing_module)
    assert result.attempted > 0 and result.failed == 0
