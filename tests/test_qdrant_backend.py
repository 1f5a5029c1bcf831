"""QdrantBackend beyond the shared contract: ids, schema checks, batching, retries, errors, Edge, copy."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from contract import unit_multivector

pytest.importorskip("qdrant_client")
pytest.importorskip("qdrant_edge")

import httpx
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

from colbert_adapters.backends import backend_class
from colbert_adapters.backends.memory import MemoryBackend
from colbert_adapters.backends.qdrant import (
    ID_NAMESPACE,
    MAX_MULTIVECTOR_FLOATS,
    QdrantBackend,
    QdrantCollectionConfig,
    QdrantRequestError,
    QdrantUnavailableError,
    copy_collection,
    estimate_point_bytes,
    point_id,
    setup_collection,
    split_by_bytes,
    summary_vector,
)
from colbert_adapters.errors import (
    ColBERTError,
    CollectionConfigError,
    DimensionMismatchError,
    IndexLockedError,
    InvalidInputError,
)
from colbert_adapters.store import MultiVectorStore
from colbert_adapters.testing import FakeEncoder

DIM = 8


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


def _docs(rng: np.random.Generator, n: int, dim: int = DIM, tokens: tuple[int, int] = (1, 12)) -> list[np.ndarray]:
    return [unit_multivector(rng, int(rng.integers(*tokens)), dim) for _ in range(n)]


@pytest.fixture(params=["edge", "local"])
def any_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    b = (
        QdrantBackend.edge(tmp_path / "edge", dim=DIM)
        if request.param == "edge"
        else QdrantBackend.local(":memory:", dim=DIM)
    )
    yield b
    b.close()


# ------------------------------------------------------------------------------------------------ ids


def test_module_doctests() -> None:
    import doctest

    from colbert_adapters.backends import qdrant
    from colbert_adapters.backends.qdrant import _engines, _points, admin

    for module in (qdrant, admin, _points, _engines):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0, module.__name__


def test_point_ids_are_deterministic_uuid5() -> None:
    import uuid

    assert point_id("doc-1") == str(uuid.uuid5(ID_NAMESPACE, "doc-1"))
    assert point_id("doc-1") == point_id("doc-1") != point_id("doc-2")
    assert uuid.UUID(point_id("ü/é 😀")).version == 5


def test_original_id_kept_in_payload(rng: np.random.Generator) -> None:
    client = QdrantClient(":memory:")
    b = QdrantBackend.from_client(client, "docs", dim=DIM)
    b.upsert(["doc-1", "42"], _docs(rng, 2), texts=["one", None], metadatas=[{"a": 1}, None])
    (rec,) = client.retrieve("docs", [point_id("doc-1")], with_payload=True)
    assert rec.payload is not None
    assert rec.payload["doc_id"] == "doc-1"
    assert rec.payload["text"] == "one"
    assert rec.payload["metadata"] == {"a": 1}
    assert isinstance(rec.payload["seq"], int)
    b.close()
    client.get_collection("docs")  # the caller's client is not closed by the backend


def test_summary_vector_is_unit_mean() -> None:
    v = np.array([[1, 0], [0, 1]], dtype=np.float32)
    np.testing.assert_allclose(summary_vector(v), [2**-0.5, 2**-0.5], atol=1e-6)
    cancel = np.array([[1, 0], [-1, 0], [0, 0]], dtype=np.float32)
    np.testing.assert_allclose(summary_vector(cancel), [1, 0])  # mean 0: first non-zero row
    np.testing.assert_allclose(summary_vector(np.zeros((2, 3), dtype=np.float32)), [1, 0, 0])


# ------------------------------------------------------------------------------------------------ engines


def test_engine_selection_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="exactly one of"):
        QdrantBackend()
    with pytest.raises(InvalidInputError, match="got path, local"):
        QdrantBackend(tmp_path, local=":memory:")
    with pytest.raises(InvalidInputError, match="search mode"):
        QdrantBackend.local(dim=4, search_mode="fast")
    with pytest.raises(InvalidInputError, match="disagrees"):
        QdrantBackend.local(dim=4, config=QdrantCollectionConfig(dim=5))
    with pytest.raises(InvalidInputError, match="client must be"):
        QdrantBackend(client=object())


def test_registry_name_with_path_is_edge(tmp_path: Path) -> None:
    enc = FakeEncoder(dim=16)
    with MultiVectorStore(enc, backend="qdrant", path=tmp_path / "idx") as store:
        store.add(["the cat sat", "dogs bark loudly"], ids=["cat", "dog"])
        assert isinstance(store.backend, backend_class("qdrant"))
        assert store.backend.engine == "edge"  # type: ignore[attr-defined]
        assert [h.id for h in store.search("a cat", k=1)] == ["cat"]
    # Reopened through the registry: same documents, model recorded.
    with MultiVectorStore(enc, backend="qdrant", path=tmp_path / "idx") as store:
        assert store.count() == 2
        assert store.backend.model_id == enc.model_id  # type: ignore[attr-defined]
    # Another model is refused.
    with pytest.raises(CollectionConfigError, match="model"):
        MultiVectorStore(FakeEncoder(dim=16, seed=3), backend="qdrant", path=tmp_path / "idx")


def test_unreachable_server_fails_fast_naming_the_url() -> None:
    t0 = time.perf_counter()
    with pytest.raises(QdrantUnavailableError, match=r"http://127\.0\.0\.1:1"):
        QdrantBackend.from_url("http://127.0.0.1:1", dim=DIM, timeout=2)
    with pytest.raises(QdrantUnavailableError, match=r"127\.0\.0\.1"):
        QdrantBackend.from_url("http://127.0.0.1:1", dim=DIM, timeout=2, prefer_grpc=True)
    assert time.perf_counter() - t0 < 15


# ------------------------------------------------------------------------------------------------ schema


def test_reopen_with_other_dim_is_refused(tmp_path: Path, rng: np.random.Generator) -> None:
    with QdrantBackend.edge(tmp_path / "e", dim=DIM) as b:
        b.upsert(["a"], _docs(rng, 1))
    with pytest.raises(CollectionConfigError, match=r"stores 8-d.*not 16-d.*recreate=True"):
        QdrantBackend.edge(tmp_path / "e", dim=16)
    with QdrantBackend.edge(tmp_path / "e") as b:  # dim taken from the shard
        assert (b.dim, b.count()) == (DIM, 1)
    with QdrantBackend.edge(tmp_path / "e", dim=16, recreate=True) as b:
        assert (b.dim, b.count()) == (16, 0)


@pytest.mark.parametrize(
    ("vectors_config", "match"),
    [
        (models.VectorParams(size=DIM, distance=models.Distance.COSINE), "vectors"),
        (
            {
                "colbert": models.VectorParams(size=DIM, distance=models.Distance.DOT),
                "summary": models.VectorParams(size=DIM, distance=models.Distance.COSINE),
            },
            "not a MaxSim multivector",
        ),
        (
            {
                "colbert": models.VectorParams(
                    size=DIM,
                    distance=models.Distance.COSINE,
                    multivector_config=models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM),
                ),
                "summary": models.VectorParams(size=DIM, distance=models.Distance.COSINE),
            },
            "distance 'cosine', expected 'dot'",
        ),
        (
            {
                "colbert": models.VectorParams(
                    size=DIM,
                    distance=models.Distance.DOT,
                    multivector_config=models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM),
                ),
                "dense": models.VectorParams(size=DIM, distance=models.Distance.COSINE),
            },
            "summary",
        ),
    ],
)
def test_foreign_collection_schema_is_refused(vectors_config: Any, match: str) -> None:
    client = QdrantClient(":memory:")
    client.create_collection("docs", vectors_config=vectors_config)
    with pytest.raises(CollectionConfigError, match=match) as info:
        QdrantBackend.from_client(client, "docs", dim=DIM)
    assert "recreate=True" in str(info.value) and "collection_name" in str(info.value)
    with QdrantBackend.from_client(client, "docs", dim=DIM, recreate=True) as b:
        assert b.count() == 0


def test_collection_created_elsewhere_without_metadata_is_accepted(rng: np.random.Generator) -> None:
    client = QdrantClient(":memory:")
    mv = models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM)
    client.create_collection(
        "docs",
        vectors_config={
            "colbert": models.VectorParams(size=DIM, distance=models.Distance.DOT, multivector_config=mv),
            "summary": models.VectorParams(size=DIM, distance=models.Distance.COSINE),
        },
    )
    with QdrantBackend.from_client(client, "docs") as b:
        assert b.dim == DIM
        b.upsert(["x"], _docs(rng, 1))
        b.model_id = "m1"
    with QdrantBackend.from_client(client, "docs") as b:
        assert b.model_id == "m1"
        with pytest.raises(CollectionConfigError, match="m1"):
            b.model_id = "m2"


def test_model_id_on_local_mode_collection_metadata() -> None:
    client = QdrantClient(":memory:")
    QdrantBackend.from_client(client, "docs", dim=DIM, model_id="enc-a").close()
    meta = client.get_collection("docs").config.metadata
    assert meta is not None and meta["colbert_adapters"]["model_id"] == "enc-a"
    with pytest.raises(CollectionConfigError, match="enc-a"):
        QdrantBackend.from_client(client, "docs", model_id="enc-b")


def test_edge_manifest_next_to_shard(tmp_path: Path) -> None:
    QdrantBackend.edge(tmp_path / "e", dim=DIM, model_id="enc").close()
    manifest = json.loads((tmp_path / "e" / "colbert_adapters.json").read_text())
    assert manifest["model_id"] == "enc"
    assert manifest["config"]["dim"] == DIM
    assert (tmp_path / "e" / "shard" / "edge_config.json").is_file()


def test_edge_refuses_a_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(CollectionConfigError, match="not a colbert-adapters Qdrant Edge index"):
        QdrantBackend.edge(tmp_path, dim=DIM)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_edge_directory_locked_while_open(tmp_path: Path) -> None:
    with QdrantBackend.edge(tmp_path / "e", dim=DIM), pytest.raises(IndexLockedError, match="no read-only mode"):
        QdrantBackend.edge(tmp_path / "e")
    # (local mode maps its "already accessed" RuntimeError the same way, but qdrant-client 1.20 then leaks
    # the lock file handle, which this suite's warnings-as-errors would report.)


def test_edge_second_process_gets_a_clear_error(tmp_path: Path, rng: np.random.Generator) -> None:
    """A second process cannot open a shard another holds, not even to read; it is told so, and nothing changes."""
    import subprocess
    import sys

    with QdrantBackend.edge(tmp_path / "e", dim=DIM) as backend:
        backend.upsert(["a"], _docs(rng, 1))
        code = (
            "import sys\n"
            "from colbert_adapters.backends.qdrant import QdrantBackend\n"
            "from colbert_adapters.errors import IndexLockedError\n"
            "try:\n"
            f"    QdrantBackend.edge({str(tmp_path / 'e')!r})\n"
            "except IndexLockedError as err:\n"
            "    print(err)\n"
            "    sys.exit(3)\n"
        )
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 3, proc.stderr
        assert "no read-only mode" in proc.stdout and "QdrantBackend(url=...)" in proc.stdout
        assert backend.count() == 1


# ------------------------------------------------------------------------------------------------ writes


def test_split_by_bytes() -> None:
    assert split_by_bytes([], 100, 10) == []
    assert split_by_bytes([10] * 5, 10_000, 2) == [(0, 2), (2, 4), (4, 5)]
    sizes = [3000, 3000, 3000, 20_000, 10]
    batches = split_by_bytes(sizes, 8000, 100)
    assert batches == [(0, 2), (2, 3), (3, 4), (4, 5)]  # the oversized item goes alone
    assert [i for a, b in batches for i in range(a, b)] == list(range(5))
    with pytest.raises(InvalidInputError):
        split_by_bytes([1], 0, 1)


class RecordingClient(QdrantClient):
    """A QdrantClient (local mode) that records the REST JSON size of every upsert request."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.request_bytes: list[int] = []
        self.request_points: list[int] = []

    def upsert(self, collection_name: str, points: Any, **kwargs: Any) -> Any:
        body = models.PointsList(points=points).model_dump_json(exclude_none=True)
        self.request_bytes.append(len(body.encode("utf-8")))
        self.request_points.append(len(points))
        return super().upsert(collection_name, points, **kwargs)


