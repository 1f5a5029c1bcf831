"""Long documents: ``MultiVectorStore(long_documents="split")`` stores a text longer than the encoder's
``document_length`` as overlapping token windows and finds it whole, on every backend (memory is the oracle)."""

from __future__ import annotations

import logging
import pathlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from _backends import BACKEND_NAMES, SCORE_ATOL, make_backend
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from colbert_adapters import MultiVectorStore
from colbert_adapters.backends import Backend
from colbert_adapters.errors import InvalidInputError
from colbert_adapters.scoring import maxsim
from colbert_adapters.testing import FakeEncoder

KEY = "_colbert_window"  # the reserved metadata key of a window record


def _words(prefix: str, n: int) -> str:
    return " ".join(f"{prefix}{i}" for i in range(n))


def _windows(store: MultiVectorStore, doc_id: str) -> list[Any]:
    """The window records of ``doc_id`` as the backend holds them, in window order."""
    records = [r for r in store.backend.get(store.backend.ids()) if r.metadata.get(KEY, {}).get("parent") == doc_id]
    return sorted(records, key=lambda r: r.metadata[KEY]["window"])


@pytest.fixture
def stores() -> Iterator[Callable[..., MultiVectorStore]]:
    """``make(backend_name, tmp_path, length=12, **store_kwargs)``: a store on a new backend, closed at the end."""
    made: list[MultiVectorStore] = []

    def make(backend_name: str, tmp_path: pathlib.Path, length: int = 12, **kwargs: Any) -> MultiVectorStore:
        enc = FakeEncoder(dim=32, document_length=length)
        made.append(MultiVectorStore(enc, make_backend(backend_name, tmp_path, enc.dim), **kwargs))
        return made[-1]

    yield make
    for store in made:
        store.close()


CORPUS = {
    "long-a": _words("alpha", 30) + " zebra giraffe " + _words("beta", 30),
    "long-b": "zebra " + _words("gamma", 50),
    "long-c": _words("delta", 70) + " giraffe",
    "short-1": "zebra giraffe savanna",
    "short-2": "cats and dogs",
}
META = {i: {"kind": "long" if i.startswith("long") else "short", "n": n} for n, i in enumerate(CORPUS)}


# ---------------------------------------------------------------------------------------------- window layout


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    words=st.lists(st.text(alphabet="abcxyz", min_size=1, max_size=6), min_size=1, max_size=80),
    seps=st.lists(st.sampled_from([" ", "  ", ", ", ".\n", " - "]), min_size=80, max_size=80),
    length=st.integers(min_value=3, max_value=16),
    overlap_share=st.floats(min_value=0.0, max_value=0.99),
)
def test_windows_cover_the_text_overlap_and_map_back(
    words: list[str], seps: list[str], length: int, overlap_share: float
) -> None:
    text = "".join(w + s for w, s in zip(words, seps, strict=False)).strip(" ,-")
    enc = FakeEncoder(dim=8, document_length=length)
    capacity = length - 1  # [CLS] takes one token of every window
    overlap = min(capacity - 1, int(overlap_share * capacity))
    store = MultiVectorStore(enc, window_overlap=overlap)
    store.add([text], ids=["doc"], metadatas=[{"user": 1}])
    assert store.get(["doc"])[0].text == text
    assert store.ids() == ["doc"] and store.count() == 1
    windows = _windows(store, "doc")
    n_tokens = len(enc.tokenize(text))
    if n_tokens <= length:  # fits: stored exactly as without splitting
        assert windows == [] and store.backend.get(["doc"])[0].metadata == {"user": 1}
        assert enc.count_windows([text], overlap=overlap) == [1]
        return
    assert enc.count_windows([text], overlap=overlap) == [len(windows)]
    spans = [(w.metadata[KEY]["start"], w.metadata[KEY]["end"]) for w in windows]
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    word_spans = enc.text_token_spans([text])[0]
    for i, (w, (start, end)) in enumerate(zip(windows, spans, strict=True)):
        assert w.text == text[start:end]  # offsets map back into the parent's text
        assert w.metadata["user"] == 1 and w.metadata[KEY]["windows"] == len(windows)
        assert enc.count_tokens([w.text])[0] <= length  # every window fits, nothing is truncated
        if i + 1 < len(spans):
            nxt_start = spans[i + 1][0]
            assert start < nxt_start <= end  # cover, in order
            shared = [s for s in word_spans if start <= s[0] and s[1] <= end and nxt_start <= s[0]]
            assert len(shared) == overlap  # FakeEncoder tokens are words: the overlap is exact


