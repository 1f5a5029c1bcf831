"""MaxSim scoring: hand-computed values, masking, chunking, torch/numpy agreement, rerank."""

from __future__ import annotations

import doctest
import itertools
from typing import Any

import numpy as np
import pytest
from contract import naive_maxsim, unit_multivector

import colbert_adapters._kernels as _kernels
import colbert_adapters.scoring as scoring
from colbert_adapters.errors import DimensionMismatchError, InvalidInputError
from colbert_adapters.scoring import maxsim, maxsim_batch, maxsim_flat, maxsim_int8_estimate, quantise_int8, rerank
from colbert_adapters.types import Hit

F32 = np.float32


def _ragged(rng: np.random.Generator, n: int, dim: int, max_tokens: int = 9) -> list[np.ndarray]:
    return [unit_multivector(rng, int(rng.integers(1, max_tokens + 1)), dim) for _ in range(n)]


# ---------------------------------------------------------------------------------------------- hand-computed


def test_hand_computed_example() -> None:
    q = np.array([[1, 0, 0], [0, 1, 0]], dtype=F32)
    d1 = np.array([[0.5, 0.5, 0.0], [0.0, 0.9, 0.1]], dtype=F32)  # 0.5 + 0.9
    d2 = np.array([[-1.0, 0.0, 0.0]], dtype=F32)  # -1 + 0
    d3 = np.array([[0.2, 0.1, 0.0], [0.3, -0.2, 0.0], [0.0, 0.4, 0.0]], dtype=F32)  # 0.3 + 0.4
    np.testing.assert_allclose(maxsim(q, [d1, d2, d3]), [1.4, -1.0, 0.7], atol=1e-6)


def test_result_dtype_and_shape() -> None:
    out = maxsim(np.eye(2), [np.eye(2), np.ones((3, 2))])
    assert out.dtype == np.float32
    assert out.shape == (2,)


def test_empty_documents_list() -> None:
    out = maxsim(np.eye(3, dtype=F32), [])
    assert out.shape == (0,) and out.dtype == np.float32


def test_accepts_lists_and_torch_tensors() -> None:
    torch = pytest.importorskip("torch")
    q = [[1.0, 0.0], [0.0, 1.0]]
    docs = [torch.tensor([[0.0, 1.0]]), [[1.0, 0.0], [0.0, 0.5]]]
    np.testing.assert_allclose(maxsim(q, docs), [0.0 + 1.0, 1.0 + 0.5])


@pytest.mark.parametrize("seed", range(5))
def test_matches_naive_double_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    dim = int(rng.integers(2, 40))
    q = unit_multivector(rng, int(rng.integers(1, 33)), dim)
    docs = _ragged(rng, int(rng.integers(1, 30)), dim, max_tokens=40)
    np.testing.assert_allclose(maxsim(q, docs), [naive_maxsim(q, d) for d in docs], atol=1e-5)


# ---------------------------------------------------------------------------------------------- masking


def test_ragged_masking_differs_from_pylate_zero_padding() -> None:
    # Query token 0 is anti-aligned with every token of the short document: its exact maximum is negative.
    q = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=F32)
    short = np.array([[-0.6, 0.8]], dtype=F32)  # token 0: -0.6, token 1: 0.8
    long = np.array([[0.6, 0.8], [0.0, -1.0], [-1.0, 0.0]], dtype=F32)  # 0.6 + 0.8
    exact = [-0.6 + 0.8, 0.6 + 0.8]
    np.testing.assert_allclose(maxsim(q, [short, long]), exact, atol=1e-6)

    # PyLate's rank.rerank: pad to the longest document with zero vectors, no mask.
    padded = np.zeros((2, 3, 2), dtype=F32)
    padded[0, :1] = short
    padded[1] = long
    pylate = np.einsum("sh,bth->bst", q, padded).max(-1).sum(-1)
    np.testing.assert_allclose(pylate, [0.0 + 0.8, 0.6 + 0.8], atol=1e-6)
    assert not np.isclose(maxsim(q, [short, long])[0], pylate[0])