def test_upserts_are_split_by_request_bytes(rng: np.random.Generator) -> None:
    client = RecordingClient(":memory:")
    limit = 200_000
    b = QdrantBackend.from_client(client, "docs", dim=64, max_request_bytes=limit)
    docs = _docs(rng, 40, dim=64, tokens=(40, 60))
    texts = ["é" * 500] * 40  # payload counts too (UTF-8 bytes)
    b.upsert([f"d{i}" for i in range(40)], docs, texts=texts)
    assert sum(client.request_points) == 40 and b.count() == 40
    assert len(client.request_bytes) > 5
    assert max(client.request_bytes) <= limit
    # The estimate is an upper bound of the real body.
    for doc in docs[:5]:
        point = models.PointStruct(
            id=point_id("x"),
            vector={"colbert": doc.tolist(), "summary": doc[0].tolist()},
            payload={"doc_id": "x", "text": "é" * 500, "metadata": {}, "seq": 2**50},
        )
        real = len(point.model_dump_json(exclude_none=True).encode())
        est = estimate_point_bytes(doc.size + doc.shape[1], len(json.dumps(point.payload, ensure_ascii=False).encode()))
        assert real <= est < 2 * real


def test_max_batch_points(rng: np.random.Generator) -> None:
    client = RecordingClient(":memory:")
    b = QdrantBackend.from_client(client, "docs", dim=DIM, max_batch_points=7)
    b.upsert([f"d{i}" for i in range(20)], _docs(rng, 20))
    assert client.request_points == [7, 7, 6]


