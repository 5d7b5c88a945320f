"""Statistics of a run's curves, for the report: when accuracy first reaches a threshold (the phase
change), and the longest plateau of the loss near a level (chance, ln 2, by default)."""

from __future__ import annotations

import math

from ..tasks.records import TRAIN, set_key
from .load import LN2, Run, is_number


def phase_change(run: Run, threshold: float = 0.9, key: str = set_key(TRAIN, "accuracy")) -> int | None:
    """Sequences seen at the first evaluation where `key` reaches `threshold` (None if it never does)."""
    for x, y in zip(*run.series(key)):
        if y >= threshold:
            return x
    return None


def plateau(run: Run, tolerance: float = 0.05, key: str = set_key(TRAIN, "loss"), level: float = LN2) -> tuple[int, int] | None:
    """The longest stretch of consecutive evaluations (two at least) with `key` within `tolerance` of `level`.

    Returns its first and last sequences counts; the earliest stretch wins a tie; None if there is none.
    """
    best: tuple[int, int] | None = None
    best_len, start, length = 1, None, 0
    last_x = None
    for r in run.metrics:
        v = r.get(key)
        inside = is_number(v) and math.isfinite(v) and abs(v - level) <= tolerance
        if inside:
            if length == 0:
                start = r["sequences"]
            length += 1
            last_x = r["sequences"]
            if length > best_len:
                best_len, best = length, (start, last_x)
        else:
            length = 0
    return best
