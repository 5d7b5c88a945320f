"""`opto eval`: a trained checkpoint scored under each run of a spec, on the evaluation sets.

The spec decides everything but the weights: each of its runs (variants, sweep members) is
compiled on its own (its interventions alone, not the checkpoint's training ones) and scored
with the checkpoint's network on the spec's evaluation sets, all runs that share data settings
on the same sequences (`analysis.evaluate`). Schedules see the checkpoint's sequence count. With `--over-training` the
same runs are scored at every kept point of the run's checkpoint series, as one program over the
points (`evaluate_spec_over_training`, written as `eval_series.json`); a sweep's runs whose networks
stack, as one program over members and points (`evaluate_runs_over_training`).
A spec whose data or seed settings (but the initialisation seed) differ from the run's still scores, with one warning line:
its sequences are then not those the run trained and was evaluated on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import rundir
from .analysis.evaluate import evaluate_plans, evaluate_plans_over_points, evaluation_set
from .analysis.overtraining import group_by, load_points, same_network, scores_over_training, stack
from .analysis.runs import load_run
from .analysis.series_schema import EvalSeries
from .compile.lower import compile_member
from .errors import DataError
from .config import ExperimentConfig, flat_settings
from .pipeline import ARCHITECTURE_SETTINGS, Experiment, architecture_difference, load_graft
from .tasks import eval_sets

DATA_SETTINGS = ("data.", "task.", "seed.")
"""Prefixes of the settings that decide which sequences a network meets (the feature table, the class,
exemplar and label splits, the task, the seeds); `architecture_difference` already refuses some."""

NOT_DATA = ("seed.init",)
"""Settings under those prefixes that decide no sequence: the initialisation seed (a sweep over seeds
evaluated under one spec meets the same sequences in every member)."""


def data_difference(mine: ExperimentConfig, run: ExperimentConfig) -> tuple[str, str] | None:
    """The data and seed settings in which a spec's run differs from the checkpoint's run, other than
    the architecture's: (the spec's, the run's) as `key = value` lists, or None when they agree."""
    a, b = flat_settings(mine), flat_settings(run)
    keys = [k for k in a if k.startswith(DATA_SETTINGS) and k not in ARCHITECTURE_SETTINGS + NOT_DATA
            and a[k] != b.get(k)]
    if not keys:
        return None
    return ", ".join(f"{k} = {a[k]}" for k in keys), ", ".join(f"{k} = {b.get(k)}" for k in keys)


def data_warnings(exp: Experiment, run_config: ExperimentConfig, run_dir: Path) -> list[str]:
    """One line per distinct way the spec's runs' data or seeds differ from the checkpoint's run, since
    then `opto eval` scores the network on other sequences than it trained and was evaluated on."""
    out: list[str] = []
    for member in exp.members:
        differs = data_difference(member.config, run_config)
        if differs is None:
            continue
        line = (f"{run_dir / rundir.CONFIG}: warning: {exp.spec.path or 'the spec'} has {differs[0]} but the checkpoint's "
                f"run had {differs[1]}: the scores are on the spec's data, not the run's (set them in the spec or "
                "with --set to score the run's own)")
        if line not in out:
            out.append(line)
    return out


def _fitting_run(exp: Experiment, run_dir: Path):
    """The run at `run_dir`, refused (a DataError) when its network does not fit a member of `exp`."""
    run = load_run(run_dir)
    for member in exp.members:
        differs = architecture_difference(member.config, run.config)
        if differs:
            raise DataError(run_dir / rundir.CONFIG, f"the checkpoint's network does not fit run {member.name} of "
                            f"{exp.spec.path or 'the spec'}", expected=f"the spec's {differs[0]}", found=differs[1],
                            hint="evaluate it under a spec with the same model settings, or set them in the spec")
    return run


def _prepare(exp: Experiment, run_dirs: list[Path]):
    """The runs, each member's compiled plan (its interventions alone), and the members grouped by the
    data settings that decide their evaluation sequences; refuses a run whose network does not fit."""
    runs = [_fitting_run(exp, d) for d in run_dirs]
    grafts = {src: load_graft(src, runs[0].config) for m in exp.members for src in m.grafts}
    plans = [compile_member(m.model_copy(update={"probes": ()}), grafts) for m in exp.members]
    groups: dict[str, list[int]] = {}
    for i, m in enumerate(exp.members):
        groups.setdefault(m.config.data.model_dump_json() + m.config.task.model_dump_json(), []).append(i)
    return runs, plans, list(groups.values())


