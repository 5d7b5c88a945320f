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
from .evaluate import CHUNK, Outcome, Sequences, evaluate_plans_over_points, evaluation_set
from .registry import Inputs, over_training
from .runs import TrainedRun
from .series_schema import CHECKPOINT, AnalysisSeries, LossTrajectory


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


def loss_trajectory(losses: np.ndarray, components: int = 3) -> LossTrajectory:
    """Olsson et al.'s per-token loss view of `losses` (points, sequences): the points' loss vectors,
    centred on their mean over points, projected on their first `components` principal components
    (an SVD; at most one fewer than the points), each component's sign set so that the last point lies at or above the first."""
    x = np.asarray(losses, np.float64)
    centred = x - x.mean(0, keepdims=True)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    k = min(components, max(1, len(x) - 1))  # P centred points span at most P - 1 directions
    coords = u[:, :k] * s[:k]
    coords *= np.where(coords[-1] < coords[0], -1.0, 1.0)
    total = float((s ** 2).sum())
    explained = [float(v) / total if total > 0 else 0.0 for v in s[:k] ** 2]
    return LossTrajectory(sequences=x.shape[1], explained=[round(v, 6) for v in explained],
                          coordinates=[_rounded(c) for c in coords.T])


@dataclass
class _Member:
    """One run of an `--over-training` analysis, prepared: its points, the analyses' inputs, and the
    spec text of each plan it reads (by name: `full`, `L1.H0`, and the declared analyses' keys)."""

    run: TrainedRun
    points: Points
    inputs: Inputs
    declared: tuple
    texts: dict[str, str]


def _prepare(run: TrainedRun, what: tuple[str, ...] | None, groups, which: str, n: int | None, seed: int, bare: bool,
             seqs: Sequences | None) -> _Member:
    from .heads import Planner, chosen

    cfg = run.config
    points = load_points(run, require_series=True)
    planner = Planner(run, bare)
    if seqs is None:
        task, seqs = evaluation_set(cfg, which, n, seed)
    else:
        task = build_task(cfg)
    what = over_training(run.layers, type(task)) if what is None else tuple(w for w in what if w != "heads")
    declared = chosen(what, run, type(task))
    inputs = Inputs(run, task, seqs, planner.plan, planner.plan(""), groups)
    texts = {"full": ""}
    for layer in range(1, cfg.model.layers + 1):
        for h in range(cfg.model.heads):
            texts[f"L{layer}.H{h}"] = f"ablate L{layer}.H{h}"
    for d in declared:
        texts.update(d.plans(inputs))
    return _Member(run, points, inputs, declared, texts)


def _shared_key(member: _Member, bare: bool) -> str:
    """What runs must agree on to be scored in one program: their settings but the initialisation
    seed, learning rate, length and kept points, and the interventions every plan is added to."""
    from .heads import intervention_lines

    cfg = member.run.config
    same = cfg.model_copy(update={"seed": cfg.seed.model_copy(update={"init": 0}),
                                  "train": cfg.train.model_copy(update={"lr": 1.0, "sequences": 1, "keep": None})})
    lines = "bare" if bare else "\n".join(intervention_lines(member.run.member))
    return same.model_dump_json() + "\n" + lines


def _same_sequences(a: Sequences, b: Sequences) -> bool:
    return a.index.keys() == b.index.keys() and all(np.array_equal(a.index[k], b.index[k]) for k in a.index)


def same_network(a: Points, b: Points) -> bool:
    """Whether two runs' points can be stacked on one axis and run as one program: the same parameter
    structure and shapes at each point (however many points each keeps), and the same rest of the
    network (`static`)."""
    return (jax.tree.structure(a.params) == jax.tree.structure(b.params)
            and all(x.shape[1:] == y.shape[1:] for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)))
            and bool(eqx.tree_equal(a.static, b.static)))


def group_by(items: list, same) -> list[list[int]]:
    """`items` (indices) in groups, in order: each joins the first group whose first item it is `same` as."""
    out: list[list[int]] = []
    for i, item in enumerate(items):
        group = next((g for g in out if same(items[g[0]], item)), None)
        if group is None:
            out.append([i])
        else:
            group.append(i)
    return out


def stack(points: list[Points]) -> tuple[Points, list[slice]]:
    """Several runs' points (`same_network`) on one axis, members x points in order, and each run's rows
    of it: what one program over a sweep's members scores."""
    params = jax.tree.map(lambda *xs: jnp.concatenate(xs), *[p.params for p in points])
    rows, at = [], 0
    for p in points:
        rows.append(slice(at, at + len(p.sequences)))
        at += len(p.sequences)
    return Points(sum((p.sequences for p in points), []), sum((p.sources for p in points), []), params,
                  points[0].static, []), rows