def test_torch_masks_with_minus_inf_not_zero() -> None:
    torch = pytest.importorskip("torch")
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    padded = torch.zeros((2, 3, 2))
    padded[0, 0] = torch.tensor([-0.6, 0.8])
    padded[1] = torch.tensor([[0.6, 0.8], [0.0, -1.0], [-1.0, 0.0]])
    mask = torch.tensor([[True, False, False], [True, True, True]])
    out = scoring.maxsim_torch(q, padded, mask)
    np.testing.assert_allclose(out.numpy(), [0.2, 1.4], atol=1e-6)
    # Without the mask the zero padding wins for the short document (PyLate's behaviour).
    np.testing.assert_allclose(scoring.maxsim_torch(q, padded).numpy(), [0.8, 1.4], atol=1e-6)


# ---------------------------------------------------------------------------------------------- flat / chunks


def test_maxsim_flat_matches_maxsim() -> None:
    rng = np.random.default_rng(1)
    docs = _ragged(rng, 12, 7)
    q = unit_multivector(rng, 4, 7)
    offsets = np.concatenate([[0], np.cumsum([d.shape[0] for d in docs])])
    np.testing.assert_allclose(maxsim_flat(q, np.concatenate(docs), offsets), maxsim(q, docs), atol=1e-6)
    np.testing.assert_allclose(
        maxsim_flat(q, np.concatenate(docs), offsets.tolist(), validate=False), maxsim(q, docs), atol=1e-6
    )


@pytest.mark.parametrize("budget", [1, 3, 7, 10, 64])
def test_chunking_gives_identical_results(monkeypatch: pytest.MonkeyPatch, budget: int) -> None:
    # A tiny budget forces chunks that split documents (including documents spanning several chunks).
    rng = np.random.default_rng(2)
    docs = _ragged(rng, 15, 5, max_tokens=12)
    queries = [unit_multivector(rng, n, 5) for n in (1, 3, 4)]
    want_single = [naive_maxsim(queries[1], d) for d in docs]
    want_batch = [[naive_maxsim(q, d) for d in docs] for q in queries]
    monkeypatch.setattr(_kernels, "MAX_CHUNK_ENTRIES", budget)
    np.testing.assert_allclose(maxsim(queries[1], docs), want_single, atol=1e-5)
    np.testing.assert_allclose(maxsim_batch(queries, docs), want_batch, atol=1e-5)


@pytest.mark.parametrize("budget", [3, 1 << 24])
def test_maxsim_flat_int8_codes_with_row_scales(monkeypatch: pytest.MonkeyPatch, budget: int) -> None:
    """int8 codes scaled per row score exactly like the float32 rows they stand for (also across chunks)."""
    rng = np.random.default_rng(4)
    codes = rng.integers(-127, 128, size=(40, 6)).astype(np.int8)
    scales = rng.uniform(0.001, 0.01, size=40).astype(F32)
    offsets = np.array([0, 3, 4, 17, 30, 40])
    q = unit_multivector(rng, 5, 6)
    dequantised = codes.astype(F32) * scales[:, None]
    monkeypatch.setattr(_kernels, "MAX_CHUNK_ENTRIES", budget)
    want = [naive_maxsim(q, dequantised[a:b]) for a, b in itertools.pairwise(offsets)]
    np.testing.assert_allclose(maxsim_flat(q, codes, offsets, row_scales=scales), want, atol=1e-6)
    # float16 rows take row scales too
    half = dequantised.astype(np.float16)
    ones = np.ones(40, dtype=F32)
    np.testing.assert_allclose(
        maxsim_flat(q, half, offsets, row_scales=ones), maxsim_flat(q, half.astype(F32), offsets), atol=1e-6
    )
    with pytest.raises(InvalidInputError, match="row_scales"):
        maxsim_flat(q, codes, offsets)  # codes without their scales are not vectors
    with pytest.raises(InvalidInputError, match=r"shape \(40,\)"):
        maxsim_flat(q, codes, offsets, row_scales=scales[:-1])
    bad = scales.copy()
    bad[3] = np.inf
    with pytest.raises(InvalidInputError, match="NaN or inf"):
        maxsim_flat(q, codes, offsets, row_scales=bad)


