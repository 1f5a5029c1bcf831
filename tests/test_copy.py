"""``MultiVectorStore.copy_to``: any backend to any backend, streamed, resumable after an exception or kill -9,
verified; the errors a user gets for a target that cannot receive the copy."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _backends import make_backend

from colbert_adapters import (
    CollectionConfigError,
    CopyVerificationError,
    DimensionMismatchError,
    InvalidInputError,
    MemoryBackend,
    MultiVectorStore,
    UnknownBackendError,
)
from colbert_adapters.backends import Backend, Record, create_backend, open_backend
from colbert_adapters.testing import FakeEncoder

ROOT = Path(__file__).resolve().parents[1]
DIM = 16
N = 120
TEXTS = [f"document {i} is about topic {i % 7} with the words {i * 3} and {i % 11}" for i in range(N)]
IDS = [f"doc-{i}" for i in range(N)]
METAS = [{"i": i, "topic": f"t{i % 7}", "tags": ["a", "b"][: i % 3]} for i in range(N)]

#: (source, target) directions: every backend as source and target, Voyager to and from each.
DIRECTIONS = [
    ("voyager", "qdrant-edge"),
    ("qdrant_edge", "voyager"),
    ("memory", "voyager"),
    ("voyager", "memory"),
    ("voyager", "qdrant-local"),
    ("voyager", "voyager"),
    ("qdrant_local", "qdrant-edge"),
    ("qdrant_edge", "memory"),
]


def _source(name: str, tmp_path: Path) -> MultiVectorStore:
    store = MultiVectorStore(FakeEncoder(dim=DIM), make_backend(name, tmp_path / "src", DIM))
    store.add(TEXTS, ids=IDS, metadatas=METAS)
    return store


def _reopen(name: str, location: Path) -> Backend:
    if name == "qdrant-local":
        return create_backend(name, location)
    return open_backend(location)


def _check_same(source: Backend, target: Backend, target_name: str) -> None:
    """Every document of ``source`` is in ``target`` with its text, metadata and vectors as stored."""
    assert sorted(target.ids()) == sorted(source.ids())
    want = {r.id: r for r in source.get(IDS, with_vectors=True)}
    for got in target.get(IDS, with_vectors=True):
        ref = want[got.id]
        assert got.text == ref.text and dict(got.metadata) == dict(ref.metadata)
        assert got.vectors is not None and ref.vectors is not None and got.vectors.shape == ref.vectors.shape
        if target_name == "voyager":  # int14 again: within two int14 steps of what the source stores
            step = np.abs(ref.vectors).max(axis=1, keepdims=True) / 15_748
            assert (np.abs(got.vectors - ref.vectors) <= 2 * step + 1e-7).all()
        elif target_name == "qdrant-edge":  # Edge stores float16 by default: the source's vectors, rounded
            np.testing.assert_array_equal(got.vectors, ref.vectors.astype(np.float16).astype(np.float32))
        else:  # memory and Qdrant local mode store float32 as they come
            np.testing.assert_array_equal(got.vectors, ref.vectors)


@pytest.mark.parametrize(("src", "dst"), DIRECTIONS)
def test_copy_between_backends(tmp_path: Path, src: str, dst: str) -> None:
    location = tmp_path / "dst"
    with _source(src, tmp_path) as store:
        report = store.copy_to(dst, location, batch_size=32)
        assert (report.documents, report.copied, report.skipped) == (N, N, 0)
        assert report.tokens == sum(v.shape[0] for v in store.encoder.encode_documents(TEXTS))
        assert report.verified and report.target_count == N and report.sample == 32 and report.k == 10
        assert report.agreement is not None and report.agreement >= 0.8
        assert report.model_id == store.encoder.model_id
        with _reopen(dst, location) as target:
            assert target.model_id == store.encoder.model_id  # type: ignore[attr-defined]
            _check_same(store.backend, target, dst)
            # the copy answers a query through a store as the source does (same best score; ties may order apart)
            copy = MultiVectorStore(FakeEncoder(dim=DIM), target)
            best = copy.search("document 45 about topic 3", k=1)[0]
            assert best.score == pytest.approx(store.search("document 45 about topic 3", k=1)[0].score, abs=1e-3)


def test_exact_backends_agree_exactly(tmp_path: Path) -> None:
    from colbert_adapters.backends.qdrant import QdrantCollectionConfig

    with _source("memory", tmp_path) as store:
        config = QdrantCollectionConfig(dim=DIM, datatype="float32")  # float32 storage: exact MaxSim
        report = store.copy_to("qdrant-edge", tmp_path / "dst", search_mode="exact", config=config)
    assert report.exact and report.agreement == 1.0
    assert report.max_score_diff is not None and report.max_score_diff < 1e-4


def test_qdrant_layout_and_voyager_codec_are_carried(tmp_path: Path) -> None:
    from colbert_adapters.backends.qdrant import QdrantBackend, QdrantCollectionConfig

    cfg = QdrantCollectionConfig(dim=DIM, datatype="float16", payload_indexes={"topic": "keyword"})
    with MultiVectorStore(FakeEncoder(dim=DIM), QdrantBackend.edge(tmp_path / "src", config=cfg)) as store:
        store.add(TEXTS, ids=IDS, metadatas=METAS)
        store.copy_to("qdrant-local", tmp_path / "local")
    with QdrantBackend.local(tmp_path / "local") as copy:
        assert copy.config is not None and copy.config.datatype == "float16"
        assert copy.config.payload_indexes == {"topic": "keyword"}
    with MultiVectorStore(FakeEncoder(dim=DIM), "voyager", path=tmp_path / "v8", vector_dtype="int8") as store:
        store.add(TEXTS, ids=IDS, metadatas=METAS)
        store.copy_to("voyager", tmp_path / "v8-copy")
        with open_backend(tmp_path / "v8-copy") as copy:
            assert copy.stats()["vector_dtype"] == "int8"  # type: ignore[attr-defined]
            # int8 codes decoded and encoded again are the same codes: the copy stores what the source stores
            for a, b in zip(store.get(IDS, with_vectors=True), copy.get(IDS, with_vectors=True), strict=True):
                np.testing.assert_allclose(b.vectors, a.vectors, rtol=0, atol=1e-7)  # type: ignore[arg-type]


class _Stop(Exception):
    pass


def test_resume_after_an_exception_skips_what_was_copied(tmp_path: Path) -> None:
    location = tmp_path / "dst"

    def stop_after_40(done: int) -> None:
        if done >= 40:
            raise _Stop

    with _source("memory", tmp_path) as store:
        with pytest.raises(_Stop):
            store.copy_to("voyager", location, batch_size=20, progress=stop_after_40)
        with open_backend(location) as partial:
            assert partial.count() == 40
            # a document changed in the target since: resuming rewrites it
            partial.upsert(["doc-3"], [np.ones((4, DIM), dtype=np.float32) / 4], texts=["changed"])
        with pytest.raises(CollectionConfigError, match=r"already holds 40 documents; pass resume=True"):
            store.copy_to("voyager", location)
        report = store.copy_to("voyager", location, batch_size=20, resume=True)
        assert (report.copied, report.skipped) == (N - 40 + 1, 40 - 1)
        with open_backend(location) as target:
            _check_same(store.backend, target, "voyager")
        again = store.copy_to("voyager", location, resume=True)
        assert (again.copied, again.skipped) == (0, N)


KILLED_COPY = """
import os, signal, sys
from colbert_adapters import MultiVectorStore
from colbert_adapters.testing import FakeEncoder

