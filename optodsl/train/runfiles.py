"""What the trainer reads and writes in a run directory while it trains: metrics.jsonl (cut back
to the checkpoint a run resumes from, then one row per evaluation), curves.png, and summary.json
once the run stops. The names are `rundir`'s; checkpoints are `checkpoint`'s.
"""

from __future__ import annotations

import json
from pathlib import Path

from .. import rundir
from ..errors import DataError
from ..files import atomic_write_text
from .curves import plot_curves


def resume_metrics(run_dir: Path, step: int) -> list[dict]:
    """The run's metrics rows up to `step` (none for a run that starts from step 0), written back as
    its metrics.jsonl: rows past the checkpoint a run resumes from would otherwise be written twice."""
    records = [r for r in rundir.metrics(run_dir) if r.get("step", float("inf")) <= step] if step > 0 else []
    atomic_write_text(run_dir / rundir.METRICS, "".join(json.dumps(r) + "\n" for r in records))
    return records


def append_metrics(run_dir: Path, record: dict) -> None:
    """One evaluation's row appended to metrics.jsonl (a kill may tear it; readers drop a torn last line)."""
    with open(run_dir / rundir.METRICS, "a") as f:
        f.write(json.dumps(record) + "\n")


def write_curves(run_dir: Path, records: list[dict], reading) -> None:
    """curves.png of the run's metrics so far, with the task's reference levels (`Reading`)."""
    plot_curves(records, run_dir / rundir.CURVES, reading, title=run_dir.name)


def clear_summary(run_dir: Path) -> None:
    """Remove the summary of a run that trains on: without one, it reads as unfinished until it stops."""
    (run_dir / rundir.SUMMARY).unlink(missing_ok=True)


def write_summary(run_dir: Path, summary: dict) -> None:
    """summary.json, written when a run stops in a known way."""
    atomic_write_text(run_dir / rundir.SUMMARY, json.dumps(summary, indent=2))


def is_complete(run_dir: Path) -> bool:
    """Whether a run directory's summary says the run trained to its end."""
    try:
        data = rundir.summary(run_dir)
    except DataError:
        return False
    return data is not None and data.get("status") == rundir.COMPLETE

