"""Reports from run directories: loss/accuracy/measure/analysis figures and a markdown summary.

`make_report(paths, out, at)` is what `opto report RUN_DIR... [--out DIR] [--at 0.6,0.9]` calls; it
reads runs (`load`), reads their stages as each run's task declares (`curvestats`), draws figures
(`figures`) and writes report.md (`summary`), every file atomically, and returns what the console shows.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..files import atomic_write_text, make_dir
from .figures import write_figures
from .load import Run, check_sets, check_values, load_runs
from .summary import console_text, render_report

REPORT = "report.md"


def make_report(paths: list[Path], out: Path, at: tuple[float, ...] | None = None,
                points: tuple[int, ...] | None = None, sets: tuple[str, ...] = (),
                values: tuple[str, ...] = ()) -> tuple[Path, str]:
    """Write the figures and report.md for the runs under `paths` into `out`, with accuracy crossings at
    the thresholds `at` (default: the tasks' phase-change accuracies) of the training set and of each
    evaluation set in `sets` (`check_sets`), the logged values that `values` names at the evaluations
    nearest `points` (`check_values`), and the analysis series' tables at
    the kept points nearest `points` (default: the stage boundaries, `curvestats.chosen_points`); return
    report.md's path and the stage statistics as the console shows them.

    Raises DataError (before writing anything) for a path that is not a run or folder of runs, for a
    malformed run file, or for a set in `sets` that no run evaluates.
    """
    runs = load_runs([Path(p) for p in paths])
    check_sets(runs, sets)
    check_values(runs, values)
    if points:
        runs = [replace(r, shown_points=tuple(points)) for r in runs]
    out = make_dir(Path(out))
    figures = write_figures(runs, out)
    atomic_write_text(out / REPORT, render_report(runs, figures, out, at, sets, values, points))
    return out / REPORT, console_text(runs, at, sets)


def write_report(paths: list[Path], out: Path, at: tuple[float, ...] | None = None) -> Path:
    """`make_report` without the console text: report.md's path."""
    return make_report(paths, out, at)[0]


__all__ = ["Run", "check_sets", "load_runs", "make_report", "write_report"]
