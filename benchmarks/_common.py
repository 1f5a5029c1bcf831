"""What the benchmark scripts share: paths, machine facts, percentiles, timers, result files, PyLate's interpreter.

Standard library only at import time. The scripts set their thread variables (``OMP_NUM_THREADS``,
``OPENBLAS_NUM_THREADS``, ...) before numpy or torch is first imported, so numpy is imported inside the functions
that need it. The PyLate workers (``_pylate_worker.py``, ``_voyager_pylate_worker.py``) import this module too, from
PyLate's own virtualenv: keep it free of colbert_adapters and of anything outside the standard library at the top.

Paths are derived from this checkout: ``REPO`` is the repository root, ``SHARED`` the project's ``shared`` folder
beside it (data sets and tools, as ``../shared/...`` in the docs), ``WORK`` the git-ignored scratch folder.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

HERE = Path(__file__).resolve().parent
#: The repository root (the folder holding ``colbert_adapters/`` and ``benchmarks/``).
REPO = HERE.parent
#: Scratch space for checkpoints, cached vectors, logs and intermediate files (git-ignored).
WORK = HERE / "_work"
#: Committed results: one ``<name>.json`` (every measurement) and ``<name>.md`` (the report) per benchmark.
RESULTS = HERE / "results"
#: The project's shared folder beside the checkout: ``data/`` (IR collections) and ``tools/`` (``ir_eval_lib.py``,
#: ``make_checkpoint.py``); ``$BENCH_SHARED`` names another one (a git worktree has none beside it).
SHARED = Path(os.environ.get("BENCH_SHARED") or REPO.parent / "shared")
SHARED_DATA = SHARED / "data"
SHARED_TOOLS = SHARED / "tools"
GiB = 1024**3

#: Environment variable naming the python of a virtualenv with PyLate (the reference side of the comparisons).
PYLATE_PYTHON_ENV = "PYLATE_PYTHON"
#: Environment variable naming the python of a virtualenv with fast-plaid (``bench_compact.py``'s reference).
FASTPLAID_PYTHON_ENV = "FASTPLAID_PYTHON"


# ---------------------------------------------------------------------------------------------- PyLate


def default_pylate_python() -> str:
    """``$PYLATE_PYTHON``, else ``../venvs/pylate/bin/python`` beside the checkout (where the runs kept it).

    Create one with ``python3 -m venv ../venvs/pylate && ../venvs/pylate/bin/pip install pylate==1.6.0
    "voyager<2.2"``.
    """
    return os.environ.get(PYLATE_PYTHON_ENV) or str(REPO.parent / "venvs" / "pylate" / "bin" / "python")


def pylate_python_found(python: str | None) -> bool:
    """Whether ``python`` (a ``--pylate-python`` value; ``''`` or ``None`` means "skip PyLate") exists."""
    return bool(python) and Path(str(python)).exists()


def pylate_missing_note(python: str | None) -> str:
    """The sentence a report and the log give when PyLate's interpreter is not there."""
    if not python:
        return "PyLate skipped (--pylate-python ''); reference columns skipped"
    return (
        f"PyLate python {python!r} not found; reference columns skipped "
        f"(pass --pylate-python or set ${PYLATE_PYTHON_ENV})"
    )


def use_shared_tools(needed_by: str, *data: Path) -> None:
    """Put ``../shared/tools`` (``ir_eval_lib.py``) on ``sys.path``; exit with a clear message when it or one of the
    ``data`` folders is missing."""
    import sys

    missing = [p for p in (*data, SHARED_TOOLS / "ir_eval_lib.py") if not p.exists()]
    if missing:
        where = "the project's shared folder beside the checkout"
        raise SystemExit(f"{needed_by}: {', '.join(map(str, missing))} not found ({where})")
    if str(SHARED_TOOLS) not in sys.path:
        sys.path.insert(0, str(SHARED_TOOLS))


def default_fastplaid_python() -> str:
    """``$FASTPLAID_PYTHON``, else ``../venvs/fastplaid/bin/python`` beside the checkout.

    Create one with ``python3 -m venv ../venvs/fastplaid && ../venvs/fastplaid/bin/pip install fast-plaid``
    (it brings its own torch).
    """
    return os.environ.get(FASTPLAID_PYTHON_ENV) or str(REPO.parent / "venvs" / "fastplaid" / "bin" / "python")


