"""A model is identified by its content and settings, not by where its files are."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from colbert_adapters import ColBERTEncoder, MultiVectorStore
from colbert_adapters.cli import main
from colbert_adapters.errors import CollectionConfigError


@pytest.mark.parametrize("backend", ["memory", "voyager", "qdrant-edge"])
def test_the_same_weights_from_another_directory_open_the_index(
    make_checkpoint: Callable[..., Path], tmp_path: Path, backend: str
) -> None:
    original = make_checkpoint()
    moved = tmp_path / "elsewhere" / "model"
    shutil.copytree(original, moved)
    first, second = ColBERTEncoder.from_pretrained(original), ColBERTEncoder.from_pretrained(moved)
    assert first.model_id != second.model_id  # the names differ ...
    other = ColBERTEncoder.from_pretrained(make_checkpoint(seed=5))  # ... another model differs in content
    kwargs = {} if backend == "memory" else {"path": tmp_path / "index"}
    with MultiVectorStore(first, backend, **kwargs) as store:
        store.add(["Paris is the capital of France."], ids=["paris"])
        if backend == "memory":
            store.backend.save(tmp_path / "index")  # type: ignore[attr-defined]
    with MultiVectorStore.open(tmp_path / "index", second) as reopened:
        assert reopened.search("capital of France", k=1)[0].id == "paris"
    with pytest.raises(CollectionConfigError, match="model"):
        MultiVectorStore.open(tmp_path / "index", other)


def test_cli_index_reopens_with_the_model_copied_elsewhere(
    make_checkpoint: Callable[..., Path], tmp_path: Path
) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "paris.md").write_text("Paris is the capital of France.", encoding="utf-8")
    original = make_checkpoint()
    moved = tmp_path / "moved-model"
    shutil.copytree(original, moved)
    assert main(["index", str(tmp_path / "docs"), str(tmp_path / "idx"), "--model", str(original), "-q"]) == 0
    assert main(["search", str(tmp_path / "idx"), "capital", "--model", str(moved)]) == 0
    assert main(["search", str(tmp_path / "idx"), "capital", "--model", str(make_checkpoint(seed=5))]) == 1
