"""Damaged or tampered index files: a clear IndexCorruptedError, never a file touched outside the index."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from contract import unit_multivector

from colbert_adapters.errors import CollectionConfigError, IndexCorruptedError


def _voyager_index(path: Path) -> None:
    from colbert_adapters.backends.voyager import VoyagerBackend

    rng = np.random.default_rng(0)
    with VoyagerBackend(path, dim=8, mutable_max_tokens=16) as backend:
        backend.upsert([f"d{i}" for i in range(10)], [unit_multivector(rng, 4, 8) for _ in range(10)])
        backend.wait_for_maintenance()  # the sealer runs in the background
        assert backend.stats()["segments"]


@pytest.mark.parametrize("name", ["../victim.voyager", "/tmp/victim.voyager", "seg-000001.voyager\n", "x"])
def test_voyager_refuses_segment_names_outside_the_index(tmp_path: Path, name: str) -> None:
    pytest.importorskip("voyager")
    from colbert_adapters.backends.voyager import VoyagerBackend

    index = tmp_path / "index"
    _voyager_index(index)
    victim = tmp_path / "victim.voyager"
    victim.write_bytes(b"not yours")
    conn = sqlite3.connect(index / "store.sqlite")
    conn.execute("UPDATE segments SET file = ?", (name.replace("/tmp/", f"{tmp_path}/"),))
    conn.commit()
    conn.close()
    for read_only in (True, False):
        with pytest.raises(IndexCorruptedError, match="not a segment file name"):
            VoyagerBackend(index, read_only=read_only)
    assert victim.read_bytes() == b"not yours"
    assert issubclass(IndexCorruptedError, CollectionConfigError)  # code catching the older error keeps working


def test_edge_without_its_shard_config_is_damaged_not_empty(tmp_path: Path) -> None:
    pytest.importorskip("qdrant_edge")
    from colbert_adapters.backends.qdrant import QdrantBackend

    rng = np.random.default_rng(1)
    with QdrantBackend.edge(tmp_path / "edge", dim=8) as backend:
        backend.upsert(["a", "b"], [unit_multivector(rng, 3, 8) for _ in range(2)])
    (tmp_path / "edge" / "shard" / "edge_config.json").unlink()
    files = sorted(p.relative_to(tmp_path) for p in (tmp_path / "edge").rglob("*"))
    with pytest.raises(IndexCorruptedError, match=r"edge_config\.json is missing"):
        QdrantBackend.edge(tmp_path / "edge")
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "edge").rglob("*")) == files


def _flip(path: Path, offset: int, n: int) -> None:
    data = bytearray(path.read_bytes())
    for i in range(offset, min(offset + n, len(data))):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _segment_file(index: Path) -> Path:
    return sorted(index.glob("seg-*.voyager"))[0]


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_voyager_damaged_segment_file_is_refused_not_crashed(tmp_path: Path, damage: str) -> None:
    pytest.importorskip("voyager")
    from colbert_adapters.backends.voyager import VoyagerBackend
    from colbert_adapters.cli import main

    index = tmp_path / "index"
    _voyager_index(index)
    seg = _segment_file(index)
    if damage == "flip":
        _flip(seg, seg.stat().st_size // 2, 16)
    else:
        seg.write_bytes(seg.read_bytes()[: seg.stat().st_size // 3])
    for read_only in (True, False):
        with pytest.raises(IndexCorruptedError, match=r"checksum|cannot be loaded"):
            VoyagerBackend(index, read_only=read_only, exact_below_tokens=0)
    assert main(["info", str(index), "--verify"]) == 1  # one line, nonzero exit


def test_voyager_damaged_vectors_raise_and_verify_lists_them(tmp_path: Path, capsys: object) -> None:
    pytest.importorskip("voyager")
    from colbert_adapters.backends.voyager import VoyagerBackend
    from colbert_adapters.cli import main

    index = tmp_path / "index"
    _voyager_index(index)
    conn = sqlite3.connect(index / "store.sqlite")
    (blob,) = conn.execute("SELECT vectors FROM docs WHERE id = 'd3'").fetchone()
    damaged = bytearray(blob)
    damaged[10] ^= 0x40  # one bit of one code: a silently different vector without the checksum
    conn.execute("UPDATE docs SET vectors = ? WHERE id = 'd3'", (bytes(damaged),))
    conn.commit()
    conn.close()
    with VoyagerBackend(index, read_only=True, exact_below_tokens=0, cache_bytes=0) as backend:
        report = backend.verify()
        assert not report.ok and any("'d3'" in p and "checksum" in p for p in report.problems)
        assert report.checked["documents"] == 10
        with pytest.raises(IndexCorruptedError, match="checksum"):
            backend.get(["d3"], with_vectors=True)
        assert backend.get(["d4"], with_vectors=True)[0].vectors is not None  # the others read fine
        q = backend.get(["d3"])[0]
        assert q.id == "d3"  # text and metadata are not vectors
    assert main(["info", str(index), "--verify"]) == 1


def test_voyager_verify_of_an_intact_index_is_ok(tmp_path: Path) -> None:
    pytest.importorskip("voyager")
    from colbert_adapters.backends.voyager import VoyagerBackend

    index = tmp_path / "index"
    _voyager_index(index)
    with VoyagerBackend(index, read_only=True) as backend:
        report = backend.verify()
    assert report.ok and report.checked["segments"] >= 1 and report.checked["documents"] == 10
    assert report.notes == []


def test_memory_saved_index_with_a_damaged_file_is_refused(tmp_path: Path) -> None:
    from colbert_adapters.backends.memory import MemoryBackend

    rng = np.random.default_rng(2)
    backend = MemoryBackend(dim=8)
    backend.upsert(["a", "b"], [unit_multivector(rng, 3, 8) for _ in range(2)])
    backend.save(tmp_path / "saved")
    assert MemoryBackend.load(tmp_path / "saved").verify().ok
    vectors = next((tmp_path / "saved").glob("vectors.*.npy"))
    _flip(vectors, vectors.stat().st_size - 5, 1)  # inside the float data: np.load alone would not notice
    with pytest.raises(IndexCorruptedError, match="checksum"):
        MemoryBackend.load(tmp_path / "saved")


def test_edge_flipped_bytes_and_truncation_are_refused_at_open(tmp_path: Path) -> None:
    pytest.importorskip("qdrant_edge")
    from colbert_adapters.backends.qdrant import QdrantBackend

    rng = np.random.default_rng(3)
    with QdrantBackend.edge(tmp_path / "edge", dim=8) as backend:
        backend.upsert([f"d{i}" for i in range(20)], [unit_multivector(rng, 4, 8) for _ in range(20)])
    data = max((p for p in (tmp_path / "edge" / "shard").rglob("*.mmap")), key=lambda p: p.stat().st_size)
    with QdrantBackend.edge(tmp_path / "edge") as intact:
        assert intact.verify().ok
    intact_bytes = data.read_bytes()
    _flip(data, 64, 64)  # 64 flipped bytes changed every answer silently before shard files had checksums
    with pytest.raises(IndexCorruptedError, match=rf"{data.name} does not match its checksum"):
        QdrantBackend.edge(tmp_path / "edge")
    assert data.read_bytes() != intact_bytes  # refused, not repaired or rewritten
    data.write_bytes(data.read_bytes()[:100])
    with pytest.raises(IndexCorruptedError, match=r"another size|missing"):
        QdrantBackend.edge(tmp_path / "edge")


def test_a_full_disk_during_a_write_stores_nothing_and_says_why(tmp_path: Path) -> None:
    """A file-size limit (RLIMIT_FSIZE) stands in for a full disk: the write fails with one clear error, the index
    keeps every earlier document and stays usable."""
    pytest.importorskip("voyager")
    import subprocess
    import sys
    import textwrap

    index = tmp_path / "index"
    _voyager_index(index)
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        import numpy as np
        from colbert_adapters.backends.voyager import VoyagerBackend
        from colbert_adapters.errors import ColBERTError
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        backend = VoyagerBackend({str(index)!r}, mutable_max_tokens=16)
        size = sum(p.stat().st_size for p in backend.path.iterdir())
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
        rng = np.random.default_rng(0)
        docs = [(x / np.linalg.norm(x, axis=1, keepdims=True)).astype("f4") for x in rng.standard_normal((50, 400, 8))]
        try:
            backend.upsert([f"big{{i}}" for i in range(50)], docs)
        except ColBERTError as err:
            print("refused:", err)
        print("count", backend.count())
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "refused:" in out.stdout and "Nothing of this write was stored" in out.stdout
    assert "count 10" in out.stdout
    from colbert_adapters.backends.voyager import VoyagerBackend

    with VoyagerBackend(index) as backend:
        assert backend.count() == 10 and backend.verify().ok


def test_voyager_opens_read_only_on_read_only_media(tmp_path: Path) -> None:
    """A directory nothing can be written to (read-only media; here the immutable attribute, which binds root too):
    read_only=True opens it without the WAL's shared-memory file, and ``info --verify`` works."""
    pytest.importorskip("voyager")
    import subprocess

    from colbert_adapters.backends.voyager import VoyagerBackend
    from colbert_adapters.cli import main

    index = tmp_path / "index"
    _voyager_index(index)
    targets = [str(p) for p in index.iterdir()] + [str(index)]
    if subprocess.run(["chattr", "+i", *targets], capture_output=True).returncode != 0:
        pytest.skip("cannot make files immutable here (chattr needs CAP_LINUX_IMMUTABLE)")
    try:
        assert subprocess.run(["touch", str(index / "probe")], capture_output=True).returncode != 0
        with VoyagerBackend(index, read_only=True) as backend:
            assert backend.count() == 10 and backend.search(backend.get(["d1"], with_vectors=True)[0].vectors, k=1)
            assert backend.verify().ok
        assert main(["info", str(index), "--verify"]) == 0
    finally:
        subprocess.run(["chattr", "-i", *targets], capture_output=True)


