"""Unit tests of the token codecs (``colbert_adapters._codecs``) and the MaxSim kernels (``colbert_adapters._kernels``)
that the Voyager backend's exact stage, small-index scan and projected graphs use.

These are private modules; their own unit tests import them directly. The backend-level behaviour (scores of a
search equal MaxSim of the stored vectors, and so on) is in ``test_voyager_backend.py``.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from contract import unit_multivector

from colbert_adapters import _kernels
from colbert_adapters._codecs import dequantise_int14, quantise_int14, residual_planes
from colbert_adapters._kernels import doc_scale_codes, doc_scale_estimate, maxsim_int14, project, split_query
from colbert_adapters.scoring import quantise_int8


@pytest.mark.parametrize("dim", [30, 256, 384])
def test_int14_scores_equal_maxsim_of_the_decoded_tokens(monkeypatch: pytest.MonkeyPatch, dim: int) -> None:
    """The int14 exact stage (decoded below 256 dimensions; from there tokens pruned by an int8 product, the rest
    decoded) equals float64 MaxSim of the decoded tokens to float32 rounding: near-duplicate tokens (the pruning
    keeps several per document), a one-token document, an all-zero token, documents split across row groups."""

    monkeypatch.setattr(_kernels, "INT14_ROWS", 300)  # several groups, a document longer than a group
    rng = np.random.default_rng(dim)
    docs = []
    for n in [1, 5, 40, 120, 400, 77, 3, 250]:
        base = rng.standard_normal((n, dim)).astype(np.float32)
        base[n // 2 :] = base[: n - n // 2] + 1e-3 * rng.standard_normal((n - n // 2, dim)).astype(np.float32)
        docs.append(base / np.linalg.norm(base, axis=1, keepdims=True))
    docs[2][7] = 0.0
    flat = np.concatenate(docs)
    offsets = np.concatenate([[0], np.cumsum([len(d) for d in docs])]).astype(np.int64)
    scales, codes, blob = quantise_int14(flat)
    planes = residual_planes(blob, flat.shape[0], dim)
    decoded = dequantise_int14(codes, scales, *planes).astype(np.float64)
    for n_q in (1, 5, 32):
        q = unit_multivector(rng, n_q, dim)
        q[0] = 0.0 if n_q > 1 else q[0]  # an all-zero query token: scale 0
        bounds = offsets.tolist()
        want = [float((q.astype(np.float64) @ decoded[a:b].T).max(axis=1).sum()) for a, b in itertools.pairwise(bounds)]
        got = maxsim_int14(q, codes, scales, planes, offsets)
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)
        fallback = maxsim_int14(q, codes, scales, planes, offsets, decode=True)  # decoded, any dim
        np.testing.assert_allclose(fallback, want, rtol=0, atol=2e-6)


def test_int14_pruning_keeps_a_maximum_that_its_int8_codes_rank_lower() -> None:
    """The int14 stage prunes tokens by their int8 products, so its bound must cover the residuals: a token A whose
    residuals all lean towards the query (+0.48 of a code step) is the maximum although a token B whose codes sit
    higher (by 0.6 |q|_1 code units, less than the residuals' reach of 0.97 |q|_1) has the larger int8 product.
    A bound shrunk below 0.6 of the residuals' reach would prune A (checked: the test then fails)."""

    rng = np.random.default_rng(21)
    dim, scale = 384, 0.01
    q = rng.standard_normal((1, dim)).astype(np.float32)
    q[0, 0] = 0.0  # component 0 pins the token scale (code 127), outside the query
    q /= np.linalg.norm(q)
    sign = np.sign(q[0]).astype(np.int64)
    base = rng.integers(-60, 61, size=dim)
    base[0] = 127
    order = np.argsort(-np.abs(q[0]))  # B: one code step towards q where |q| is largest, until 0.6 |q|_1
    step = np.zeros(dim, dtype=np.int64)
    picked = order[np.cumsum(np.abs(q[0, order])) <= 0.6 * np.abs(q[0]).sum()]
    step[picked] = sign[picked]
    codes_a, codes_b = base, base + step
    v_a, v_b = 30 * sign, -30 * sign  # residual steps of 1/62 code
    v_a[0] = v_b[0] = 0
    tokens = np.stack([(codes_a + v_a / 62) * scale, (codes_b + v_b / 62) * scale]).astype(np.float32)
    scales, codes, blob = quantise_int14(tokens)
    np.testing.assert_array_equal(codes, np.stack([codes_a, codes_b]))  # the layout as designed
    planes = residual_planes(blob, 2, dim)
    decoded = dequantise_int14(codes, scales, *planes).astype(np.float64)
    sims = decoded @ q[0].astype(np.float64)
    assert sims[0] > sims[1] and codes[1] @ q[0] > codes[0] @ q[0]  # A is the maximum, B the larger int8 product
    offsets = np.array([0, 2], dtype=np.int64)
    got = maxsim_int14(q, codes, scales, planes, offsets)
    np.testing.assert_allclose(got, [sims[0]], rtol=0, atol=2e-6)


def test_int14_query_parts_reconstruct_the_query() -> None:
    """Two int8 query parts (the int14 stage's coarse product) reconstruct the query within max|q| / 64,516 per
    component, the bound its pruning relies on; an all-zero token stays zero."""

    rng = np.random.default_rng(3)
    q = rng.standard_normal((7, 30)).astype(np.float32)
    q[3] = 0.0
    for n_parts in (2, 3):
        scales, parts = split_query(q, n_parts)
        n = q.shape[0]
        back = sum(parts[p * n : (p + 1) * n].astype(np.float64) / 254.0**p for p in range(n_parts)) * scales[:, None]
        bound = np.abs(q).max(axis=1, keepdims=True) / 127 / (2 * 254.0 ** (n_parts - 1))
        assert (np.abs(back - q) <= bound * 1.0001 + 1e-12).all()
        assert (np.abs(back - q).max(axis=1, keepdims=True) > bound / 4)[[0, 1, 2, 4, 5, 6]].all()  # not loose
        np.testing.assert_array_equal(back[3], 0.0)


def test_query_projection_equals_the_matrix_product() -> None:
    """A projected segment's query tokens (torch, one thread) equal ``q @ proj.T``, read-only projections too."""

    rng = np.random.default_rng(8)
    q = unit_multivector(rng, 32, 384)
    proj = np.ascontiguousarray(rng.standard_normal((128, 384)).astype(np.float32))
    want = q.astype(np.float64) @ proj.T.astype(np.float64)
    np.testing.assert_allclose(project(q, proj), want, rtol=0, atol=1e-5)
    proj.flags.writeable = False
    np.testing.assert_allclose(project(q[:3], proj), want[:3], rtol=0, atol=1e-5)


def test_scan_codes_are_requantised_per_document() -> None:
    """The small-index scan's cache: each document's int8 tokens requantised with its largest token scale, every
    component within half a document step of the stored value (an all-zero document stays zero); its estimate is
    the int8 MaxSim of those codes with the query rounded to int8."""

    rng = np.random.default_rng(5)
    lens = [3, 1, 40, 7, 2]
    flat = rng.standard_normal((sum(lens), 24)).astype(np.float32) * rng.uniform(0.1, 3, (sum(lens), 1))
    flat = flat.astype(np.float32)
    flat[3] = 0.0  # the one-token document
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    scales, codes = quantise_int8(flat)
    stored = codes.astype(np.float64) * scales[:, None]
    doc_codes, doc_scales = doc_scale_codes(codes, scales, offsets)
    assert doc_codes.dtype == np.int8 and doc_scales.shape == (len(lens),)
    per_row = np.repeat(doc_scales, lens).astype(np.float64)
    np.testing.assert_allclose(doc_scales, [scales[a:b].max() for a, b in itertools.pairwise(offsets.tolist())])
    assert (np.abs(doc_codes * per_row[:, None] - stored) <= per_row[:, None] / 2 * 1.0001 + 1e-12).all()
    np.testing.assert_array_equal(doc_codes[3], 0)
    q = rng.standard_normal((6, 24)).astype(np.float32)
    q_scales, q_codes = quantise_int8(q)
    q8 = q_codes.astype(np.float64) * q_scales[:, None]
    want = [(q8 @ (doc_codes[a:b] * per_row[a:b, None]).T).max(axis=1).sum() for a, b in itertools.pairwise(offsets)]
    np.testing.assert_allclose(doc_scale_estimate(q, doc_codes, doc_scales, offsets), want, rtol=1e-5)
