"""Hostile input on every backend: either a clear error and the index unchanged, or stored and returned identically.

The limits are those of :mod:`colbert_adapters.limits`, enforced by the one validation layer every backend calls
before it writes anything.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _backends import BACKEND_NAMES, make_backend
from contract import unit_multivector
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from colbert_adapters.errors import ColBERTError, InvalidInputError
from colbert_adapters.limits import (
    MAX_ID_CHARS,
    MAX_K,
    MAX_KEY_CHARS,
    MAX_METADATA_DEPTH,
    MAX_TEXT_CHARS,
    METADATA_INT_RANGE,
)

DIM = 8


def _nested(depth: int) -> dict[str, Any]:
    """A metadata dict ``depth`` levels deep (the top level counts as 1)."""
    value: Any = "leaf"
    for _ in range(depth - 1):
        value = {"k": value}
    return {"k": value}


def _baseline(backend: Any) -> list[tuple[str, str | None, dict[str, Any], np.ndarray]]:
    rng = np.random.default_rng(0)
    ids = ["a", "b", "c"]
    vecs = [unit_multivector(rng, 3, DIM) for _ in ids]
    backend.upsert(ids, vecs, texts=["x", "y", "z"], metadatas=[{"n": i} for i in range(3)])
    return [(r.id, r.text, dict(r.metadata), np.asarray(r.vectors)) for r in backend.get(ids, with_vectors=True)]


def _snapshot(backend: Any) -> list[tuple[str, str | None, dict[str, Any], np.ndarray]]:
    ids = sorted(backend.ids())
    return [(r.id, r.text, dict(r.metadata), np.asarray(r.vectors)) for r in backend.get(ids, with_vectors=True)]


def _same(a: list[Any], b: list[Any]) -> bool:
    return len(a) == len(b) and all(
        x[0] == y[0] and x[1] == y[1] and x[2] == y[2] and np.array_equal(x[3], y[3]) for x, y in zip(a, b, strict=True)
    )


def _vec(seed: int = 1) -> np.ndarray:
    return unit_multivector(np.random.default_rng(seed), 2, DIM)


#: (name, upsert kwargs, error message fragment): every one is refused, on every backend.
BAD_UPSERTS: list[tuple[str, dict[str, Any], str]] = [
    ("id with NUL", {"ids": ["a\x00b"]}, "NUL"),
    ("id with a surrogate", {"ids": ["x\ud800"]}, "surrogate"),
    ("id too long", {"ids": ["x" * (MAX_ID_CHARS + 1)]}, "at most"),
    ("metadata too deep", {"metadatas": [_nested(MAX_METADATA_DEPTH + 1)]}, "levels deep"),
    ("metadata nested 1,500 levels", {"metadatas": [_nested(1500)]}, "levels deep"),
    ("metadata int beyond int64", {"metadatas": [{"n": METADATA_INT_RANGE[1] + 1}]}, "64-bit"),
    ("metadata int below int64", {"metadatas": [{"n": METADATA_INT_RANGE[0] - 1}]}, "64-bit"),
    ("metadata str with a surrogate", {"metadatas": [{"s": "bad\udc80"}]}, "surrogate"),
    ("metadata key with a surrogate", {"metadatas": [{"k\udc80": 1}]}, "surrogate"),
    ("metadata key too long", {"metadatas": [{"a": {"k" * (MAX_KEY_CHARS + 1): 1}}]}, "at most 256 characters"),
    ("text too long", {"texts": ["x" * (MAX_TEXT_CHARS + 1)]}, "characters"),
    ("text with a surrogate", {"texts": ["bad\udfff"]}, "surrogate"),
    ("complex vectors", {"vectors": [_vec().astype(np.complex64) + 1j]}, "complex"),
    ("NaN in metadata", {"metadatas": [{"x": math.nan}]}, "non-finite"),
]


@pytest.mark.parametrize("backend_name", BACKEND_NAMES)
@pytest.mark.parametrize("case", BAD_UPSERTS, ids=[c[0] for c in BAD_UPSERTS])
def test_bad_input_is_refused_and_nothing_changes(
    backend_name: str, case: tuple[str, dict[str, Any], str], tmp_path: Path
) -> None:
    _, overrides, fragment = case
    backend = make_backend(backend_name, tmp_path, DIM)
    try:
        before = _baseline(backend)
        args: dict[str, Any] = {"ids": ["new"], "vectors": [_vec()], "texts": ["t"], "metadatas": [{"ok": 1}]}
        args.update(overrides)
        # A bad item second in a batch: the good one before it must not be written either.
        batch = {key: [good, *value] for (key, value), good in zip(
            args.items(), ("good", _vec(2), "g", {"ok": 2}), strict=True)}  # fmt: skip
        for call in (args, batch):
            with pytest.raises(InvalidInputError, match=fragment):
                backend.upsert(call["ids"], call["vectors"], texts=call["texts"], metadatas=call["metadatas"])
        assert _same(_snapshot(backend), before)
    finally:
        backend.close()


@pytest.mark.parametrize("backend_name", BACKEND_NAMES)
def test_hostile_searches_get_clear_errors(backend_name: str, tmp_path: Path) -> None:
    backend = make_backend(backend_name, tmp_path, DIM)
    try:
        _baseline(backend)
        q = _vec(3)
        for k in (2**64, MAX_K + 1, 0, -1, True, 2.0):
            with pytest.raises(InvalidInputError, match="k must"):
                backend.search(q, k=k)
        assert len(backend.search(q, k=MAX_K)) == 3  # the largest k is fine: every document
        with pytest.raises(InvalidInputError, match="surrogate"):
            backend.search(q, k=3, filter={"n\ud800": 1})
        with pytest.raises(InvalidInputError, match="surrogate"):
            backend.search(q, k=3, filter={"n": "\ud800"})
        with pytest.raises(InvalidInputError, match="longer than 256"):
            backend.search(q, k=3, filter={"k" * (MAX_KEY_CHARS + 1): 1})
        with pytest.raises(InvalidInputError, match="complex"):
            backend.search(q.astype(np.complex64), k=3)
        with pytest.raises(InvalidInputError, match="NUL"):
            backend.delete(["a\x00"])
        assert backend.count() == 3
    finally:
        backend.close()


@pytest.mark.parametrize("backend_name", BACKEND_NAMES)
def test_metadata_at_the_limits_round_trips_through_a_reopen(backend_name: str, tmp_path: Path) -> None:
    """The deepest metadata and the widest integers allowed are stored exactly, and a persistent index that holds
    them opens again (Qdrant Edge's WAL reader once refused deeply nested payloads)."""
    meta = {
        **_nested(MAX_METADATA_DEPTH),
        "lo": METADATA_INT_RANGE[0],
        "hi": METADATA_INT_RANGE[1],
        "s": "é\u2028",
        "k" * MAX_KEY_CHARS: True,
    }
    doc_id = "é" * MAX_ID_CHARS
    backend = make_backend(backend_name, tmp_path, DIM)
    backend.upsert([doc_id], [_vec()], texts=["t\x00ext"], metadatas=[meta])
    (rec,) = backend.get([doc_id])
    assert rec.metadata == meta and rec.text == "t\x00ext"
    reopened = _reopen(backend_name, backend, tmp_path)
    try:
        (rec,) = reopened.get([doc_id])
        assert rec.metadata == meta and rec.text == "t\x00ext"
    finally:
        reopened.close()


def _reopen(backend_name: str, backend: Any, tmp_path: Path) -> Any:
    """Close ``backend`` and open its files again (a memory backend is saved and loaded)."""
    from colbert_adapters.backends import MemoryBackend, open_backend

    if backend_name == "memory":
        backend.save(tmp_path / "saved")
        backend.close()
        return MemoryBackend.load(tmp_path / "saved")
    if backend_name == "qdrant_local":
        return backend  # in-process only: nothing to reopen
    backend.close()
    return open_backend(tmp_path / backend_name)


#: Any code point, surrogates included, and the ones that broke backends before.
_chars = st.characters(exclude_categories=()) | st.sampled_from(["\x00", "\ud800", "\udfff", "\u2028", "\x85"])
_text = st.text(alphabet=_chars, max_size=8)
_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | _text
)
_json = st.recursive(
    _json_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)  # fmt: skip


