"""How to read a task's runs: its reference levels, where its stages are read, and its words.

A `Reading` is what every consumer of a run's numbers (curves.png, `opto report`, the analyses'
tables) asks instead of assuming the few-shot task's ln 2 and 0.5. It is a frozen pydantic model,
a pure function of the settings (`Task.reading(config)`), so a report can draw a run's lines
without building the task's arrays.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Level(_Frozen):
    """A reference level of a curve: a fixed number (`value`), or a metric the task logs per
    evaluation set (`metric`, e.g. `unigram_loss` is drawn from `train/unigram_loss`)."""

    label: str
    value: float | None = None
    metric: str | None = None

    def at(self, record: dict, set_name: str) -> float | None:
        """This level in one metrics record of set `set_name` (None where it was not logged)."""
        if self.value is not None:
            return self.value
        v = record.get(f"{set_name}/{self.metric}")
        return float(v) if isinstance(v, (int, float)) else None


class Reading(_Frozen):
    """A task's reference levels, stage criterion and words.

    `curve` is the per-set metric whose plateau and phase change are the task's stages (`loss`
    for most; the repeated half's loss for `repeat`); the loss rests near `plateau` before the
    phase change and falls to `solved` after it (both None where the task has no such level).
    `accuracy_phase` is the accuracy that marks the phase change when the task scores a discrete
    answer (the few-shot query), else None. `tolerance` (nats) is how near a level the curve counts as
    at it. `metric_words` names logged metrics (`reference_losses`, `divergences`) in the task's words."""

    task: str
    loss_words: str
    accuracy_words: str
    loss_levels: tuple[Level, ...] = ()
    accuracy_levels: tuple[Level, ...] = ()
    reference_losses: tuple[str, ...] = ()
    divergences: tuple[str, ...] = ()
    curve: str = "loss"
    plateau: Level | None = None
    solved: Level | None = None
    accuracy_phase: float | None = None
    tolerance: float = 0.05
    metric_words: dict[str, str] = {}
    induction_words: str = "induction strength"
    analysis_words: str = "loss and accuracy where the task scores"

    def words(self, metric: str) -> str:
        """A logged metric in the task's words (its name where the task gives none)."""
        return self.metric_words.get(metric, metric)