def _edit_json(path: Path, key: str, value: object) -> None:
    import json

    data = json.loads(path.read_text(encoding="utf-8"))
    data[key] = value
    path.write_text(json.dumps(data), encoding="utf-8")


def test_edited_manifests_fail_their_checksum(tmp_path: Path) -> None:
    """Every JSON manifest the library writes carries a CRC-32: an edited (still valid JSON) one is damage."""
    pytest.importorskip("voyager")
    pytest.importorskip("qdrant_edge")
    from colbert_adapters.backends.memory import MemoryBackend
    from colbert_adapters.backends.qdrant import QdrantBackend
    from colbert_adapters.backends.voyager import VoyagerBackend

    rng = np.random.default_rng(3)
    docs = [unit_multivector(rng, 3, 8) for _ in range(4)]
    ids = [f"d{i}" for i in range(4)]
    with MemoryBackend(dim=8) as mem:
        mem.upsert(ids, docs)
        mem.save(tmp_path / "mem")
    _edit_json(tmp_path / "mem" / "manifest.json", "count", 3)
    with pytest.raises(IndexCorruptedError, match="checksum"):
        MemoryBackend.load(tmp_path / "mem")

    with QdrantBackend.edge(tmp_path / "edge", dim=8, model_id="m") as edge:
        edge.upsert(ids, docs)
    _edit_json(tmp_path / "edge" / "colbert_adapters.json", "model_id", "other")
    with pytest.raises(IndexCorruptedError, match="checksum"):
        QdrantBackend.edge(tmp_path / "edge")

    with VoyagerBackend(tmp_path / "voy", dim=8) as voy:
        voy.upsert(ids, docs)
    _edit_json(tmp_path / "voy" / "manifest.json", "generation", 99)  # a mirror: verify() reports it
    with VoyagerBackend(tmp_path / "voy", read_only=True) as voy:
        report = voy.verify()
        assert not report.ok and any("manifest.json" in p and "checksum" in p for p in report.problems)
        assert voy.count() == 4