def bundles(members: list[_Member], bare: bool) -> list[list[int]]:
    """The members (indices) scored together, one list per program: equal `_shared_key`, the same
    evaluation sequences and the same network (`same_network`)."""
    return group_by(members, lambda a, b: _shared_key(a, bare) == _shared_key(b, bare)
                    and _same_sequences(a.inputs.seqs, b.inputs.seqs) and same_network(a.points, b.points))


def _score_bundle(members: list[_Member]) -> list[tuple[dict[str, dict[str, np.ndarray]], dict, dict]]:
    """Every plan any of `members` reads, at every point of every member, as one program per plan
    structure over all their points (`evaluate_plans_over_points` on their parameters stacked on one
    axis); the measures likewise. Per member: its plans' per-sequence scores by name (points,
    sequences), its measures and logged quantities."""
    first = members[0]
    texts = list(dict.fromkeys(t for m in members for t in m.texts.values()))
    plans = [first.inputs.full if t == "" else first.inputs.plan(t) for t in texts]
    everyone, where = stack([m.points for m in members])
    scored = dict(zip(texts, evaluate_plans_over_points(everyone.params, everyone.static, plans, first.inputs.task,
                                                        first.inputs.seqs, np.asarray(everyone.sequences))))
    measured = measures_over_points(everyone, first.inputs.full, first.inputs.task, first.inputs.seqs, first.run.config)
    out = []
    for m, rows in zip(members, where):
        per = {name: {k: v[rows] for k, v in scored[text].items()} for name, text in m.texts.items()}
        measures = {name: {lay: {h: v[rows] for h, v in heads.items()} for lay, heads in layers.items()}
                    for name, layers in measured[0].items()}
        out.append((per, measures, {k: v[rows] for k, v in measured[1].items()}))
    return out


def measures_over_points(points: Points, plan, task, seqs: Sequences, config) -> tuple[dict, dict]:
    """At every point (the rows of one run or of several together), under `plan`, on up to 2,048
    sequences spread over `seqs` (those `opto analyze` uses): each per-head measure the task declares
    ({measure: {"L1": {"H0": array of values per point}}}), and the loss, accuracy and reference metrics
    an evaluation logs ({name: array per point}); one program."""
    spread = _spread(seqs)
    batch = task.gather({k: jnp.asarray(v) for k, v in spread.index.items()})
    roles, layers = layout(config).roles, config.model.layers
    measured, metrics = _measure_points(points.params, points.static, plan, task, batch, jnp.asarray(points.sequences),
                                        layers, roles)
    table: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for name, values in measured.items():
        for key, value in values.items():
            lay, head = key.split("/")[1].split(".")
            table.setdefault(name, {}).setdefault(lay, {})[head] = np.asarray(value)
    return table, {k: np.asarray(v) for k, v in metrics.items()}


def _series_of(m: _Member, scored: dict[str, dict[str, np.ndarray]], measures: dict, metrics: dict, seed: int,
               bare: bool) -> AnalysisSeries:
    from .heads import intervention_lines

    run, seqs, points = m.run, m.inputs.seqs, m.points
    heads: dict[str, dict[str, dict]] = {}
    for layer in range(1, run.layers + 1):
        for h in range(run.heads):
            heads.setdefault(f"L{layer}", {})[f"H{h}"] = scores_over_training(scored[f"L{layer}.H{h}"])
    analyses = {}
    for d in m.declared:
        analyses[d.name] = [d.build(m.inputs, {k: _outcome(scored[k], i) for k in m.texts})
                            for i in range(len(points.sequences))]
    member = None if bare else run.member
    return AnalysisSeries(
        run_dir=str(run.run_dir), spec=run.spec, bare=bare, interventions=intervention_lines(member) or "none",
        eval={"set": seqs.name, "sequences": len(seqs), "enumerated": seqs.enumerated, **({} if seqs.enumerated else {"seed": seed})},
        points=points.info(), skipped=points.problems, full=scores_over_training(scored["full"]), heads=heads,
        measures={name: {lay: {h: _rounded(v) for h, v in per.items()} for lay, per in layers.items()}
                  for name, layers in measures.items()},
        metrics={k: _rounded(v) for k, v in metrics.items()}, trajectory=loss_trajectory(scored["full"]["loss"]),
        analyses=analyses)


def _outcome(result: dict[str, np.ndarray], i: int) -> Outcome:
    """Point `i`'s per-sequence scores of one plan as the `Outcome` a single-checkpoint analysis builds from."""
    return Outcome(result["accuracy"][i], result["loss"][i], {k: v[i] for k, v in result.items() if k not in ("loss", "accuracy")})


@dataclass(frozen=True)
class OverTraining:
    """What `analyze_runs_over_training` returns: per run (in the order given) its `analysis_series.json`
    model and the damaged points skipped, and the runs (indices) scored together, one list per program."""

    series: list[AnalysisSeries]
    problems: list[list[str]]
    programs: list[list[int]]


