"""MemoryBackend: the shared contract plus memory-specific behaviour (persistence, chunking, registry)."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from contract import BackendContract, naive_maxsim, unit_multivector

from colbert_adapters.backends import BACKENDS, MemoryBackend, backend_class, resolve_backend
from colbert_adapters.backends.base import Backend
from colbert_adapters.errors import (
    ColBERTError,
    CollectionConfigError,
    DimensionMismatchError,
    InvalidInputError,
    MissingDependencyError,
    UnknownBackendError,
)


class TestMemoryBackend(BackendContract):
    supports_persistence = True

    def make_backend(self, tmp_path: Path, dim: int) -> Backend:
        return MemoryBackend(dim=dim)

    def reopen(self, backend: Backend) -> Backend:
        assert isinstance(backend, MemoryBackend)
        path = backend.save(self.tmp_path / "index")
        backend.close()
        return MemoryBackend.load(path)


class TestMemoryBackendLazyDim(BackendContract):
    """The same contract when the dimension is fixed by the first upsert instead of the constructor."""

    dim = 5

    def make_backend(self, tmp_path: Path, dim: int) -> Backend:
        return MemoryBackend()


# ---------------------------------------------------------------------------------------------- basics


def test_dim_none_until_first_upsert() -> None:
    b = MemoryBackend()
    assert b.dim is None
    assert b.search(np.ones((2, 3), dtype=np.float32), k=2) == []  # any query dim while unconfigured
    b.upsert(["a"], [np.ones((2, 3))])
    assert b.dim == 3
    with pytest.raises(DimensionMismatchError):
        b.upsert(["b"], [np.ones((2, 4))])


def test_first_batch_with_mixed_dims_is_rejected() -> None:
    b = MemoryBackend()
    with pytest.raises(DimensionMismatchError, match="vectors\\[1\\]"):
        b.upsert(["a", "b"], [np.ones((2, 3)), np.ones((2, 4))])
    assert b.dim is None
    assert len(b) == 0


@pytest.mark.parametrize("dim", [0, -3, 2.0, True, "8"])
def test_invalid_constructor_dim(dim: Any) -> None:
    with pytest.raises(InvalidInputError):
        MemoryBackend(dim=dim)


def test_len_contains_ids_clear() -> None:
    rng = np.random.default_rng(0)
    b = MemoryBackend(dim=4)
    b.upsert(["x", "y", "z"], [unit_multivector(rng, 2, 4) for _ in range(3)])
    assert len(b) == 3
    assert "y" in b and "w" not in b and 3 not in b
    assert list(b.ids()) == ["x", "y", "z"]
    b.upsert(["x"], [unit_multivector(rng, 1, 4)])  # a replaced document moves to the end
    assert list(b.ids()) == ["y", "z", "x"]
    b.clear()
    assert len(b) == 0 and b.dim == 4
    assert b.search(unit_multivector(rng, 2, 4), k=3) == []


def test_ids_iterator_is_a_snapshot() -> None:
    b = MemoryBackend(dim=2)
    b.upsert(["a", "b"], [np.eye(2), np.eye(2)])
    it = b.ids()
    b.delete(["a"])
    assert list(it) == ["a", "b"]


def test_closed_backend_refuses_use() -> None:
    b = MemoryBackend(dim=2)
    b.upsert(["a"], [np.eye(2)])
    b.close()
    with pytest.raises(ColBERTError, match="closed"):
        b.search(np.eye(2), k=1)
    with pytest.raises(ColBERTError, match="closed"):
        b.upsert(["b"], [np.eye(2)])


def test_delete_counts_duplicate_ids_once() -> None:
    b = MemoryBackend(dim=2)
    b.upsert(["a", "b"], [np.eye(2), np.eye(2)])
    assert b.delete(["a", "a"]) == 1
    assert list(b.ids()) == ["b"]


def test_search_accepts_torch_tensor() -> None:
    torch = pytest.importorskip("torch")
    b = MemoryBackend(dim=2)
    b.upsert(["a", "b"], [torch.tensor([[1.0, 0.0]]), np.array([[0.0, 1.0]])])
    hits = b.search(torch.tensor([[0.0, 1.0]]), k=2)
    assert [h.id for h in hits] == ["b", "a"]


def test_cache_invalidated_after_writes() -> None:
    b = MemoryBackend(dim=2)
    b.upsert(["a"], [np.array([[1.0, 0.0]])])
    assert b.search(np.array([[0.0, 1.0]]), k=1)[0].score == pytest.approx(0.0)
    b.upsert(["b"], [np.array([[0.0, 1.0]])])
    assert [h.id for h in b.search(np.array([[0.0, 1.0]]), k=2)] == ["b", "a"]
    b.delete(["b"])
    assert [h.id for h in b.search(np.array([[0.0, 1.0]]), k=2)] == ["a"]


def test_large_collection_uses_partition_path_and_stays_exact() -> None:
    # More than 64 documents and k < n exercises the argpartition branch of the top-k selection.
    rng = np.random.default_rng(7)
    docs = [unit_multivector(rng, int(rng.integers(1, 6)), 6) for _ in range(300)]
    b = MemoryBackend(dim=6)
    b.upsert([f"d{i}" for i in range(300)], docs)
    q = unit_multivector(rng, 3, 6)
    naive = np.array([naive_maxsim(q, d) for d in docs])
    want = [f"d{i}" for i in np.argsort(-naive, kind="stable")[:10]]
    hits = b.search(q, k=10)
    assert [h.id for h in hits] == want
    np.testing.assert_allclose([h.score for h in hits], np.sort(naive)[::-1][:10], atol=1e-5)


def test_ties_at_the_top_k_boundary_keep_insertion_order() -> None:
    b = MemoryBackend(dim=2)
    ids = [f"d{i:03d}" for i in range(100)]
    vecs = [np.array([[1.0, 0.0]]) if i % 2 else np.array([[0.0, 1.0]]) for i in range(100)]
    b.upsert(ids, vecs)
    hits = b.search(np.array([[1.0, 0.0]]), k=5)
    assert [h.id for h in hits] == ["d001", "d003", "d005", "d007", "d009"]


def test_selective_and_broad_filters_agree_with_unfiltered_scores() -> None:
    rng = np.random.default_rng(3)
    n = 40
    docs = [unit_multivector(rng, 3, 4) for _ in range(n)]
    b = MemoryBackend(dim=4)
    b.upsert([str(i) for i in range(n)], docs, metadatas=[{"g": i % 10, "h": i % 2} for i in range(n)])
    q = unit_multivector(rng, 2, 4)
    full = {h.id: h.score for h in b.search(q, k=n)}
    for flt, expected in (({"g": 3}, {3, 13, 23, 33}), ({"h": 0}, set(range(0, n, 2)))):
        hits = b.search(q, k=n, filter=flt)
        assert {int(h.id) for h in hits} == expected
        for h in hits:
            assert h.score == pytest.approx(full[h.id], abs=1e-6)


def test_concurrent_writes_and_searches() -> None:
    rng = np.random.default_rng(11)
    b = MemoryBackend(dim=4)
    vecs = [unit_multivector(rng, 3, 4) for _ in range(200)]
    errors: list[BaseException] = []

    def writer(start: int) -> None:
        try:
            for i in range(start, 200, 4):
                b.upsert([f"d{i}"], [vecs[i]])
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    def reader() -> None:
        try:
            for _ in range(50):
                hits = b.search(vecs[0], k=5)
                assert len(hits) <= 5
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(s,)) for s in range(4)] + [
        threading.Thread(target=reader) for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(b) == 200
    assert b.search(vecs[0], k=1)[0].id == "d0"


# ---------------------------------------------------------------------------------------------- persistence


def _filled(rng: np.random.Generator, n: int = 6, dim: int = 4) -> MemoryBackend:
    b = MemoryBackend(dim=dim, model_id="fake-encoder-dim4")
    b.upsert(
        [f"id-{i}" for i in range(n)],
        [unit_multivector(rng, i + 1, dim) for i in range(n)],
        texts=[f"text {i} ☃" if i % 2 else None for i in range(n)],
        metadatas=[{"i": i, "tags": ["a", "é"]} for i in range(n)],
    )
    return b


def test_save_load_round_trip_keeps_everything(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    b = _filled(rng)
    b.upsert(["id-0"], [unit_multivector(rng, 2, 4)], texts=["moved"])  # order: id-1..id-5, id-0
    path = b.save(tmp_path / "idx")
    loaded = MemoryBackend.load(path)
    assert loaded.dim == 4
    assert loaded.model_id == "fake-encoder-dim4"
    assert list(loaded.ids()) == list(b.ids())
    for want, got in zip(
        b.get(list(b.ids()), with_vectors=True), loaded.get(list(b.ids()), with_vectors=True), strict=True
    ):
        assert (got.id, got.text, got.metadata) == (want.id, want.text, want.metadata)
        np.testing.assert_array_equal(got.vectors, want.vectors)
    q = unit_multivector(rng, 3, 4)
    assert b.search(q, k=6) == loaded.search(q, k=6)


def test_saved_files_are_json_and_plain_npy(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    path = _filled(rng).save(tmp_path / "idx")
    names = sorted(p.name for p in path.iterdir())
    assert "manifest.json" in names
    assert len(names) == 4
    manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["format_version"] == 1
    assert manifest["dim"] == 4
    assert manifest["count"] == 6
    assert manifest["model_id"] == "fake-encoder-dim4"
    for p in path.iterdir():
        raw = p.read_bytes()
        assert b"\x80\x04\x95" not in raw and b"\x80\x05\x95" not in raw  # no pickle protocol 4/5 header
        if p.suffix == ".npy":
            arr = np.load(p, allow_pickle=False)  # raises for object arrays
            assert arr.dtype != object
        elif p.suffix == ".json":
            json.loads(raw.decode("utf-8"))
        else:  # pragma: no cover - unexpected file
            pytest.fail(f"unexpected file {p.name}")
    assert not [n for n in names if n.endswith((".pkl", ".pickle", ".tmp"))]


def test_save_overwrites_previous_generation(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    b = _filled(rng)
    path = b.save(tmp_path / "idx")
    first = {p.name for p in path.iterdir()}
    b.delete(["id-1"])
    b.save(path)
    second = {p.name for p in path.iterdir()}
    assert len(second) == 4
    assert first & second == {"manifest.json"}  # old data files removed
    assert MemoryBackend.load(path).count() == 5


def test_save_refuses_foreign_directory(tmp_path: Path) -> None:
    target = tmp_path / "photos"
    target.mkdir()
    (target / "cat.jpg").write_bytes(b"not an index")
    with pytest.raises(CollectionConfigError, match="refusing to overwrite"):
        MemoryBackend(dim=2).save(target)
    assert [p.name for p in target.iterdir()] == ["cat.jpg"]
    file_target = tmp_path / "file"
    file_target.write_text("x")
    with pytest.raises(CollectionConfigError, match="not a directory"):
        MemoryBackend(dim=2).save(file_target)


def test_save_into_empty_existing_directory(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    MemoryBackend(dim=3).save(tmp_path / "empty")
    loaded = MemoryBackend.load(tmp_path / "empty")
    assert loaded.dim == 3 and loaded.count() == 0


def test_save_unconfigured_backend(tmp_path: Path) -> None:
    MemoryBackend().save(tmp_path / "idx")
    loaded = MemoryBackend.load(tmp_path / "idx")
    assert loaded.dim is None and loaded.count() == 0


def test_load_non_index_directory(tmp_path: Path) -> None:
    with pytest.raises(CollectionConfigError, match="not a MemoryBackend index"):
        MemoryBackend.load(tmp_path)
    with pytest.raises(CollectionConfigError):
        MemoryBackend.load(tmp_path / "does-not-exist")


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda m: m.update(format="something-else"), "not a MemoryBackend index manifest"),
        (lambda m: m.update(format_version=99), "format version 99"),
        (lambda m: m.update(count=3), "inconsistent"),
        (lambda m: m.update(dim=5), "inconsistent"),
        (lambda m: m["files"].update(vectors="missing.npy"), "incomplete or corrupted"),
        (lambda m: m.pop("files"), "incomplete or corrupted"),
    ],
    ids=["format", "version", "count", "dim", "missing-file", "no-files-key"],
)
def test_load_rejects_bad_manifest(tmp_path: Path, mutate: Any, match: str) -> None:
    rng = np.random.default_rng(9)
    path = _filled(rng).save(tmp_path / "idx")
    manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    mutate(manifest)
    manifest.pop("manifest_crc32")  # as written before manifests carried a checksum: the other checks still apply
    (path / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(CollectionConfigError, match=match):
        MemoryBackend.load(path)


def test_load_rejects_corrupt_manifest_json(tmp_path: Path) -> None:
    path = MemoryBackend(dim=2).save(tmp_path / "idx")
    (path / "manifest.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(CollectionConfigError, match="not valid JSON"):
        MemoryBackend.load(path)


def test_load_rejects_pickled_object_array(tmp_path: Path) -> None:
    rng = np.random.default_rng(10)
    path = _filled(rng).save(tmp_path / "idx")
    manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    evil = np.array([{"a": 1}], dtype=object)
    np.save(path / manifest["files"]["offsets"], evil, allow_pickle=True)
    with pytest.raises(CollectionConfigError):
        MemoryBackend.load(path)


def _rewrite_checksums(path: Path) -> None:
    import zlib

    manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    manifest["crc32"] = {name: zlib.crc32((path / name).read_bytes()) for name in manifest["files"].values()}
    manifest.pop("manifest_crc32", None)  # edited on purpose: keep only the file checksums
    (path / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


def test_load_rejects_bad_offsets_and_duplicate_ids(tmp_path: Path) -> None:
    rng = np.random.default_rng(12)
    path = _filled(rng).save(tmp_path / "idx")
    manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    offsets_file = path / manifest["files"]["offsets"]
    good = np.load(offsets_file)
    bad = good.copy()
    bad[2] = bad[1]
    np.save(offsets_file, bad)
    _rewrite_checksums(path)  # as if a faulty writer had saved them: the consistency checks must catch it
    with pytest.raises(CollectionConfigError, match="offsets"):
        MemoryBackend.load(path)
    np.save(offsets_file, good)
    docs_file = path / manifest["files"]["docs"]
    docs = json.loads(docs_file.read_text(encoding="utf-8"))
    docs["ids"][1] = docs["ids"][0]
    docs_file.write_text(json.dumps(docs), encoding="utf-8")
    _rewrite_checksums(path)
    with pytest.raises(CollectionConfigError, match="duplicate id"):
        MemoryBackend.load(path)


def test_loaded_backend_is_independent_of_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(13)
    b = _filled(rng)
    path = b.save(tmp_path / "idx")
    loaded = MemoryBackend.load(path)
    for p in path.iterdir():
        p.unlink()
    assert loaded.count() == 6
    assert loaded.search(unit_multivector(rng, 2, 4), k=1)


# ---------------------------------------------------------------------------------------------- registry


def test_registry_names() -> None:
    assert set(BACKENDS) == {"memory", "voyager", "qdrant"}
    assert backend_class("memory") is MemoryBackend
    assert backend_class(" Memory ") is MemoryBackend


def test_resolve_memory_with_kwargs() -> None:
    b = resolve_backend("memory", dim=7, model_id="m")
    assert isinstance(b, MemoryBackend)
    assert (b.dim, b.model_id) == (7, "m")


def test_resolve_unknown_name_lists_valid_names() -> None:
    with pytest.raises(UnknownBackendError, match="'memory', 'voyager', 'qdrant'"):
        resolve_backend("faiss")
    with pytest.raises(UnknownBackendError):
        resolve_backend(None)  # type: ignore[arg-type]


def test_resolve_registered_but_missing_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(BACKENDS, "future", "colbert_adapters.backends._not_shipped:FutureBackend")
    with pytest.raises(UnknownBackendError, match="not available in this version"):
        resolve_backend("future")


def test_resolve_backend_with_missing_third_party_dependency(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = tmp_path / "needs_dep_backend.py"
    module.write_text("import surely_not_installed_pkg_xyz\nclass B: ...\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(BACKENDS, "needsdep", "needs_dep_backend:B")
    with pytest.raises(MissingDependencyError, match=r"colbert-adapters\[needsdep\]"):
        resolve_backend("needsdep")
    sys.modules.pop("needs_dep_backend", None)


def test_resolve_registered_class_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "empty_backend_mod.py").write_text("X = 1\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(BACKENDS, "empty", "empty_backend_mod:Nope")
    with pytest.raises(UnknownBackendError, match="has no Nope"):
        resolve_backend("empty")
    sys.modules.pop("empty_backend_mod", None)


def test_importing_backends_does_not_import_optional_modules() -> None:
    import subprocess

    code = (
        "import sys, colbert_adapters.backends, colbert_adapters.store, colbert_adapters.scoring, "
        "colbert_adapters.testing\n"
        "bad = [m for m in ('voyager', 'qdrant_client', 'torch', 'colbert_adapters.backends.voyager', "
        "'colbert_adapters.backends.qdrant') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    root = Path(__file__).resolve().parents[1]
    env_path = str(root)
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": env_path, "PATH": ""},
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_lazy_attribute_for_unshipped_backend() -> None:
    import colbert_adapters.backends as backends

    try:
        cls = backends.VoyagerBackend  # type: ignore[attr-defined]
    except (UnknownBackendError, MissingDependencyError):
        pass  # not shipped yet, or voyager not installed: both are clear errors
    else:  # pragma: no cover - once voyager.py exists
        assert cls.__name__ == "VoyagerBackend"
    with pytest.raises(AttributeError):
        backends.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018
