"""``colbert-adapters qdrant ...``: setup, info, copy/export, exit codes and messages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from contract import unit_multivector

pytest.importorskip("qdrant_client")
pytest.importorskip("qdrant_edge")

from colbert_adapters.backends.qdrant import QdrantBackend
from colbert_adapters.cli import COMMAND_GROUPS, build_parser, main


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "--help")
    assert code == 0 and "qdrant" in out
    code, out, _ = _run(capsys, "--version")
    assert code == 0 and "colbert-adapters" in out
    assert [name for name, _ in COMMAND_GROUPS] == ["qdrant"]
    assert build_parser().prog == "colbert-adapters"


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert _run(capsys, "qdrant")[0] == 2
    assert _run(capsys, "qdrant", "setup", str(tmp_path / "e"))[0] == 2  # --dim missing
    code, _, err = _run(capsys, "qdrant", "setup", str(tmp_path / "e"), "--dim", "8", "--payload-index", "oops")
    assert code == 2 and "FIELD:TYPE" in err
    code, _, err = _run(capsys, "qdrant", "setup", str(tmp_path / "e"), "--dim", "8", "--payload-index", "a:vector")
    assert code == 2 and "payload_indexes" in err


def test_setup_info_and_schema_mismatch(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    loc = str(tmp_path / "edge")
    code, out, _ = _run(
        capsys,
        "qdrant",
        "setup",
        loc,
        "--dim",
        "8",
        "--datatype",
        "float16",
        "--payload-index",
        "source:keyword",
        "--model-id",
        "enc-1",
    )
    assert code == 0
    info = json.loads(out)
    assert info["engine"] == "edge" and info["config"]["datatype"] == "float16" and info["model_id"] == "enc-1"
    assert _run(capsys, "qdrant", "setup", loc, "--dim", "8")[0] == 0  # idempotent
    code, _, err = _run(capsys, "qdrant", "setup", loc, "--dim", "16")
    assert code == 1 and "stores 8-d" in err and "--recreate" in err
    code, out, _ = _run(capsys, "qdrant", "info", loc)
    assert code == 0 and json.loads(out)["count"] == 0
    code, _, err = _run(capsys, "qdrant", "info", str(tmp_path / "missing"))
    assert code == 1 and "does not exist" in err


def test_unreachable_server_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "qdrant", "setup", "http://127.0.0.1:1", "--dim", "8", "--timeout", "2")
    assert code == 1 and "cannot reach Qdrant at http://127.0.0.1:1" in err


def test_export_edge_to_local_mode(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    docs = [unit_multivector(rng, int(rng.integers(2, 9)), 8) for _ in range(30)]
    ids = [f"d{i}" for i in range(30)]
    with QdrantBackend.edge(tmp_path / "edge", dim=8, model_id="enc-1") as src:
        src.upsert(ids, docs, texts=[f"t{i}" for i in range(30)], metadatas=[{"i": i} for i in range(30)])
    code, out, err = _run(
        capsys,
        "qdrant",
        "export",
        str(tmp_path / "edge"),
        f"local:{tmp_path / 'local'}",
        "--to-collection",
        "docs",
        "--batch-points",
        "7",
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["documents"] == 30 and report["target"]["count"] == 30
    with QdrantBackend.local(tmp_path / "local", collection_name="docs") as dst:
        assert dst.model_id == "enc-1"
        hit = dst.search(docs[11], k=1)[0]
        assert (hit.id, hit.text, dict(hit.metadata)) == ("d11", "t11", {"i": 11})
    # Copying again replaces (same ids), and a target of another dimension is refused.
    assert (
        _run(
            capsys, "qdrant", "copy", str(tmp_path / "edge"), f"local:{tmp_path / 'local'}", "--to-collection", "docs"
        )[0]
        == 0
    )
    code, _, err = _run(capsys, "qdrant", "copy", str(tmp_path / "edge"), ":memory:", "--dim", "9")
    assert code == 2 and "differs" in err


def test_console_script_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "colbert_adapters.cli", "qdrant", "--help"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and "setup" in out.stdout and "copy" in out.stdout
    # --help must not import the optional engines.
    code = (
        "import sys; from colbert_adapters.cli import build_parser; build_parser(); "
        "print([m for m in ('qdrant_client', 'qdrant_edge') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_example_runs(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, str(root / "examples" / "qdrant_setup.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=root,
    )
    assert out.returncode == 0, out.stderr
    assert "copied 4 documents" in out.stderr and "local mode top hit: dog" in out.stderr
