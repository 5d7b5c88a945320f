"""The one way from text to a checked, compiled plan: `compile_spec(source, config, ...)`.

Parse (a `.opto` path or spec text), format to canonical text, resolve against the settings
(sweeps expanded, `set` statements and `settings` applied, selectors checked against the
model's sites), check every `graft` source, and compile each run to a `CompiledPlan` with the
networks its grafts read. It reads checkpoints through `train.restore`, never the trainer, so
the API, `trace` and `analysis` compile specs without pulling in training.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import interventions  # noqa: F401  (registers the built-in verbs with semantics)
from . import rundir
from .compile.lower import CompiledPlan, Probed, compile_member
from .config import ExperimentConfig, flat_settings, read_run_config
from .errors import DataError, SpecError, SpecWarning
from .model.parameters import arrays
from .model.protocol import ModelSource, SiteTable, declared
from .model.transformer import Transformer
from .semantics.plan import Member
from .semantics.spec import resolve_spec
from .syntax import ast, format_spec, load_spec, load_text
from .tasks import Layout, check_inputs as check_task_inputs
from .train.restore import load_trained

DEFAULT = ExperimentConfig()
"""Settings a spec starts from: the paper's (lr 1e-5, 1,000,000 sequences, evaluation every 5,000
sequences on 1,000 per set, init seed 5) on the built-in synthetic features."""


@dataclass
class Experiment:
    """A loaded spec: its syntax tree, canonical text and hash, runs (members) and warnings."""

    spec: ast.Spec
    canonical: str
    sha256: str
    members: list[Member]
    warnings: list[SpecWarning]


@dataclass
class CompiledSpec:
    """A checked spec and one compiled plan per run (member)."""

    experiment: Experiment
    plans: list[CompiledPlan | Probed]


def is_path(source: str | Path) -> bool:
    """Whether `source` names a `.opto` file rather than holding spec text."""
    return isinstance(source, Path) or (isinstance(source, str) and source.endswith(".opto") and "\n" not in source)


def check_spec(source: str | Path, config: ExperimentConfig = DEFAULT, settings: dict[str, object] | None = None, *,
               sites: Callable[[Layout], SiteTable] | None = None) -> Experiment:
    """Text -> checked runs: parse a spec (a path or spec text) and resolve it against `config` with
    `settings` (`section.field` -> value) applied last; `sites` resolves selectors against a model of
    one's own (default: the built-in transformer's). Raises `SpecError`."""
    spec = load_spec(source) if is_path(source) else load_text(source)
    canonical = format_spec(spec)
    members, warnings = resolve_spec(spec, config, settings or {}, sites=sites)
    check_inputs(spec, members, settings or {})
    return Experiment(spec, canonical, hashlib.sha256(canonical.encode()).hexdigest(), members,
                      warnings + graft_warnings(members))


def check_inputs(spec: ast.Spec, members: list[Member], cli: dict[str, object]) -> None:
    """Refuse input files the runs name that cannot run (a corpus missing, of floats, with ids
    outside the vocabulary), as a spec error at the `set` that named the file (`task.source`, else
    `task.name`, when no file is named) when the spec wrote it, else as the task's DataError naming the file."""
    seen = set()
    for member in members:
        if member.config.task in seen:
            continue
        seen.add(member.config.task)
        try:
            check_task_inputs(member.config)
        except DataError as exc:
            sets = [st for st in _all_statements(spec) if isinstance(st, ast.Set)]
            key = ("task", "source") if getattr(member.config.task, "source", "") else ("task", "name")
            named = [st for st in sets if st.key == key]
            if not named or ".".join(key) in cli:
                raise
            found = f" (found {exc.found})" if exc.found else ""
            where = "" if exc.path == "task.source" else f"{exc.path}: "
            raise SpecError(named[-1].value.span, f"{where}{exc.problem}{found}",
                            hint=exc.hint or (f"expected {exc.expected}" if exc.expected else None)) from None


def _all_statements(spec: ast.Spec) -> list:
    """The spec's statements with those inside variant blocks."""
    return [inner for st in spec.statements for inner in (st.statements if isinstance(st, ast.Variant) else (st,))]


