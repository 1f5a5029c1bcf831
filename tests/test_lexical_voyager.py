"""The Voyager backend's lexical index: built for indexes created before it, refused clearly when it cannot be."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("voyager")

from colbert_adapters import CollectionConfigError, FakeEncoder, MultiVectorStore
from colbert_adapters.backends.voyager import VoyagerBackend

TEXTS = {"a": "the cat sat on the mat", "b": "dogs bark at night", "c": "a cat and a dog", "n": None}


def _make_pre_lexical_index(path: Path) -> None:
    """A Voyager index as versions before lexical search wrote it: no FTS5 table, no triggers."""
    enc = FakeEncoder(dim=8)
    with VoyagerBackend(path, dim=8) as backend:
        texts = list(TEXTS.values())
        backend.upsert(list(TEXTS), enc.encode_documents([t or "x" for t in texts]), texts=texts)
    with contextlib.closing(sqlite3.connect(path / "store.sqlite")) as db:
        for name in ("docs_fts_ai", "docs_fts_ad", "docs_fts_au"):
            db.execute(f"DROP TRIGGER {name}")
        db.execute("DROP TABLE docs_fts")
        db.commit()


def test_writable_open_builds_the_lexical_index(tmp_path: Path) -> None:
    _make_pre_lexical_index(tmp_path / "idx")
    with VoyagerBackend(tmp_path / "idx") as backend:
        assert {h.id for h in backend.lexical_search("cat", k=10)} == {"a", "c"}
        backend.delete(["a"])
        assert [h.id for h in backend.lexical_search("cat", k=10)] == ["c"]


def test_read_only_open_of_an_old_index_names_the_fix(tmp_path: Path) -> None:
    _make_pre_lexical_index(tmp_path / "idx")
    with VoyagerBackend(tmp_path / "idx", read_only=True) as backend:
        assert [h.id for h in backend.search(np.eye(1, 8, dtype=np.float32), k=1)]  # late search still works
        with pytest.raises(CollectionConfigError, match="open it once writable"):
            backend.lexical_search("cat", k=3)


def test_store_hybrid_on_a_reopened_index(tmp_path: Path) -> None:
    with MultiVectorStore(FakeEncoder(dim=8), "voyager", path=tmp_path / "idx") as store:
        store.add(["the cat sat", "dogs bark", "a cat and a dog"], ids=["a", "b", "c"])
    with MultiVectorStore.open(tmp_path / "idx", FakeEncoder(dim=8), read_only=True) as store:
        assert {h.id for h in store.search("cat", k=5, mode="lexical")} == {"a", "c"}
        assert len(store.search("cat dog", k=3, mode="hybrid")) == 3