@pytest.fixture(scope="module")
def small_colbert(tiny_checkpoint: pathlib.Path) -> Any:
    """The tiny ColBERTEncoder (WordPiece, lowercasing) with a 24-token document length."""
    from colbert_adapters.encoder import ColBERTEncoder

    return ColBERTEncoder.from_pretrained(tiny_checkpoint, device="cpu", document_length=24)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    words=st.lists(
        st.sampled_from(["interaction", "late", "Zebra", "savanna", "tokenizer", "a", "(x)"]), min_size=20, max_size=90
    )
)
def test_colbert_windows_end_on_word_boundaries_and_fit(small_colbert: Any, words: list[str]) -> None:
    text = " ".join(words)
    store = MultiVectorStore(small_colbert)
    store.add([text], ids=["doc"])
    windows = _windows(store, "doc")
    assert store.get(["doc"])[0].text == text
    assert small_colbert.count_windows([text]) == [max(1, len(windows))]
    for w in windows:
        start, end = w.metadata[KEY]["start"], w.metadata[KEY]["end"]
        assert w.text == text[start:end]
        assert small_colbert.count_tokens([w.text])[0] <= 24
        if end < len(text):  # not inside a word: the tokenizer's word pieces stay together
            assert not (text[end - 1].isalnum() and text[end].isalnum())
        if start > 0:
            assert not (text[start - 1].isalnum() and text[start].isalnum())


