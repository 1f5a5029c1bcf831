"""``python -m benchmarks``: run every benchmark, then write benchmarks/RESULTS.md.

python -m benchmarks                  # run bench_encoder, bench_voyager, bench_qdrant (slow), then report
python -m benchmarks --only qdrant    # run some of them
python -m benchmarks --quick          # smoke-sized runs (numbers meaningless)
python -m benchmarks --from-results   # only aggregate benchmarks/results/*.json
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = {"encoder": "bench_encoder.py", "voyager": "bench_voyager.py", "qdrant": "bench_qdrant.py"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--from-results", action="store_true", help="only aggregate existing results")
    ap.add_argument("--only", default=",".join(SCRIPTS), help=f"comma-separated subset of {', '.join(SCRIPTS)}")
    ap.add_argument("--quick", action="store_true", help="pass --quick to every benchmark")
    args = ap.parse_args(argv)
    failed = []
    if not args.from_results:
        for name in [n.strip() for n in args.only.split(",") if n.strip()]:
            if name not in SCRIPTS:
                ap.error(f"unknown benchmark {name!r}; valid: {', '.join(SCRIPTS)}")
            cmd = [sys.executable, str(HERE / SCRIPTS[name])] + (["--quick"] if args.quick else [])
            print(f"== {' '.join(cmd)}", flush=True)
            if subprocess.run(cmd, cwd=HERE.parent, check=False).returncode != 0:
                failed.append(name)
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
