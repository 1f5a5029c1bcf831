"""Highlights: ``store.search(..., highlight=True)`` fills ``Hit.highlights``; ``highlight.render`` marks them."""

from __future__ import annotations

import itertools
import json
import logging
import pathlib
from typing import Any

import numpy as np
import pytest
from _backends import make_backend

from colbert_adapters import MultiVectorStore
from colbert_adapters.errors import InvalidInputError
from colbert_adapters.highlight import highlight_hits, render
from colbert_adapters.testing import FakeEncoder

TEXTS = [
    "  The zebra, quickly running; crossed the savanna!  ",
    "Dogs bark (loudly) at night... and cats sleep.",
    "Late interaction scores every query token against every document token.",
]
HIGHLIGHT_BACKENDS = ["memory", "voyager", "qdrant_edge", "qdrant_local"]


def _word_rows(store: MultiVectorStore, doc_id: str) -> tuple[np.ndarray, list[tuple[int, int] | None], str]:
    """A stored document's vectors, the offsets of its rows and its text."""
    record = store.get([doc_id], with_vectors=True)[0]
    assert record.text is not None and record.vectors is not None
    offsets = store.encoder.document_token_offsets([record.text])[0]  # type: ignore[attr-defined]
    return np.asarray(record.vectors), offsets, record.text


def _check_spans(text: str, spans: list[tuple[int, int, float]]) -> None:
    for start, end, weight in spans:
        assert 0 <= start < end <= len(text)
        piece = text[start:end]
        assert piece == piece.strip() and any(c.isalnum() for c in piece), piece
        assert np.isfinite(weight)
    assert [s[:2] for s in spans] == sorted(s[:2] for s in spans)
    assert all(a[1] < b[0] for a, b in itertools.pairwise(spans))  # disjoint, in text order


def test_document_token_offsets_align_with_encoded_rows(make_checkpoint: Any) -> None:
    from colbert_adapters.encoder import ColBERTEncoder

    enc = ColBERTEncoder.from_pretrained(make_checkpoint(document_length=12), device="cpu")
    texts = [*TEXTS, "!!!", "x"]
    offsets = enc.document_token_offsets(texts)
    for text, offs, vecs, tok in zip(texts, offsets, enc.encode_documents(texts), enc.tokenize(texts), strict=True):
        assert len(offs) == vecs.shape[0]
        assert offs[0] is None and offs[1] is None and offs[-1] is None  # [CLS], [D] prefix, [SEP]
        kept = [t for t, k in zip(tok.ids, tok.keep, strict=True) if k]
        pieces = enc.tokenizer.convert_ids_to_tokens(kept)
        for off, piece in zip(offs, pieces, strict=True):
            if off is not None:
                assert text[off[0] : off[1]].strip() == piece.replace("Ġ", "").strip()


@pytest.mark.parametrize("backend_name", HIGHLIGHT_BACKENDS)
def test_highlight_weights_sum_to_score_when_every_match_is_a_word(
    backend_name: str, tiny_encoder: Any, tmp_path: pathlib.Path
) -> None:
    with MultiVectorStore(tiny_encoder, make_backend(backend_name, tmp_path, tiny_encoder.dim)) as store:
        store.add(TEXTS, ids=["zebra", "dogs", "late"])
        vectors, offsets, text = _word_rows(store, "late")
        words = [j for j, off in enumerate(offsets) if off is not None]
        query = vectors[words]  # each query row's best match is its own word token
        hit = next(h for h in store.search_by_vectors(query, k=3, highlight=True) if h.id == "late")
        assert hit.highlights is not None
        _check_spans(text, hit.highlights)
        assert sum(w for *_, w in hit.highlights) == pytest.approx(hit.score, abs=1e-4)
        covered = "".join(text[a:b] for a, b, _ in hit.highlights)
        assert covered.replace(" ", "") == "".join(text[offsets[j][0] : offsets[j][1]] for j in words).replace(" ", "")


@pytest.mark.parametrize("backend_name", HIGHLIGHT_BACKENDS)
def test_best_matching_word_carries_the_weight(backend_name: str, tiny_encoder: Any, tmp_path: pathlib.Path) -> None:
    with MultiVectorStore(tiny_encoder, make_backend(backend_name, tmp_path, tiny_encoder.dim)) as store:
        store.add(TEXTS, ids=["zebra", "dogs", "late"])
        vectors, offsets, text = _word_rows(store, "zebra")
        rows = [j for j, off in enumerate(offsets) if off is not None and "sav" in text[off[0] : off[1]]]
        hits = store.search_by_vectors(vectors[rows], k=1, highlight=True)
        assert hits[0].id == "zebra" and hits[0].highlights is not None
        start, end, _ = max(hits[0].highlights, key=lambda s: s[2])
        assert text[start:end] == "savanna"
        assert "**savanna**" in render(text, hits[0].highlights)


