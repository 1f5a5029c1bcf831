"""The structure rules the code base holds to (docs/ARCHITECTURE.md), checked on the source tree.

* no module of the library over 800 lines;
* no module imports another module's underscore names unless that module is itself private;
* every public exception class is defined in ``colbert_adapters/errors.py``;
* backend classes are named (``"module:Class"``) in ``backends/__init__.py`` alone, and nothing imports by name;
* comments and docstrings carry no timing figures (measurements belong in ``benchmarks/``);
* every public name of an earlier release still imports from where it did;
* README stays a user's page: at most 220 lines, with the two set-up commands.
"""

from __future__ import annotations

import ast
import importlib
import io
import json
import pkgutil
import re
import tokenize
from pathlib import Path

import pytest

import colbert_adapters
from colbert_adapters.errors import ColBERTError

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted([*(ROOT / "colbert_adapters").rglob("*.py"), *(ROOT / "integrations").rglob("*.py")])
MAX_LINES = 800


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[0] == "integrations":
        parts = ["colbert_adapters", *parts]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _resolve(module: str, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` in ``module`` reads from."""
    if node.level == 0:
        return node.module or ""
    is_package = module.count(".") and (ROOT / Path(*module.split(".")) / "__init__.py").exists()
    base = module.split(".") if is_package else module.split(".")[:-1]
    if module.startswith("colbert_adapters.integrations"):  # installed as a subpackage of colbert_adapters
        base = module.split(".") if module == "colbert_adapters.integrations" else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
    return ".".join([*base, *(node.module.split(".") if node.module else [])])


def _is_module(name: str) -> bool:
    parts = name.split(".")
    if parts[:2] == ["colbert_adapters", "integrations"]:
        parts = ["integrations", *parts[2:]]
    base = ROOT.joinpath(*parts)
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


@pytest.mark.parametrize("path", SOURCES, ids=_rel)
def test_no_module_is_over_800_lines(path: Path) -> None:
    n = len(path.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"{_rel(path)} has {n} lines; split it by concern (docs/ARCHITECTURE.md)"


def test_no_module_imports_another_modules_private_names() -> None:
    bad = []
    for path in SOURCES:
        module = _module_name(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom) or node.module == "__future__":
                continue
            source = _resolve(module, node)
            if source.split(".")[-1].startswith("_"):
                continue  # a private module's names are for its package
            for alias in node.names:
                if _is_module(f"{source}.{alias.name}"):
                    continue  # a (private) submodule, not a name of the module
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    bad.append(f"{_rel(path)}:{node.lineno} imports {alias.name} from {source}")
    assert not bad, "\n".join(bad)


def _public_modules() -> list[str]:
    names = ["colbert_adapters"]
    names += [m.name for m in pkgutil.walk_packages(colbert_adapters.__path__, "colbert_adapters.")]
    return sorted(n for n in set(names) if not any(p.startswith("_") for p in n.split(".")[1:]))


def test_every_public_exception_is_defined_in_errors() -> None:
    bad = []
    for name in _public_modules():
        if name.endswith("__main__"):
            continue
        module = importlib.import_module(name)
        for attr in getattr(module, "__all__", []):
            value = getattr(module, attr)
            if isinstance(value, type) and issubclass(value, BaseException):
                if value.__module__ != "colbert_adapters.errors":
                    bad.append(f"{name}.{attr} is defined in {value.__module__}")
                if not issubclass(value, ColBERTError):
                    bad.append(f"{name}.{attr} does not derive from ColBERTError")
    assert not bad, "\n".join(bad)


def test_backend_classes_are_named_in_the_registry_alone() -> None:
    registry = ROOT / "colbert_adapters" / "backends" / "__init__.py"
    target = re.compile(r"['\"]colbert_adapters\.backends\.[\w.]+:\w+")
    bad = []
    for path in SOURCES:
        text = path.read_text(encoding="utf-8")
        if path != registry and target.search(text):
            bad.append(f"{_rel(path)} names a backend class by string; use colbert_adapters.backends")
        if "__import__(" in text:
            bad.append(f"{_rel(path)} imports a module by name with __import__")
    assert not bad, "\n".join(bad)


#: A timing figure or a measurement diary in a comment or docstring.
TIMING = re.compile(
    r"\b\d+(?:\.\d+)?\s?(?:ms|µs|us|ns|seconds?)\b|\b\d+(?:\.\d+)?\s?[x\u00d7]\s(?:faster|slower|cheaper)|"
    r"\d\s(?:vs|versus)\s\d|\bmeasured\b",
    re.IGNORECASE,
)


def _comments_and_docstrings(source: str) -> list[tuple[int, str]]:
    out = [
        (tok.start[0], tok.string)
        for tok in tokenize.generate_tokens(io.StringIO(source).readline)
        if tok.type == tokenize.COMMENT
    ]
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            value = body[0].value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                out.append((body[0].lineno, value.value))
    return out


@pytest.mark.parametrize("path", SOURCES, ids=_rel)
def test_comments_and_docstrings_carry_no_timings(path: Path) -> None:
    bad = [
        f"{_rel(path)}:{line}: {m.group(0)!r}"
        for line, text in _comments_and_docstrings(path.read_text(encoding="utf-8"))
        for m in TIMING.finditer(text)
    ]
    assert not bad, "timings belong in benchmarks/ and commit messages:\n" + "\n".join(bad)


def test_public_names_of_b219739_still_import_from_where_they_did() -> None:
    snapshot = json.loads((ROOT / "tests" / "fixtures" / "public_api_b219739.json").read_text(encoding="utf-8"))
    missing = []
    for module_name, names in snapshot.items():
        module = importlib.import_module(module_name)
        missing += [f"{module_name}.{n}" for n in names if not hasattr(module, n)]
    assert not missing, missing


def test_readme_is_a_users_page_with_the_two_setup_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 220
    for marker in ("<!-- quickstart-command -->", "<!-- test-command -->"):
        after = readme.split(marker, 1)[1].lstrip()
        assert after.startswith("```bash\npython3 -m venv .venv && . .venv/bin/activate && pip install"), marker
