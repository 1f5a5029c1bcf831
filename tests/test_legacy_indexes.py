"""Indexes written by earlier versions open and answer exactly as they did when written.

``tests/fixtures/legacy_indexes/<commit>/`` holds small Voyager (int14 and int8, sealed and folded segments with
projected graphs, a mutable segment), Qdrant Edge and saved MemoryBackend directories written by that commit's
code, with that code's answers in ``expected.json`` (``make_legacy_indexes.py`` wrote them). Each test opens a
copy, so the committed files are never modified.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "legacy_indexes"
GENERATIONS = sorted(p.name for p in FIXTURES.iterdir() if (p / "expected.json").is_file())

sys.path.insert(0, str(FIXTURES))
import make_legacy_indexes as legacy  # noqa: E402


def _memory(path: Path) -> Any:
    from colbert_adapters.backends.memory import MemoryBackend

    return MemoryBackend.load(path / "memory")


def _voyager(folder: str, **kwargs: Any) -> Callable[[Path], Any]:
    def open_(path: Path) -> Any:
        pytest.importorskip("voyager")
        from colbert_adapters.backends.voyager import VoyagerBackend

        return VoyagerBackend(path / folder, **kwargs)

    return open_


def _edge(**kwargs: Any) -> Callable[[Path], Any]:
    def open_(path: Path) -> Any:
        if importlib.util.find_spec("qdrant_edge") is None:
            pytest.skip("qdrant-edge-py is not installed")
        from colbert_adapters.backends.qdrant import QdrantBackend

        return QdrantBackend.edge(path / "edge", **kwargs)

    return open_


#: expected.json key -> how to open that index (read-only where the backend has the option, and writable).
OPENERS: dict[str, Callable[[Path], Any]] = {
    "memory": _memory,
    "voyager_graph": _voyager("voyager", read_only=True, exact_below_tokens=0),
    "voyager_graph_writable": _voyager("voyager", exact_below_tokens=0),
    "voyager_scan": _voyager("voyager", read_only=True, exact_below_tokens=100_000),
    "voyager_int8_graph": _voyager("voyager_int8", read_only=True, exact_below_tokens=0),
    "voyager_int8_graph_writable": _voyager("voyager_int8", exact_below_tokens=0),
    "edge": _edge(),
    "edge_exact": _edge(search_mode="exact"),
}


def _expected_key(name: str) -> str:
    return name.removesuffix("_writable")


def _check_same(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert got["count"] == want["count"]
    assert [r["id"] for r in got["records"]] == [r["id"] for r in want["records"]]
    for g, w in zip(got["records"], want["records"], strict=True):
        assert g["text"] == w["text"]
        assert g["metadata"] == w["metadata"]
        np.testing.assert_array_equal(np.asarray(g["vectors"], np.float32), np.asarray(w["vectors"], np.float32))
    assert len(got["searches"]) == len(want["searches"])
    for g, w in zip(got["searches"], want["searches"], strict=True):
        assert [h[0] for h in g["hits"]] == [h[0] for h in w["hits"]], (g["query"], g["k"], g["filter"])
        np.testing.assert_allclose([h[1] for h in g["hits"]], [h[1] for h in w["hits"]], rtol=0, atol=1e-6)


@pytest.mark.parametrize("generation", GENERATIONS)
@pytest.mark.parametrize("name", list(OPENERS))
def test_legacy_index_answers_as_written(generation: str, name: str, tmp_path: Path) -> None:
    root = FIXTURES / generation
    expected = json.loads((root / "expected.json").read_text(encoding="utf-8"))
    shutil.copytree(root, tmp_path / generation, ignore=shutil.ignore_patterns("*.py", "expected.json"))
    backend = OPENERS[name](tmp_path / generation)
    try:
        _check_same(legacy.answers(backend), expected[_expected_key(name)])
    finally:
        backend.close()
    if name.endswith("_writable"):  # a writable open may upgrade the files: they still answer the same
        backend = OPENERS[name](tmp_path / generation)
        try:
            _check_same(legacy.answers(backend), expected[_expected_key(name)])
        finally:
            backend.close()


def test_every_fixture_index_is_checked() -> None:
    keys = set(json.loads((FIXTURES / GENERATIONS[-1] / "expected.json").read_text(encoding="utf-8")))
    assert keys == {_expected_key(n) for n in OPENERS}