def test_quantise_int8_bound_and_zero_rows() -> None:
    rng = np.random.default_rng(7)
    x = np.vstack([rng.standard_normal((20, 16)), np.zeros((1, 16))]).astype(F32)
    scales, codes = quantise_int8(x)
    assert scales.dtype == F32 and codes.dtype == np.int8 and codes.shape == x.shape
    assert (np.abs(codes.astype(F32) * scales[:, None] - x) <= scales[:, None] / 2 + 1e-7).all()
    assert (np.abs(codes[:-1]).max(axis=1) == 127).all()  # each row's largest component uses the full range
    assert scales[-1] == 0 and not codes[-1].any()


def _rounded_query(q: np.ndarray) -> np.ndarray:
    """The query as maxsim_int8_estimate sees it: each token rounded to int8 with its own max|x| / 127 scale."""
    s = np.abs(q).max(axis=1) / 127.0
    return (np.rint(q / s[:, None]) * s[:, None]).astype(np.float64)


@pytest.mark.parametrize("budget", [4 * 5 * 3, 1 << 24])
def test_maxsim_int8_estimate_is_maxsim_of_the_rounded_query(monkeypatch: pytest.MonkeyPatch, budget: int) -> None:
    """The estimate is exact MaxSim between the int8-rounded query and the dequantised codes (also when the
    documents are processed in groups of a few rows, a long document on its own), within the stated bound of
    the exact scores, on the store's strided record layout and on read-only codes."""
    rng = np.random.default_rng(8)
    dim = 24
    offsets = np.array([0, 3, 4, 17, 30, 40, 41])
    rec = np.empty(41, dtype=np.dtype([("scale", "<f4"), ("codes", np.int8, (dim,))]))
    rec["codes"] = rng.integers(-127, 128, size=(41, dim))
    rec["scale"] = rng.uniform(0.001, 0.01, size=41)
    codes, scales = rec["codes"], rec["scale"]  # strided views, as the Voyager store hands them over
    q = unit_multivector(rng, 5, dim)
    deq = codes.astype(np.float64) * scales[:, None].astype(np.float64)
    monkeypatch.setattr(_kernels, "MAX_CHUNK_ENTRIES", budget)
    got = maxsim_int8_estimate(q, codes, scales, offsets)
    assert got.dtype == F32 and got.shape == (6,)
    rq = _rounded_query(q)
    want = [float((rq @ deq[a:b].T).max(axis=1).sum()) for a, b in itertools.pairwise(offsets)]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    exact = maxsim_flat(q, codes, offsets, row_scales=scales)
    q_step = np.abs(q).max(axis=1) / 127.0
    row_l1 = scales * np.abs(codes.astype(np.float32)).sum(axis=1)
    bound = [(q_step / 2).sum() * row_l1[a:b].max() for a, b in itertools.pairwise(offsets)]
    assert (np.abs(got - exact) <= np.array(bound) + 1e-6).all()
    assert not np.allclose(got, exact, atol=1e-7)  # the query really is rounded
    frozen = np.array(codes)
    frozen.setflags(write=False)
    np.testing.assert_array_equal(maxsim_int8_estimate(q, frozen, scales, offsets), got)
    # A query rounded by the caller (quantise_int8) gives the same estimate.
    np.testing.assert_array_equal(maxsim_int8_estimate(q, codes, scales, offsets, query_int8=quantise_int8(q)), got)


