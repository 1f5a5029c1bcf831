"""Our encoder against PyLate 1.6.0's own outputs (tests/golden/*.npz, made by tests/golden/make_goldens.py).

Each golden file records the checkpoint build arguments (rebuilt here bit for bit: the weights digest is
checked), the encoder arguments and the call. We assert identical token counts, identical input ids and
keep masks, and max |diff| <= 1e-5 on every token vector, for several batch sizes.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from fixtures.checkpoints import weights_digest

from colbert_adapters import ColBERTEncoder
from colbert_adapters.scoring import maxsim

GOLDEN = pathlib.Path(__file__).resolve().parent / "golden"
CASES = sorted(p.stem for p in GOLDEN.glob("*.npz") if p.stem != "scores")
ATOL = 1e-5


def _load(case: str) -> tuple[dict[str, np.ndarray], list[str], dict[str, Any]]:
    with np.load(GOLDEN / f"{case}.npz") as z:
        arrays = {k: z[k] for k in z.files}
    return arrays, json.loads(str(arrays["texts_json"])), json.loads(str(arrays["meta_json"]))


def _split(flat: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    return [flat[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]


_encoders: dict[str, ColBERTEncoder] = {}


def _encoder(make_checkpoint: Callable[..., pathlib.Path], meta: dict[str, Any]) -> ColBERTEncoder:
    build = meta["checkpoint"]["build_args"]
    kwargs = {k: v for k, v in meta["encoder_from_pretrained_kwargs"].items() if v is not None}
    key = json.dumps([build, kwargs], sort_keys=True)
    if key not in _encoders:
        ckpt = make_checkpoint(**build)
        assert weights_digest(ckpt) == meta["checkpoint"]["weights_digest"], "fixture weights drifted from goldens"
        _encoders[key] = ColBERTEncoder.from_pretrained(ckpt, device="cpu", **kwargs)
    return _encoders[key]


def test_golden_cases_cover_the_spec() -> None:
    expected = {
        "queries",
        "queries_expansion",
        "queries_expansion_attend",
        "documents",
        "documents_len64",
        "documents_pool2",
        "documents_bs1",
        "documents_bs3",
        "documents_window16_len1024",
    }
    assert expected <= set(CASES)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("batch_size", [1, 4, 32])
def test_matches_pylate(make_checkpoint: Callable[..., pathlib.Path], case: str, batch_size: int) -> None:
    arrays, texts, meta = _load(case)
    enc = _encoder(make_checkpoint, meta)
    call = meta["encoder_call"]
    kwargs = {**call["kwargs"], "batch_size": batch_size}
    ours = getattr(enc, call["method"])(texts, **kwargs)
    ref = _split(arrays["embeddings"], arrays["offsets"])
    assert len(ours) == len(ref) == len(texts)
    for i, (o, r) in enumerate(zip(ours, ref, strict=True)):
        assert o.shape == r.shape, f"text {i} {texts[i][:40]!r}: {o.shape} vs PyLate {r.shape}"
        diff = float(np.abs(o - r).max())
        assert diff <= ATOL, f"text {i} {texts[i][:40]!r}: max |diff| {diff:.2e}"


@pytest.mark.parametrize("case", [c for c in CASES if "pool" not in c])
def test_tokenization_and_keep_mask_match_pylate(make_checkpoint: Callable[..., pathlib.Path], case: str) -> None:
    arrays, texts, meta = _load(case)
    enc = _encoder(make_checkpoint, meta)
    is_query = meta["kind"] == "query"
    ids_ref = _split(arrays["input_ids"], arrays["id_offsets"])
    att_ref = _split(arrays["attention_mask"], arrays["id_offsets"])
    keep_ref = _split(arrays["keep_mask"], arrays["id_offsets"])
    for i, tokenized in enumerate(enc.tokenize(texts, is_query=is_query)):
        np.testing.assert_array_equal(np.array(tokenized.ids), ids_ref[i], err_msg=f"ids of text {i}")
        att = np.zeros(len(tokenized.ids), dtype=np.int64)
        att[: tokenized.attended] = 1
        np.testing.assert_array_equal(att, att_ref[i], err_msg=f"attention of text {i}")
        np.testing.assert_array_equal(tokenized.keep, keep_ref[i])


def test_exact_maxsim_and_pylate_padding_quirk(make_checkpoint: Callable[..., pathlib.Path]) -> None:
    """Our maxsim equals PyLate's exact MaxSim; PyLate's rank.rerank differs where zero padding wins."""
    with np.load(GOLDEN / "scores.npz") as z:
        s = {k: z[k] for k in z.files}
    _, q_texts, q_meta = _load("queries")
    _, d_texts, _ = _load("documents")
    enc = _encoder(make_checkpoint, q_meta)
    queries = enc.encode_queries(q_texts)
    docs = enc.encode_documents(d_texts)
    ours = np.stack([maxsim(q, docs) for q in queries])
    np.testing.assert_allclose(ours, s["maxsim_exact"], atol=1e-4)
    quirk = np.abs(s["maxsim_rerank"] - s["maxsim_exact"]) > 1e-3
    assert quirk.any(), "the goldens should contain pairs where zero padding changes PyLate's rerank score"
    assert (np.abs(ours - s["maxsim_rerank"])[quirk] > 1e-3).all()