def _score_every_set(exp: Experiment, groups: list[list[int]], n: int | None, seed: int, score,
                     runs: int = 1) -> tuple[list[dict], dict]:
    """Each run of `exp` scored on each evaluation set of its group's settings, for each of `runs`
    checkpoints: `score(members, task, seqs)` gives, per member of a group, one JSON-ready result per
    checkpoint. Returns (per checkpoint, the results by run of the spec; the sets used)."""
    results = [{m.name: {"variant": m.variant, "bindings": dict(m.bindings), "sets": {}} for m in exp.members}
               for _ in range(runs)]
    used: dict[str, dict] = {}
    for idx in groups:
        config = exp.members[idx[0]].config
        for which in eval_sets(config):
            task, seqs = evaluation_set(config, which, n, seed)
            used[which] = {"sequences": len(seqs), "enumerated": seqs.enumerated}
            for i, per_checkpoint in zip(idx, score(idx, task, seqs)):
                for mine, result in zip(results, per_checkpoint):
                    mine[exp.members[i].name]["sets"][which] = result
    return results, used


def evaluate_spec(exp: Experiment, run_dir: Path, n: int | None = None, seed: int = 0) -> dict:
    """Accuracy (over every label, and among the context's labels only) and loss of `run_dir`'s
    latest checkpoint under every run of `exp` on each of its evaluation sets: the training set's
    every distinct sequence when `n` is None and it can be enumerated, else `n` (default 10,000)
    sampled sequences per set. `warnings` holds a line for each difference in data or seed
    settings between the spec and the run (`data_warnings`)."""
    (run,), plans, groups = _prepare(exp, [run_dir])

    def score(idx, task, seqs):
        outcomes = evaluate_plans(run.model, [plans[i] for i in idx], task, seqs, run.sequences)
        return [[outcome.summary(in_context=True)] for outcome in outcomes]

    (results,), used = _score_every_set(exp, groups, n, seed, score)
    return {"checkpoint": str(run_dir), "sequences_trained": run.sequences, "spec": exp.spec.path,
            "warnings": data_warnings(exp, run.config, run_dir), "eval": used, "runs": results}


@dataclass(frozen=True)
class EvalOverTraining:
    """What `evaluate_runs_over_training` returns: per checkpoint run (in the order given) its
    `eval_series.json` model, and the runs (indices) scored together, one list per program."""

    series: list[EvalSeries]
    programs: list[list[int]]


def evaluate_runs_over_training(exp: Experiment, run_dirs: list[Path], n: int | None = None,
                                seed: int = 0) -> EvalOverTraining:
    """`evaluate_spec_over_training` of several runs (a sweep's members): runs whose networks can be
    stacked (`overtraining.same_network`) are scored in one program over all their points (members x
    points), every plan of a group of the spec's runs at once; the rest one program each."""
    runs, plans, groups = _prepare(exp, run_dirs)
    points = [load_points(run, require_series=True) for run in runs]
    programs = group_by(points, same_network)
    stacked = [stack([points[r] for r in program]) for program in programs]

    def score(idx, task, seqs):
        per = [[None] * len(runs) for _ in idx]
        for program, (everyone, rows) in zip(programs, stacked):
            scored = evaluate_plans_over_points(everyone.params, everyone.static, [plans[i] for i in idx], task, seqs,
                                                np.asarray(everyone.sequences))
            for j, per_point in enumerate(scored):
                for r, where in zip(program, rows):
                    per[j][r] = scores_over_training({k: v[where] for k, v in per_point.items()}, in_context=True)
        return per

    results, used = _score_every_set(exp, groups, n, seed, score, runs=len(runs))
    series = [EvalSeries(checkpoint=str(d), spec=exp.spec.path, warnings=data_warnings(exp, run.config, d), eval=used,
                         points=p.info(), skipped=p.problems, runs=r)
              for d, run, p, r in zip(run_dirs, runs, points, results)]
    return EvalOverTraining(series, programs)


def evaluate_spec_over_training(exp: Experiment, run_dir: Path, n: int | None = None, seed: int = 0) -> EvalSeries:
    """`evaluate_spec` at every kept point of the run's checkpoint series and its latest checkpoint
    (`overtraining.load_points`): per run of the spec and evaluation set, the scores at each point; every
    plan of a group over every point in one program. Damaged points are named in `skipped`."""
    return evaluate_runs_over_training(exp, [run_dir], n, seed).series[0]
