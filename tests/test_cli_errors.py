"""Every CLI error is one line on stderr with a nonzero exit; ``--debug`` adds the traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from colbert_adapters.cli import main


def _beir(root: Path, corpus: str) -> Path:
    root.mkdir()
    (root / "corpus.jsonl").write_text(corpus, encoding="utf-8")
    (root / "queries.jsonl").write_text('{"_id": "q1", "text": "a question"}\n', encoding="utf-8")
    (root / "qrels").mkdir()
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\tnot-a-number\n", encoding="utf-8")
    return root


@pytest.mark.parametrize(
    "corpus",
    ['{"_id": "d1", "text": \n', '{"text": "no id"}\n', '{"_id": "d1"}\n', '{"_id": "d1", "text": "fine"}\n'],
    ids=["bad JSON", "missing _id", "missing text", "bad qrel score"],
)
def test_eval_on_a_malformed_collection_is_one_line(tmp_path: Path, capsys: Any, corpus: str) -> None:
    data = _beir(tmp_path / "beir", corpus)
    code = main(["eval", str(data), "--format", "beir", "--model", str(tmp_path / "no-model")])
    err = capsys.readouterr().err
    assert code != 0
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("colbert-adapters: error:"), err
    assert "Traceback" not in err


def test_debug_shows_the_traceback(tmp_path: Path, capsys: Any) -> None:
    data = _beir(tmp_path / "beir", '{"_id": "d1", "text": \n')
    assert main(["--debug", "eval", str(data), "--format", "beir"]) != 0
    assert "Traceback" in capsys.readouterr().err


def test_a_query_that_is_not_valid_unicode_is_one_line(tmp_path: Path, capsys: Any) -> None:
    """A non-UTF-8 byte in argv arrives as a lone surrogate (PEP 383)."""
    (tmp_path / "idx").mkdir()
    code = main(["search", str(tmp_path / "idx"), "caf\udce9"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "surrogate" in err and "Traceback" not in err