def test_maxsim_int8_estimate_ranks_like_exact_maxsim() -> None:
    """On int8-quantised unit vectors the estimate keeps every exact top-10 document within its top 20."""
    rng = np.random.default_rng(9)
    docs = [unit_multivector(rng, int(rng.integers(5, 40)), 64) for _ in range(400)]
    flat = np.concatenate(docs)
    offsets = np.concatenate([[0], np.cumsum([d.shape[0] for d in docs])])
    scales, codes = quantise_int8(flat)
    for _ in range(10):
        q = unit_multivector(rng, 8, 64)
        exact = maxsim_flat(q, codes, offsets, row_scales=scales)
        est = maxsim_int8_estimate(q, codes, scales, offsets, num_threads=1)
        assert np.abs(est - exact).max() < 1e-2
        assert set(np.argsort(-exact)[:10]) <= set(np.argsort(-est)[:20])


def test_maxsim_int8_estimate_edge_cases_and_errors() -> None:
    rng = np.random.default_rng(10)
    codes = rng.integers(-127, 128, size=(6, 4)).astype(np.int8)
    scales = np.full(6, 0.01, dtype=F32)
    q = unit_multivector(rng, 2, 4)
    assert maxsim_int8_estimate(q, codes[:0], scales[:0], [0]).shape == (0,)
    zero_token = np.vstack([q, np.zeros((1, 4), dtype=F32)])  # a zero query token adds 0
    np.testing.assert_allclose(
        maxsim_int8_estimate(zero_token, codes, scales, [0, 2, 6]), maxsim_int8_estimate(q, codes, scales, [0, 2, 6])
    )
    with pytest.raises(InvalidInputError, match="int8"):
        maxsim_int8_estimate(q, codes.astype(F32), scales, [0, 6])
    with pytest.raises(InvalidInputError, match=r"shape \(6,\)"):
        maxsim_int8_estimate(q, codes, scales[:-1], [0, 6])
    with pytest.raises(InvalidInputError, match="offsets"):
        maxsim_int8_estimate(q, codes, scales, [0, 5])
    with pytest.raises(DimensionMismatchError, match="dimension"):
        maxsim_int8_estimate(unit_multivector(rng, 2, 5), codes, scales, [0, 6])
    q_scales, q_codes = quantise_int8(q)
    with pytest.raises(InvalidInputError, match="query_int8"):
        maxsim_int8_estimate(q, codes, scales, [0, 6], query_int8=(q_scales, q_codes[:1]))
    with pytest.raises(InvalidInputError, match="query_int8"):
        maxsim_int8_estimate(q, codes, scales, [0, 6], query_int8=(q_scales[:1], q_codes))
    with pytest.raises(InvalidInputError, match="query_int8"):
        maxsim_int8_estimate(q, codes, scales, [0, 6], query_int8=(q_scales, q_codes.astype(np.int16)))


def test_maxsim_flat_num_threads_is_local_and_restored() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    docs = _ragged(rng, 10, 4)
    flat = np.concatenate(docs)
    offsets = np.concatenate([[0], np.cumsum([d.shape[0] for d in docs])])
    q = unit_multivector(rng, 3, 4)
    before = torch.get_num_threads()
    want = [naive_maxsim(q, d) for d in docs]
    np.testing.assert_allclose(maxsim_flat(q, flat, offsets, num_threads=1), want, atol=1e-6)
    assert torch.get_num_threads() == before
    for bad in (0, -1, 1.5, True):
        with pytest.raises(InvalidInputError, match="num_threads"):
            maxsim_flat(q, flat, offsets, num_threads=bad)


def test_maxsim_flat_read_only_rows_use_the_numpy_product() -> None:
    rng = np.random.default_rng(5)
    docs = _ragged(rng, 8, 4)
    flat = np.concatenate(docs)
    flat.setflags(write=False)  # e.g. np.frombuffer over bytes: torch cannot wrap it, NumPy computes it
    offsets = np.concatenate([[0], np.cumsum([d.shape[0] for d in docs])])
    q = unit_multivector(rng, 3, 4)
    np.testing.assert_allclose(maxsim_flat(q, flat, offsets), [naive_maxsim(q, d) for d in docs], atol=1e-6)


def test_maxsim_flat_empty_collection() -> None:
    out = maxsim_flat(np.eye(3), np.zeros((0, 3), dtype=F32), [0])
    assert out.shape == (0,)