def test_count_tokens_before_truncation_and_windows(small_colbert: Any) -> None:
    text = " ".join(["zebra"] * 100)
    n = small_colbert.count_tokens([text])[0]
    assert n == small_colbert.count_tokens([""])[0] + len(small_colbert.text_token_spans([text])[0]) > 100
    assert small_colbert.count_tokens([text], truncate=True) == [24]
    capacity = 24 - small_colbert.count_tokens([""])[0]  # text tokens a window holds
    windows = small_colbert.count_windows(["zebra", text])
    assert windows[0] == 1 and windows[1] >= -(-(n - 3) // capacity)
    store = MultiVectorStore(small_colbert)
    store.add([text], ids=["doc"])
    assert windows[1] == len(store.backend.ids())
    assert small_colbert.count_windows([text], overlap=0)[0] <= windows[1]
    with pytest.raises(InvalidInputError, match="window_overlap"):
        small_colbert.count_windows([text], overlap=capacity)


# ---------------------------------------------------------------------------------------------- search


@pytest.mark.parametrize("backend_name", BACKEND_NAMES)
def test_one_hit_per_document_with_the_best_window(
    backend_name: str, tmp_path: pathlib.Path, stores: Callable[..., MultiVectorStore]
) -> None:
    oracle = stores("memory", tmp_path / "oracle")
    store = stores(backend_name, tmp_path)
    for s in (oracle, store):
        s.add(list(CORPUS.values()), ids=list(CORPUS), metadatas=[META[i] for i in CORPUS])
    assert sorted(store.ids()) == sorted(CORPUS) and len(store) == 5 and store.backend.count() > 5
    assert {r.id: r.text for r in store.get(list(CORPUS))} == CORPUS
    atol = SCORE_ATOL.get(backend_name, 1e-4)  # lossy stores: scores near the oracle's, near-ties may swap
    enc = store.encoder
    (q,) = enc.encode_queries(["zebra giraffe"])
    expected = {h.id: h for h in oracle.search("zebra giraffe", k=5)}
    for k in (1, 3, 5, 10):
        hits = store.search("zebra giraffe", k=k)
        assert len(hits) == min(k, 5) and len({h.id for h in hits}) == len(hits)
        kth = sorted((h.score for h in expected.values()), reverse=True)[min(k, 5) - 1]
        for h in hits:  # the oracle's top k (up to ties), each with the oracle's score and best window
            assert h.score == pytest.approx(expected[h.id].score, abs=atol) and h.score >= kth - atol
            assert h.span == expected[h.id].span or backend_name in SCORE_ATOL
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    for h in store.search("zebra giraffe", k=5):
        assert h.text == CORPUS[h.id] and h.metadata == META[h.id]
        if h.id.startswith("short"):
            assert h.span is None
            continue
        a, b = h.span  # the best window's span: its score, the best over the document's windows
        windows = [w.text for w in _windows(store, h.id)]
        best = max(float(s) for s in maxsim(q, enc.encode_documents(windows)))
        assert h.score == pytest.approx(best, abs=atol)
        assert h.score == pytest.approx(float(maxsim(q, enc.encode_documents([h.text[a:b]]))[0]), abs=atol)
    long_a = next(h for h in store.search("zebra giraffe", k=5) if h.id == "long-a")
    assert long_a.span is not None and "zebra giraffe" in CORPUS["long-a"][long_a.span[0] : long_a.span[1]]


@pytest.mark.parametrize("backend_name", BACKEND_NAMES)
@pytest.mark.parametrize("mode", ["lexical", "hybrid"])
def test_lexical_and_hybrid_modes_give_one_hit_per_document(
    backend_name: str, mode: str, tmp_path: pathlib.Path, stores: Callable[..., MultiVectorStore]
) -> None:
    store = stores(backend_name, tmp_path)
    store.add(list(CORPUS.values()), ids=list(CORPUS), metadatas=[META[i] for i in CORPUS])
    hits = store.search("giraffe", k=5, mode=mode)
    ids = [h.id for h in hits]
    assert len(ids) == len(set(ids)) and set(ids) <= set(CORPUS)
    assert {"long-a", "long-c", "short-1"} <= set(ids)  # every text with the word, windows folded into it
    for h in hits:
        assert h.text == CORPUS[h.id] and h.metadata == META[h.id]
        if h.id.startswith("long") and mode == "lexical":
            a, b = h.span
            assert "giraffe" in CORPUS[h.id][a:b]  # the window that matched
    subset = store.search("giraffe", k=5, mode=mode, ids=["long-c"])
    assert [h.id for h in subset] == ["long-c"]  # ids= names the document: every window of it is searched
    assert [h.id for h in store.search("giraffe", k=5, mode="lexical", filter={"kind": "short"})] == ["short-1"]


@pytest.mark.parametrize("backend_name", BACKEND_NAMES)
def test_filters_subsets_thresholds_batches_and_mmr(
    backend_name: str, tmp_path: pathlib.Path, stores: Callable[..., MultiVectorStore]
) -> None:
    store = stores(backend_name, tmp_path)
    store.add(list(CORPUS.values()), ids=list(CORPUS), metadatas=[META[i] for i in CORPUS])
    hits = store.search("zebra giraffe", k=5, filter={"kind": "long"})
    assert sorted(h.id for h in hits) == ["long-a", "long-b", "long-c"]
    sub = store.search("zebra giraffe", k=5, ids=["long-c", "short-2", "missing"])
    assert [h.id for h in sub] == ["long-c", "short-2"] and sub[0].span is not None
    full = {h.id: h for h in store.search("zebra giraffe", k=5)}
    assert sub[0].score == pytest.approx(full["long-c"].score, abs=1e-4) and sub[0].span == full["long-c"].span
    cut = full["long-b"].score
    assert {h.id for h in store.search("zebra giraffe", k=5, score_threshold=cut)} == {
        i for i, h in full.items() if h.score >= cut
    }
    batch = store.search_batch(["zebra giraffe", "cats"], k=2)
    assert [[h.id for h in b] for b in batch] == [
        [h.id for h in store.search(q, k=2)] for q in ("zebra giraffe", "cats")
    ]
    mmr = store.max_marginal_relevance_search("zebra giraffe", k=3, fetch_k=5, lambda_mult=0.5)
    assert len(mmr) == 3 and len({h.id for h in mmr}) == 3 and all(h.text == CORPUS[h.id] for h in mmr)


def test_a_search_fetches_windows_until_k_documents(
    tmp_path: pathlib.Path, stores: Callable[..., MultiVectorStore]
) -> None:
    store = stores("memory", tmp_path, length=4)  # three words a window: every long document has many
    texts = {f"d{i}": "zebra " * 30 + f"w{i}" for i in range(6)}
    store.add(list(texts.values()), ids=list(texts))
    assert store.backend.count() > 60
    hits = store.search("zebra", k=4)
    assert len({h.id for h in hits}) == 4


# ---------------------------------------------------------------------------------------------- writes


@pytest.mark.parametrize("backend_name", BACKEND_NAMES)
def test_add_and_delete_replace_every_window(
    backend_name: str, tmp_path: pathlib.Path, stores: Callable[..., MultiVectorStore]
) -> None:
    store = stores(backend_name, tmp_path)
    store.add([_words("x", 60)], ids=["doc"], metadatas=[{"v": 1}])
    n_first = len(_windows(store, "doc"))
    store.add([_words("y", 25)], ids=["doc"], metadatas=[{"v": 2}])  # shrinks: no orphan windows
    assert 1 < len(_windows(store, "doc")) < n_first
    assert sorted(store.backend.ids()) == sorted(w.id for w in _windows(store, "doc"))
    assert [h.id for h in store.search("x1 x2 x3", k=5)] == ["doc"]
    assert store.get(["doc"])[0].text == _words("y", 25) and store.get(["doc"])[0].metadata == {"v": 2}
    store.add(["short now"], ids=["doc"], metadatas=[{"v": 3}])
    assert store.backend.ids() == ["doc"] and store.get(["doc"])[0].metadata == {"v": 3}
    store.add([_words("z", 40)], ids=["doc"])
    store.add(["other"], ids=["keep"])
    assert store.delete(["doc", "missing"]) == 1
    assert store.backend.ids() == ["keep"] and store.ids() == ["keep"]
    store.add([_words("z", 40), _words("q", 40)], ids=["a", "b"], metadatas=[{"g": 1}, {"g": 2}])
    assert store.delete(filter={"g": 1}) == 1  # documents, not windows
    assert sorted(store.ids()) == ["b", "keep"] and store.count() == 2


class _DiesBeforeDelete:
    """A real backend whose ``delete`` is never reached: the process dies between a replacement's two writes."""

    def __init__(self, inner: Backend) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def delete(self, ids: Any) -> int:
        raise KeyboardInterrupt("killed")


@pytest.mark.parametrize("backend_name", BACKEND_NAMES)
def test_an_interrupted_replacement_is_complete_and_the_next_write_cleans_up(
    backend_name: str, tmp_path: pathlib.Path, stores: Callable[..., MultiVectorStore]
) -> None:
    store = stores(backend_name, tmp_path)
    store.add([_words("old", 80)], ids=["doc"])
    n_old = len(store.backend.ids())
    dying = MultiVectorStore(store.encoder, _DiesBeforeDelete(store.backend))  # type: ignore[arg-type]
    with pytest.raises(KeyboardInterrupt):
        dying.add([_words("new", 25)], ids=["doc"])
    # The new version was written whole (one upsert); the old version's extra windows are still stored ...
    assert len(store.backend.ids()) == n_old
    # ... and ignored: the document reads, counts and searches as its new version.
    assert store.get(["doc"])[0].text == _words("new", 25) and store.ids() == ["doc"] and store.count() == 1
    assert [h.id for h in store.search("old70 old71 old72", k=3)] == ["doc"]
    assert all(h.text == _words("new", 25) for h in store.search("old70 old71 old72", k=3))
    store.add([_words("new", 25)], ids=["doc"])  # the next add (or a delete) removes them
    assert sorted(store.backend.ids()) == sorted(w.id for w in _windows(store, "doc"))
    with pytest.raises(KeyboardInterrupt):
        dying.add(["short"], ids=["doc"])
    assert store.get(["doc"])[0].text == "short" and store.count() == 1
    assert store.delete(["doc"]) == 1 and store.backend.ids() == []


def test_a_document_whose_windows_fail_to_encode_keeps_its_previous_version(tmp_path: pathlib.Path) -> None:
    class Failing(FakeEncoder):
        def encode_documents(self, texts: Any, *, batch_size: int = 32) -> Any:
            if any("boom" in t for t in texts):
                raise RuntimeError("encoder failed")
            return super().encode_documents(texts, batch_size=batch_size)

    with MultiVectorStore(Failing(dim=16, document_length=8), make_backend("voyager", tmp_path, 16)) as store:
        store.add([_words("old", 30)], ids=["doc"])
        before = sorted(store.backend.ids())
        with pytest.raises(RuntimeError):
            store.add([_words("new", 30) + " boom"], ids=["doc"])
        assert sorted(store.backend.ids()) == before and store.get(["doc"])[0].text == _words("old", 30)


def test_truncate_stores_one_record_cut_at_document_length(
    tmp_path: pathlib.Path, stores: Callable[..., MultiVectorStore]
) -> None:
    store = stores("memory", tmp_path, long_documents="truncate")
    store.add([_words("w", 40)], ids=["doc"])
    (record,) = store.backend.get(["doc"], with_vectors=True)
    assert store.backend.ids() == ["doc"] and record.vectors is not None and record.vectors.shape == (12, 32)
    assert store.search("w30", k=1)[0].span is None


def test_short_documents_are_stored_exactly_as_before(
    tmp_path: pathlib.Path, stores: Callable[..., MultiVectorStore]
) -> None:
    split = stores("memory", tmp_path / "a")
    plain = MultiVectorStore(FakeEncoder(dim=32))
    for s in (split, plain):
        s.add(["zebra giraffe", "cats and dogs"], ids=["a", "b"], metadatas=[{"x": 1}, None])
    assert [(r.id, r.text, r.metadata) for r in split.backend.get(["a", "b"])] == [
        (r.id, r.text, r.metadata) for r in plain.backend.get(["a", "b"])
    ]


def test_the_split_is_said_once(
    tmp_path: pathlib.Path, stores: Callable[..., MultiVectorStore], caplog: pytest.LogCaptureFixture
) -> None:
    store = stores("memory", tmp_path)
    with caplog.at_level(logging.INFO, logger="colbert_adapters"):
        store.add([_words("a", 40)], ids=["a"])
        store.add([_words("b", 40)], ids=["b"])
    said = [r for r in caplog.records if "overlapping windows" in r.getMessage()]
    assert len(said) == 1 and "long_documents='truncate'" in said[0].getMessage()


# ---------------------------------------------------------------------------------------------- highlights


def test_highlights_point_into_the_whole_document(small_colbert: Any, tmp_path: pathlib.Path) -> None:
    text = " ".join(["late interaction tokenizer"] * 12) + " the zebra crossed the savanna " + "a " * 30
    store = MultiVectorStore(small_colbert)
    store.add([text, "zebra stripes"], ids=["long", "short"])
    (hit,) = [h for h in store.search("zebra savanna", k=2, highlight=True) if h.id == "long"]
    assert hit.text == text and hit.span is not None and hit.highlights
    start, end = hit.span
    for a, b, _ in hit.highlights:
        assert start <= a < b <= end
    assert any("zebra" in text[a:b] or "savanna" in text[a:b] for a, b, _ in hit.highlights)


# ---------------------------------------------------------------------------------------------- bad input


def test_bad_input_is_refused_with_the_fix(tmp_path: pathlib.Path) -> None:
    enc = FakeEncoder(dim=16, document_length=10)
    with pytest.raises(InvalidInputError, match="long_documents must be 'split'"):
        MultiVectorStore(enc, long_documents="chunks")
    with pytest.raises(InvalidInputError, match="window_overlap=9 must be smaller than a window"):
        MultiVectorStore(enc, window_overlap=9)
    with pytest.raises(InvalidInputError, match="window_overlap must be a non-negative int"):
        MultiVectorStore(enc, window_overlap=-1)
    with pytest.raises(InvalidInputError, match="does not split long documents"):
        MultiVectorStore(FakeEncoder(dim=16), window_overlap=2)
    with pytest.raises(InvalidInputError, match="document_length must be an int >= 2"):
        FakeEncoder(document_length=1)
    store = MultiVectorStore(enc)
    with pytest.raises(InvalidInputError, match="contains \\\\x1f"):
        store.add(["text"], ids=["a\x1f1"])
    with pytest.raises(InvalidInputError, match="reserved for the windows"):
        store.add(["text"], metadatas=[{KEY: 1}])
    assert store.count() == 0


# ---------------------------------------------------------------------------------------------- integrations


def test_langchain_gets_one_document_per_long_text_with_its_span(
    tmp_path: pathlib.Path, stores: Callable[..., MultiVectorStore]
) -> None:
    pytest.importorskip("langchain_core")
    from colbert_adapters.integrations.langchain import ColBERTRetriever, ColBERTVectorStore

    store = stores("voyager", tmp_path)
    vs = ColBERTVectorStore(store=store)
    vs.add_texts(list(CORPUS.values()), metadatas=[META[i] for i in CORPUS], ids=list(CORPUS))
    docs = vs.similarity_search("zebra giraffe", k=3)
    assert len(docs) == 3 and len({d.id for d in docs}) == 3
    for doc in docs:
        assert doc.page_content == CORPUS[str(doc.id)]
        if doc.metadata["kind"] == "long":
            a, b = doc.metadata["span"]
            assert "zebra" in doc.page_content[a:b] or "giraffe" in doc.page_content[a:b]
        else:
            assert "span" not in doc.metadata
    assert [d.page_content for d in vs.get_by_ids(["long-c"])] == [CORPUS["long-c"]]
    assert [d.id for d in ColBERTRetriever(store=store, k=1).invoke("delta3 delta4 delta5")] == ["long-c"]
    vs.delete(["long-c"])
    assert not [i for i in store.backend.ids() if i.startswith("long-c")] and len(store) == 4


def test_llama_index_nodes_of_long_documents_come_back_whole(
    tmp_path: pathlib.Path, stores: Callable[..., MultiVectorStore]
) -> None:
    pytest.importorskip("llama_index.core")
    from colbert_adapters.integrations.llama_index import ColBERTIndex
    from llama_index.core.schema import TextNode

    store = stores("qdrant_local", tmp_path, length=16)
    nodes = [TextNode(text=t, id_=i, metadata={"kind": META[i]["kind"]}) for i, t in CORPUS.items()]
    index = ColBERTIndex(store, nodes=nodes)
    assert store.backend.count() > len(CORPUS) and store.count() == len(CORPUS)
    found = index.as_retriever(similarity_top_k=3, highlight=False).retrieve("gamma40 gamma41")
    assert found[0].node.node_id == "long-b" and found[0].node.get_content() == CORPUS["long-b"]
    a, b = found[0].node.metadata["span"]
    assert "gamma40 gamma41" in CORPUS["long-b"][a:b] and len({n.node.node_id for n in found}) == 3
    index.delete_nodes(["long-b"])
    assert store.count() == len(CORPUS) - 1 and not [i for i in store.backend.ids() if i.startswith("long-b")]


# ---------------------------------------------------------------------------------------------- CLI


@pytest.mark.parametrize("mode", ["split", "truncate"])
def test_cli_indexes_long_documents_and_shows_spans(
    capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path, tiny_checkpoint: pathlib.Path, mode: str
) -> None:
    import json

    from colbert_adapters.cli import main

    src = tmp_path / "docs.jsonl"
    long_text = " ".join(["late interaction tokenizer"] * 10) + " the zebra crossed the savanna" + " a b" * 20
    src.write_text(
        json.dumps({"id": "long", "text": long_text}) + "\n" + json.dumps({"id": "short", "text": "cats"}) + "\n"
    )
    idx = str(tmp_path / "idx")
    args = ["index", str(src), idx, "--model", str(tiny_checkpoint), "--document-length", "24", "-q"]
    assert main([*args, "--backend", "voyager", "--long-documents", mode]) == 0
    capsys.readouterr()
    assert main(["search", idx, "zebra savanna", "-k", "2", "--json"]) == 0
    hits = {h["id"]: h for h in json.loads(capsys.readouterr().out)}
    assert set(hits) == {"long", "short"} and "span" not in hits["short"]
    assert main(["info", idx, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["documents"] == 2
    if mode == "truncate":
        assert "span" not in hits["long"] and "records" not in info
        return
    a, b = hits["long"]["span"]
    assert hits["long"]["text"] == long_text and "zebra" in long_text[a:b] and info["records"] > 2
    assert main(["search", idx, "zebra savanna", "-k", "1"]) == 0
    assert f"[{a}:{b}]" in capsys.readouterr().out
    assert main(["delete", idx, "--id", "long"]) == 0
    assert json.loads(capsys.readouterr().out)["documents"] == 1
    assert main(["info", idx, "--json"]) == 0
    after = json.loads(capsys.readouterr().out)
    assert after["documents"] == 1 and "records" not in after
