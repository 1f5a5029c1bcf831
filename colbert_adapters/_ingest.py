"""Reading documents for ``colbert-adapters index``: a folder of .txt/.md files, a JSONL or a CSV file.

Bad input never stops the read: each problem is recorded as a :class:`SourceError` naming the file (and the
line or row) and the remaining documents are returned.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["TEXT_SUFFIXES", "SourceDoc", "SourceError", "read_source"]

TEXT_SUFFIXES = (".txt", ".md", ".markdown")


@dataclass
class SourceDoc:
    id: str
    text: str
    metadata: dict[str, Any]
    where: str  # "file" or "file:line"


@dataclass
class SourceError:
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class ReadResult:
    docs: list[SourceDoc] = field(default_factory=list)
    errors: list[SourceError] = field(default_factory=list)


def _decode(raw: bytes) -> str:
    text = raw.decode("utf-8")  # strict: UnicodeDecodeError names the offending byte
    return text[1:] if text.startswith("\ufeff") else text


def _read_bytes(path: Path, res: ReadResult) -> str | None:
    try:
        raw = path.read_bytes()
    except OSError as err:
        res.errors.append(SourceError(str(path), f"cannot read: {err.strerror or err}"))
        return None
    try:
        return _decode(raw)
    except UnicodeDecodeError as err:
        res.errors.append(SourceError(str(path), f"not valid UTF-8 (byte {err.start}); re-encode it as UTF-8"))
        return None


def _read_folder(root: Path, res: ReadResult) -> None:
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in TEXT_SUFFIXES and not p.is_dir())
    if not files:
        res.errors.append(SourceError(str(root), f"no {'/'.join(TEXT_SUFFIXES)} files found"))
    for path in files:
        _read_text_file(path, path.relative_to(root).as_posix(), res)


def _read_text_file(path: Path, doc_id: str, res: ReadResult) -> None:
    text = _read_bytes(path, res)
    if text is None:
        return
    if not text.strip():
        res.errors.append(SourceError(str(path), "empty file"))
        return
    res.docs.append(SourceDoc(doc_id, text.strip(), {"source": doc_id}, str(path)))


def _metadata_value(value: Any, where: str, res: ReadResult) -> dict[str, Any] | None:
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            res.errors.append(SourceError(where, "metadata is not a JSON object"))
            return None
    if not isinstance(value, dict):
        res.errors.append(SourceError(where, f"metadata must be a JSON object, got {type(value).__name__}"))
        return None
    return value


def _read_jsonl(path: Path, res: ReadResult, id_field: str, text_field: str) -> None:
    content = _read_bytes(path, res)
    if content is None:
        return
    if not content.strip():
        res.errors.append(SourceError(str(path), "empty file"))
        return
    # JSON Lines are separated by "\n" only: str.splitlines() would also split on U+2028, U+2029 and U+0085,
    # which json.dumps(ensure_ascii=False) writes unescaped inside strings.
    for lineno, line in enumerate(content.split("\n"), start=1):
        line = line.removesuffix("\r")
        where = f"{path}:{lineno}"
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            res.errors.append(SourceError(where, f"not valid JSON ({err.msg})"))
            continue
        if not isinstance(obj, dict):
            res.errors.append(SourceError(where, f"expected a JSON object, got {type(obj).__name__}"))
            continue
        text = obj.get(text_field)
        if not isinstance(text, str) or not text.strip():
            res.errors.append(SourceError(where, f"no text: field {text_field!r} is missing, empty or not a string"))
            continue
        title = obj.get("title")
        if isinstance(title, str) and title.strip():
            text = f"{title.strip()} {text.strip()}"
        raw_id = obj.get(id_field, obj.get("_id") if id_field == "id" else None)
        doc_id = f"{path.name}:{lineno}" if raw_id is None or raw_id == "" else str(raw_id)
        if "metadata" in obj:
            meta = _metadata_value(obj["metadata"], where, res)
            if meta is None:
                continue
        else:
            meta = {k: v for k, v in obj.items() if k not in (id_field, "_id", text_field, "title")}
        res.docs.append(SourceDoc(doc_id, text.strip(), meta, where))


def _read_csv(path: Path, res: ReadResult, id_field: str, text_field: str) -> None:
    content = _read_bytes(path, res)
    if content is None:
        return
    if not content.strip():
        res.errors.append(SourceError(str(path), "empty file"))
        return
    try:
        dialect: Any = csv.Sniffer().sniff(content[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    # A file object with newline="" lets quoted fields hold line breaks (splitting the text into lines first would
    # glue or cut them), and no field-size limit: a long text is a text, not an error.
    reader = csv.DictReader(io.StringIO(content, newline=""), dialect=dialect)
    with _no_field_size_limit():
        columns = reader.fieldnames or []
        _read_csv_rows(path, res, reader, columns, id_field, text_field)


@contextlib.contextmanager
def _no_field_size_limit() -> Iterator[None]:
    previous = csv.field_size_limit()
    csv.field_size_limit(sys.maxsize)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _read_csv_rows(
    path: Path, res: ReadResult, reader: csv.DictReader[str], columns: Sequence[str], id_field: str, text_field: str
) -> None:
    if text_field not in columns:
        res.errors.append(
            SourceError(
                str(path),
                f"no {text_field!r} column (columns: {', '.join(columns) or 'none'}); "
                "use --text-field to name the text column",
            )
        )
        return
    while True:
        start = reader.line_num + 1  # the row's first line (a quoted field may span several)
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as err:  # this row only: the reader goes on with the next line
            res.errors.append(SourceError(f"{path}:{start}", f"malformed CSV row: {err}"))
            continue
        where = f"{path}:{start}"
        text = row.get(text_field)
        if not isinstance(text, str) or not text.strip():
            res.errors.append(SourceError(where, f"empty {text_field!r}"))
            continue
        raw_id = row.get(id_field)
        doc_id = str(raw_id) if raw_id else f"{path.name}:{start}"
        if "metadata" in columns:
            meta = _metadata_value(row.get("metadata"), where, res)
            if meta is None:
                continue
        else:
            meta = {
                k: v
                for k, v in row.items()
                if k not in (id_field, text_field) and k is not None and v not in (None, "")
            }
        res.docs.append(SourceDoc(doc_id, text.strip(), meta, where))


def read_source(source: str | os.PathLike[str], *, id_field: str = "id", text_field: str = "text") -> ReadResult:
    """Read documents from a folder (``.txt``/``.md``, id = relative path), a ``.jsonl`` or a ``.csv`` file.

    Duplicate ids are reported; the first occurrence is kept.
    """
    path = Path(source)
    res = ReadResult()
    if path.is_dir():
        _read_folder(path, res)
    elif not path.exists():
        res.errors.append(SourceError(str(path), "no such file or directory"))
    else:
        suffix = path.suffix.lower()
        if suffix in (".jsonl", ".ndjson"):
            _read_jsonl(path, res, id_field, text_field)
        elif suffix in (".csv", ".tsv"):
            _read_csv(path, res, id_field, text_field)
        elif suffix in TEXT_SUFFIXES:
            _read_text_file(path, path.name, res)
        else:
            res.errors.append(
                SourceError(str(path), "unsupported file type; pass a folder of .txt/.md files, a .jsonl or a .csv")
            )
    seen: dict[str, str] = {}
    unique: list[SourceDoc] = []
    for doc in res.docs:
        if doc.id in seen:
            res.errors.append(SourceError(doc.where, f"duplicate id {doc.id!r} (first at {seen[doc.id]}); skipped"))
            continue
        seen[doc.id] = doc.where
        unique.append(doc)
    res.docs = unique
    return res