@pytest.mark.parametrize(
    ("offsets", "match"),
    [
        ([0, 2, 2, 5], "no token vectors"),
        ([1, 3, 5], "start at 0"),
        ([0, 3, 4], "end at"),
        ([0, 4, 3, 5], "strictly increasing"),
        ([[0, 5]], "1-D integer"),
        ([0.0, 5.0], "1-D integer"),
        ([], "1-D integer"),
    ],
)
def test_maxsim_flat_rejects_bad_offsets(offsets: Any, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        maxsim_flat(np.eye(2), np.ones((5, 2), dtype=F32), np.asarray(offsets))


def test_maxsim_flat_validation() -> None:
    flat = np.ones((3, 2), dtype=F32)
    with pytest.raises(DimensionMismatchError):
        maxsim_flat(np.eye(3), flat, [0, 3])
    with pytest.raises(InvalidInputError):
        maxsim_flat(np.eye(2), np.ones(6, dtype=F32), [0, 6])
    bad = flat.copy()
    bad[1, 1] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        maxsim_flat(np.eye(2), bad, [0, 3])


# ---------------------------------------------------------------------------------------------- batch


def test_maxsim_batch_matches_loop() -> None:
    rng = np.random.default_rng(3)
    docs = _ragged(rng, 9, 6)
    queries = [unit_multivector(rng, n, 6) for n in (1, 5, 2, 8)]
    out = maxsim_batch(queries, docs)
    assert out.shape == (4, 9) and out.dtype == np.float32
    np.testing.assert_allclose(out, [[naive_maxsim(q, d) for d in docs] for q in queries], atol=1e-5)


def test_maxsim_batch_empty_inputs() -> None:
    assert maxsim_batch([], [np.eye(2)]).shape == (0, 1)
    assert maxsim_batch([np.eye(2)], []).shape == (1, 0)


def test_maxsim_batch_errors() -> None:
    with pytest.raises(DimensionMismatchError):
        maxsim_batch([np.eye(2), np.eye(3)], [np.eye(2)])
    with pytest.raises(InvalidInputError, match="wrap it"):
        maxsim_batch(np.eye(2), [np.eye(2)])


# ---------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("query", "docs", "error"),
    [
        (np.eye(2), [np.eye(3)], DimensionMismatchError),
        (np.eye(2), [np.zeros((0, 2))], InvalidInputError),
        (np.zeros((0, 2)), [np.eye(2)], InvalidInputError),
        (np.ones(2), [np.eye(2)], InvalidInputError),
        (np.eye(2), [np.ones(2)], InvalidInputError),
        (np.eye(2), [np.array([[np.nan, 0.0]])], InvalidInputError),
        (np.eye(2), [[[1.0, 0.0], [1.0]]], InvalidInputError),
        (np.eye(2), np.eye(2), InvalidInputError),
        (np.eye(2), "abc", InvalidInputError),
    ],
    ids=["dim", "empty-doc", "empty-query", "1d-query", "1d-doc", "nan", "ragged", "single-2d", "str"],
)
def test_maxsim_errors(query: Any, docs: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        maxsim(query, docs)


def test_error_names_the_offending_document() -> None:
    with pytest.raises(InvalidInputError, match=r"documents\[1\]"):
        maxsim(np.eye(2), [np.eye(2), np.zeros((0, 2))])


# ---------------------------------------------------------------------------------------------- torch


def test_torch_list_and_padded_agree_with_numpy() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    docs = _ragged(rng, 10, 8)
    q = unit_multivector(rng, 5, 8)
    want = maxsim(q, docs)
    got_list = scoring.maxsim_torch(torch.from_numpy(q), [torch.from_numpy(d) for d in docs])
    np.testing.assert_allclose(got_list.numpy(), want, atol=1e-5)
    t = max(d.shape[0] for d in docs)
    padded = torch.zeros((10, t, 8))
    mask = torch.zeros((10, t), dtype=torch.bool)
    for i, d in enumerate(docs):
        padded[i, : d.shape[0]] = torch.from_numpy(d)
        mask[i, : d.shape[0]] = True
    np.testing.assert_allclose(scoring.maxsim_torch(torch.from_numpy(q), padded, mask).numpy(), want, atol=1e-5)
    # An int 0/1 mask works too.
    np.testing.assert_allclose(scoring.maxsim_torch(torch.from_numpy(q), padded, mask.int()).numpy(), want, atol=1e-5)


def test_maxsim_padded_torch_matches_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    docs = _ragged(rng, 7, 4)
    queries = [unit_multivector(rng, n, 4) for n in (3, 1, 6)]
    want = maxsim_batch(queries, docs)

    def pad(arrs: list[np.ndarray]) -> tuple[Any, Any]:
        t = max(a.shape[0] for a in arrs)
        x = torch.full((len(arrs), t, 4), 7.0)  # garbage padding must not matter
        m = torch.zeros((len(arrs), t), dtype=torch.bool)
        for i, a in enumerate(arrs):
            x[i, : a.shape[0]] = torch.from_numpy(a)
            m[i, : a.shape[0]] = True
        return x, m

    qx, qm = pad(queries)
    dx, dm = pad(docs)
    np.testing.assert_allclose(scoring.maxsim_padded_torch(qx, qm, dx, dm).numpy(), want, atol=1e-5)
    monkeypatch.setattr(_kernels, "MAX_CHUNK_ENTRIES", 5)  # one document per chunk
    np.testing.assert_allclose(scoring.maxsim_padded_torch(qx, qm, dx, dm).numpy(), want, atol=1e-5)


def test_torch_empty_list_and_device() -> None:
    torch = pytest.importorskip("torch")
    out = scoring.maxsim_torch(torch.eye(2), [])
    assert out.shape == (0,)
    q = torch.eye(2, dtype=torch.float64)
    res = scoring.maxsim_torch(q, [torch.eye(2, dtype=torch.float64)])
    assert res.dtype == torch.float64 and res.device == q.device
    assert res.tolist() == [2.0]


def test_torch_errors() -> None:
    torch = pytest.importorskip("torch")
    with pytest.raises(DimensionMismatchError):
        scoring.maxsim_torch(torch.eye(2), [torch.eye(3)])
    with pytest.raises(InvalidInputError):
        scoring.maxsim_torch(torch.eye(2), [torch.zeros((0, 2))])
    with pytest.raises(InvalidInputError):
        scoring.maxsim_torch(torch.ones(2), [torch.eye(2)])
    with pytest.raises(InvalidInputError, match="no real token"):
        scoring.maxsim_torch(torch.eye(2), torch.ones((2, 3, 2)), torch.tensor([[1, 0, 0], [0, 0, 0]]))
    with pytest.raises(InvalidInputError, match="shape"):
        scoring.maxsim_torch(torch.eye(2), torch.ones((2, 3, 2)), torch.ones((2, 2)))
    with pytest.raises(InvalidInputError, match="only applies"):
        scoring.maxsim_torch(torch.eye(2), [torch.eye(2)], torch.ones((1, 2)))
    with pytest.raises(DimensionMismatchError):
        scoring.maxsim_padded_torch(torch.ones((1, 2, 3)), None, torch.ones((1, 2, 4)), None)
    with pytest.raises(InvalidInputError):
        scoring.maxsim_padded_torch(torch.ones((2, 3)), None, torch.ones((1, 2, 3)), None)


def test_scoring_module_does_not_import_torch_at_import_time() -> None:
    import subprocess
    import sys
    from pathlib import Path

    code = "import sys, colbert_adapters.scoring; assert 'torch' not in sys.modules"
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(root)},
        check=False,
    )
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------------------------------------- rerank


