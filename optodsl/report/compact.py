"""Compact records of finished runs, to commit beside a document so that its tables regenerate.

A record is itself a run directory: the files `opto report` reads, without checkpoints, with each
metric rounded to `DIGITS` significant digits and each per-head curve thinned to `HEAD_ROWS`
evaluations of the training set. Accuracy and loss curves keep every evaluation, so crossings and
stages computed from a record are those of the run.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from .. import rundir
from ..errors import DataError, write_error
from ..files import atomic_write_text, make_dir, new_dir_beside
from ..tasks.records import TRAIN

KEPT = (rundir.CONFIG, rundir.SPEC_TEXT, rundir.SUMMARY, rundir.ANALYSIS, rundir.ANALYSIS_SERIES,
        rundir.EVAL_SERIES, rundir.MODEL)
"""Files copied as they are; spec.json is rewritten (its path made relative), metrics.jsonl compacted and
llc.json kept without its chains' traces (`compact_llc`)."""

RECORD = "record.json"
"""What a record says of itself: the run it was made from and how its metrics were compacted."""

DIGITS = 5
"""Significant digits kept of each metric: below every number a document quotes (at most 4)."""

HEAD_ROWS = 25
"""Evaluations kept of each per-head curve (its heat maps need no more); the last is always kept."""

_PER_HEAD = re.compile(r"/L\d+\.H\d+$")


def compact_llc(data: dict) -> dict:
    """llc.json without each chain's trace per step (what a figure of the trace needs, not a table of the
    estimates; 20 points x 4 chains x 1,000 steps would outweigh the rest of a record)."""
    return {**data, "points": [{**p, "trace": []} for p in data.get("points", [])]}


class RecordInfo(BaseModel):
    """record.json: the run a record was compacted from, and the rule applied (so a reader knows
    which numbers are the run's to the last digit and which are thinned)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    source: str
    digits: int = DIGITS
    head_rows: int = HEAD_ROWS
    head_set: str = TRAIN
    llc_traces: bool = False
    """Whether llc.json keeps each chain's trace (never, in a record: `compact_llc`)."""
    rows: int
    bytes: int


def _rounded(value):
    if isinstance(value, float) and math.isfinite(value) and value != 0.0:
        return float(f"{value:.{DIGITS}g}")
    return value


def compact_metrics(rows: list[dict], head_rows: int = HEAD_ROWS) -> list[dict]:
    """`rows` with every value rounded; per-head keys (`<set>/<measure>/L<l>.H<h>`) kept only for the
    training set and only at `head_rows` evenly spaced evaluations (and the last)."""
    n = len(rows)
    step = max(1.0, (n - 1) / max(1, head_rows - 1))
    keep_heads = {min(n - 1, round(i * step)) for i in range(head_rows)} | {n - 1}
    out = []
    for i, row in enumerate(rows):
        kept = {}
        for key, value in row.items():
            if _PER_HEAD.search(key) and (i not in keep_heads or not key.startswith(f"{TRAIN}/")):
                continue
            kept[key] = _rounded(value)
        out.append(kept)
    return out


def _spec_record(run: Path) -> dict | None:
    info = rundir.spec_record(run)
    if info is None:
        return None
    path = info.get("path")
    if isinstance(path, str):
        try:
            info = {**info, "path": os.path.relpath(path) if Path(path).resolve().is_relative_to(Path.cwd()) else Path(path).name}
        except ValueError:
            info = {**info, "path": Path(path).name}
    return info


def record_run(run: Path, dest: Path) -> RecordInfo:
    """Write `run`'s record into `dest` (replaced whole, never left half-written).

    Raises DataError for a run that has not finished: a record keeps only what a finished run ends with.
    """
    run = Path(run)
    summary = rundir.summary(run)
    status, _ = rundir.status(run, summary)
    if summary is None or status != rundir.COMPLETE:
        raise DataError(run, f"not finished ({status})", hint="a record keeps finished runs: finish it with `opto run`")
    rows = compact_metrics(rundir.metrics(run))
    dest = Path(dest)
    make_dir(dest.parent)
    tmp = new_dir_beside(dest)
    try:
        for name in KEPT:
            if (run / name).is_file():
                shutil.copyfile(run / name, tmp / name)
        spec = _spec_record(run)
        if spec is not None:
            (tmp / rundir.SPEC_RECORD).write_text(json.dumps(spec, indent=1) + "\n")
        if (run / rundir.LLC).is_file():
            llc = rundir.read_json(run / rundir.LLC, "LLC estimate", rundir.json_object)
            (tmp / rundir.LLC).write_text(json.dumps(compact_llc(llc), indent=1) + "\n")
        (tmp / rundir.METRICS).write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows))
        size = sum(p.stat().st_size for p in tmp.iterdir())
        info = RecordInfo(source=str(run), rows=len(rows), bytes=size)
        atomic_write_text(tmp / RECORD, info.model_dump_json(indent=1) + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_error(dest, exc) from exc
    return info


def record_runs(paths: list[Path], out: Path) -> list[tuple[Path, RecordInfo]]:
    """Records of every run under `paths` in `out`: a run named directly as `out/<its name>`, the runs of a
    folder as `out/<folder name>/<their path inside it>`. Every run is checked finished before any is written."""
    plan = []
    for raw in paths:
        path = Path(raw)
        runs = rundir.find_runs(path)
        if not runs:
            raise DataError(path, "not a run directory, and no run directories inside it",
                            expected="a finished run directory or a sweep's folder of them")
        for run in runs:
            plan.append((run, out / path.name / run.relative_to(path) if run != path else out / path.name))
    for run, _ in plan:
        summary = rundir.summary(run)
        status, _ = rundir.status(run, summary)
        if status != rundir.COMPLETE:
            raise DataError(run, f"not finished ({status})", hint="a record keeps finished runs: finish it with `opto run`")
    return [(dest, record_run(run, dest)) for run, dest in plan]
