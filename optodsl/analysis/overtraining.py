"""Analyses across training (`opto analyze RUN --over-training`): every kept point of a run's
checkpoint series, scored as one program vmapped over the points.

The points are the series' intact points (a damaged one is named and skipped, `series.load_series`)
and, when the series does not keep the run's own length, its latest checkpoint as the last point,
so that the last point is always what `opto analyze` scores. Their parameters are stacked on a
leading axis and every plan of a group runs in one program over all of them
(`evaluate.evaluate_plans_over_points`); the measures and the task's logged quantities likewise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..errors import DataError
from ..measures import MEASURES
from ..model.overrides import Context
from ..tasks import build_task, layout
from ..tasks.records import TRAIN
from .evaluate import CHUNK, Sequences, evaluate_plans_over_points, evaluation_set
from .runs import TrainedRun
from .series_schema import CHECKPOINT, AnalysisSeries


@dataclass(frozen=True)
class Points:
    """A run's networks at its points, in training order: parameters stacked on a leading axis of
    points (`params`, with the shared rest `static`), each point's length and source, and one line
    per damaged series point that was skipped."""

    sequences: list[int]
    sources: list[str]
    params: Any
    static: Any
    problems: list[str]

    def info(self) -> list[dict]:
        return [{"sequences": s, "source": f} for s, f in zip(self.sequences, self.sources)]


def load_points(run: TrainedRun, over_training: bool = True, require_series: bool = False) -> Points:
    """The run's latest checkpoint, and with `over_training` every intact point of its series before
    it (the checkpoint is the last point unless the series keeps that length, read from the series
    then: the same network). `require_series`: a run that keeps no series is a DataError."""
    from ..train import series

    points, problems = [], []
    if over_training:
        if require_series and series.read_manifest(run.run_dir) is None:
            raise DataError(run.run_dir, "the run keeps no checkpoint series, so there is nothing to score over training",
                            expected="a run trained with `set train.keep = ...` (series/manifest.json; docs/series.md)",
                            found="no series/manifest.json")
        points, problems = series.load_series(run.run_dir, run.model)
        points = [(p.sequences, p.file, m) for p, m in points if p.sequences <= run.sequences]
    if not any(s == run.sequences for s, _, _ in points):
        points.append((run.sequences, CHECKPOINT, run.model))
    points.sort(key=lambda p: p[0])
    static = eqx.partition(run.model, eqx.is_array)[1]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *[eqx.filter(m, eqx.is_array) for _, _, m in points])
    return Points([s for s, _, _ in points], [f for _, f, _ in points], stacked, static, problems)


def _spread(seqs: Sequences, limit: int = CHUNK) -> Sequences:
    """Up to `limit` sequences spread evenly over `seqs` (the sequences `heads.head_measures` uses)."""
    return seqs.take(np.linspace(0, len(seqs) - 1, min(limit, len(seqs))).astype(int))


def measures_over_points(points: Points, plan, task, seqs: Sequences, config) -> tuple[dict, dict[str, list[float]]]:
    """At every point, under `plan`, on up to 2,048 sequences spread over `seqs` (those `opto analyze`
    uses): each per-head measure the task declares ({measure: {"L1": {"H0": [value per point]}}}), and
    the loss, accuracy and reference metrics an evaluation logs ({name: [value per point]}); one program."""
    spread = _spread(seqs)
    batch = task.gather({k: jnp.asarray(v) for k, v in spread.index.items()})
    roles, layers = layout(config).roles, config.model.layers
    measured, metrics = _measure_points(points.params, points.static, plan, task, batch, jnp.asarray(points.sequences),
                                        layers, roles)
    table: dict[str, dict[str, dict[str, list[float]]]] = {}
    for name, values in measured.items():
        for key, value in values.items():
            lay, head = key.split("/")[1].split(".")
            table.setdefault(name, {}).setdefault(lay, {})[head] = _rounded(value)
    return table, {k: _rounded(v) for k, v in metrics.items()}


@eqx.filter_jit
def _measure_points(params, static, plan, task, batch, seen, layers, roles):
    def one(p, s):
        model = eqx.combine(p, static)
        logits, acts = plan(model, batch, Context(sequences=s, training=False))
        measured = {name: MEASURES[name](acts, batch, layers, model, type(task), roles) for name in type(task).measures}
        loss, accuracy = task.loss_and_accuracy(logits, batch)
        return measured, {"loss": loss, "accuracy": accuracy, **task.metrics(logits, batch)}

    return jax.vmap(one)(params, seen)


def _rounded(values) -> list[float]:
    return [round(float(x), 6) for x in np.asarray(values)]


def scores_over_training(result: dict[str, np.ndarray], in_context: bool = False) -> dict:
    """`evaluate_plans_over_points`' per-sequence scores (P, sequences) as a `ScoresOverTraining` dict: the mean per point."""
    out = {"accuracy": _rounded(result["accuracy"].mean(-1)), "loss": _rounded(result["loss"].mean(-1))}
    if in_context:
        out["extra"] = {k: _rounded(v.mean(-1)) for k, v in result.items() if k not in ("loss", "accuracy")}
    return out


