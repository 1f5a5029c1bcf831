"""MultiVectorStore with FakeEncoder and MemoryBackend."""

from __future__ import annotations

import doctest
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from _backends import BACKEND_NAMES, make_backend

import colbert_adapters.backends as backends_module
import colbert_adapters.backends.memory as memory_module
import colbert_adapters.store as store_module
from colbert_adapters.backends import MemoryBackend
from colbert_adapters.errors import (
    CollectionConfigError,
    DimensionMismatchError,
    InvalidInputError,
    UnknownBackendError,
)
from colbert_adapters.scoring import maxsim
from colbert_adapters.store import MultiVectorStore
from colbert_adapters.testing import FakeEncoder
from colbert_adapters.types import MultiVector

DOCS = [
    "The quick brown fox jumps over the lazy dog",
    "Solar panels convert sunlight into electricity",
    "A recipe for apple pie with cinnamon",
    "Foxes are small omnivorous mammals",
]
METAS = [{"topic": "animals"}, {"topic": "energy"}, {"topic": "food"}, {"topic": "animals"}]


class CountingEncoder(FakeEncoder):
    """FakeEncoder that records the batches it was asked to encode."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__(dim)
        self.document_calls: list[int] = []
        self.query_calls: list[int] = []

    def encode_documents(self, texts: Sequence[str], *, batch_size: int = 32) -> list[MultiVector]:
        self.document_calls.append(len(texts))
        return super().encode_documents(texts, batch_size=batch_size)

    def encode_queries(self, texts: Sequence[str], *, batch_size: int = 32) -> list[MultiVector]:
        self.query_calls.append(len(texts))
        return super().encode_queries(texts, batch_size=batch_size)


@pytest.fixture
def store() -> MultiVectorStore:
    s = MultiVectorStore(FakeEncoder(dim=16))
    s.add(DOCS, ids=["fox", "solar", "pie", "foxes"], metadatas=METAS)
    return s


def test_default_backend_is_memory_with_encoder_dim() -> None:
    s = MultiVectorStore(FakeEncoder(dim=12))
    assert isinstance(s.backend, MemoryBackend)
    assert s.backend.dim == 12
    assert s.backend.model_id == "fake-encoder-dim12"  # type: ignore[attr-defined]


def test_add_and_search(store: MultiVectorStore) -> None:
    assert len(store) == 4 and store.count() == 4
    hits = store.search("quick brown fox", k=2)
    assert hits[0].id == "fox"
    assert hits[0].text == DOCS[0]
    assert dict(hits[0].metadata) == {"topic": "animals"}
    # Scores equal an independent MaxSim of the encoder outputs.
    enc = FakeEncoder(dim=16)
    (q,) = enc.encode_queries(["quick brown fox"])
    want = maxsim(q, enc.encode_documents(DOCS))
    assert hits[0].score == pytest.approx(float(want[0]), abs=1e-5)
    assert hits[1].score == pytest.approx(float(np.sort(want)[-2]), abs=1e-5)


def test_search_ranks_relevant_document_first(store: MultiVectorStore) -> None:
    assert store.search("apple cinnamon", k=1)[0].id == "pie"
    assert store.search("sunlight electricity", k=1)[0].id == "solar"


def test_generated_ids_are_unique_hex() -> None:
    s = MultiVectorStore(FakeEncoder())
    ids = s.add(["a", "b", "c"])
    assert len(set(ids)) == 3
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert [r.id for r in s.get(ids)] == ids
    assert [r.text for r in s.get(ids)] == ["a", "b", "c"]


def test_add_returns_given_ids_and_replaces(store: MultiVectorStore) -> None:
    assert store.add(["new text about volcanoes"], ids=["pie"], metadatas=[{"topic": "geo"}]) == ["pie"]
    assert len(store) == 4
    (rec,) = store.get(["pie"])
    assert (rec.text, dict(rec.metadata)) == ("new text about volcanoes", {"topic": "geo"})
    assert store.search("volcanoes", k=1)[0].id == "pie"


def test_add_empty_list_is_noop() -> None:
    enc = CountingEncoder()
    s = MultiVectorStore(enc)
    assert s.add([]) == []
    assert s.add([], ids=[]) == []
    assert len(s) == 0 and enc.document_calls == []


def test_add_encodes_in_write_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    enc = CountingEncoder()
    s = MultiVectorStore(enc)
    monkeypatch.setattr(MultiVectorStore, "WRITE_CHUNK", 8)
    texts = [f"document number {i}" for i in range(21)]
    ids = s.add(texts, batch_size=4)
    assert enc.document_calls == [8, 8, 5]
    assert len(s) == 21
    assert [r.text for r in s.get(ids)] == texts


def test_add_shows_progress_only_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    s = MultiVectorStore(FakeEncoder())
    s.add(["a", "b"])
    assert "Encoding documents" not in capsys.readouterr().err
    s.add(["c", "d"], show_progress=True)
    assert "Encoding documents" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("just a string",), {}),
        ([["ok", 3]], {}),
        ([["a", "b"]], {"ids": ["x"]}),
        ([["a", "b"]], {"ids": ["x", "x"]}),
        ([["a"]], {"ids": [1]}),
        ([["a"]], {"metadatas": [{"k": object()}]}),
        ([["a"]], {"metadatas": [{}, {}]}),
        ([["a"]], {"batch_size": 0}),
    ],
    ids=["str", "non-str-item", "len-ids", "dup-ids", "int-id", "meta-json", "len-meta", "batch-size"],
)
def test_add_validates_before_encoding(args: Any, kwargs: dict[str, Any]) -> None:
    enc = CountingEncoder()
    s = MultiVectorStore(enc)
    s.add(["existing"], ids=["e"])
    with pytest.raises(InvalidInputError):
        s.add(*args, **kwargs)
    assert enc.document_calls == [1]  # only the setup call
    assert len(s) == 1


def test_search_filters(store: MultiVectorStore) -> None:
    hits = store.search("fox", k=10, filter={"topic": "animals"})
    assert sorted(h.id for h in hits) == ["fox", "foxes"]
    hits = store.search("fox", k=10, filter={"topic": ["food", "energy"]})
    assert sorted(h.id for h in hits) == ["pie", "solar"]
    assert store.search("fox", k=10, filter={"missing": 1}) == []


def test_search_k(store: MultiVectorStore) -> None:
    assert len(store.search("fox", k=1)) == 1
    assert len(store.search("fox", k=100)) == 4
    with pytest.raises(InvalidInputError):
        store.search("fox", k=0)


@pytest.mark.parametrize("query", ["", "   ", None, ["fox"]])
def test_search_rejects_bad_query(store: MultiVectorStore, query: Any) -> None:
    with pytest.raises(InvalidInputError):
        store.search(query)


def test_search_validates_before_encoding() -> None:
    enc = CountingEncoder()
    s = MultiVectorStore(enc)
    with pytest.raises(InvalidInputError):
        s.search("ok", k=-1)
    with pytest.raises(InvalidInputError):
        s.search("ok", filter="topic")  # type: ignore[arg-type]
    assert enc.query_calls == []


def test_search_empty_store() -> None:
    assert MultiVectorStore(FakeEncoder()).search("anything") == []


def test_search_batch(store: MultiVectorStore) -> None:
    enc = CountingEncoder()
    s = MultiVectorStore(enc)
    s.add(DOCS, ids=["fox", "solar", "pie", "foxes"], metadatas=METAS)
    results = s.search_batch(["apple pie", "solar", "lazy dog"], k=2)
    assert enc.query_calls == [3]  # one encoder call for the whole batch
    assert [r[0].id for r in results] == ["pie", "solar", "fox"]
    assert all(len(r) == 2 for r in results)
    assert [[h.id for h in r] for r in results] == [
        [h.id for h in store.search(q, k=2)] for q in ["apple pie", "solar", "lazy dog"]
    ]
    assert s.search_batch([], k=3) == []
    with pytest.raises(InvalidInputError, match=r"queries\[1\]"):
        s.search_batch(["ok", ""])


def test_delete_and_get(store: MultiVectorStore) -> None:
    assert store.delete(["fox", "unknown"]) == 1
    assert len(store) == 3
    assert "fox" not in {h.id for h in store.search("quick brown fox", k=10)}
    recs = store.get(["pie", "fox", "solar"], with_vectors=True)
    assert [r.id for r in recs] == ["pie", "solar"]
    np.testing.assert_allclose(recs[0].vectors, FakeEncoder(dim=16).encode_documents([DOCS[2]])[0])
    assert store.get(["pie"])[0].vectors is None
    with pytest.raises(InvalidInputError):
        store.delete("fox")  # a single str is not a list of ids


def test_dimension_mismatch_with_existing_backend() -> None:
    backend = MemoryBackend(dim=8)
    with pytest.raises(DimensionMismatchError, match=r"8-d.*16-d"):
        MultiVectorStore(FakeEncoder(dim=16), backend=backend)
    filled = MemoryBackend()
    filled.upsert(["a"], [np.ones((2, 4), dtype=np.float32)])
    with pytest.raises(DimensionMismatchError):
        MultiVectorStore(FakeEncoder(dim=16), backend=filled)


def test_unconfigured_backend_takes_the_encoder_dim() -> None:
    backend = MemoryBackend()
    s = MultiVectorStore(FakeEncoder(dim=6), backend=backend)
    s.add(["hello"])
    assert backend.dim == 6


def test_model_id_mismatch_is_refused() -> None:
    backend = MemoryBackend(dim=16, model_id="some-other-model")
    with pytest.raises(CollectionConfigError, match="some-other-model"):
        MultiVectorStore(FakeEncoder(dim=16), backend=backend)


def test_store_survives_save_and_load(tmp_path: Any) -> None:
    s = MultiVectorStore(FakeEncoder(dim=16))
    s.add(DOCS, ids=["fox", "solar", "pie", "foxes"], metadatas=METAS)
    s.backend.save(tmp_path / "idx")  # type: ignore[attr-defined]
    loaded = MultiVectorStore(FakeEncoder(dim=16), backend=MemoryBackend.load(tmp_path / "idx"))
    assert [h.id for h in loaded.search("fox", k=4)] == [h.id for h in s.search("fox", k=4)]
    with pytest.raises(CollectionConfigError):
        MultiVectorStore(FakeEncoder(dim=16, seed=5), backend=MemoryBackend.load(tmp_path / "idx"))


def test_backend_by_name_and_kwargs() -> None:
    s = MultiVectorStore(FakeEncoder(dim=16), "memory", dim=16)
    assert isinstance(s.backend, MemoryBackend)
    with pytest.raises(UnknownBackendError, match="valid names"):
        MultiVectorStore(FakeEncoder(), backend="nope")
    with pytest.raises(InvalidInputError, match="backend_kwargs"):
        MultiVectorStore(FakeEncoder(), backend=MemoryBackend(), dim=16)


def test_rejects_non_protocol_objects() -> None:
    with pytest.raises(InvalidInputError, match="Encoder protocol"):
        MultiVectorStore(object())  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="Backend protocol"):
        MultiVectorStore(FakeEncoder(), backend=object())  # type: ignore[arg-type]


def test_broken_encoder_output_is_reported() -> None:
    class Broken(FakeEncoder):
        def encode_documents(self, texts: Sequence[str], *, batch_size: int = 32) -> list[MultiVector]:
            return [np.ones((2, self.dim + 1), dtype=np.float32) for _ in texts]

    s = MultiVectorStore(Broken(dim=4))
    with pytest.raises(DimensionMismatchError, match="encoder returned"):
        s.add(["x"])
    assert len(s) == 0


def test_context_manager_closes_backend() -> None:
    backend = MemoryBackend()
    with MultiVectorStore(FakeEncoder(), backend=backend) as s:
        s.add(["hello world"])
        assert len(s) == 1
    with pytest.raises(InvalidInputError, match="closed"):
        s.search("hello")
    with pytest.raises(Exception, match="closed"):
        backend.search(np.ones((1, 16), dtype=np.float32))
    s.close()  # idempotent


@pytest.mark.parametrize("module", [store_module, backends_module, memory_module])
def test_module_doctests(module: Any) -> None:
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


# ------------------------------------------------------------------------------------------ search within a subset


@pytest.mark.parametrize("backend_name", BACKEND_NAMES)
def test_search_within_a_subset_of_ids(backend_name: str, tmp_path: Any) -> None:
    """``ids=`` scores exactly the stored vectors of those documents, on every backend: the same ranking and
    scores as an exhaustive search restricted to them; unknown ids are skipped, duplicates counted once."""
    enc = FakeEncoder(dim=16)
    texts = [f"document number {i} about topic {i % 5} and more words {i * 7}" for i in range(40)]
    ids = [f"d{i}" for i in range(40)]
    with MultiVectorStore(enc, make_backend(backend_name, tmp_path / backend_name, 16)) as store:
        store.add(texts, ids=ids, metadatas=[{"topic": i % 5} for i in range(40)])
        subset = ["d3", "d17", "d22", "d8", "missing", "d3", "d31"]
        query = "topic 2 and more words"
        everything = {h.id: h.score for h in store.search(query, k=40)}
        known = ["d3", "d17", "d22", "d8", "d31"]
        want = sorted(known, key=lambda i: -everything[i])
        got = store.search(query, k=10, ids=subset)
        assert [h.id for h in got] == want
        np.testing.assert_allclose([h.score for h in got], [everything[i] for i in want], rtol=1e-4, atol=1e-4)
        assert got[0].text == texts[int(got[0].id[1:])] and got[0].metadata == {"topic": int(got[0].id[1:]) % 5}
        assert [h.id for h in store.search(query, k=2, ids=subset)] == want[:2]
        assert {h.id for h in store.search(query, k=10, ids=subset, filter={"topic": 2})} == {"d17", "d22"}
        assert store.search(query, k=5, ids=[]) == []
        assert store.search(query, k=5, ids=["nobody"]) == []
        batch = store.search_batch([query, "document number 8"], k=3, ids=known)
        assert [h.id for h in batch[0]] == want[:3] and all(h.id in known for h in batch[1])
        q = store.encode_query(query)
        assert [h.id for h in store.search_by_vectors(q, k=10, ids=known)] == want
        for bad in ("d3", [3], ["a\x00b"], [""]):
            with pytest.raises(InvalidInputError):
                store.search(query, k=5, ids=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("backend_name", BACKEND_NAMES)
def test_delete_by_filter_and_operator_search(backend_name: str, tmp_path: Any) -> None:
    metas = [{"year": 2019, "lang": "en"}, {"year": 2021, "lang": "fr"}, {"year": 2023, "lang": "en"}, {}]
    with MultiVectorStore(FakeEncoder(dim=16), make_backend(backend_name, tmp_path / "b", 16)) as store:
        store.add(["cats purr", "dogs bark", "cats sleep", "fish swim"], ids=["a", "b", "c", "d"], metadatas=metas)
        recent_en = {"year": {"$gte": 2020}, "lang": {"$ne": "fr"}}
        assert [h.id for h in store.search("cats", k=4, filter=recent_en)] == ["c"]
        assert {h.id for h in store.search("cats", k=4, filter={"$or": [{"year": 2019}, {"lang": "fr"}]})} == {"a", "b"}
        assert [h.id for h in store.search("cats", k=4, filter={"lang": "en"}, ids=["c", "b"])] == ["c"]
        with pytest.raises(InvalidInputError, match="not both"):
            store.delete(["a"], filter={"lang": "en"})
        with pytest.raises(InvalidInputError, match="not both"):
            store.delete()
        with pytest.raises(InvalidInputError, match="clear"):
            store.delete(filter={})
        with pytest.raises(InvalidInputError, match=r"\$lt"):
            store.delete(filter={"year": {"$less": 2020}})
        assert store.count() == 4  # nothing deleted by the refused calls
        assert store.delete(filter={"year": {"$lt": 2022}}) == 2
        assert sorted(store.ids()) == ["c", "d"]
        assert store.delete(filter={"lang": {"$exists": False}}) == 1
        assert store.ids() == ["c"]


def test_native_qdrant_filter_through_the_store(tmp_path: Any) -> None:
    models = pytest.importorskip("qdrant_client.models")
    with MultiVectorStore(FakeEncoder(dim=16), make_backend("qdrant_edge", tmp_path / "e", 16)) as store:
        store.add(["cats purr", "dogs bark"], ids=["a", "b"], metadatas=[{"year": 2019}, {"year": 2021}])
        native = models.Filter(must=[models.FieldCondition(key="metadata.year", range=models.Range(gte=2020))])
        assert [h.id for h in store.search("cats", k=2, filter=native)] == ["b"]
        with pytest.raises(InvalidInputError, match="dict filter"):
            store.search("cats", k=2, filter=native, ids=["a"])
        import qdrant_edge as qe

        edge_native = qe.Filter(must=[qe.FieldCondition(key="doc_id", match=qe.MatchValue("a"))])
        assert [h.id for h in store.search("dogs", k=2, filter=edge_native)] == ["a"]
        assert store.delete(filter=native) == 1 and store.ids() == ["a"]
