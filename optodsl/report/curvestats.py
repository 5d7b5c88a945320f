"""Statistics of a run's curves, read the way its task declares (`Run.reading`): the plateau, where
the phase change starts and ends, the steepest fall of the log-loss, and when an accuracy first
reaches a threshold. Every number is a training-sequence count of an evaluation (or a slope)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..tasks import Level
from ..tasks.records import TRAIN, record_key, running_key, set_key
from .load import Run, is_number

PER = 1000
"""Slopes are given per this many training sequences."""


@dataclass(frozen=True)
class Slope:
    """The steepest fall of ln(curve) between two consecutive evaluations (`start`, `end`), in
    nats of log-loss per `PER` sequences (negative: falling)."""

    start: int
    end: int
    per_k: float


@dataclass(frozen=True)
class Stages:
    """A run's stages on its task's curve: the plateau (first and last evaluation on it), the phase
    change's start (the first evaluation after the plateau: the curve has left it) and end (the curve
    at the solved level, or the accuracy at the task's phase threshold), and the steepest fall from the plateau on."""

    plateau: tuple[int, int] | None
    start: int | None
    end: int | None
    steepest: Slope | None

    @property
    def plateau_length(self) -> int | None:
        """Sequences from the plateau's first evaluation to its last."""
        return None if self.plateau is None else self.plateau[1] - self.plateau[0]

    @property
    def duration(self) -> int | None:
        """Sequences from the phase change's start to its end."""
        return None if self.start is None or self.end is None else self.end - self.start


def curve_key(run: Run) -> str:
    """The record key of the curve the run's task reads its stages on (`train/loss`, `train/repeated_loss`)."""
    return set_key(TRAIN, run.reading.curve)


def _level_at(level: Level | float, record: dict) -> float | None:
    return level if isinstance(level, (int, float)) else level.at(record, TRAIN)


def _points(run: Run, key: str, level: Level | float) -> list[tuple[int, float, float]]:
    """(sequences, value of `key`, the level there) for the evaluations that have both."""
    out = []
    for r in run.metrics:
        v, at = r.get(key), _level_at(level, r)
        if is_number(v) and math.isfinite(v) and at is not None and math.isfinite(at):
            out.append((int(r["sequences"]), float(v), at))
    return out


def plateau(run: Run, tolerance: float | None = None, key: str | None = None,
            level: Level | float | None = None) -> tuple[int, int] | None:
    """The longest stretch of consecutive evaluations (two at least) with `key` within `tolerance` of `level`.

    Defaults are the run's reading: its curve, its plateau level (a metric level is compared with the
    metric logged at the same evaluation) and its tolerance. Returns the stretch's first and last
    sequence counts; the earliest stretch wins a tie; None if there is none or the task declares no plateau.
    """
    level = run.reading.plateau if level is None else level
    if level is None:
        return None
    tolerance = run.reading.tolerance if tolerance is None else tolerance
    best: tuple[int, int] | None = None
    best_len, start, length = 1, 0, 0
    for r in run.metrics:
        v, at = r.get(key or curve_key(run)), _level_at(level, r)
        inside = is_number(v) and math.isfinite(v) and at is not None and abs(v - at) <= tolerance
        if not inside:
            length = 0
            continue
        if length == 0:
            start = int(r["sequences"])
        length += 1
        if length > best_len:
            best_len, best = length, (start, int(r["sequences"]))
    return best


def crossing(run: Run, threshold: float, key: str = set_key(TRAIN, "accuracy"), after: int = -1) -> int | None:
    """Sequences at the first evaluation after `after` where `key` reaches `threshold` (None if it never does)."""
    xs, ys = run.series(key)
    return next((x for x, y in zip(xs, ys) if x > after and y >= threshold), None)


def running_crossing(run: Run, threshold: float) -> int | None:
    """Sequences at the first evaluation whose running training accuracy (the mean over the training
    batches since the previous evaluation) reaches `threshold`; None if it never does or is not logged."""
    return crossing(run, threshold, running_key("accuracy"))


def reached(run: Run, level: Level | float, key: str | None = None, tolerance: float | None = None,
            after: int = -1) -> int | None:
    """Sequences at the first evaluation after `after` where `key` (the run's curve) is at most
    `tolerance` above `level`."""
    tolerance = run.reading.tolerance if tolerance is None else tolerance
    return next((x for x, v, at in _points(run, key or curve_key(run), level) if x > after and v - at <= tolerance), None)


def steepest_fall(run: Run, key: str | None = None, since: int = 0) -> Slope | None:
    """The steepest fall of ln(`key`) between consecutive evaluations from sequence `since` on, per
    `PER` sequences; None without two positive values or without a fall."""
    xs, ys = run.series(key or curve_key(run))
    best = None
    for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
        if x0 >= since and y0 > 0 and y1 > 0 and x1 > x0:
            slope = (math.log(y1) - math.log(y0)) / (x1 - x0) * PER
            if slope < 0 and (best is None or slope < best.per_k):
                best = Slope(x0, x1, slope)
    return best


def stages(run: Run) -> Stages:
    """The run's stages as its task reads them: the plateau at the reading's level; the phase change from
    the first evaluation after it to the first after it where the curve is at the `solved` level or the
    accuracy reaches `accuracy_phase` (whichever comes first); the steepest fall of the log-curve from the
    plateau on (the phase change's, not the first steps' fall from initialisation), or over the whole
    curve without a plateau."""
    r = run.reading
    span = plateau(run)
    start = None
    after = -1
    if span is not None:
        after = span[1]
        start = next((x for x in run.series(curve_key(run))[0] if x > after), None)
    ends = []
    if r.solved is not None:
        ends.append(reached(run, r.solved, after=after))
    if r.accuracy_phase is not None:
        ends.append(crossing(run, r.accuracy_phase, after=after))
    ends = [e for e in ends if e is not None]
    return Stages(span, start, min(ends) if ends else None, steepest_fall(run, since=span[0] if span else 0))


def phase_change(run: Run) -> int | None:
    """Where the run's phase change ends (`stages(run).end`)."""
    return stages(run).end


def series_run(run: Run) -> Run | None:
    """The run as its analysis series reads it (`opto analyze --over-training`): one record per kept
    point holding the series' logged quantities (loss, accuracy and the task's metrics, under the
    training set's keys), so that `stages` reads the points as it reads the evaluations; None
    without a series."""
    series = run.analysis_series
    if series is None or not series.metrics:
        return None
    records = [{"sequences": seen, **{record_key(TRAIN, k): v[i] for k, v in series.metrics.items()}}
               for i, seen in enumerate(series.sequences)]
    return replace(run, metrics=records)


def chosen_points(run: Run) -> list[int]:
    """The points of the run's analysis series at which the report shows Table 1 and the path map:
    with `opto report --points`, the kept point nearest each length asked for; by default the stage
    boundaries read at the series points (the plateau's first point, where the phase change starts
    and where it ends) and the last point. Empty without a series."""
    series = run.analysis_series
    if series is None:
        return []
    xs = series.sequences
    if run.shown_points:
        wanted = [min(xs, key=lambda x: abs(x - p)) for p in run.shown_points]
    else:
        over = series_run(run)
        st = stages(over) if over is not None else None
        wanted = [] if st is None else [st.plateau[0] if st.plateau else None, st.start, st.end]
        wanted = [w for w in wanted if w in xs] + [xs[-1]]
    return sorted(set(wanted))