def test_text_query_highlights_the_matching_word_with_a_real_model(minilm_path: pathlib.Path) -> None:
    from colbert_adapters.encoder import ColBERTEncoder

    enc = ColBERTEncoder.from_pretrained(minilm_path, device="cpu")
    with MultiVectorStore(enc) as store:
        store.add(["The giraffe ate leaves from the tallest acacia tree.", "Stock markets fell sharply on Monday."])
        for hits in store.search_batch(["giraffe", "markets"], k=1, highlight=True):
            hit = hits[0]
            assert hit.text is not None and hit.highlights
            _check_spans(hit.text, hit.highlights)
            start, end, _ = max(hit.highlights, key=lambda s: s[2])
            assert hit.text[start:end].lower() in ("giraffe", "markets")
            assert sum(w for *_, w in hit.highlights) <= hit.score + 1e-4


def test_highlight_off_leaves_none_and_subset_search_highlights(tiny_encoder: Any) -> None:
    with MultiVectorStore(tiny_encoder) as store:
        store.add(TEXTS, ids=["zebra", "dogs", "late"])
        assert all(h.highlights is None for h in store.search("zebra", k=3))
        hits = store.search("dogs bark", k=3, ids=["dogs"], highlight=True)
        assert [h.id for h in hits] == ["dogs"] and hits[0].highlights
        _check_spans(TEXTS[1], hits[0].highlights)
        assert "(" not in "".join(TEXTS[1][a:b] for a, b, _ in hits[0].highlights)


def test_highlight_hits_fills_mmr_results(tiny_encoder: Any) -> None:
    with MultiVectorStore(tiny_encoder) as store:
        store.add(TEXTS, ids=["zebra", "dogs", "late"])
        q = store.encode_query("dogs bark at night")
        hits = store.max_marginal_relevance_search_by_vectors(q, k=2, fetch_k=3)
        assert all(h.highlights is None for h in hits)
        filled = highlight_hits(store, q, hits)
        assert [h.id for h in filled] == [h.id for h in hits] and all(h.highlights for h in filled)
        plain = {h.id: h.highlights for h in store.search_by_vectors(q, k=3, highlight=True)}
        assert all(h.highlights == plain[h.id] for h in filled)
        with pytest.raises(InvalidInputError, match="encoded_texts"):
            highlight_hits(store, q, hits, encoded_texts=["one"])


def test_highlight_needs_an_encoder_with_offsets() -> None:
    with MultiVectorStore(FakeEncoder(dim=16)) as store:
        store.add(["the cat sat"])
        with pytest.raises(InvalidInputError, match="document_token_offsets"):
            store.search("cat", highlight=True)
        with pytest.raises(InvalidInputError, match="highlight must be True or False"):
            store.search("cat", highlight="yes")  # type: ignore[arg-type]
        assert store.search("cat")[0].highlights is None


def test_highlight_needs_stored_texts(tiny_encoder: Any) -> None:
    with MultiVectorStore(tiny_encoder) as store:
        store.backend.upsert(["v"], tiny_encoder.encode_documents(["vectors only"]))
        with pytest.raises(InvalidInputError, match="no stored text"):
            store.search("vectors", highlight=True)


def test_text_stored_other_than_encoded_gives_no_highlights(tiny_encoder: Any, caplog: Any) -> None:
    with MultiVectorStore(tiny_encoder) as store:
        store.add(["short"], ids=["a"], encode_texts=["title: short, with its metadata prepended to it"])
        with caplog.at_level(logging.WARNING, logger="colbert_adapters"):
            hits = store.search("short", highlight=True)
        assert hits[0].highlights == []
        assert "do not line up" in caplog.text


def test_render_styles_weights_and_windows() -> None:
    text = "a < b & the cat sat on the mat"
    spans = [(12, 15, 2.0), (27, 30, 0.2)]
    assert render(text, spans) == "a < b & the **cat** sat on the **mat**"
    assert render(text, spans, style="html") == "a &lt; b &amp; the <mark>cat</mark> sat on the <mark>mat</mark>"
    assert render(text, spans, min_weight=1.0) == "a < b & the **cat** sat on the mat"
    assert render(text, None) == text
    window = render(text, spans, width=12)
    assert "**cat**" in window and window.startswith("…") and window.endswith("…")
    with pytest.raises(InvalidInputError, match="not inside the text"):
        render("short", [(2, 40, 1.0)])
    with pytest.raises(InvalidInputError, match="style"):
        render(text, spans, style="latex")  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", ["memory", "voyager", "qdrant-edge"])
