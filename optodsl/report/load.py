"""Reading run directories for a report: which folders are runs, their metrics, spec, status and analysis.

Loading is kept apart from drawing so that figures and tables are pure functions of `Run` values,
and so that every malformed input is reported once, as a `DataError` naming the file.
"""

from __future__ import annotations

import fnmatch
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .. import rundir
from ..analysis.registry import analysis_layout
from ..analysis.llc import LLCResult
from ..analysis.series_schema import AnalysisSeries, EvalSeries
from ..config import ExperimentConfig, read_run_config
from ..errors import DataError
from ..tasks import Reading, reading
from ..tasks.records import TRAIN, metric_sets

_HEAD = re.compile(r"^L(\d+)\.H(\d+)$")


@dataclass(frozen=True)
class Run:
    """One run directory as the report sees it; `analysis` is its checked analysis.json (`for_report` of the registered analyses' layout) or None."""

    path: Path
    label: str
    spec: str | None
    member: str | None
    bindings: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    metrics: list[dict] = field(default_factory=list)
    summary: dict | None = None
    analysis: dict | None = None
    status: str = "not started"
    reading: Reading = field(default_factory=lambda: reading(ExperimentConfig()))
    analysis_series: AnalysisSeries | None = None
    """Its checked analysis_series.json (`opto analyze --over-training`), or None."""
    eval_series: EvalSeries | None = None
    """Its checked eval_series.json (`opto eval --over-training`), or None."""
    llc: LLCResult | None = None
    """Its checked llc.json (`opto llc`), or None."""
    model: str = "built-in transformer"
    """The network that ran: the built-in transformer, or a model of one's own's class (its model.json)."""
    shown_points: tuple[int, ...] | None = None
    """The lengths at which the report shows the series' tables (`opto report --points`); None: its stage
    boundaries (`curvestats.chosen_points`)."""

    @property
    def sequences(self) -> int:
        """Training sequences seen: the summary's count, else the last evaluation's."""
        if self.summary and isinstance(self.summary.get("sequences"), int):
            return self.summary["sequences"]
        return int(self.metrics[-1]["sequences"]) if self.metrics else 0

    def sets(self) -> list[str]:
        """Evaluation sets with an accuracy in any record, the paper's four first."""
        return metric_sets(k for r in self.metrics for k in r)

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """Sequences and values of `key` over the evaluations that have a finite number for it."""
        xs, ys = [], []
        for r in self.metrics:
            v = r.get(key)
            if is_number(v) and math.isfinite(v):
                xs.append(int(r["sequences"]))
                ys.append(float(v))
        return xs, ys

    def final(self, key: str) -> float | None:
        """The last evaluation's value of `key`, or None if it has none."""
        v = self.metrics[-1].get(key) if self.metrics else None
        return float(v) if is_number(v) else None

    def heads(self, measure: str, set_name: str = TRAIN) -> list[str]:
        """Heads (`L<l>.H<h>`, in layer then head order) with a `measure` value on `set_name`."""
        prefix = f"{set_name}/{measure}/"
        names = {k[len(prefix):] for r in self.metrics for k in r if k.startswith(prefix)}
        return sorted((n for n in names if _HEAD.match(n)), key=head_order)

    def measures(self, set_name: str = TRAIN) -> list[str]:
        """Every per-head measure logged on `set_name` (`<set>/<measure>/L<l>.H<h>`), in first-logged order."""
        prefix = f"{set_name}/"
        found = (k[len(prefix):].split("/") for r in self.metrics for k in r if k.startswith(prefix) and k.count("/") == 2)
        return list(dict.fromkeys(name for name, head in found if _HEAD.match(head)))


