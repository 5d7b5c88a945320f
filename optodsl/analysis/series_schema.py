"""The files written by `--over-training`, defined once: `analysis_series.json` (`opto analyze RUN
--over-training`) and `eval_series.json` (`opto eval SPEC --checkpoint RUN --over-training`).

Both hold the points in training order (`points`: each one's sequence count and the file it was read
from) and, for every score, one number per point in that order; a model refuses a list of another
length. `skipped` names each damaged series point that was left out (its file and what is wrong).
`opto report` reads them with `checked(data, path)`: a malformed file is a `DataError` naming it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, field_validator, model_validator

from ..errors import DataError

CHECKPOINT = "checkpoint"
"""The `source` of a point read from the run's latest checkpoint (a length its series does not keep)."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SeriesPointInfo(_Frozen):
    """One point: the training sequences it had seen, and its file in `series/` (or `checkpoint`)."""

    sequences: int
    source: str


class ScoresOverTraining(_Frozen):
    """Accuracy and loss (nats) at each point, and any further score the task offers
    (`accuracy_in_context`, few-shot task) in `extra`."""

    accuracy: list[float]
    loss: list[float]
    extra: dict[str, list[float]] = {}

    def lengths(self) -> set[int]:
        return {len(self.accuracy), len(self.loss)} | {len(v) for v in self.extra.values()}


class _Series(_Frozen):
    points: list[SeriesPointInfo]
    skipped: list[str] = []

    @property
    def sequences(self) -> list[int]:
        return [p.sequences for p in self.points]

    def _scores(self) -> list[ScoresOverTraining]:
        return []

    def _lists(self) -> list[list]:
        return []

    @model_validator(mode="after")
    def _one_value_per_point(self):
        if not self.points:
            raise ValueError("no points")
        if [p.sequences for p in self.points] != sorted({p.sequences for p in self.points}):
            raise ValueError("points must be in training order, each once")
        n = len(self.points)
        if any(s.lengths() != {n} for s in self._scores()) or any(len(v) != n for v in self._lists()):
            raise ValueError(f"every score needs one value per point ({n})")
        return self

    @classmethod
    def checked(cls, data: Any, path) -> "_Series":
        """`data` as this model, or a DataError naming `path` and the first problem."""
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(x) for x in first["loc"]) or "the file"
            raise DataError(path, f"malformed {cls.__name__} file", expected=cls.__doc__.split(":")[0].strip(),
                            found=f"{where}: {first['msg']}") from None


class LossTrajectory(_Frozen):
    """Olsson et al.'s per-token loss view: the full model's loss on each of the `sequences` fixed
    evaluation sequences (the task's scored token: the query's label; the mean over a sequence's scored
    tokens on token tasks) at every point is a vector of that length; the points' vectors, centred on
    their mean, are projected on their first principal components (`coordinates[k]`: component k+1,
    one value per point; `explained[k]`: its share of the variance). Each component's sign is chosen
    so that the last point lies at or above the first."""

    sequences: int
    explained: list[float]
    coordinates: list[list[float]]


class AnalysisSeries(_Series):
    """`analysis_series.json`: a run's network at every kept point, scored on one evaluation set under the
    run's own interventions (none when `bare`): the full model, each head ablated alone (`heads`:
    layer -> head -> scores), each per-head measure of the task (`measures`: measure -> layer -> head
    -> values), and the task's logged quantities (`metrics`: `loss`, `accuracy` and the task's
    reference metrics, as an evaluation logs them, on the measures' sequences)."""

    run_dir: str
    spec: str | None = None
    bare: bool
    interventions: list[str] | str
    eval: dict[str, Any]
    full: ScoresOverTraining
    heads: dict[str, dict[str, ScoresOverTraining]] = {}
    measures: dict[str, dict[str, dict[str, list[float]]]] = {}
    metrics: dict[str, list[float]] = {}
    trajectory: LossTrajectory | None = None
    analyses: dict[str, list[Any]] = {}
    """Registered analyses computed at every point (`Declared.over_training`: Table 1's `groups`, the
    `paths` map): name -> one section per point, each in that analysis's `analysis.json` layout."""

    @field_validator("analyses")
    @classmethod
    def _declared_sections(cls, analyses: dict[str, list[Any]]) -> dict[str, list[Any]]:
        from .registry import REGISTRY

        out = {}
        for name, sections in analyses.items():
            if name not in REGISTRY or not REGISTRY[name].over_training:
                raise ValueError(f"'{name}' is no analysis computed over training")
            adapter = TypeAdapter(list[REGISTRY[name].section])
            out[name] = adapter.dump_python(adapter.validate_python(sections), mode="json")
        return out

    def _scores(self) -> list[ScoresOverTraining]:
        return [self.full] + [s for per in self.heads.values() for s in per.values()]

    def _lists(self) -> list[list]:
        return ([v for m in self.measures.values() for per in m.values() for v in per.values()] + list(self.metrics.values())
                + list(self.analyses.values()) + (self.trajectory.coordinates if self.trajectory else []))

    def ablation_cost(self, layer: str) -> tuple[list[str], list[list[float]]]:
        """The heads of `layer` and, per head, its ablation's loss minus the full model's at each point."""
        heads = list(self.heads.get(layer, {}))
        return heads, [[a - f for a, f in zip(self.heads[layer][h].loss, self.full.loss)] for h in heads]


class RunOverTraining(_Frozen):
    """One run of the spec: its variant, sweep values, and scores per evaluation set."""

    variant: str | None = None
    bindings: dict[str, Any] = {}
    sets: dict[str, ScoresOverTraining]


class EvalSeries(_Series):
    """`eval_series.json`: a run's network at every kept point, scored under each run of a spec (its
    interventions alone) on each evaluation set; `eval` gives each set's sequence count."""

    checkpoint: str
    spec: str | None = None
    warnings: list[str] = []
    eval: dict[str, dict[str, Any]]
    runs: dict[str, RunOverTraining]

    def _scores(self) -> list[ScoresOverTraining]:
        return [s for r in self.runs.values() for s in r.sets.values()]
