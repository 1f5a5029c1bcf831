"""Reading documents for ``colbert-adapters index``: no row is lost or glued, whatever the text holds."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from colbert_adapters._ingest import read_source


def test_jsonl_lines_are_split_on_newlines_only(tmp_path: Path) -> None:
    """U+2028, U+2029 and U+0085 are valid inside JSON strings (json.dumps(ensure_ascii=False) writes them raw)."""
    rows = [{"id": f"r{i}", "text": f"line {i}{sep}more"} for i, sep in enumerate(["\u2028", "\u2029", "\x85", "\r"])]
    path = tmp_path / "docs.jsonl"
    path.write_text("\r\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    read = read_source(path)
    assert read.errors == []
    assert [(d.id, d.text) for d in read.docs] == [(r["id"], r["text"].strip()) for r in rows]


def test_csv_quoted_newlines_and_long_fields_keep_every_row(tmp_path: Path) -> None:
    long_text = "word " * 60_000  # 300,000 characters: beyond the csv module's default field limit
    rows = [
        {"id": "a", "text": "line one\nline two"},
        {"id": "b", "text": long_text},
        {"id": "c", "text": "after the long one"},
        {"id": "d", "text": 'quotes "inside", commas, and\r\nCRLF'},
    ]
    path = tmp_path / "docs.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["id", "text"])
        writer.writeheader()
        writer.writerows(rows)
    before = csv.field_size_limit()
    read = read_source(path)
    assert read.errors == []
    assert [(d.id, d.text) for d in read.docs] == [(r["id"], r["text"].strip()) for r in rows]
    assert csv.field_size_limit() == before  # the module-wide limit is restored


def test_a_bad_jsonl_line_is_reported_and_the_others_kept(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text(
        '{"id": "a", "text": "one"}\n{"id": "b", "text": \n{"id": "c", "text": "three"}\n', encoding="utf-8"
    )
    read = read_source(path)
    assert [d.id for d in read.docs] == ["a", "c"]
    assert len(read.errors) == 1 and read.errors[0].where.endswith(":2")
