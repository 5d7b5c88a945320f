"""The `--over-training` forms of `opto analyze` and `opto eval`: score every kept point of a run's
checkpoint series (or of each run of a folder: a sweep) in one program, write the series file beside
each run, and return what the console shows (the tables, the written files, and one warning line per
damaged point skipped)."""

from __future__ import annotations

import warnings
from pathlib import Path

from .. import rundir
from ..errors import SpecError
from ..files import atomic_write_text
from . import options


def analyze_series(run_dir: Path, only: list[str], groups: list[str], n: int | None, seed: int,
                   bare: bool) -> tuple[str, list[str], str]:
    """`opto analyze RUN --over-training` (RUN a run directory, or a folder of runs: a sweep): (the
    tables, the damaged points' lines, the JSON written to each run's analysis_series.json; a list of
    them for a folder). `--only` names the registered analyses built over training (`heads` alone:
    none of them); another analysis is refused."""
    from ..analysis.overtraining import analyze_runs_over_training, table
    from ..analysis.registry import REGISTRY
    from ..analysis.runs import load_run
    from ..train.series import SeriesWarning

    allowed = ["heads"] + [d.name for d in REGISTRY.values() if d.over_training]
    for name in only:
        if name not in allowed:
            raise SpecError(options.option_span("--only", name), f"'{name}' is not computed over training",
                            hint=f"--over-training computes {', '.join(allowed)} at every point (each head ablated alone "
                                 "and the task's measures always); analyse one checkpoint without --over-training for the "
                                 "other analyses")
    dirs = _runs_in(run_dir)
    runs = [load_run(d) for d in dirs]
    parsed = options.parse_groups(groups, runs[0].config) if groups else None
    with warnings.catch_warnings():  # the damaged points are printed by the command line, once
        warnings.simplefilter("ignore", SeriesWarning)
        done = analyze_runs_over_training(runs, tuple(only) or None, parsed, n=n, seed=seed, bare=bare)
    texts, problems, written = [], [], []
    for d, result, skipped in zip(dirs, done.series, done.problems):
        text = result.model_dump_json(indent=2)
        path = d / rundir.ANALYSIS_SERIES
        atomic_write_text(path, text)
        texts.append(table(result) + f"\nwritten: {path}")
        problems += [f"warning: {p}" for p in skipped]
        written.append(text)
    if len(dirs) == 1:
        return texts[0], problems, written[0]
    return _programs_line(dirs, done.programs) + "\n\n" + "\n\n".join(texts), problems, "[" + ",\n".join(written) + "]"


def _runs_in(folder: Path) -> list[Path]:
    """The run directories `folder` names (itself, or the runs below it: a sweep), or a DataError."""
    dirs = rundir.find_runs(folder)
    if not dirs:
        from ..errors import DataError

        raise DataError(folder, "no run directories here", expected="a run directory written by opto run, or a folder of them")
    return dirs


def _programs_line(dirs: list[Path], programs: list[list[int]]) -> str:
    """The first line of a folder's tables: how many programs scored its runs, and which runs shared one."""
    shared = "; ".join(", ".join(dirs[i].name for i in group) for group in programs)
    return f"{len(dirs)} runs in {len(programs)} program{'s' if len(programs) != 1 else ''} ({shared})"


def eval_series(exp, run_dir: Path, n: int | None, seed: int, in_context: bool) -> tuple[str, list[str], str]:
    """`opto eval SPEC --checkpoint RUN --over-training` (RUN a run directory, or a folder of runs: a
    sweep): (the tables, the warnings and damaged points' lines, the JSON written to each run's
    eval_series.json; a list of them for a folder)."""
    from ..evaluate_spec import evaluate_runs_over_training
    from ..train.series import SeriesWarning

    dirs = _runs_in(run_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SeriesWarning)
        done = evaluate_runs_over_training(exp, dirs, n, seed)
    if in_context and any("accuracy_in_context" not in s.extra for result in done.series for r in result.runs.values()
                          for s in r.sets.values()):
        raise SpecError(options.option_span("--in-context", "--in-context"), "the run's task scores no accuracy among "
                        "the context's labels (the few-shot task's query only)", hint="leave out --in-context")
    texts, problems, written = [], [], []
    for d, result in zip(dirs, done.series):
        text = result.model_dump_json(indent=2)
        path = d / rundir.EVAL_SERIES
        atomic_write_text(path, text)
        texts.append(_eval_table(result, in_context) + f"\nwritten: {path}")
        problems += result.warnings + [f"warning: {p}" for p in result.skipped]
        written.append(text)
    if len(dirs) == 1:
        return texts[0], problems, written[0]
    return _programs_line(dirs, done.programs) + "\n\n" + "\n\n".join(texts), problems, "[" + ",\n".join(written) + "]"


def _eval_table(result, in_context: bool) -> str:
    """One run's `eval_series.json` as text: per run of the spec and point, the accuracy (or the
    accuracy among the context's labels) and the loss on each evaluation set."""
    counts = ", ".join(f"{k} {v['sequences']:,}" + (" (every one)" if v["enumerated"] else "") for k, v in result.eval.items())
    what = "accuracy among the context's labels" if in_context else "accuracy"
    lines = [f"{result.checkpoint} at {len(result.points)} points ({', '.join(f'{s:,}' for s in result.sequences)} "
             f"sequences); {what} on {counts}"]
    sets, names = list(result.eval), list(result.runs)
    width = max(3, *(len(n) for n in names))
    key = "accuracy_in_context" if in_context else "accuracy"
    for metric, title in ((key, None), ("loss", "loss (nats)")):
        if title:
            lines.append(f"\n{title}")
        lines.append(f"{'run':<{width}}  {'sequences':>12}  " + "  ".join(f"{s:>17}" for s in sets))
        for name in names:
            for i, seen in enumerate(result.sequences):
                row = []
                for which in sets:
                    scores = result.runs[name].sets.get(which)
                    values = None if scores is None else (scores.extra[metric] if metric in scores.extra
                                                          else getattr(scores, metric))
                    row.append(f"{'-':>17}" if values is None else f"{values[i]:>17.3f}")
                lines.append(f"{name:<{width}}  {seen:>12,}  " + "  ".join(row))
    return "\n".join(lines)