def analyze_over_training(run: TrainedRun, which: str = TRAIN, n: int | None = None, seed: int = 0,
                          bare: bool = False, seqs: Sequences | None = None) -> tuple[AnalysisSeries, list[str]]:
    """The full model and each head ablated alone (every layer), the task's measures and logged
    quantities, at every point of the run's series and its latest checkpoint, under the run's own
    interventions (none when `bare`), on the sequences `opto analyze` uses (or on `seqs`, in the task's
    `fixed` layout); one program over points. Returns the `analysis_series.json` model and the damaged
    points skipped."""
    from .heads import Planner, intervention_lines

    cfg = run.config
    points = load_points(run, require_series=True)
    planner = Planner(run, bare)
    if seqs is None:
        task, seqs = evaluation_set(cfg, which, n, seed)
    else:
        task = build_task(cfg)
    texts = {"full": ""}
    for layer in range(1, cfg.model.layers + 1):
        for h in range(cfg.model.heads):
            texts[f"L{layer}.H{h}"] = f"ablate L{layer}.H{h}"
    plans = [planner.plan(t) for t in texts.values()]
    scored = dict(zip(texts, evaluate_plans_over_points(points.params, points.static, plans, task, seqs,
                                                        np.asarray(points.sequences))))
    measures, metrics = measures_over_points(points, plans[0], task, seqs, cfg)
    heads: dict[str, dict[str, dict]] = {}
    for name in texts:
        if name != "full":
            lay, head = name.split(".")
            heads.setdefault(lay, {})[head] = scores_over_training(scored[name])
    member = None if bare else run.member
    result = AnalysisSeries(
        run_dir=str(run.run_dir), spec=run.spec, bare=bare, interventions=intervention_lines(member) or "none",
        eval={"set": seqs.name, "sequences": len(seqs), "enumerated": seqs.enumerated, **({} if seqs.enumerated else {"seed": seed})},
        points=points.info(), skipped=points.problems, full=scores_over_training(scored["full"]), heads=heads, measures=measures,
        metrics=metrics)
    return result, points.problems


def table(result: AnalysisSeries) -> str:
    """The series as text: per point, the full model's loss and each head's ablation cost (its loss
    minus the full model's), one block per layer."""
    lines = [f"{result.run_dir}: {len(result.points)} points on {result.eval['sequences']:,} {result.eval['set']} sequences"
             + (" (bare network)" if result.bare else "") + "; loss (nats), and each head's ablation cost (loss increase)"]
    for layer in result.heads:
        heads, cost = result.ablation_cost(layer)
        lines.append(f"{'sequences':>12}  {'full':>7}  " + "  ".join(f"{layer + '.' + h:>7}" for h in heads))
        for i, seen in enumerate(result.sequences):
            lines.append(f"{seen:>12,}  {result.full.loss[i]:>7.3f}  " + "  ".join(f"{c[i]:>+7.3f}" for c in cost))
    return "\n".join(lines)
