"""The residual codec of compressed Voyager indexes (``colbert_adapters._residual``): packing, bounds, growth."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from colbert_adapters._residual import ResidualCodec, code_dtype, default_n_centroids, pack_bits, unpack_bits
from colbert_adapters.errors import InvalidInputError


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@settings(max_examples=60, deadline=None)
@given(
    nbits=st.sampled_from([2, 4]),
    data=st.data(),
)
def test_pack_unpack_round_trip_is_exact(nbits: int, data: st.DataObject) -> None:
    per = 8 // nbits
    n = data.draw(st.integers(0, 20))
    dim = per * data.draw(st.integers(1, 12))
    buckets = data.draw(arrays(np.uint8, (n, dim), elements=st.integers(0, (1 << nbits) - 1)))
    packed = pack_bits(buckets, nbits)
    assert packed.shape == (n, dim * nbits // 8)
    np.testing.assert_array_equal(unpack_bits(packed, nbits), buckets)


@settings(max_examples=25, deadline=None)
@given(nbits=st.sampled_from([2, 4]), seed=st.integers(0, 2**31), dim=st.sampled_from([8, 16, 24]))
def test_decoded_residual_within_its_bucket_width(nbits: int, seed: int, dim: int) -> None:
    """Each component's decoded value is its bucket's weight: within the bucket's width of the true residual
    (outer buckets bounded by the training residuals' range)."""
    rng = np.random.default_rng(seed)
    x = _unit(rng, 400, dim)
    codec = ResidualCodec.train(x, nbits, 16)
    codes, packed = codec.encode(x)
    residual = x - codec.centroids[codes.astype(np.intp)]
    lo = np.concatenate([residual.min(axis=0, keepdims=True).T, codec.cutoffs], axis=1)  # (dim, levels)
    hi = np.concatenate([codec.cutoffs, residual.max(axis=0, keepdims=True).T], axis=1)
    buckets = unpack_bits(packed, nbits).astype(np.intp)
    width = (hi - lo)[np.arange(dim)[None, :], buckets]
    decoded = codec.decode(codes, packed, normalise=False) - codec.centroids[codes.astype(np.intp)]
    assert np.all(np.abs(decoded - residual) <= width + 1e-5)


@pytest.mark.parametrize(("nbits", "max_error"), [(2, 0.2), (4, 0.02)])
def test_more_bits_reconstruct_closer(nbits: int, max_error: float) -> None:
    rng = np.random.default_rng(0)
    x = _unit(rng, 3000, 32)
    codec = ResidualCodec.train(x, nbits)
    codes, packed = codec.encode(x)
    decoded = codec.decode(codes, packed)
    np.testing.assert_allclose(np.linalg.norm(decoded, axis=1), 1.0, atol=1e-5)
    err = codec.reconstruction_error(x, codes, packed)
    assert float(err.mean()) < max_error
    assert float(err.mean()) == pytest.approx(codec.train_error, rel=1e-4)


def test_extend_appends_centroids_and_keeps_old_codes() -> None:
    rng = np.random.default_rng(1)
    old_topic = _unit(rng, 1, 16)
    x = old_topic + 0.2 * _unit(rng, 800, 16)
    codec = ResidualCodec.train(x / np.linalg.norm(x, axis=1, keepdims=True), 2, 32)
    codes, packed = codec.encode(x)
    far = -old_topic + 0.1 * _unit(rng, 200, 16)  # a new topic, far from every centroid
    far /= np.linalg.norm(far, axis=1, keepdims=True)
    assert (codec.residual_norms(far, codec.assign(far)) > codec.outlier_norm).all()
    grown = codec.extend(far)
    assert grown.n_centroids > codec.n_centroids
    np.testing.assert_array_equal(grown.centroids[: codec.n_centroids], codec.centroids)
    np.testing.assert_array_equal(grown.decode(codes, packed), codec.decode(codes, packed))
    new_codes, new_packed = grown.encode(far)
    assert (new_codes >= codec.n_centroids).mean() > 0.9
    assert (
        grown.reconstruction_error(far, new_codes, new_packed).mean()
        < codec.reconstruction_error(far, *codec.encode(far)).mean()
    )


def test_n_centroids_and_code_width() -> None:
    assert default_n_centroids(1_640_000) == 16384  # a power of two near 16 * sqrt(n)
    assert default_n_centroids(65_536) == 4096
    assert default_n_centroids(40) == 5  # at most n / 8
    assert default_n_centroids(0) == 1
    assert code_dtype(65_536) == np.uint16
    assert code_dtype(65_537) == np.uint32


def test_bad_codec_parameters_are_named() -> None:
    x = _unit(np.random.default_rng(2), 50, 10)
    with pytest.raises(InvalidInputError, match="nbits must be 2 or 4"):
        ResidualCodec.train(x, 3)
    with pytest.raises(InvalidInputError, match="dim=10 is not a multiple of 4"):
        ResidualCodec.train(x, 2)
    with pytest.raises(InvalidInputError, match="non-empty"):
        ResidualCodec.train(x[:0], 4)