@pytest.mark.parametrize("backend_name", ["memory", "voyager", "qdrant_edge"])
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    doc_id=st.text(alphabet=_chars, max_size=12),
    text=st.one_of(st.none(), st.text(alphabet=_chars, max_size=20)),
    metadata=st.dictionaries(_text, _json, max_size=3),
)
def test_any_input_is_refused_cleanly_or_stored_exactly(
    backend_name: str, tmp_path_factory: pytest.TempPathFactory, doc_id: str, text: str | None, metadata: dict[str, Any]
) -> None:
    """Random ids, texts and metadata (NUL, surrogates, big integers, NaN included): either a ColBERTError and the
    index unchanged, or the document comes back identically, after a reopen too."""
    tmp_path = tmp_path_factory.mktemp("h")
    backend = make_backend(backend_name, tmp_path, DIM)
    try:
        before = _baseline(backend)
        try:
            backend.upsert([doc_id], [_vec()], texts=[text], metadatas=[metadata])
        except ColBERTError:
            assert _same(_snapshot(backend), before)
            return
        (rec,) = backend.get([doc_id])
        assert rec.text == text and _json_equal(dict(rec.metadata), metadata, backend_name)
    finally:
        backend.close()
    reopened = _reopen(backend_name, backend, tmp_path) if backend_name != "memory" else None
    if reopened is not None:
        try:
            (rec,) = reopened.get([doc_id])
            assert rec.text == text and _json_equal(dict(rec.metadata), metadata, backend_name)
        finally:
            reopened.close()


