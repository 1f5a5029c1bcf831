"""The index / search / info / eval commands, run through main(argv) with the tiny checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from colbert_adapters.cli import MANIFEST, main

DOCS = {
    "cats.txt": "Cats are small domesticated felines that purr and chase mice.",
    "dogs.md": "# Dogs\nDogs are loyal animals that bark and fetch sticks.",
    "sub/rockets.txt": "Rockets burn fuel to reach orbit around the earth.",
}


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    for name, text in DOCS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


def _index(capsys: Any, src: Path, idx: Path, model: Path, *extra: str) -> tuple[int, str, str]:
    return _run(capsys, "index", str(src), str(idx), "--model", str(model), "-q", *extra)


@pytest.mark.parametrize("backend", ["memory", "voyager", "qdrant-edge"])
def test_index_search_info_each_backend(
    capsys: Any, tmp_path: Path, folder: Path, tiny_checkpoint: Path, backend: str
) -> None:
    idx = tmp_path / "idx"
    code, out, err = _index(capsys, folder, idx, tiny_checkpoint, "--backend", backend)
    assert code == 0, err
    assert "indexed 3 documents" in out
    manifest = json.loads((idx / MANIFEST).read_text())
    assert manifest["backend"] == backend and manifest["model"] == str(tiny_checkpoint)
    # search reopens without --model or --backend
    code, out, err = _run(capsys, "search", str(idx), "cats purr", "-k", "2", "--json")
    assert code == 0, err
    hits = json.loads(out)
    assert len(hits) == 2 and {"id", "score", "text", "rank", "metadata"} <= set(hits[0])
    assert {h["id"] for h in hits} <= set(DOCS)
    code, out, err = _run(capsys, "search", str(idx), "rockets", "-k", "3")
    assert code == 0 and "score" in out and len(out.strip().splitlines()) == 4
    code, out, err = _run(capsys, "info", str(idx), "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["documents"] == 3 and info["backend"] == backend and info["bytes_on_disk"] > 0
    assert info["model"] == str(tiny_checkpoint)
    if backend != "qdrant-edge":
        assert info["tokens"] > 3
    code, out, _ = _run(capsys, "info", str(idx))
    assert code == 0 and "documents:" in out


def test_resume_skips_and_update_replaces(capsys: Any, tmp_path: Path, folder: Path, tiny_checkpoint: Path) -> None:
    idx = tmp_path / "idx"
    assert _index(capsys, folder, idx, tiny_checkpoint, "--backend", "memory")[0] == 0
    (folder / "new.txt").write_text("A brand new document about volcanoes.", encoding="utf-8")
    (folder / "cats.txt").write_text("Changed text about lions.", encoding="utf-8")
    # the index remembers its model: no --model needed
    code, out, err = _run(capsys, "index", str(folder), str(idx), "-q")
    assert code == 0, err
    assert "indexed 1 documents, skipped 3" in out
    code, out, _ = _run(capsys, "search", str(idx), "lions", "--json", "-k", "4")
    assert next(h for h in json.loads(out) if h["id"] == "cats.txt")["text"].startswith("Cats")
    code, out, err = _run(capsys, "index", str(folder), str(idx), "-q", "--update")
    assert code == 0 and "indexed 4 documents, skipped 0" in out
    code, out, _ = _run(capsys, "search", str(idx), "lions", "--json", "-k", "4")
    assert next(h for h in json.loads(out) if h["id"] == "cats.txt")["text"] == "Changed text about lions."
    assert json.loads(_run(capsys, "info", str(idx), "--json")[1])["documents"] == 4


def test_bad_inputs_reported_rest_indexed(capsys: Any, tmp_path: Path, folder: Path, tiny_checkpoint: Path) -> None:
    (folder / "empty.txt").write_text("   \n", encoding="utf-8")
    (folder / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    unreadable = folder / "locked.md"
    unreadable.write_text("secret", encoding="utf-8")
    unreadable.chmod(0)
    idx = tmp_path / "idx"
    try:
        code, out, err = _index(capsys, folder, idx, tiny_checkpoint, "--backend", "memory")
    finally:
        unreadable.chmod(0o644)
    assert code == 1
    assert "empty.txt: empty file" in err and "latin1.txt: not valid UTF-8" in err
    can_read_anyway = not err.count("locked.md")  # root ignores file permissions
    assert f"{2 if can_read_anyway else 3} inputs failed" in err
    assert "indexed 3 documents" in out or "indexed 4 documents" in out


def test_jsonl_bad_lines(capsys: Any, tmp_path: Path, tiny_checkpoint: Path) -> None:
    src = tmp_path / "docs.jsonl"
    src.write_text(
        "\n".join(
            [
                json.dumps({"id": "a", "text": "apples are red fruit", "metadata": {"color": "red"}}),
                "{not json",
                json.dumps({"id": "b", "body": "no text field"}),
                json.dumps(["a", "list"]),
                "",
                json.dumps({"id": "c", "text": "bananas are yellow", "color": "yellow"}),
                json.dumps({"id": "a", "text": "duplicate id"}),
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    idx = tmp_path / "idx"
    code, out, err = _index(capsys, src, idx, tiny_checkpoint, "--backend", "memory")
    assert code == 1
    assert "docs.jsonl:2: not valid JSON" in err and "docs.jsonl:3: no text" in err
    assert "docs.jsonl:4: expected a JSON object" in err and "docs.jsonl:7: duplicate id 'a'" in err
    assert "4 inputs failed" in err and "indexed 2 documents" in out
    code, out, _ = _run(capsys, "search", str(idx), "fruit", "--json", "--filter", "color=red")
    assert code == 0 and [h["id"] for h in json.loads(out)] == ["a"]


def test_csv_with_and_without_text_column(capsys: Any, tmp_path: Path, tiny_checkpoint: Path) -> None:
    good = tmp_path / "good.csv"
    good.write_text(
        'id,text,metadata\n1,"hello, world of csv",{"lang": "en"}\n2,,{}\n3,second row text,\n', encoding="utf-8"
    )
    idx = tmp_path / "idx"
    code, out, err = _index(capsys, good, idx, tiny_checkpoint, "--backend", "memory")
    assert code == 1 and "good.csv:3: empty 'text'" in err and "indexed 2 documents" in out
    bad = tmp_path / "bad.csv"
    bad.write_text("id,body\n1,hello\n", encoding="utf-8")
    code, out, err = _index(capsys, bad, tmp_path / "idx2", tiny_checkpoint, "--backend", "memory")
    assert code == 1 and "no 'text' column (columns: id, body)" in err and "indexed 0 documents" in out
    code, out, err = _index(
        capsys, bad, tmp_path / "idx3", tiny_checkpoint, "--backend", "memory", "--text-field", "body"
    )
    assert code == 0 and "indexed 1 documents" in out
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    code, _, err = _index(capsys, empty, tmp_path / "idx4", tiny_checkpoint, "--backend", "memory")
    assert code == 1 and "empty.csv: empty file" in err


def test_other_model_refused(
    capsys: Any, tmp_path: Path, folder: Path, tiny_checkpoint: Path, make_checkpoint: Any
) -> None:
    idx = tmp_path / "idx"
    assert _index(capsys, folder, idx, tiny_checkpoint, "--backend", "memory")[0] == 0
    other = make_checkpoint(seed=1)
    code, _, err = _index(capsys, folder, idx, other)
    assert code == 1 and "was indexed with model" in err
    code, _, err = _run(capsys, "search", str(idx), "cats", "--model", str(other))
    assert code == 1 and "was indexed with model" in err


def test_usage_and_runtime_errors(capsys: Any, tmp_path: Path, folder: Path, tiny_checkpoint: Path) -> None:
    code, _, err = _run(capsys, "search", str(tmp_path / "nope"), "cats")
    assert code == 1 and "is not an index" in err
    code, _, err = _run(capsys, "info", str(tmp_path / "nope"))
    assert code == 1 and "is not an index" in err
    code, _, err = _run(capsys, "index", str(folder), str(tmp_path / "i"), "--backend", "bogus")
    assert code == 2
    code, _, err = _index(capsys, folder, tmp_path / "i", tiny_checkpoint, "--backend", "qdrant-url")
    assert code == 2 and "--url" in err
    code, _, err = _index(capsys, folder, tmp_path / "i", tiny_checkpoint, "--batch-size", "0")
    assert code == 2
    code, _, err = _index(capsys, tmp_path / "missing", tmp_path / "i2", tiny_checkpoint, "--backend", "memory")
    assert code == 1 and "no such file or directory" in err
    idx = tmp_path / "idx"
    assert _index(capsys, folder, idx, tiny_checkpoint, "--backend", "memory")[0] == 0
    assert _run(capsys, "search", str(idx), "  ")[0] == 2
    assert _run(capsys, "search", str(idx), "cats", "-k", "0")[0] == 2
    code, _, err = _index(capsys, folder, idx, tiny_checkpoint, "--backend", "voyager")
    assert code == 2 and "uses backend 'memory'" in err


def test_hub_unreachable_is_reported(
    capsys: Any, tmp_path: Path, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from colbert_adapters import encoder as enc_mod
    from colbert_adapters.errors import HubUnavailableError

    def boom(*_a: Any, **_k: Any) -> Any:
        raise HubUnavailableError("cannot reach the Hugging Face Hub for 'x/y' and it is not cached; pass --model DIR")

    monkeypatch.setattr(enc_mod.ColBERTEncoder, "from_pretrained", boom)
    code, _out, err = _run(capsys, "index", str(folder), str(tmp_path / "idx"), "--model", "x/y")
    assert code == 1 and "cannot reach the Hugging Face Hub" in err and "Traceback" not in err


def _write_beir(root: Path) -> Path:
    root.mkdir()
    docs = {
        "d1": "cats purr and chase mice",
        "d2": "dogs bark at the mailman",
        "d3": "rockets reach orbit",
        "d4": "volcanoes erupt lava",
        "d5": "fish swim in the sea",
    }
    (root / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": k, "title": "", "text": v}) + "\n" for k, v in docs.items()), encoding="utf-8"
    )
    (root / "queries.jsonl").write_text(
        "".join(
            json.dumps({"_id": q, "text": t}) + "\n" for q, t in [("q1", "cats"), ("q2", "rockets"), ("q3", "unjudged")]
        )
    )
    (root / "qrels").mkdir()
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td3\t2\n")
    return root


def test_eval_beir_all_backends(capsys: Any, tmp_path: Path, tiny_checkpoint: Path) -> None:
    data = _write_beir(tmp_path / "mini")
    out_json = tmp_path / "res" / "eval.json"
    code, out, err = _run(
        capsys,
        "eval",
        str(data),
        "--model",
        str(tiny_checkpoint),
        "-q",
        "--backend",
        "memory",
        "--backend",
        "voyager",
        "--backend",
        "qdrant-edge",
        "-o",
        str(out_json),
    )
    assert code == 0, err
    assert "nDCG@10" in out and "voyager" in out and "qdrant-edge" in out
    res = json.loads(out_json.read_text())
    assert res["documents"] == 5 and res["queries"] == 2
    for name in ("memory", "voyager", "qdrant-edge"):
        e = res["backends"][name]
        assert 0.0 < e["nDCG@10"] <= 1.0 and e["Recall@100"] == 1.0  # 5 docs: all retrieved
        assert e["search_latency"]["p50_ms"] >= 0
    assert res["backends"]["memory"]["vs_exact"] == 1.0


def test_eval_usage_errors(capsys: Any, tmp_path: Path) -> None:
    code, _, err = _run(capsys, "eval", str(tmp_path))
    assert code == 2 and "unknown collection format" in err
    assert _run(capsys, "eval", str(tmp_path), "--backend", "nope")[0] == 2


def test_console_script_smoke(tmp_path: Path, folder: Path, tiny_checkpoint: Path) -> None:
    idx = tmp_path / "idx"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "colbert_adapters.cli",
            "index",
            str(folder),
            str(idx),
            "--model",
            str(tiny_checkpoint),
            "--backend",
            "memory",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "doc/s" in out.stderr or "doc" in out.stderr  # tqdm progress bar
    out = subprocess.run(
        [sys.executable, "-m", "colbert_adapters.cli", "search", str(idx), "cats"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and "cats.txt" in out.stdout


# --------------------------------------------------------------- a backend's own directory (qdrant setup, then index)


def _jsonl(path: Path) -> Path:
    rows = [
        {"id": f"d{i}", "text": f"{word} document number {i}", "bucket": i % 3}
        for i, word in enumerate(["cats purr", "dogs bark", "rockets fly", "cats sleep", "dogs fetch", "rockets burn"])
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_qdrant_setup_then_index_uses_that_collection(
    capsys: Any, tmp_path: Path, tiny_checkpoint: Path, tiny_encoder: Any
) -> None:
    pytest.importorskip("qdrant_edge")
    edge = tmp_path / "edge"
    dim = str(tiny_encoder.dim)
    code, _, err = _run(
        capsys,
        "qdrant",
        "setup",
        str(edge),
        "--dim",
        dim,
        "--quantization",
        "int8",
        "--payload-index",
        "bucket:integer",
    )
    assert code == 0, err
    before = sorted(p.name for p in edge.iterdir())
    code, out, err = _index(capsys, _jsonl(tmp_path / "docs.jsonl"), edge, tiny_checkpoint)
    assert code == 0 and "indexed 6 documents" in out and "(qdrant-edge)" in out, err
    assert sorted(p.name for p in edge.iterdir()) == sorted([*before, MANIFEST])  # no second index inside
    manifest = json.loads((edge / MANIFEST).read_text())
    assert manifest["backend"] == "qdrant-edge" and manifest["data"] == "."
    code, out, err = _run(capsys, "qdrant", "info", str(edge))
    assert code == 0, err
    info = json.loads(out)
    assert info["count"] == 6
    assert info["config"]["quantization"] == "int8" and info["config"]["payload_indexes"] == {"bucket": "integer"}
    # typed filter values: 1 is the integer 1, "1" (quoted) the string, which no document holds
    code, out, err = _run(capsys, "search", str(edge), "cats", "-k", "6", "--json", "--filter", "bucket=1")
    assert code == 0, err
    assert sorted(h["id"] for h in json.loads(out)) == ["d1", "d4"]
    code, out, err = _run(capsys, "search", str(edge), "cats", "-k", "6", "--json", "--filter", 'bucket="1"')
    assert code == 0 and json.loads(out) == [], err
    code, out, err = _run(capsys, "search", str(edge), "cats", "--json", "--filter", "bucket=0", "--filter", "bucket=2")
    assert code == 0 and sorted(h["id"] for h in json.loads(out)) == ["d0", "d2", "d3", "d5"], err
    # operators: --filter FIELD>=VALUE etc. (all must hold), --where with the JSON form
    code, out, err = _run(capsys, "search", str(edge), "cats", "-k", "6", "--json", "--filter", "bucket>=1")
    assert code == 0 and sorted(h["id"] for h in json.loads(out)) == ["d1", "d2", "d4", "d5"], err
    argv = ["search", str(edge), "cats", "-k", "6", "--json", "--filter", "bucket!=0", "--filter", "bucket<2"]
    code, out, err = _run(capsys, *argv)
    assert code == 0 and sorted(h["id"] for h in json.loads(out)) == ["d1", "d4"], err
    code, out, err = _run(
        capsys, "search", str(edge), "cats", "--json", "--where", '{"$or": [{"bucket": 0}, {"bucket": {"$gt": 1}}]}'
    )
    assert code == 0 and sorted(h["id"] for h in json.loads(out)) == ["d0", "d2", "d3", "d5"], err
    code, out, err = _run(capsys, "search", str(edge), "cats", "--where", '{"bucket": {"$gte": "1"}}')
    assert code != 0 and "range operators compare numbers" in err
    code, out, err = _run(capsys, "search", str(edge), "cats", "--where", "[1]")
    assert code != 0 and "--where must be a JSON object" in err
    # a second run resumes into the same collection
    code, out, err = _index(capsys, tmp_path / "docs.jsonl", edge, tiny_checkpoint)
    assert code == 0 and "skipped 6" in out, err


def test_index_adopts_a_voyager_directory(
    capsys: Any, tmp_path: Path, tiny_checkpoint: Path, tiny_encoder: Any
) -> None:
    pytest.importorskip("voyager")
    from colbert_adapters.backends.voyager import VoyagerBackend

    VoyagerBackend(tmp_path / "v", dim=tiny_encoder.dim).close()
    code, _, err = _index(
        capsys, _jsonl(tmp_path / "docs.jsonl"), tmp_path / "v", tiny_checkpoint, "--backend", "qdrant-edge"
    )
    assert code == 2 and "holds a voyager index" in err
    # without a manifest, search needs the model
    code, _, err = _run(capsys, "search", str(tmp_path / "v"), "cats")
    assert code == 2 and "--model" in err
    code, out, err = _index(capsys, tmp_path / "docs.jsonl", tmp_path / "v", tiny_checkpoint)
    assert code == 0 and "(voyager)" in out, err
    assert not (tmp_path / "v" / "data").exists()
    code, out, err = _run(capsys, "search", str(tmp_path / "v"), "rockets", "-k", "2", "--json")
    assert code == 0 and {h["id"] for h in json.loads(out)} <= {"d2", "d5", "d0", "d1", "d3", "d4"}, err
    with VoyagerBackend(tmp_path / "v", read_only=True) as backend:
        assert backend.count() == 6


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("1", 1),
        ("-2", -2),
        ("1.5", 1.5),
        ("true", True),
        ("false", False),
        ("null", None),
        ('"1"', "1"),
        ("en", "en"),
        ("NaN", "NaN"),
        ("[1]", "[1]"),
        ("", ""),
    ],
)
def test_filter_values_are_typed(raw: str, value: Any) -> None:
    from colbert_adapters.cli._index import _parse_filter

    parsed = _parse_filter([f"k={raw}"])
    assert parsed == {"k": value} and type(parsed["k"]) is type(value)


def test_edited_index_manifest_is_refused(capsys: Any, tmp_path: Path, folder: Path, tiny_checkpoint: Path) -> None:
    idx = tmp_path / "idx"
    assert _index(capsys, folder, idx, tiny_checkpoint, "--backend", "memory")[0] == 0
    data = json.loads((idx / MANIFEST).read_text())
    data["backend"] = "voyager"  # still valid JSON, no longer what was written
    (idx / MANIFEST).write_text(json.dumps(data))
    code, _, err = _run(capsys, "search", str(idx), "cats")
    assert code == 1 and "checksum" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("backend", ["memory", "voyager", "qdrant-edge"])
def test_search_options_and_delete(capsys: Any, tmp_path: Path, tiny_checkpoint: Path, backend: str) -> None:
    if backend == "qdrant-edge":
        pytest.importorskip("qdrant_edge")
    idx = tmp_path / "idx"
    assert _index(capsys, _jsonl(tmp_path / "docs.jsonl"), idx, tiny_checkpoint, "--backend", backend)[0] == 0

    def search(*extra: str) -> list[dict[str, Any]]:
        code, out, err = _run(capsys, "search", str(idx), "cats", "-k", "6", "--json", "-q", *extra)
        assert code == 0, err
        return list(json.loads(out))

    everything = search()
    assert len(everything) == 6
    assert [h["id"] for h in search("--id", "d4", "--id", "d1", "--id", "nope")] == [
        h["id"] for h in everything if h["id"] in ("d1", "d4")
    ]
    cut = everything[2]["score"]
    assert [h["id"] for h in search("--score-threshold", str(cut))] == [h["id"] for h in everything[:3]]
    mmr = search("--mmr", "--fetch-k", "6", "--lambda-mult", "1")  # relevance only: the plain order
    assert [h["id"] for h in mmr] == [h["id"] for h in everything]
    assert len(search("--mmr", "-k", "2", "--lambda-mult", "0.3")) == 2
    # delete by id, then by filter; the count is reported and the index reopens without them
    code, out, err = _run(capsys, "delete", str(idx), "--id", "d0", "--id", "nope")
    assert code == 0 and json.loads(out)["documents"] == 1, err
    code, out, err = _run(capsys, "delete", str(idx), "--filter", "bucket>=2")
    assert code == 0 and json.loads(out)["documents"] == 2, err  # d2, d5
    assert sorted(h["id"] for h in search()) == ["d1", "d3", "d4"]
    code, _, err = _run(capsys, "delete", str(idx))
    assert code == 2 and "--id" in err
    code, _, err = _run(capsys, "delete", str(idx), "--where", '{"bucket": {"$gte": "x"}}')
    assert code != 0 and "range operators compare numbers" in err
    assert len(search()) == 3


@pytest.mark.parametrize("backend", ["memory", "voyager"])
def test_delete_in_a_backends_own_directory(capsys: Any, tmp_path: Path, backend: str) -> None:
    from colbert_adapters import MultiVectorStore
    from colbert_adapters.testing import FakeEncoder

    kwargs = {} if backend == "memory" else {"path": tmp_path / "own"}
    with MultiVectorStore(FakeEncoder(dim=8), backend, **kwargs) as store:
        store.add(["a b", "c d", "e f"], ids=["x", "y", "z"], metadatas=[{"n": 1}, {"n": 2}, {"n": 3}])
        if backend == "memory":
            store.backend.save(tmp_path / "own")  # type: ignore[attr-defined]
    code, out, err = _run(capsys, "delete", str(tmp_path / "own"), "--where", '{"n": {"$lt": 3}}')
    assert code == 0 and json.loads(out)["documents"] == 2, err
    with MultiVectorStore.open(tmp_path / "own", FakeEncoder(dim=8)) as reopened:
        assert reopened.ids() == ["z"]
    code, _, err = _run(capsys, "delete", str(tmp_path / "nothing-here"), "--id", "x")
    assert code == 1 and "not" in err