class FlakyClient(QdrantClient):
    """Fails the first ``failures`` upserts with the given HTTP status."""

    def __init__(self, status: int, failures: int) -> None:
        super().__init__(":memory:")
        self.status, self.failures, self.calls = status, failures, 0

    def upsert(self, collection_name: str, points: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls <= self.failures:
            raise UnexpectedResponse(self.status, "error", b'{"status": "busy"}', httpx.Headers())
        return super().upsert(collection_name, points, **kwargs)


def test_transient_errors_are_retried(rng: np.random.Generator) -> None:
    client = FlakyClient(503, failures=2)
    b = QdrantBackend.from_client(client, "docs", dim=DIM, retry_backoff=0.01)
    b.upsert(["a", "b"], _docs(rng, 2))
    assert client.calls == 3 and b.count() == 2


def test_retries_give_up_with_a_clear_error(rng: np.random.Generator) -> None:
    client = FlakyClient(503, failures=10)
    b = QdrantBackend.from_client(client, "docs", dim=DIM, retry_backoff=0.01, max_retries=2)
    with pytest.raises(QdrantUnavailableError, match="upsert"):
        b.upsert(["a"], _docs(rng, 1))
    assert client.calls == 3


def test_client_errors_are_not_retried(rng: np.random.Generator) -> None:
    client = FlakyClient(403, failures=10)
    b = QdrantBackend.from_client(client, "docs", dim=DIM, retry_backoff=0.01)
    with pytest.raises(QdrantRequestError, match="api_key"):
        b.upsert(["a"], _docs(rng, 1))
    assert client.calls == 1


@pytest.mark.parametrize("engine", ["edge", "local"])
def test_over_cap_document_is_refused_before_sending(tmp_path: Path, engine: str) -> None:
    dim = 128
    b = QdrantBackend.edge(tmp_path / "e", dim=dim) if engine == "edge" else QdrantBackend.local(dim=dim)
    over = np.full((MAX_MULTIVECTOR_FLOATS // dim, dim), dim**-0.5, dtype=np.float32)  # exactly 1,048,576 floats
    ok = np.full((3, dim), dim**-0.5, dtype=np.float32)
    with pytest.raises(InvalidInputError, match=r"8191 tokens at 128 dims.*nothing was written"):
        b.upsert(["fine", "long"], [ok, over])
    assert b.count() == 0
    b.close()


def test_malformed_input_never_reaches_edge(tmp_path: Path, rng: np.random.Generator) -> None:
    # A malformed update that reaches Edge panics and stays in its WAL, breaking every later load.
    b = QdrantBackend.edge(tmp_path / "e", dim=DIM)
    b.upsert(["a"], _docs(rng, 1))
    for bad in ([[]], [[0.1] * DIM, [0.1] * (DIM - 1)], np.zeros((0, DIM)), [[np.nan] * DIM]):
        with pytest.raises(InvalidInputError):
            b.upsert(["b"], [bad])
    with pytest.raises(InvalidInputError):
        b.search([[]], k=1)
    b.close()
    with QdrantBackend.edge(tmp_path / "e") as reopened:
        assert reopened.get(["a", "b"])[0].id == "a" and reopened.count() == 1


def test_first_upsert_fixes_dim_and_batch_must_agree(tmp_path: Path, rng: np.random.Generator) -> None:
    b = QdrantBackend.edge(tmp_path / "e")
    assert b.dim is None and b.count() == 0 and b.search(unit_multivector(rng, 2, 3), k=1) == []
    with pytest.raises(DimensionMismatchError, match="vectors\\[0\\] has dimension 4"):
        b.upsert(["a", "b"], [unit_multivector(rng, 2, 4), unit_multivector(rng, 2, 5)])
    assert b.dim is None and not (tmp_path / "e" / "shard").exists()
    b.upsert(["a"], [unit_multivector(rng, 2, 4)])
    assert b.dim == 4
    b.close()


# ------------------------------------------------------------------------------------------------ delete


def test_delete_strict_and_by_filter(any_backend: QdrantBackend, rng: np.random.Generator) -> None:
    b = any_backend
    metas = [{"color": ["red", "blue"][i % 2], "tags": ["x", "y"], "year": 2020 + i % 3} for i in range(12)]
    b.upsert([f"d{i}" for i in range(12)], _docs(rng, 12), metadatas=metas)
    with pytest.raises(InvalidInputError, match="unknown id"):
        b.delete(["d0", "nope"], missing_ok=False)
    assert b.count() == 12  # nothing deleted
    assert b.delete(["d0", "nope"]) == 1
    assert b.delete_where({"color": "red", "year": [2020.0, 2021]}) == 3  # d4(2021), d6(2020), d10(2021)
    assert b.delete_where({"tags": "z"}) == 0
    # a list field matches by its elements; operators, as on every backend
    assert b.delete_where({"tags": "x", "year": {"$gte": 2022}, "color": {"$ne": "red"}}) == 2  # d5, d11
    native = models.Filter(must=[models.FieldCondition(key="metadata.color", match=models.MatchValue(value="blue"))])
    assert b.delete_where(native) == 4  # d1, d3, d7, d9
    assert sorted(r.id for r in b.get([f"d{i}" for i in range(12)])) == ["d2", "d8"]
    with pytest.raises(InvalidInputError):
        b.delete_where({})


@pytest.mark.parametrize("engine", ["edge", "local"])
def test_clear_keeps_collection_layout_and_model(tmp_path: Path, rng: np.random.Generator, engine: str) -> None:
    cfg = QdrantCollectionConfig(dim=DIM, datatype="float16", payload_indexes={"color": "keyword"})
    client = QdrantClient(":memory:") if engine == "local" else None

    def open_backend(**kwargs: Any) -> QdrantBackend:
        if client is not None:
            return QdrantBackend.from_client(client, "docs", **kwargs)
        return QdrantBackend.edge(tmp_path / "e", **kwargs)

    with open_backend() as empty:
        empty.clear()  # nothing created yet: a no-op
        assert empty.dim is None and empty.count() == 0
    ids = [f"d{i}" for i in range(2500)]  # more than one scroll page and one delete request
    docs = _docs(rng, len(ids), tokens=(1, 3))
    with open_backend(config=cfg, model_id="enc-a") as b:
        b.upsert(ids, docs, metadatas=[{"color": ["red", "blue"][i % 2]} for i in range(len(ids))])
        assert b.count() == len(ids)
        b.clear()
        assert (b.count(), b.ids(), b.get(ids[:3])) == (0, [], [])
        assert b.search(docs[0], k=3) == [] and b.search(docs[0], k=3, mode="exact") == []
        assert (b.dim, b.config, b.model_id) == (DIM, cfg.resolved(), "enc-a")
        b.clear()  # already empty
        b.upsert(["again"], [docs[5]], metadatas=[{"color": "red"}])
        assert [h.id for h in b.search(docs[5], k=2, filter={"color": "red"})] == ["again"]
    with open_backend() as reopened:  # the layout and the model are still recorded
        assert (reopened.count(), reopened.ids()) == (1, ["again"])
        assert (reopened.config, reopened.model_id) == (cfg.resolved(), "enc-a")
        with pytest.raises(CollectionConfigError, match="enc-a"):
            reopened.model_id = "enc-b"
    closed = open_backend()
    closed.close()
    with pytest.raises(ColBERTError, match="closed"):
        closed.clear()
    if client is not None:
        client.close()


# ------------------------------------------------------------------------------------------------ search


def test_filters_match_memory_backend_semantics(any_backend: QdrantBackend, rng: np.random.Generator) -> None:
    metas: list[dict[str, Any]] = [
        {"flag": True, "n": 2020, "tags": ["a", "b"], "opt": None},
        {"flag": False, "n": 2020.0, "tags": "a", "opt": 1},
        {"flag": 1, "n": "2020", "tags": ["a"]},
        {"flag": True, "n": 2021, "tags": "b", "opt": None},
    ] * 5
    ids = [f"d{i}" for i in range(20)]
    docs = _docs(rng, 20)
    any_backend.upsert(ids, docs, metadatas=metas)
    oracle = MemoryBackend(dim=DIM)
    oracle.upsert(ids, docs, metadatas=metas)
    q = unit_multivector(rng, 3, DIM)
    for flt in (
        {"flag": True},
        {"flag": 1},
        {"n": 2020},
        {"n": "2020"},
        {"tags": "a"},
        {"opt": None},
        {"flag": [True, False], "n": [2020, 2021]},
        {"tags": ["a", "b"]},
    ):
        for mode in ("exact", "two_stage"):
            got = any_backend.search(q, k=4, filter=flt, mode=mode)
            want = oracle.search(q, k=4, filter=flt)
            assert [h.id for h in got] == [h.id for h in want], (flt, mode)
    with pytest.raises(InvalidInputError, match="'\\['"):
        any_backend.search(q, k=3, filter={"a[0]": 1})


def test_native_filters(any_backend: QdrantBackend, rng: np.random.Generator) -> None:
    any_backend.upsert([f"d{i}" for i in range(9)], _docs(rng, 9), metadatas=[{"year": 2000 + i} for i in range(9)])
    native = models.Filter(
        must=[models.FieldCondition(key="metadata.year", range=models.Range(gte=2003, lt=2007))],
        must_not=[models.HasIdCondition(has_id=[point_id("d4")])],
    )
    hits = any_backend.search(unit_multivector(rng, 2, DIM), k=9, filter=native)
    assert sorted(h.id for h in hits) == ["d3", "d5", "d6"]
    if any_backend.engine == "edge":
        import qdrant_edge as qe

        edge_native = qe.Filter(must=[qe.FieldCondition(key="doc_id", match=qe.MatchAny(["d1", "d2"]))])
        assert sorted(h.id for h in any_backend.search(unit_multivector(rng, 2, DIM), k=9, filter=edge_native)) == [
            "d1",
            "d2",
        ]


def test_two_stage_prefetch_limits_candidates(tmp_path: Path, rng: np.random.Generator) -> None:
    b = QdrantBackend.edge(tmp_path / "e", dim=DIM, prefetch_limit=5)
    docs = _docs(rng, 60)
    b.upsert([f"d{i}" for i in range(60)], docs)
    q = docs[17]
    assert b.search(q, k=1)[0].id == "d17"  # its own summary is the nearest
    exact = b.search(q, k=20, mode="exact")
    two = b.search(q, k=20)  # k > prefetch_limit: the prefetch widens to k candidates
    assert len(exact) == len(two) == 20
    exact_scores = {h.id: h.score for h in b.search(q, k=60, mode="exact")}
    for h in two:  # the rerank is exact MaxSim on whatever the prefetch found
        assert h.score == pytest.approx(exact_scores[h.id], abs=1e-5)
    b.close()


@pytest.mark.parametrize(("datatype", "quantization", "atol"), [("float16", None, 3e-3), ("float32", "int8", 1e-4)])
def test_storage_options_keep_results(
    tmp_path: Path, rng: np.random.Generator, datatype: str, quantization: str | None, atol: float
) -> None:
    cfg = QdrantCollectionConfig(
        dim=32, datatype=datatype, quantization=quantization, on_disk=True, payload_indexes={"color": "keyword"}
    )
    docs = _docs(rng, 300, dim=32, tokens=(5, 20))
    ids = [f"d{i}" for i in range(300)]
    metas = [{"color": ["red", "blue"][i % 2]} for i in range(300)]
    oracle = MemoryBackend(dim=32)
    oracle.upsert(ids, docs, metadatas=metas)
    with QdrantBackend.edge(tmp_path / "e", config=cfg, search_mode="exact") as b:
        b.upsert(ids, docs, metadatas=metas)
        b.optimize()
        for _ in range(5):
            q = unit_multivector(rng, 8, 32)
            want = oracle.search(q, k=10, filter={"color": "red"})
            got = b.search(q, k=10, filter={"color": "red"})
            assert len({h.id for h in got} & {h.id for h in want}) >= 9
            exact = {h.id: h.score for h in want}
            assert all(abs(h.score - exact[h.id]) < atol for h in got if h.id in exact)
            got2 = b.search(q, k=10, mode="two_stage", prefetch_limit=300, filter={"color": "red"})
            assert len({h.id for h in got2} & {h.id for h in want}) >= 9
    with QdrantBackend.edge(tmp_path / "e") as b:
        assert b.config is not None and (b.config.datatype, b.config.quantization) == (datatype, quantization)


def test_optimize_policies(tmp_path: Path, rng: np.random.Generator, caplog: pytest.LogCaptureFixture) -> None:
    def automatic_optimizations() -> list[str]:
        return [r.getMessage() for r in caplog.records if "since the last optimization" in r.getMessage()]

    caplog.set_level(logging.DEBUG, logger="colbert_adapters.backends.qdrant")
    b = QdrantBackend.edge(tmp_path / "e", dim=DIM, optimize_every=10, flush_on_write=False)
    b.upsert([f"d{i}" for i in range(6)], _docs(rng, 6))
    assert automatic_optimizations() == []  # 6 points written: below optimize_every
    b.upsert([f"e{i}" for i in range(6)], _docs(rng, 6))
    assert len(automatic_optimizations()) == 1  # optimized after 12 >= 10 points
    assert automatic_optimizations()[0].startswith("12 points written")
    b.upsert([f"f{i}" for i in range(6)], _docs(rng, 6))
    assert len(automatic_optimizations()) == 1  # the count restarted at 0
    assert isinstance(b.optimize(), bool)
    b.flush()
    b.close()
    b.close()
    with pytest.raises(Exception, match="closed"):
        b.count()


# ------------------------------------------------------------------------------------------------ copy


def test_copy_edge_to_local_mode(tmp_path: Path, rng: np.random.Generator) -> None:
    docs = _docs(rng, 50)
    ids = [f"doc-{i}" for i in range(50)]
    metas = [{"i": i, "color": ["red", "blue"][i % 2]} for i in range(50)]
    cfg = QdrantCollectionConfig(dim=DIM, payload_indexes={"color": "keyword"})
    with setup_collection(tmp_path / "edge", cfg, model_id="enc-x") as src:
        src.upsert(ids, docs, texts=[f"t{i}" for i in range(50)], metadatas=metas)
        src.delete(["doc-3"])
        q = unit_multivector(rng, 3, DIM)
        before = src.search(q, k=10, mode="exact", filter={"color": "red"})
        client = QdrantClient(path=str(tmp_path / "local"))
        with QdrantBackend.from_client(client, "docs") as dst:
            seen: list[int] = []
            assert copy_collection(src, dst, batch_points=16, progress=seen.append) == 49
            assert seen[-1] == 49 and len(seen) == 4
            assert dst.count() == 49 and dst.model_id == "enc-x" and dst.dim == DIM
            after = dst.search(q, k=10, mode="exact", filter={"color": "red"})
            assert [(h.id, h.text, dict(h.metadata)) for h in after] == [
                (h.id, h.text, dict(h.metadata)) for h in before
            ]
            np.testing.assert_allclose([h.score for h in after], [h.score for h in before], atol=2e-3)  # float16
            (rec,) = dst.get(["doc-7"], with_vectors=True)
            np.testing.assert_allclose(rec.vectors, docs[7].astype(np.float16), atol=1e-6)  # Edge stored float16
        client.close()


def test_copy_refuses_other_dim_or_model(tmp_path: Path, rng: np.random.Generator) -> None:
    with QdrantBackend.edge(tmp_path / "e", dim=DIM, model_id="a") as src:
        src.upsert(["x"], _docs(rng, 1))
        with QdrantBackend.local(dim=DIM + 1) as dst, pytest.raises(CollectionConfigError, match="9-d"):
            copy_collection(src, dst)
        with QdrantBackend.local(dim=DIM, model_id="b") as dst, pytest.raises(CollectionConfigError, match="'a'"):
            copy_collection(src, dst)


# ------------------------------------------------------------------------------------------------ payload indexes


def _edge_index_points(path: Path) -> dict[str, int]:
    """Points covered by each payload index of the Edge shard at ``path``, read with the engine's own API."""
    import qdrant_edge

    shard = qdrant_edge.EdgeShard.load(str(path / "shard"))
    try:
        return {key: schema.points for key, schema in shard.info().payload_schema.items()}
    finally:
        shard.close()


def test_payload_indexes_cover_the_metadata(tmp_path: Path, rng: np.random.Generator) -> None:
    cfg = QdrantCollectionConfig(dim=DIM, payload_indexes={"bucket": "integer"})
    with setup_collection(tmp_path / "e", cfg) as backend:
        backend.upsert([f"d{i}" for i in range(30)], _docs(rng, 30), metadatas=[{"bucket": i % 3} for i in range(30)])
        assert len(backend.search(unit_multivector(rng, 2, DIM), k=30, filter={"bucket": 1})) == 10
    assert _edge_index_points(tmp_path / "e") == {"metadata.bucket": 30}


def test_payload_indexes_added_on_reopen(tmp_path: Path, rng: np.random.Generator) -> None:
    with QdrantBackend.edge(tmp_path / "e", dim=DIM) as backend:
        backend.upsert(["a", "b"], _docs(rng, 2), metadatas=[{"lang": "en"}, {"lang": "fr"}])
    cfg = QdrantCollectionConfig(dim=DIM, payload_indexes={"lang": "keyword"})
    with QdrantBackend.edge(tmp_path / "e", config=cfg) as backend:
        assert backend.count() == 2
    assert _edge_index_points(tmp_path / "e") == {"metadata.lang": 2}
    with QdrantBackend.edge(tmp_path / "e") as backend:  # recorded in the layout, kept on reopen
        assert dict(backend.config.payload_indexes) == {"lang": "keyword"}


@pytest.mark.parametrize("key", ["a..b", "x[0]", 'q"', ""])
def test_payload_index_key_must_be_a_field_name(key: str) -> None:
    with pytest.raises(InvalidInputError, match=r"JSON path|keys are metadata fields"):
        QdrantCollectionConfig(dim=DIM, payload_indexes={key: "keyword"})


def test_edge_opened_by_the_engine_elsewhere_still_opens(tmp_path: Path, rng: np.random.Generator) -> None:
    """The engine rewrites a shard's files when it opens it: the last clean close's record goes stale, not 'damaged'."""
    docs = _docs(rng, 5)
    with QdrantBackend.edge(tmp_path / "e", dim=DIM) as backend:
        backend.upsert([f"d{i}" for i in range(5)], docs)
    _edge_index_points(tmp_path / "e")  # opens and closes the shard with qdrant_edge directly
    with QdrantBackend.edge(tmp_path / "e") as backend:
        assert backend.count() == 5
        got = backend.get(["d3"], with_vectors=True)[0].vectors
        np.testing.assert_allclose(got, docs[3].astype(np.float16), atol=1e-6)  # stored float16 (the default)
        assert backend.verify().ok
