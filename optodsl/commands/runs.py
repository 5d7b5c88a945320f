"""`opto runs`: one line per run directory (its spec, status, sequences and final accuracies), read
through `rundir`; a damaged file is named in its line, not raised."""

from __future__ import annotations

from pathlib import Path

from .. import rundir
from ..errors import DataError
from ..tasks.records import metric_sets, set_key
from ..train import series


def accuracies(final: dict) -> str:
    """`train 1.000  heldout_labels 0.990 ...`: each evaluation set's accuracy, in the paper's order."""
    return "  ".join(f"{n} {final[set_key(n)]:.3f}" for n in metric_sets(final))


def run_line(run_dir: Path) -> str:
    """The listing's line of one run directory: `RUN  [spec]  status  N sequences  accuracies`."""
    spec, model, status, seqs, accs, points = "-", "", "not started", 0, "", ""
    summary = run_dir / rundir.SUMMARY
    bad = run_dir / rundir.SPEC_RECORD
    try:
        spec = _spec_shown(run_dir)
        bad = run_dir / rundir.MODEL
        model = _model_shown(run_dir)
        bad = summary
        data = rundir.summary(run_dir)
        bad = run_dir / rundir.POINTER
        status, seqs = rundir.status(run_dir, data)
        accs = accuracies(data["final"]) if data else ""
        bad = run_dir / rundir.SERIES / rundir.SERIES_MANIFEST
        kept = series.count(run_dir)
        points = f"  {kept} series point{'s' if kept != 1 else ''}" if kept else ""
    except DataError as exc:
        status = f"unreadable {bad}: {exc.found or exc.problem}"
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        status = f"unreadable {bad}: {exc}"
    return f"{run_dir}  [{spec}]{model}  {status}  {seqs:,} sequences{points}  {accs}"


def _spec_shown(run_dir: Path) -> str:
    """The run's spec: its file, or for a spec given as text (from Python) its spec.opto's statements,
    shortened; `-` for a run without one."""
    record = rundir.spec_record(run_dir)
    if record is None:
        return "-"
    path = record.get("path")
    if path and Path(path).suffix == ".opto":
        return path
    text = run_dir / rundir.SPEC_TEXT
    lines = [line.strip() for line in text.read_text().splitlines() if line.strip() and not line.startswith("#")] \
        if text.is_file() else []
    shown = "; ".join(lines)
    return "spec.opto: " + (shown if len(shown) <= 60 else shown[:57] + "...")


def _model_shown(run_dir: Path) -> str:
    """`  model <class>` for a run of a model of one's own (its model.json); nothing for the built-in."""
    path = run_dir / rundir.MODEL
    if not path.is_file():
        return ""
    return f"  model {rundir.read_json(path, 'model description', rundir.json_object).get('class', '?')}"