src, to, dst, stop = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

def progress(done):
    if done >= stop:
        os.kill(os.getpid(), signal.SIGKILL)

with MultiVectorStore.open(src, FakeEncoder(dim=int(sys.argv[5])), read_only=True) as store:
    store.copy_to(to, dst, batch_size=10, progress=progress)
"""


@pytest.mark.parametrize("to", ["qdrant-edge", "voyager"])
def test_resume_after_kill_9(tmp_path: Path, to: str) -> None:
    _source("voyager", tmp_path).close()
    src, dst = tmp_path / "src" / "voyager", tmp_path / "dst"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_COPY, str(src), to, str(dst), "30", str(DIM)],
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    with open_backend(dst) as partial:
        assert partial.count() == 30  # every batch written before the kill is there
    with MultiVectorStore.open(src, FakeEncoder(dim=DIM), read_only=True) as store:
        report = store.copy_to(to, dst, resume=True)
        assert (report.copied, report.skipped) == (N - 30, 30)
        with open_backend(dst) as target:
            _check_same(store.backend, target, to)


class _RecordingBackend:
    """A user's own backend (the protocol, over a MemoryBackend) that records the ids of each vector read."""

    def __init__(self) -> None:
        self.inner = MemoryBackend(dim=DIM)
        self.vector_reads: list[int] = []

    @property
    def dim(self) -> int | None:
        return self.inner.dim

    def get(self, ids: Sequence[str], *, with_vectors: bool = False) -> list[Record]:
        if with_vectors:
            self.vector_reads.append(len(ids))
        return self.inner.get(ids, with_vectors=with_vectors)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __enter__(self) -> _RecordingBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.inner.close()