def compile_spec(source: str | Path, config: ExperimentConfig = DEFAULT, settings: dict[str, object] | None = None, *,
                 model: ModelSource | None = None) -> CompiledSpec:
    """Text -> checked, compiled plans: `check_spec`, then each run compiled with the networks its
    grafts read. With `model` (a model of one's own: an instance or factory `key -> model`),
    selectors resolve against its declared sites and a `graft` reads a run of that model."""
    if model is None:
        exp = check_spec(source, config, settings)
        return CompiledSpec(exp, [plan_for(m) for m in exp.members])
    sites = declared(model).sites
    exp = check_spec(source, config, settings, sites=sites)
    return CompiledSpec(exp, [member_plan(m, model) for m in exp.members])


def plan_for(member: Member) -> CompiledPlan | Probed:
    """Compile a member, loading the checkpoints its grafts read."""
    return compile_member(member, {run: load_graft(run, member.config) for run in member.grafts})


def member_plan(member: Member, model: ModelSource) -> CompiledPlan | Probed:
    """A member resolved against a model of one's own, compiled against its site table; a `graft`
    reads its source run as a checkpoint of the same model."""
    grafts = {run: load_trained(run, member.config, model=model)[0] for run in member.grafts}
    shape = declared(model)
    cut = next((a for a in member.actions if a.builder == "pathcut"), None)
    if cut is not None and not isinstance(shape, Transformer):
        raise SpecError(cut.span, "a path cut (stopgrad ... from ...) needs the built-in transformer",
                        hint="it rebuilds the residual stream the cut head reads; on a model of one's own, "
                             "cut a site instead (stopgrad SITE)")
    return compile_member(member, grafts, shape.sites, params=arrays(shape))


def graft_warnings(members: list[Member]) -> list[SpecWarning]:
    """A warning at each `graft` whose source run directory holds no run (yet: an earlier `opto run`
    may make it); an error at one whose source holds a network of another architecture."""
    seen, out = set(), []
    for member in members:
        for action in [*member.actions, *(a for _, probe in member.probes for a in probe)]:
            run = action.param("run")
            if action.builder != "graft" or (run, action.span) in seen:
                continue
            seen.add((run, action.span))
            settings = Path(run) / rundir.CONFIG
            if settings.exists():
                other = read_run_config(run)
                differs = architecture_difference(member.config, other)
                if differs:
                    raise SpecError(action.span, f"graft source run '{run}' has a different architecture: "
                                    f"{settings} has {differs[1]}",
                                    hint=f"this spec's run {member.name} has {differs[0]}; graft from a run with the same "
                                         "model settings")
                continue
            out.append(SpecWarning(span=action.span, message=f"graft source run '{run}' does not exist "
                                                           f"(no {Path(run) / rundir.CONFIG})",
                                   hint="train it first with opto run, or fix the path (it is relative to the "
                                        "folder opto run is started in)"))
    return out


def load_graft(run_dir: str, config: ExperimentConfig):
    """The trained model of another run (for `graft`), checked against this experiment's architecture."""
    path = Path(run_dir)
    cfg_path = path / rundir.CONFIG
    if not cfg_path.exists():
        raise DataError(path, "graft source is not a run directory",
                        expected="a directory written by `opto run` (config.json, checkpoint.json)")
    other = read_run_config(path)
    differs = architecture_difference(config, other)
    if differs:
        raise DataError(cfg_path, "graft source has a different architecture", expected=differs[0], found=differs[1])
    return load_trained(path, other)[0]


def architecture_difference(mine: ExperimentConfig, other: ExperimentConfig) -> tuple[str, str] | None:
    """Where another run's network cannot stand in for one of `mine` (its weights' shapes or meaning
    differ): (what `mine` has, what `other` has), naming only the differing settings; None if they match."""
    a, b = flat_settings(mine), flat_settings(other)
    keys = [k for k in a if (k.startswith("model.") or k in ARCHITECTURE_SETTINGS) and a[k] != b[k]]
    if not keys:
        return None
    return ", ".join(f"{k} = {a[k]}" for k in keys), ", ".join(f"{k} = {b[k]}" for k in keys)


ARCHITECTURE_SETTINGS = ("data.labels", "data.feature_dim", "task.name")
"""Settings outside `model.*` that fix a network's weights: the logits' width, the input width, the task."""


def run_dirs(exp: Experiment, out: Path | None) -> list[Path]:
    """Where each member's run goes: `out` (default runs/<spec name>), with one subfolder per sweep member."""
    root = out or Path("runs") / Path(exp.spec.path or "spec").stem
    if len(exp.members) == 1:
        return [root]
    return [root / m.name for m in exp.members]
