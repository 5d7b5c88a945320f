"""Wall time from `opto run` to the last metric for the main paper's runs (Figures 3-6).

Runs the main-paper specs of `specs/paper/` with one `opto run` command (runs that share shapes
train as one program), into a fresh folder, and prints the wall time, compilation included, and
each run's steps/s. `--set` values are passed on, e.g. to measure a shortened version:

    python benchmarks/paper_time.py --out /tmp/paper                  # the paper's lengths
    python benchmarks/paper_time.py --out /tmp/paper --set train.sequences=50k
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAIN = [
    "fig3_baseline", "fig4b_single_heads",
    "fig5b", "fig6_unclamped", "fig6_clamped",
]
"""Figures 3-6 as trained runs; Figure 4a is an analysis of Figure 3's checkpoint (`opto analyze`)."""


def parser() -> argparse.ArgumentParser:
    """The command line (tests/test_docs_examples.py parses every call the docs show with it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="a fresh folder for the run directories")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="passed on to opto run")
    parser.add_argument("--only", nargs="*", default=None, help="a subset of the spec names")
    return parser


def main() -> None:
    args = parser().parse_args()
    names = args.only or MAIN
    cmd = [sys.executable, "-m", "optodsl", "run", *[str(ROOT / "specs" / "paper" / f"{n}.opto") for n in names],
           "--out", str(args.out), "--no-progress"]
    for s in args.sets:
        cmd += ["--set", s]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(proc.stderr)
    runs = []
    for summary in sorted(args.out.rglob("summary.json")):
        data = json.loads(summary.read_text())
        runs.append({"run": str(summary.parent.relative_to(args.out)), "sequences": data["sequences"],
                     "steps_per_s": data["steps_per_second"], "runs_in_program": data["runs_in_program"],
                     "wall_s": data["wall_seconds"]})
    print(json.dumps({"specs": len(names), "runs": len(runs), "wall_s": round(wall, 1), "sets": args.sets, "per_run": runs}, indent=1))


if __name__ == "__main__":
    main()
