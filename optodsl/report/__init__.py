"""Reports from run directories: loss/accuracy/measure/analysis figures and a markdown summary.

`write_report(paths, out)` is what `opto report RUN_DIR... [--out DIR]` calls; it reads runs
(`load`), draws figures (`figures`) and writes report.md (`summary`), every file atomically.
"""

from __future__ import annotations

from pathlib import Path

from ..files import atomic_write_text, make_dir
from .figures import write_figures
from .load import Run, load_runs
from .summary import render_report

REPORT = "report.md"


def write_report(paths: list[Path], out: Path) -> Path:
    """Write the figures and report.md for the runs under `paths` into `out`; return report.md's path.

    Raises DataError (before writing anything) for a path that is not a run or folder of runs, or
    for a malformed run file.
    """
    runs = load_runs([Path(p) for p in paths])
    out = make_dir(Path(out))
    figures = write_figures(runs, out)
    atomic_write_text(out / REPORT, render_report(runs, figures, out))
    return out / REPORT


__all__ = ["Run", "load_runs", "write_report"]