def _json_equal(got: Any, want: Any, backend_name: str) -> bool:
    """Equal JSON values; Qdrant's JSON parser may round a float's last bit (found by this test), so floats there
    compare within 2 ulp. Everything else is exact."""
    if isinstance(want, float) and isinstance(got, float) and backend_name.startswith("qdrant"):
        return got == want or math.isclose(got, want, rel_tol=4.5e-16, abs_tol=0.0)
    if isinstance(want, dict):
        return (
            isinstance(got, dict)
            and got.keys() == want.keys()
            and all(_json_equal(got[k], want[k], backend_name) for k in want)
        )
    if isinstance(want, (list, tuple)):
        return (
            isinstance(got, (list, tuple))
            and len(got) == len(want)
            and all(_json_equal(g, w, backend_name) for g, w in zip(got, want, strict=True))
        )
    return bool(got == want) and isinstance(got, bool) == isinstance(want, bool)


# ------------------------------------------------------------------------------------------------ filters

_FILTER_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True), st.text(max_size=3), st.binary(max_size=2)
)
_FILTER_OPS = st.sampled_from(["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$text", "$x"])
_FILTER_ARGS = st.one_of(
    _FILTER_SCALARS,
    st.lists(_FILTER_SCALARS, max_size=3),
    st.dictionaries(st.text(max_size=2), _FILTER_SCALARS, max_size=2),
)
_FILTERS = st.recursive(
    st.dictionaries(
        st.sampled_from(["a", "b", "a.b", "", "x[0]"]),
        st.one_of(_FILTER_ARGS, st.dictionaries(_FILTER_OPS, _FILTER_ARGS, min_size=1, max_size=2)),
        max_size=2,
    ),
    lambda inner: st.one_of(
        st.dictionaries(st.sampled_from(["$and", "$or"]), st.lists(inner, max_size=3), min_size=1, max_size=1),
        st.dictionaries(st.just("$not"), inner, min_size=1, max_size=1),
        inner,
    ),
    max_leaves=6,
)
_METAS = [{"a": 1, "b": "x"}, {"a": [1, 2.5, None], "b": {"b": True}}, {"a": {"b": "xy"}}, {}, {"a": None, "b": []}]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flt=_FILTERS)
def test_any_filter_is_an_answer_or_a_clear_error(flt: Any) -> None:
    """Every backend takes the same filters: a malformed one is an InvalidInputError before anything is read or
    deleted; a well-formed one answers, and deleting by it removes exactly what searching by it finds."""
    from colbert_adapters.backends.memory import MemoryBackend

    backend = MemoryBackend(dim=DIM)
    rng = np.random.default_rng(0)
    ids = [f"d{i}" for i in range(len(_METAS))]
    backend.upsert(ids, [unit_multivector(rng, 2, DIM) for _ in ids], metadatas=_METAS)
    try:
        found = {h.id for h in backend.search(_vec(), k=len(ids), filter=flt)}
    except InvalidInputError as err:
        assert str(err)
        with pytest.raises(InvalidInputError):
            backend.delete_where(flt)
        assert backend.count() == len(ids)
        return
    if not flt:
        return
    assert backend.delete_where(flt) == len(found)
    assert set(backend.ids()) == set(ids) - found
