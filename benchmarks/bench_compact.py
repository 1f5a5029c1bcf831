#!/usr/bin/env python3
"""Compact Voyager index benchmark (issue 23): ours in each ``compression`` mode vs fast-plaid, side by side.

Every system indexes the same vectors in the same run, one phase per fresh process:

* data sets (``benchmarks/_work/compact/<name>``, see ``_compact_data.py``): ``synthetic`` (10,000 documents of
  100-228 tokens, 1.64M tokens, 128-d, clustered topics in a narrow cone, generated from a seed chunk by chunk) and
  ``scifact`` (the SciFact corpus encoded with all-MiniLM-L6-v2, 384-d, ``document_length`` 256, ~1.1M tokens;
  100 queries; encoded once and cached);
* the truth: each query's exact top 10 by float32 MaxSim (``colbert_adapters.scoring.maxsim_batch``), computed once
  per data set and cached;
* systems: ``VoyagerBackend`` with this revision's default settings, ``int8``, ``2bit`` and ``4bit`` (a mode
  whose ``compression=`` this revision lacks reads "not available in this revision"), and fast-plaid
  ``nbits=2`` / ``nbits=4`` (``device="cpu"``, ``n_full_scores`` 256 as in the issue, a sweep beside it) in its
  own virtualenv (``--fastplaid-python``, default ``$FASTPLAID_PYTHON`` or ``../venvs/fastplaid/bin/python``);
* per system: build seconds (threads at their defaults), bytes per token on disk (the whole index folder: there
  are no texts or metadata in it), resident memory after opening and after the warm-up and timed queries (fresh
  process), query p50/p95 on one thread (``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS`` /
  ``RAYON_NUM_THREADS`` = 1, ``torch.set_num_threads(1)``, ``VoyagerBackend(num_threads=1)``; the worker's CPU
  seconds over the timed queries are reported next to the wall seconds to show it), recall@10 against the truth,
  and the seconds to add 1% new documents in one call and to delete 1% in one call.

``--scale`` adds the scale step: a ``--scale-tokens`` (20M) synthetic index built by streaming chunks from the
generator with ``--scale-mode`` (our best compressed mode), the same measurements, and a table extrapolating to
1B tokens.

Usage::

    nice -n 5 python benchmarks/bench_compact.py             # 1.64M synthetic + SciFact (~1 h on 2 shared cores)
    nice -n 5 python benchmarks/bench_compact.py --quick     # small sizes, to check the script
    nice -n 5 python benchmarks/bench_compact.py --only-scale --scale   # the 20M-token run alone

Writes ``benchmarks/results/compact.md`` and ``compact.json`` (``--out`` changes the stem).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks._common import (  # noqa: E402
    RESULTS,
    cpu_model,
    default_fastplaid_python,
    loadavg,
    output_stem,
    read_json,
    write_json,
)
from benchmarks._compact_report import write_report  # noqa: E402
from benchmarks._compact_systems import (  # noqa: E402
    COMPACT_WORK,
    SYSTEMS,
    prepare_scifact,
    prepare_synthetic,
    run_system,
    scale_run,
    truth,
)


def progress(msg: str) -> None:
    """One progress line on stdout: time, 1-minute load average, what starts."""
    print(f"[{time.strftime('%H:%M:%S')}] load {os.getloadavg()[0]:.2f}  {msg}", flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (checks the script, numbers meaningless)")
    ap.add_argument("--datasets", default="synthetic,scifact", help="comma-separated subset of synthetic,scifact")
    ap.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated subset of {','.join(SYSTEMS)}")
    ap.add_argument("--fastplaid-python", default=default_fastplaid_python(), help="'' skips fast-plaid")
    ap.add_argument("--scale", action="store_true", help="also run the scale step (long)")
    ap.add_argument("--only-scale", action="store_true", help="run the scale step alone (implies --scale)")
    ap.add_argument("--scale-tokens", type=float, default=20e6)
    ap.add_argument("--scale-mode", default="2bit", help="our compression mode of the scale step")
    ap.add_argument("--scale-queries", type=int, default=100, help="timed queries of the scale step")
    ap.add_argument("--scale-fastplaid", action="store_true", help="also build fast-plaid at scale")
    ap.add_argument("--out", default=str(RESULTS / "compact"))
    ap.add_argument("--report-only", action="store_true", help="rebuild the markdown from the JSON of --out")
    ap.add_argument(
        "--merge",
        nargs="+",
        metavar="JSON",
        help="add the systems of these results (runs of other --systems on the same vectors) to --out's, rebuild it",
    )
    a = ap.parse_args(argv)
    stem = output_stem(a.out)
    if a.report_only or a.merge:
        R = read_json(stem.with_suffix(".json"))
        for other in a.merge or []:
            merge_results(R, read_json(Path(other)))
        write_report(R, stem)
        return
    COMPACT_WORK.mkdir(parents=True, exist_ok=True)
    fastplaid = a.fastplaid_python if a.fastplaid_python and Path(a.fastplaid_python).exists() else None
    if fastplaid is None:
        progress(f"WARNING: fast-plaid python {a.fastplaid_python!r} not found: fast-plaid rows are skipped")
    systems = [s.strip() for s in a.systems.split(",") if s.strip()]
    R = start_results(a, stem)
    if not a.only_scale:
        for name in [d.strip() for d in a.datasets.split(",") if d.strip()]:
            measure_dataset(R, name, systems, fastplaid, a.quick)
            write_json(stem.with_suffix(".json"), R)
    if a.scale or a.only_scale:
        progress(f"scale: {a.scale_tokens:.0f} tokens, ours {a.scale_mode}")
        fp = fastplaid if a.scale_fastplaid else None
        R["scale"] = scale_run(a.scale_tokens, a.scale_mode, fp, progress, a.scale_queries)
    R["machine"]["load_end"] = loadavg()
    R["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    write_report(R, stem)
    progress(f"wrote {stem}.md and {stem}.json")


def merge_results(R: dict[str, Any], other: dict[str, Any]) -> None:
    """Add ``other``'s systems to ``R``'s data sets measured on the same vectors (its load readings beside them)."""
    for name, D in other.get("datasets", {}).items():
        mine = R["datasets"].setdefault(name, {"info": D["info"], "systems": {}, "load": {}})
        if mine["info"]["meta"] != D["info"]["meta"]:
            raise SystemExit(f"--merge: {name} was measured on other vectors")
        mine["systems"].update(D["systems"])
        mine["load"].update({k: v for k, v in D["load"].items() if k not in ("start", "end")})
        mine.setdefault("merged_runs", []).append({"started": other["started"], "load": D["load"]})
    if "scale" in other:
        R["scale"] = other["scale"]


def start_results(a: argparse.Namespace, stem: Path) -> dict[str, Any]:
    """The run's header; a previous JSON at ``stem`` keeps the data sets this run does not measure again."""
    old = read_json(stem.with_suffix(".json")) if stem.with_suffix(".json").is_file() else {}
    return {
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "command": " ".join(["python", "benchmarks/bench_compact.py", *sys.argv[1:]]),
        "quick": a.quick,
        "machine": {
            "cpus": os.cpu_count(),
            "cpu_model": cpu_model(),
            "python": platform.python_version(),
            "load_start": loadavg(),
            "nice": os.nice(0),
        },
        "datasets": {} if a.quick else old.get("datasets", {}),
        **({"scale": old["scale"]} if "scale" in old and not a.quick else {}),
    }


def measure_dataset(R: dict[str, Any], name: str, systems: list[str], fastplaid: str | None, quick: bool) -> None:
    """One data set: its vectors and truth, then every system's build, query and update phases. Systems measured by
    an earlier run on the same vectors and not named in ``systems`` stay in the results (with their start times)."""
    progress(f"{name}: data")
    folder = prepare_synthetic(quick) if name == "synthetic" else prepare_scifact(quick)
    progress(f"{name}: exact top 10")
    info, want = truth(folder)
    old = R["datasets"].get(name, {})
    keep = old.get("systems", {}) if old.get("info", {}).get("meta") == info["meta"] else {}
    D: dict[str, Any] = {"info": info, "systems": keep, "load": {**old.get("load", {}), "start": loadavg()}}
    R["datasets"][name] = D
    for system in systems:
        progress(f"{name}: {system}")
        started = time.strftime("%H:%M:%S UTC", time.gmtime())
        D["systems"][system] = {**run_system(system, folder, want, fastplaid, progress), "started": started}
        D["load"][system] = loadavg()
    D["load"]["end"] = loadavg()


if __name__ == "__main__":
    main()
