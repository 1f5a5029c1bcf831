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