def analyze_runs_over_training(runs: list[TrainedRun], what: tuple[str, ...] | None = None, groups=None,
                               which: str = TRAIN, n: int | None = None, seed: int = 0, bare: bool = False,
                               seqs: Sequences | None = None) -> OverTraining:
    """`analyze_over_training` of several runs (a sweep's members): runs that share settings but their
    initialisation seed, learning rate and length, their interventions, evaluation sequences and
    network shapes are scored in one program over all their points (`bundles`); the rest one bundle each."""
    members = [_prepare(r, what, groups, which, n, seed, bare, seqs) for r in runs]
    programs = bundles(members, bare)
    series: list[AnalysisSeries | None] = [None] * len(runs)
    for group in programs:
        for i, (scored, measures, metrics) in zip(group, _score_bundle([members[i] for i in group])):
            series[i] = _series_of(members[i], scored, measures, metrics, seed, bare)
    return OverTraining(series, [m.points.problems for m in members], programs)


def analyze_over_training(run: TrainedRun, which: str = TRAIN, n: int | None = None, seed: int = 0,
                          bare: bool = False, seqs: Sequences | None = None, what: tuple[str, ...] | None = None,
                          groups=None) -> tuple[AnalysisSeries, list[str]]:
    """The full model and each head ablated alone (every layer), the task's measures and logged
    quantities, the per-token loss trajectory, and the registered analyses `what` that are built over
    training (default: every one that applies, `registry.over_training`: Table 1's groups, the path
    map), at every point of the run's series and its latest checkpoint, under the run's own
    interventions (none when `bare`), on the sequences `opto analyze` uses (or on `seqs`, in the task's
    `fixed` layout); one program over points. Returns the `analysis_series.json` model and the damaged
    points skipped."""
    done = analyze_runs_over_training([run], what, groups, which, n, seed, bare, seqs)
    return done.series[0], done.problems[0]


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
    return "\n".join(lines + trajectory_lines(result) + groups_lines(result) + paths_lines(result))


def trajectory_lines(result: AnalysisSeries) -> list[str]:
    """The per-token loss trajectory: each point's coordinates on the first principal components."""
    t = result.trajectory
    if t is None:
        return []
    shares = ", ".join(f"PC{k + 1} {100 * e:.1f}%" for k, e in enumerate(t.explained))
    lines = [f"per-token loss trajectory on {t.sequences:,} sequences ({shares} of the variance over points)",
             f"{'sequences':>12}  " + "  ".join(f"{'PC' + str(k + 1):>7}" for k in range(len(t.coordinates)))]
    lines += [f"{seen:>12,}  " + "  ".join(f"{c[i]:>7.3f}" for c in t.coordinates) for i, seen in enumerate(result.sequences)]
    return lines


def _acc(scores: dict | None) -> str:
    return "-" if not scores or scores.get("accuracy") is None else f"{scores['accuracy']:.3f}"


def groups_lines(result: AnalysisSeries) -> list[str]:
    """Table 1 at every point: each group's accuracy ablated / ablated keeping the next layer's pattern
    / keeping its values."""
    sections = result.analyses.get("groups")
    if not sections:
        return []
    names = [g["name"] for g in sections[-1]]
    width = max(22, *(len(n) for n in names))
    lines = ["head groups (Table 1), accuracy: ablated / pattern-preserving / value-preserving",
             f"{'sequences':>12}  " + "  ".join(f"{n:>{width}}" for n in names)]
    for seen, groups in zip(result.sequences, sections):
        cells = [f"{_acc(g.get('ablated'))} / {_acc(g.get('pattern_preserving'))} / {_acc(g.get('value_preserving'))}"
                 for g in groups]
        lines.append(f"{seen:>12,}  " + "  ".join(f"{c:>{width}}" for c in cells))
    return lines


def best_paths(section: dict) -> dict[str, tuple[str, float]]:
    """Per layer pair of one point's `paths` section: the path (earlier head, later head) kept on alone
    with the highest accuracy, and that accuracy."""
    out = {}
    for pair, entry in section.items():
        acc = np.asarray(entry["accuracy"], dtype=float)
        a, b = np.unravel_index(int(np.nanargmax(acc)), acc.shape)
        earlier, later = pair.split("-")
        out[pair] = (f"{earlier}.H{a}->{later}.H{b}", float(acc[a, b]))
    return out


def paths_lines(result: AnalysisSeries) -> list[str]:
    """The path map (Figure 11b) at every point: its best path per layer pair and that path's accuracy."""
    sections = result.analyses.get("paths")
    if not sections:
        return []
    pairs = list(sections[-1])
    lines = ["one path (Figure 11b): the best path kept on alone, and its accuracy",
             f"{'sequences':>12}  " + "  ".join(f"{p:>20}" for p in pairs)]
    for seen, section in zip(result.sequences, sections):
        best = best_paths(section)
        lines.append(f"{seen:>12,}  " + "  ".join(f"{best[p][0] + ' ' + format(best[p][1], '.3f'):>20}" for p in pairs))
    return lines