def head_order(name: str) -> tuple[int, int]:
    """Sort key of `L<l>.H<h>` so that H10 follows H9."""
    m = _HEAD.match(name)
    return (int(m.group(1)), int(m.group(2))) if m else (math.inf, math.inf)


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def expand(paths: list[Path]) -> list[Path]:
    """Run directories named by `paths`: each a run, or a folder whose run subfolders (at any depth) are
    taken in natural order (h2 before h10); a run named twice is kept once.

    Raises DataError for a path that does not exist or holds no run directory.
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise DataError(path, "no such run directory", expected="a run directory or a folder of run directories")
        if not path.is_dir():
            raise DataError(path, "not a run directory", expected="a folder holding config.json and metrics.jsonl",
                            found="a file")
        inner = rundir.find_runs(path)
        if not inner:
            entries = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
            shown = ", ".join(entries[:8]) + (f", ... ({len(entries)} entries)" if len(entries) > 8 else "")
            raise DataError(path, "not a run directory, and no run directories inside it",
                            expected="a folder holding config.json and metrics.jsonl, or a sweep's folder of such folders",
                            found=shown or "an empty folder")
        found.extend(inner)
    unique, seen = [], set()
    for p in found:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def load_run(path: Path) -> Run:
    """Read one run directory: metrics, and config/spec/summary/analysis where present."""
    path = Path(path)
    metrics = rundir.metrics(path)
    config = rundir.read_json(path / rundir.CONFIG, "run configuration", rundir.json_object) if (path / rundir.CONFIG).is_file() else {}
    info = rundir.spec_record(path) or {}
    summary = rundir.summary(path)
    analysis = None
    if (path / rundir.ANALYSIS).is_file():
        analysis = analysis_layout().checked(rundir.read_json(path / rundir.ANALYSIS, "analysis"), path / rundir.ANALYSIS).for_report()
    spec = info.get("path") if isinstance(info.get("path"), str) else None
    member = info.get("member") if isinstance(info.get("member"), str) else None
    bindings = info.get("bindings") if isinstance(info.get("bindings"), dict) else {}
    status = rundir.status(path, summary)[0]
    return Run(path, run_label(path, spec, member), spec, member, bindings, config, metrics, summary, analysis, status,
               task_reading(path), *series_files(path), llc_file(path), model_name(path))


def model_name(path: Path) -> str:
    """The network a run trained: its model.json's class (a model of one's own), else the built-in transformer."""
    own = Path(path) / rundir.MODEL
    if not own.is_file():
        return "built-in transformer"
    return str(rundir.read_json(own, "model description", rundir.json_object).get("class", "a model of one's own"))


def series_files(path: Path) -> tuple[AnalysisSeries | None, EvalSeries | None]:
    """The run's analysis_series.json and eval_series.json, checked, where present (a DataError naming a malformed one)."""
    found = []
    for name, model in ((rundir.ANALYSIS_SERIES, AnalysisSeries), (rundir.EVAL_SERIES, EvalSeries)):
        file = Path(path) / name
        found.append(model.checked(rundir.read_json(file, name), file) if file.is_file() else None)
    return found[0], found[1]


def llc_file(path: Path) -> LLCResult | None:
    """The run's llc.json, checked, where present (a DataError naming a malformed one)."""
    file = Path(path) / rundir.LLC
    return rundir.read_json(file, "LLC estimate", LLCResult.model_validate) if file.is_file() else None


def task_reading(path: Path) -> Reading:
    """How to read a run: its task's `Reading`, from its config.json as settings (`read_run_config`, a
    DataError naming the file when it is not valid settings); the default settings without one."""
    config = read_run_config(path, what="run settings (the report reads the task from them)") \
        if (Path(path) / rundir.CONFIG).is_file() else ExperimentConfig()
    return reading(config)


def run_label(path: Path, spec: str | None, member: str | None) -> str:
    """Legend name: the sweep member (which starts with the spec's name), else the spec's name, else the folder."""
    stem = Path(spec).stem if spec else None
    if member and stem and not member.startswith(stem):
        return f"{stem} / {member}"
    return member or stem or path.name


def load_runs(paths: list[Path]) -> list[Run]:
    """Expand `paths` to run directories and load each; labels made unique by the folder name."""
    runs = [load_run(p) for p in expand(paths)]
    counts: dict[str, int] = {}
    for r in runs:
        counts[r.label] = counts.get(r.label, 0) + 1
    out = []
    for r in runs:
        label = r.label if counts[r.label] == 1 else f"{r.label} ({r.path.name})"
        out.append(replace(r, label=label))
    labels = [r.label for r in out]
    if len(set(labels)) < len(labels):
        out = [replace(r, label=f"{r.label} [{r.path}]") for r in out]
    return out


def value_keys(run: Run, pattern: str) -> list[str]:
    """The logged keys of `run` that `pattern` names: the key itself, or those it matches as a shell
    pattern (`train/perfected*/loss`), in the order the run first logs them."""
    keys = list(dict.fromkeys(k for row in run.metrics for k in row if k not in ("sequences", "step")))
    return [pattern] if pattern in keys else [k for k in keys if fnmatch.fnmatchcase(k, pattern)]


def check_values(runs: list[Run], values: tuple[str, ...], where: str = "--values") -> None:
    """A DataError at `where` naming each pattern of `values` that matches no run's logged keys."""
    missing = [v for v in values if not any(value_keys(r, v) for r in runs)]
    if missing:
        some = sorted({k for r in runs for k in value_keys(r, "*") if "/" in k and k.count("/") <= 2})[:12]
        raise DataError(where, f"no run logs a value matching {', '.join(missing)}", hint="e.g. " + ", ".join(some))


def check_sets(runs: list[Run], sets: tuple[str, ...], where: str = "--sets") -> None:
    """A DataError at `where` naming each set of `sets` that no run logs an accuracy of, and the sets they do log."""
    logged = sorted({s for r in runs for s in r.sets()})
    missing = [s for s in sets if s not in logged]
    if missing:
        raise DataError(where, f"no run evaluates {', '.join(missing)}", hint="the runs' sets: " + ", ".join(logged))