def test_rerank_orders_by_score() -> None:
    q = np.array([[1.0, 0.0]], dtype=F32)
    docs = [np.array([[0.1, 0.9]]), np.array([[0.9, 0.1]]), np.array([[-1.0, 0.0]]), np.array([[0.5, 0.5]])]
    hits = rerank(q, docs, ["a", "b", "c", "d"])
    assert [h.id for h in hits] == ["b", "d", "a", "c"]
    np.testing.assert_allclose([h.score for h in hits], [0.9, 0.5, 0.1, -1.0], atol=1e-6)
    assert all(isinstance(h, Hit) for h in hits)


def test_rerank_ties_keep_input_order() -> None:
    same = np.array([[0.6, 0.8]], dtype=F32)
    better = np.array([[1.0, 0.0]], dtype=F32)
    hits = rerank(np.array([[1.0, 0.0]]), [same, same, better, same], ["x", "y", "best", "z"])
    assert [h.id for h in hits] == ["best", "x", "y", "z"]


@pytest.mark.parametrize(("k", "n"), [(None, 4), (1, 1), (3, 3), (4, 4), (10, 4)])
def test_rerank_k(k: int | None, n: int) -> None:
    rng = np.random.default_rng(6)
    docs = _ragged(rng, 4, 3)
    q = unit_multivector(rng, 2, 3)
    hits = rerank(q, docs, ["a", "b", "c", "d"], k=k)
    assert len(hits) == n
    naive = sorted(((naive_maxsim(q, d), i) for i, d in zip("abcd", docs, strict=True)), reverse=True)
    assert [h.id for h in hits] == [i for _, i in naive[:n]]