# ---------------------------------------------------------------------------------------------- machine


def proc_status_kib(key: str, pid: int | str = "self") -> int | None:
    """A ``kB`` field of ``/proc/<pid>/status`` (``VmRSS``, ``VmHWM``, ``RssAnon``, ...), or None where unreadable."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def meminfo() -> dict[str, int]:
    """``/proc/meminfo`` in bytes (empty where unreadable)."""
    out = {}
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                k, v = line.split(":", 1)
                out[k] = int(v.split()[0]) * 1024
    except OSError:
        pass
    return out


def cpu_info() -> tuple[str | None, set[str]]:
    """The CPU's model name and flags from ``/proc/cpuinfo`` (None and an empty set where unreadable)."""
    model: str | None = None
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name") and model is None:
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return model, flags


def cpu_model() -> str:
    """The CPU's model name, else what :mod:`platform` knows."""
    return cpu_info()[0] or platform.processor() or platform.machine()


def loadavg(ndigits: int | None = 2) -> list[float]:
    """The 1, 5 and 15-minute load averages, rounded to ``ndigits`` (None: as the kernel gives them)."""
    return [x if ndigits is None else round(x, ndigits) for x in os.getloadavg()]


def loadavg_text() -> str:
    """The load averages as ``"1.23 1.50 1.61"``."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def dir_bytes(path: str | Path) -> int:
    """Bytes of every file below ``path`` (a missing folder counts 0)."""
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)


def peak_memory() -> dict[str, int | None]:
    """This process's peak memory so far: ``VmHWM`` and ``VmPeak`` from ``/proc`` and ``ru_maxrss``, in KiB."""
    import resource

    return {
        "vmhwm_kib": proc_status_kib("VmHWM"),
        "vmpeak_kib": proc_status_kib("VmPeak"),
        "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def encode_failure(err: BaseException) -> dict[str, str]:
    """``status`` ("out of memory" or "error") and ``error`` for an encode that raised ``err``."""
    msg = str(err).splitlines()[0][:300] if str(err) else type(err).__name__
    oom = isinstance(err, MemoryError) or "memory" in msg.lower() or "alloc" in msg.lower()
    return {"status": "out of memory" if oom else "error", "error": f"{type(err).__name__}: {msg}"}


# ---------------------------------------------------------------------------------------------- numbers


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile of ``values`` (linear interpolation, numpy's default method)."""
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=np.float64), p))


def percentile_ms(times_s: Sequence[float], p: float) -> float:
    """The ``p``-th percentile of ``times_s`` (seconds), in milliseconds."""
    import numpy as np

    return float(np.percentile(np.asarray(times_s) * 1e3, p))


def unit_rows(x: Any) -> Any:
    """``x`` with every row (last axis) scaled to unit length, as float32."""
    import numpy as np

    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


class Stopwatch:
    """Wall and CPU seconds of a ``with`` block: ``with Stopwatch() as sw: ...``, then ``sw.wall``, ``sw.cpu``."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0
        self._w0 = self._c0 = 0.0

    def __enter__(self) -> Stopwatch:
        self._w0, self._c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.wall = time.perf_counter() - self._w0
        self.cpu = time.process_time() - self._c0


# ---------------------------------------------------------------------------------------------- files


def write_json(path: Path, obj: Any, *, indent: int | None = 2, default: Any = None, newline: bool = True) -> None:
    """Write ``obj`` as JSON (UTF-8; ``indent=None``: one line), creating the folder; ``newline``: end with one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(obj, indent=indent, default=default)
    path.write_text(text + "\n" if newline else text, encoding="utf-8")


def read_json(path: Path) -> Any:
    """The JSON document in ``path``."""
    return json.loads(path.read_text(encoding="utf-8"))


def output_stem(out: str | Path) -> Path:
    """``out`` without a ``.md`` / ``.json`` suffix: the stem the ``.md`` and ``.json`` results share."""
    path = Path(out)
    return path.with_suffix("") if path.suffix in (".md", ".json") else path
