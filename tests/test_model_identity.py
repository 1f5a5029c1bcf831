"""A model is identified by its content and settings, not by where its files are."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from colbert_adapters import ColBERTEncoder, MultiVectorStore
from colbert_adapters.cli import main
from colbert_adapters.errors import CollectionConfigError, InvalidInputError


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


@pytest.mark.parametrize("backend", ["memory", "voyager", "qdrant-edge"])
def test_open_without_an_encoder_loads_the_recorded_model(
    make_checkpoint: Callable[..., Path], tmp_path: Path, backend: str
) -> None:
    model = tmp_path / "model"
    shutil.copytree(make_checkpoint(), model)
    first = ColBERTEncoder.from_pretrained(model, query_length=24)
    kwargs = {} if backend == "memory" else {"path": tmp_path / "index"}
    with MultiVectorStore(first, backend, **kwargs) as store:
        store.add(["Paris is the capital of France.", "Rust is a language."], ids=["paris", "rust"])
        if backend == "memory":
            store.backend.save(tmp_path / "index")  # type: ignore[attr-defined]
    with MultiVectorStore.open(tmp_path / "index") as reopened:  # the model the index records, its settings too
        assert reopened.encoder.model_id == first.model_id and reopened.encoder.spec.query_length == 24
        assert reopened.search("capital of France", k=1)[0].id == "paris"
    shutil.rmtree(model)
    shutil.copytree(make_checkpoint(seed=5), model)  # other weights where the recorded model was
    with pytest.raises(CollectionConfigError, match="other weights"):
        MultiVectorStore.open(tmp_path / "index")
    shutil.rmtree(model)
    with pytest.raises(InvalidInputError, match=r"does not load here.*pass encoder="):
        MultiVectorStore.open(tmp_path / "index")


def test_open_without_an_encoder_needs_a_recorded_model(tmp_path: Path) -> None:
    from colbert_adapters.testing import FakeEncoder

    with MultiVectorStore(FakeEncoder(dim=8), "voyager", path=tmp_path / "v") as store:
        store.add(["a b"], ids=["a"])
    with pytest.raises(InvalidInputError, match="names no model to load; pass encoder="):
        MultiVectorStore.open(tmp_path / "v")
    with MultiVectorStore.open(tmp_path / "v", FakeEncoder(dim=8)) as reopened:  # the index is still usable
        assert reopened.ids() == ["a"]