def test_rerank_texts_and_metadata() -> None:
    hits = rerank(
        np.array([[1.0, 0.0]]),
        [np.array([[0.0, 1.0]]), np.array([[1.0, 0.0]])],
        ["a", "b"],
        texts=["ta", "tb"],
        metadatas=[{"m": 1}, None],
    )
    assert [(h.id, h.text, dict(h.metadata)) for h in hits] == [("b", "tb", {}), ("a", "ta", {"m": 1})]


def test_rerank_empty() -> None:
    assert rerank(np.eye(2), [], []) == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ids": ["a"]}, "1 ids for 2"),
        ({"ids": ["a", "b"], "k": 0}, "k must be"),
        ({"ids": ["a", 2]}, "ids must be str"),
        ({"ids": ["a", "b"], "texts": ["x"]}, "1 texts for 2"),
        ({"ids": ["a", "b"], "metadatas": [{}, {}, {}]}, "3 metadatas for 2"),
    ],
)
def test_rerank_errors(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        rerank(np.eye(2), [np.eye(2), np.eye(2)], **kwargs)


# ---------------------------------------------------------------------------------------------- doctest


def test_module_doctests() -> None:
    result = doctest.testmod(scoring, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 5
    assert result.failed == 0


@pytest.mark.parametrize("chunk_bytes", [None, 3 * 4 * 8])  # default; 3 rows per chunk (documents straddle)
def test_float16_tokens_scored_as_their_float32_values(
    monkeypatch: pytest.MonkeyPatch, chunk_bytes: int | None
) -> None:
    """maxsim_flat takes float16 token rows as they are (widened chunk by chunk, no full float32 copy)."""
    rng = np.random.default_rng(11)
    docs = [unit_multivector(rng, int(n), 8) for n in rng.integers(1, 7, size=9)]
    half = [d.astype(np.float16) for d in docs]
    offsets = np.concatenate([[0], np.cumsum([d.shape[0] for d in half])])
    q = unit_multivector(rng, 4, 8)
    if chunk_bytes is not None:
        monkeypatch.setattr(_kernels, "ROW_CHUNK_BYTES", chunk_bytes)
    got = maxsim_flat(q, np.concatenate(half), offsets)
    want = [naive_maxsim(q, h.astype(np.float32)) for h in half]
    np.testing.assert_allclose(got, want, atol=1e-5)
    with pytest.raises(InvalidInputError, match="NaN"):
        bad = np.concatenate(half)
        bad[2, 1] = np.nan
        maxsim_flat(q, bad, offsets)
