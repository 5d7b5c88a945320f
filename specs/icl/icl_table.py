"""Print the in-context / in-weights table of docs/reproduction.md ("the data as an intervention") from runs.

Usage: python specs/icl/icl_table.py RUN_FOLDER [RUN_FOLDER ...], each a sweep folder written by
`opto run specs/icl/<spec>.opto --out RUN_FOLDER` (or a record of one). Runs that differ only in their
`-seed<s>` suffix form one row: the final accuracy of `train`, `in_context` and `in_weights`, and the
first evaluation where `in_context` reaches 0.6 and 0.9 (above the 0.5 that choosing either of the
context's two labels gives), each as mean (min-max) over the seeds. `opto report` prints the crossings
of the training set only, so this script reads the held-out sets' curves itself.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from optodsl.report import load_runs

SETS = ("train", "in_context", "in_weights")
THRESHOLDS = (0.6, 0.9)


def _over(values: list[float], show) -> str:
    """Mean (min-max) of `values`, or the one value."""
    mean = sum(values) / len(values)
    return show(mean) if len(values) == 1 else f"{show(mean)} ({show(min(values))}-{show(max(values))})"


def _crossing(runs: list, threshold: float) -> str:
    """When `in_context` accuracy first reaches `threshold`, over the runs; how many never do."""
    hits = []
    for run in runs:
        xs, ys = run.series("in_context/accuracy")
        hits.append(next((x for x, y in zip(xs, ys) if y >= threshold), None))
    reached = [h for h in hits if h is not None]
    if not reached:
        return f"not by {runs[0].sequences // 1000}k"
    text = _over(reached, lambda v: f"{v / 1000:.0f}k")
    return text if len(reached) == len(runs) else f"{text} in {len(reached)} of {len(runs)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args()
    groups: dict[str, list] = {}
    for run in load_runs(args.folders):
        groups.setdefault(re.sub(r"-seed\d+$", "", run.path.name), []).append(run)
    head = ["runs", "seeds", *(f"final {s}" for s in SETS), *(f"in_context >= {t}" for t in THRESHOLDS)]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name, runs in groups.items():
        finals = [_over([run.series(f"{s}/accuracy")[1][-1] for run in runs], lambda v: f"{v:.3f}") for s in SETS]
        seeds = ", ".join(str(run.config.get("seed", {}).get("init", "?")) for run in runs)
        print("| " + " | ".join([name, seeds, *finals, *(_crossing(runs, t) for t in THRESHOLDS)]) + " |")


if __name__ == "__main__":
    main()
