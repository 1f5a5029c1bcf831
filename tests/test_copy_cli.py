"""``colbert-adapters copy SRC DST --to BACKEND``: index directories keep their model, backend directories their
documents; an interrupted copy (kill -9) resumes; bad SRC, DST and --to get one clear line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from colbert_adapters import MultiVectorStore
from colbert_adapters.backends import open_backend
from colbert_adapters.cli import MANIFEST, main
from colbert_adapters.testing import FakeEncoder

ROOT = Path(__file__).resolve().parents[1]
DOCS = {
    "cats.txt": "Cats are small domesticated felines that purr and chase mice.",
    "dogs.md": "# Dogs\nDogs are loyal animals that bark and fetch sticks.",
    "rockets.txt": "Rockets burn fuel to reach orbit around the earth.",
}


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    root.mkdir()
    for name, text in DOCS.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


def _index(capsys: Any, folder: Path, idx: Path, model: Path, backend: str) -> None:
    code, _, err = _run(capsys, "index", str(folder), str(idx), "--model", str(model), "-q", "--backend", backend)
    assert code == 0, err


def _search(capsys: Any, idx: Path, query: str) -> list[dict[str, Any]]:
    code, out, err = _run(capsys, "search", str(idx), query, "-k", "3", "--json")
    assert code == 0, err
    return list(json.loads(out))


@pytest.mark.parametrize(
    ("src", "to"),
    [
        ("voyager", "qdrant-edge"),
        ("qdrant-edge", "voyager"),
        ("memory", "voyager"),
        ("voyager", "memory"),
        ("voyager", "qdrant-local"),
    ],
)
def test_copy_an_index_directory(
    capsys: Any, tmp_path: Path, folder: Path, tiny_checkpoint: Path, src: str, to: str
) -> None:
    idx, dst = tmp_path / "idx", tmp_path / "copy"
    _index(capsys, folder, idx, tiny_checkpoint, src)
    code, out, err = _run(capsys, "copy", str(idx), str(dst), "--to", to, "-q")
    assert code == 0, err
    report = json.loads(out)
    assert report["status"] == "copied" and report["to"] == to and report["index_directory"]
    assert (report["documents"], report["copied"], report["target_count"]) == (3, 3, 3) and report["verified"]
    assert report["tokens"] > 3 and report["docs_per_second"] > 0
    before = json.loads((idx / MANIFEST).read_text())
    after = json.loads((dst / MANIFEST).read_text())
    assert after["backend"] == to
    assert {k: after[k] for k in ("model", "model_id", "dim", "settings")} == {
        k: before[k] for k in ("model", "model_id", "dim", "settings")
    }
    # search DST with the model it records, as SRC answers
    want, got = _search(capsys, idx, "cats purr"), _search(capsys, dst, "cats purr")
    assert [h["id"] for h in got] == [h["id"] for h in want]
    assert [h["score"] for h in got] == pytest.approx([h["score"] for h in want], abs=1e-3)
    with MultiVectorStore.open(dst, read_only=True) as store:  # loads the recorded model
        assert store.count() == 3 and store.search("rockets orbit", k=1)[0].id == "rockets.txt"
    # running it again needs --resume, which finds everything copied
    code, _, err = _run(capsys, "copy", str(idx), str(dst), "--to", to, "-q")
    assert code == 1 and "already holds 3 documents" in err and "--resume" in err
    code, out, err = _run(capsys, "copy", str(idx), str(dst), "--to", to, "-q", "--resume")
    assert code == 0, err
    assert (json.loads(out)["copied"], json.loads(out)["skipped"]) == (0, 3)


def test_copy_a_backend_directory(capsys: Any, tmp_path: Path) -> None:
    enc = FakeEncoder(dim=16)
    with MultiVectorStore(enc, "voyager", path=tmp_path / "voyager") as store:
        store.add([f"text number {i}" for i in range(50)], metadatas=[{"n": i} for i in range(50)])
    src, dst = str(tmp_path / "voyager"), str(tmp_path / "edge")
    code, out, err = _run(capsys, "copy", src, dst, "--to", "qdrant_edge", "-q")
    assert code == 0, err
    assert json.loads(out)["index_directory"] is False
    assert not (tmp_path / "edge" / MANIFEST).exists()
    with MultiVectorStore.open(tmp_path / "edge", enc) as copy:  # a Qdrant Edge directory, recording the model
        assert copy.count() == 50 and copy.backend.model_id == enc.model_id  # type: ignore[attr-defined]


KILL_AFTER = 40


def test_cli_copy_resumes_after_kill_9(capsys: Any, tmp_path: Path) -> None:
    enc = FakeEncoder(dim=16)
    n = 400
    with MultiVectorStore(enc, "voyager", path=tmp_path / "src") as store:
        store.add([f"text number {i} of the corpus" for i in range(n)], metadatas=[{"n": i} for i in range(n)])
    dst = tmp_path / "dst"
    cmd = [sys.executable, "-m", "colbert_adapters.cli", "copy", str(tmp_path / "src"), str(dst), "--to", "qdrant-edge"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([*cmd, "--batch-size", "2"], stderr=subprocess.PIPE, env=env)
    assert proc.stderr is not None
    seen = b""
    deadline = time.monotonic() + 120
    try:  # read the progress bar until it shows KILL_AFTER documents copied, then kill -9
        while time.monotonic() < deadline:
            chunk = os.read(proc.stderr.fileno(), 4096)
            if not chunk:
                break
            seen += chunk
            counts = [int(part.split(b"/")[0].split()[-1]) for part in seen.split(b"|")[2::2] if b"/" in part]
            if counts and counts[-1] >= KILL_AFTER:
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, seen.decode(errors="replace")
    with open_backend(dst) as partial:
        done = partial.count()
    assert KILL_AFTER <= done < n
    code, out, err = _run(capsys, "copy", str(tmp_path / "src"), str(dst), "--to", "qdrant-edge", "-q", "--resume")
    assert code == 0, err
    report = json.loads(out)
    assert (report["skipped"], report["copied"], report["target_count"]) == (done, n - done, n)


def test_copy_errors(capsys: Any, tmp_path: Path, folder: Path, tiny_checkpoint: Path) -> None:
    idx = tmp_path / "idx"
    _index(capsys, folder, idx, tiny_checkpoint, "memory")
    code, _, err = _run(capsys, "copy", str(idx), str(tmp_path / "x"), "--to", "elastic")
    assert code == 2 and "accepted targets are voyager, qdrant-edge, qdrant-url, qdrant-local, memory" in err
    code, _, err = _run(capsys, "copy", str(folder), str(tmp_path / "x"), "--to", "voyager")
    assert code == 1 and "is not an index directory (it holds cats.txt" in err and "Qdrant URL" in err
    code, _, err = _run(capsys, "copy", str(tmp_path / "missing"), str(tmp_path / "x"), "--to", "voyager")
    assert code == 1 and "missing is not an index (no such directory)" in err
    code, _, err = _run(capsys, "copy", str(idx), str(tmp_path / "x"), "--to", "qdrant-url")
    assert code == 2 and "needs --url" in err
    code, _, err = _run(capsys, "copy", str(idx), str(tmp_path / "x"), "--to", "voyager", "--url", "http://h:6333")
    assert code == 2 and "--url applies to --to qdrant-url only" in err
    code, _, err = _run(capsys, "copy", str(idx), "http://h:6333", "--to", "voyager")
    assert code == 2 and "a URL takes --to qdrant-url" in err
    code, _, err = _run(capsys, "copy", str(idx), str(folder), "--to", "voyager")
    assert code == 1 and "is not empty (it holds cats.txt" in err
    code, _, err = _run(capsys, "copy", str(idx), str(idx), "--to", "voyager")
    assert code == 2 and "SRC and DST are the same" in err
    assert _run(capsys, "copy", str(idx), str(tmp_path / "v"), "--to", "voyager", "-q")[0] == 0
    code, _, err = _run(capsys, "copy", str(idx), str(tmp_path / "v"), "--to", "qdrant-edge", "--resume")
    assert code == 1 and "is an index on voyager, not qdrant-edge; pass --to voyager" in err
    assert not (tmp_path / "x").exists()  # nothing was created by a refused copy