def test_copy_streams_in_batches(tmp_path: Path) -> None:
    source = _RecordingBackend()
    with MultiVectorStore(FakeEncoder(dim=DIM), source) as store:  # type: ignore[arg-type]
        store.add(TEXTS, ids=IDS, metadatas=METAS)
        report = store.copy_to("qdrant-edge", tmp_path / "dst", batch_size=25, sample=4)
    assert report.copied == N
    # one read per batch of at most 25 documents, plus the verification's sample: never all vectors at once
    assert source.vector_reads == [25, 25, 25, 25, 20, 4]


def test_targets_that_cannot_receive_the_copy(tmp_path: Path) -> None:
    with _source("memory", tmp_path) as store:
        with pytest.raises(UnknownBackendError, match=r"voyager, qdrant-edge, qdrant-url, qdrant-local, memory"):
            store.copy_to("pinecone", tmp_path / "x")
        with pytest.raises(InvalidInputError, match=r"needs a location .*MemoryBackend\(\)"):
            store.copy_to("memory")
        with pytest.raises(InvalidInputError, match=r"same backend"):
            store.copy_to(store.backend)
        other = MultiVectorStore(FakeEncoder(dim=8), "voyager", path=tmp_path / "dim8")
        other.add(["eight dims"], ids=["x"])
        other.close()
        with pytest.raises(DimensionMismatchError, match=r"stores 8-d vectors .* holds 16-d ones; copy into a new"):
            store.copy_to("voyager", tmp_path / "dim8", resume=True)
        with pytest.raises(CollectionConfigError, match=r"holds a voyager index, not qdrant-edge; pass --to voyager"):
            store.copy_to("qdrant-edge", tmp_path / "dim8")
        with pytest.raises(CollectionConfigError, match=r"records model 'another-model' .* copy into a new"):
            store.copy_to(MemoryBackend(dim=DIM, model_id="another-model"))
        foreign = MemoryBackend(dim=DIM)
        foreign.upsert(["doc-1", "not-in-source"], [np.eye(2, DIM, dtype=np.float32)] * 2)
        with pytest.raises(CollectionConfigError, match=r"holds 1 document\(s\) that .* not a copy of this source"):
            store.copy_to(foreign, resume=True)
        (tmp_path / "stuff").mkdir()
        (tmp_path / "stuff" / "notes.txt").write_text("not an index")
        with pytest.raises(CollectionConfigError, match=r"not an index directory"):
            store.copy_to("voyager", tmp_path / "stuff")


def test_verification_fails_when_the_target_changes_during_the_copy(tmp_path: Path) -> None:
    with _source("memory", tmp_path) as store:
        target = MemoryBackend(dim=DIM)

        def lose_one(done: int) -> None:
            if done == N:
                target.delete(["doc-7"])

        with pytest.raises(CopyVerificationError, match=r"holds 119 documents after the copy but .* holds 120"):
            store.copy_to(target, progress=lose_one)

        target = MemoryBackend(dim=DIM)

        def overwrite_first(done: int) -> None:
            if done == N:  # doc-0 is the first document sampled
                target.upsert(["doc-0"], [np.eye(3, DIM, dtype=np.float32)], texts=[TEXTS[0]], metadatas=[METAS[0]])

        with pytest.raises(CopyVerificationError, match=r"1 of 32 sampled documents differ .*'doc-0'"):
            store.copy_to(target, progress=overwrite_first)
        # resuming rewrites the document that differs
        report = store.copy_to(target, resume=True)
        assert (report.copied, report.skipped) == (1, N - 1) and report.exact and report.agreement == 1.0


def test_a_document_the_target_refuses_stops_the_copy_with_its_id(tmp_path: Path) -> None:
    store = MultiVectorStore(FakeEncoder(dim=DIM), MemoryBackend(dim=DIM))
    long_doc = np.random.default_rng(0).standard_normal((70_000, DIM)).astype(np.float32)  # over Qdrant's cap
    store.backend.upsert(["short", "long"], [np.eye(2, DIM, dtype=np.float32), long_doc])
    with pytest.raises(InvalidInputError, match=r"refused documents 'short'..'long'.*Qdrant stores fewer than"):
        store.copy_to("qdrant-edge", tmp_path / "dst")
