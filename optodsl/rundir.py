"""A run directory: the names of its files, which folders are runs, and what its files say about
its run (the one rule for a run's status).

A run directory holds `config.json` (the resolved settings), `spec.opto` and `spec.json` (the
spec's canonical text; its hash, path, sweep values and member name), `metrics.jsonl` (one JSON
object per evaluation), `checkpoint.json` naming the latest `ckpt-<step>.npz`, `summary.json`
once the run stops, `curves.png`, `analysis.json` after `opto analyze`, `series/` (a checkpoint
series: `seq-<sequences>.npz` files and `manifest.json`) with `train.keep`, `llc.json` after `opto llc`,
`analysis_series.json` and `eval_series.json` after `opto analyze` and `opto eval` with `--over-training`,
and `model.json` for a model of one's own (whose config.json then has no `model` section; a
task's config.json has no section its task does not read).

`summary.json` is written when a run stops in a known way: `complete`, `interrupted` (a signal;
it names the checkpoint a rerun resumes from), or `failed: ...`. A run with no summary is either
still running or was killed (SIGKILL, a crash of the machine); a process cannot tell which from
the files alone, so the status says both. Rows of `metrics.jsonl` past the checkpoint are dropped
when the run resumes.

Every reader of a run's `spec.json` and `metrics.jsonl` reads them here (`spec_record`, `metrics`),
so a damaged file is one error, worded once.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable

from .errors import DataError

CONFIG = "config.json"
SPEC_TEXT = "spec.opto"
SPEC_RECORD = "spec.json"
METRICS = "metrics.jsonl"
POINTER = "checkpoint.json"
SUMMARY = "summary.json"
CURVES = "curves.png"
ANALYSIS = "analysis.json"
SERIES = "series"
"""The folder of a run's checkpoint series (`train.keep`): one parameters file per kept point and its manifest."""
SERIES_MANIFEST = "manifest.json"
LLC = "llc.json"
MODEL = "model.json"
"""A run of a model of one's own: its class, site table, parameter shapes and hyperparameters
(`model.protocol.describe`); a run of the built-in transformer has none (its config.json's `model`)."""
ANALYSIS_SERIES = "analysis_series.json"
"""`opto analyze RUN --over-training`: the analysis at every point of the run's series."""
EVAL_SERIES = "eval_series.json"
"""`opto eval SPEC --checkpoint RUN --over-training`: the spec's runs scored at every point of the series."""


def series_point_file(sequences: int) -> str:
    """The file name of the series point at `sequences` (inside SERIES): `seq-000001024.npz`."""
    return f"seq-{int(sequences):09d}.npz"

RUN_FILES = (CONFIG, METRICS)
"""A folder is a run directory when it holds one of these (the trainer writes both)."""


def is_run_dir(path: Path) -> bool:
    """Whether `path` is a run directory: a folder holding config.json or metrics.jsonl."""
    path = Path(path)
    return path.is_dir() and any((path / name).is_file() for name in RUN_FILES)


def natural_order(path: Path) -> list:
    """Sort key that orders names by their numbers, so that run-h10 follows run-h9."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", Path(path).name)]


def find_runs(folder: Path) -> list[Path]:
    """The run directories `folder` names: itself if it is one, else those below it at any depth
    (hidden folders and the insides of runs are not searched), in natural order (h2 before h10)."""
    folder = Path(folder)
    if is_run_dir(folder):
        return [folder]
    if not folder.is_dir():
        return []
    runs = []
    for child in sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=natural_order):
        runs.extend(find_runs(child))
    return runs


RESTORE_HINT = "restore the file, or train into another --out"


def read_json(path: Path, what: str, check: Callable[[Any], Any] = lambda data: data, hint: str = RESTORE_HINT):
    """One JSON file of a run directory passed through `check`, or a DataError naming it (truncated or edited by hand)."""
    path = Path(path)
    try:
        return check(json.loads(path.read_text()))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(path, f"unreadable {what} (truncated or edited?)", expected=f"the {path.name} `opto run` writes",
                        found=str(exc).splitlines()[0], hint=hint) from exc


def json_object(data):
    """`data` if it is a JSON object; the check `read_json` applies to a run's JSON files that hold one."""
    if not isinstance(data, dict):
        raise ValueError(f"a JSON {type(data).__name__}, not the object `opto run` writes")
    return data


def summary(run_dir: Path) -> dict | None:
    """The run's summary.json (status, sequences, final metrics), or None without one; a DataError
    naming it when it is not a JSON object."""
    path = Path(run_dir) / SUMMARY
    return read_json(path, "run summary", json_object) if path.is_file() else None


def _spec_object(data):
    """spec.json's content checked: a JSON object whose `bindings`, where present, is an object."""
    if not isinstance(data, dict):
        raise ValueError(f"a JSON {type(data).__name__}, not the object with 'sha256' and 'bindings' that `opto run` writes")
    if not isinstance(data.get("bindings", {}), dict):
        raise ValueError(f"its 'bindings' is a JSON {type(data['bindings']).__name__}, not an object")
    return data


def spec_record(run_dir: Path, hint: str = RESTORE_HINT) -> dict | None:
    """The run's spec.json (the spec's sha256, path, sweep values `bindings` and member name), or None
    without one; a DataError naming it when it is not such an object (`hint` says what to do then)."""
    path = Path(run_dir) / SPEC_RECORD
    if not path.is_file():
        return None
    return read_json(path, "spec record", _spec_object, hint)


def metrics(run_dir: Path) -> list[dict]:
    """The evaluations in the run's metrics.jsonl (none without one); a torn last line (a run killed
    mid-write) is ignored.

    Raises DataError for any other line that is not a JSON object with an integer `sequences`.
    """
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return []
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, "unreadable metrics file", found=str(exc)) from exc
    numbered = [(i + 1, line) for i, line in enumerate(lines) if line.strip()]
    records = []
    for k, (number, line) in enumerate(numbered):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            if k == len(numbered) - 1:
                break
            raise DataError(path, f"malformed metrics line {number}", expected="one JSON object per line",
                            found=f"{line[:60]!r} ({exc.msg})") from exc
        if not isinstance(rec, dict) or not isinstance(rec.get("sequences"), int) or isinstance(rec.get("sequences"), bool):
            raise DataError(path, f"malformed metrics line {number}",
                            expected="a JSON object with an integer 'sequences'", found=line[:60])
        records.append(rec)
    return records


COMPLETE = "complete"
"""The status in summary.json of a run that trained every sequence it was asked for."""

UNFINISHED = "running or interrupted"
"""The status of a run that has trained but has no summary: in progress, or killed."""


def status(run_dir: Path, summary: dict | None) -> tuple[str, int]:
    """The run's status and the sequences it has safely trained (its summary's, else its checkpoint's)."""
    run_dir = Path(run_dir)
    if summary is not None and isinstance(summary.get("status"), str):
        return summary["status"], int(summary.get("sequences", 0))
    if (run_dir / POINTER).is_file():
        try:
            sequences = int(json.loads((run_dir / POINTER).read_text())["sequences"])
        except (ValueError, KeyError, TypeError):
            return f"{UNFINISHED} (its {POINTER} is unreadable)", 0
        return f"{UNFINISHED} (rerun to resume)", sequences
    metrics = run_dir / METRICS
    if metrics.is_file() and metrics.stat().st_size > 0:
        return f"{UNFINISHED} before its first checkpoint (rerun to start again)", 0
    return "not started", 0
