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


def programs(names: list[str], sets: list[str] = ()) -> list[dict]:
    """The programs `opto run` would train for these specs, grouped as it groups them
    (`program_key`): per program its runs, training steps and forward passes (1, or 2 for a
    reading verb that needs a clean pass first)."""
    from optodsl.experiment import coerce, load_experiment
    from optodsl.pipeline import plan_for
    from optodsl.train.program import program_key

    settings = {k: coerce(v) for k, v in (s.split("=", 1) for s in sets)}
    groups: dict[tuple, dict] = {}
    for name in names:
        for member in load_experiment(ROOT / "specs" / "paper" / f"{name}.opto", settings or None).members:
            plan = plan_for(member)
            group = groups.setdefault(program_key(plan, member.config),
                                      {"spec": name, "runs": 0, "steps": member.config.train.steps,
                                       "passes": getattr(plan, "passes", 1)})
            group["runs"] += 1
    return list(groups.values())


def run_specs(names: list[str], out: Path, sets: list[str] = (), timeout: float | None = None) -> dict:
    """Train the specs with one `opto run` into `out` and return the wall time (compilation
    included) and each run's summary."""
    cmd = [sys.executable, "-m", "optodsl", "run", *[str(ROOT / "specs" / "paper" / f"{n}.opto") for n in names],
           "--out", str(out), "--no-progress"]
    for s in sets:
        cmd += ["--set", s]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr)
    runs = []
    for summary in sorted(out.rglob("summary.json")):
        data = json.loads(summary.read_text())
        runs.append({"run": str(summary.parent.relative_to(out)), "sequences": data["sequences"],
                     "steps_per_s": data["steps_per_second"], "runs_in_program": data["runs_in_program"],
                     "wall_s": data["wall_seconds"]})
    return {"specs": len(names), "runs": len(runs), "wall_s": round(wall, 1), "sets": list(sets), "per_run": runs}


def main() -> None:
    args = parser().parse_args()
    try:
        result = run_specs(args.only or MAIN, args.out, args.sets)
    except RuntimeError as err:
        sys.exit(str(err))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