def test_cli_search_highlight(capsys: Any, tmp_path: pathlib.Path, tiny_checkpoint: pathlib.Path, backend: str) -> None:
    from colbert_adapters.cli import main

    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(TEXTS)), "utf-8")
    idx = str(tmp_path / "idx")
    assert main(["index", str(src), idx, "--model", str(tiny_checkpoint), "--backend", backend, "-q"]) == 0
    capsys.readouterr()
    assert main(["search", idx, "zebra savanna", "-k", "3", "--json", "--highlight"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 3
    for hit in hits:
        _check_spans(hit["text"], [tuple(s) for s in hit["highlights"]])
        assert hit["highlights"]
    assert main(["search", idx, "zebra savanna", "-k", "3", "--highlight", "--width", "30"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and all("**" in line for line in lines[1:])
    assert main(["search", idx, "zebra", "--json"]) == 0
    assert "highlights" not in json.loads(capsys.readouterr().out)[0]
    assert main(["search", idx, "dogs bark", "-k", "2", "--mmr", "--json", "--highlight"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 2 and all(hit["highlights"] for hit in hits)


@pytest.mark.parametrize("backend_name", HIGHLIGHT_BACKENDS)
def test_langchain_documents_carry_highlights(backend_name: str, tiny_encoder: Any, tmp_path: pathlib.Path) -> None:
    from colbert_adapters.integrations.langchain import ColBERTRetriever, ColBERTVectorStore

    store = MultiVectorStore(tiny_encoder, make_backend(backend_name, tmp_path, tiny_encoder.dim))
    vs = ColBERTVectorStore(store)
    vs.add_texts(TEXTS, ids=["zebra", "dogs", "late"])
    docs = ColBERTRetriever(store=store, k=2, highlight=True).invoke("zebra savanna")
    assert len(docs) == 2
    for doc in docs:
        assert doc.metadata["highlights"]
        _check_spans(doc.page_content, doc.metadata["highlights"])
    assert "highlights" not in ColBERTRetriever(store=store, k=1).invoke("zebra")[0].metadata
    assert ColBERTRetriever(store=store, k=1).invoke("zebra", highlight=True)[0].metadata["highlights"]
    for doc, score in vs.similarity_search_with_score("dogs bark", k=3, highlight=True):
        _check_spans(doc.page_content, doc.metadata["highlights"])
        assert sum(w for *_, w in doc.metadata["highlights"]) <= score + 1e-4
    assert "highlights" not in vs.similarity_search("dogs", k=1)[0].metadata
    store.close()


@pytest.mark.parametrize("backend_name", HIGHLIGHT_BACKENDS)
def test_llama_index_nodes_carry_highlights(backend_name: str, tiny_encoder: Any, tmp_path: pathlib.Path) -> None:
    from colbert_adapters.integrations.llama_index import ColBERTIndex, ColBERTRetriever
    from llama_index.core import Document

    store = MultiVectorStore(tiny_encoder, make_backend(backend_name, tmp_path, tiny_encoder.dim))
    # nodes are encoded with their metadata before the text: the spans still land in the node's own text
    docs = [Document(text=t, id_=str(i), metadata={"source": f"file{i}.txt"}) for i, t in enumerate(TEXTS)]
    index = ColBERTIndex.from_documents(docs, store)
    results = index.as_retriever(similarity_top_k=3, highlight=True).retrieve("zebra savanna")
    assert len(results) == 3
    for result in results:
        text = result.node.get_content()
        assert result.node.metadata["highlights"]
        _check_spans(text, result.node.metadata["highlights"])
    mmr = ColBERTRetriever(store, similarity_top_k=2, vector_store_query_mode="mmr", highlight=True)
    assert all(r.node.metadata["highlights"] for r in mmr.retrieve("dogs bark"))
    assert "highlights" not in index.as_retriever(similarity_top_k=1).retrieve("zebra")[0].node.metadata
    fake = MultiVectorStore(FakeEncoder(dim=16))
    fake.add(["the cat sat"])
    with pytest.raises(InvalidInputError, match="document_token_offsets"):
        ColBERTRetriever(fake, highlight=True).retrieve("cat")
    store.close()
