"""Specs to runs: load and resolve a spec, compile each member, train it into its run directory.

This is the top of the pipeline (syntax -> semantics -> compile -> train); the command line
and the Python API call it.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp

from .config import ExperimentConfig
from .errors import DataError, SpecError
from .pipeline import DEFAULT, Experiment, check_spec, flat_settings, plan_for, read_json, run_dirs
from .semantics.plan import Action, Member
from .semantics.spec import resolve_spec
from .syntax import load_spec
from .train import checkpoint
from .train.trainer import GROWABLE, RunResult, sweep_key, train_sweep
from .train.trainer import _prepare_dir as prepare_dir


def coerce(text: str):
    """A `--set` value: bool, int or float (with `_` separators and k/M suffixes), a list, else the text."""
    text = text.strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if text.startswith("[") and text.endswith("]"):
        return [coerce(part) for part in text[1:-1].split(",") if part.strip()]
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    body, scale = text, 1
    if len(text) > 1 and text[-1] in "kM":
        body, scale = text[:-1], {"k": 1_000, "M": 1_000_000}[text[-1]]
    for kind in (int, float):
        try:
            value = kind(body.replace("_", "")) * scale
            return int(value) if isinstance(value, float) and scale > 1 and value.is_integer() else value
        except ValueError:
            pass
    return text


def load_experiment(source: str | Path, settings: dict[str, object] | None = None,
                    base: ExperimentConfig = DEFAULT) -> Experiment:
    """Load a spec from a path (or spec text), resolve it with `settings` applied last
    (`pipeline.check_spec`, under the name the command line and tests use)."""
    return check_spec(source, base, settings)


def _spec_record(data) -> dict:
    """spec.json's content, checked: an object with the spec's sha256 (and its sweep values, if any)."""
    if not isinstance(data, dict) or not isinstance(data.get("sha256"), str) \
            or not isinstance(data.get("bindings", {}), dict):
        raise ValueError("not the JSON object with 'sha256' and 'bindings' that `opto run` writes")
    return data


def _changed_settings(old: ExperimentConfig, new: ExperimentConfig) -> dict[str, tuple]:
    """The `section.field` settings whose values differ: {name: (old, new)}."""
    a, b = flat_settings(old), flat_settings(new)
    return {k: (a[k], b[k]) for k in a if a[k] != b[k]}


def recorded_member(run_dir: Path, bindings: dict, config: ExperimentConfig) -> Member:
    """The member that trained in `run_dir`: its spec.opto resolved with its settings (config.json,
    `--set` overrides included), the one whose sweep values spec.json records."""
    text = run_dir / "spec.opto"

    def pick(cli: dict) -> Member:
        members = resolve_spec(load_spec(text), config, cli)[0]
        found = [m for m in members if len(members) == 1 or dict(m.bindings) == bindings]
        if not found:
            raise DataError(run_dir / "spec.json", "the sweep values it records are no run of spec.opto",
                            found=json.dumps(bindings), hint="restore the file, or train into another --out")
        return found[0]

    try:
        member = pick({})
        if member.config != config:
            member = pick({k: new for k, (_, new) in _changed_settings(member.config, config).items()})
    except SpecError as exc:
        raise DataError(text, "unreadable spec (edited by hand?)", expected="the spec.opto `opto run` writes",
                        found=exc.message, hint="restore the file, or train into another --out") from exc
    return member


def _action_text(action: Action) -> str:
    """One resolved intervention in words: verb, site, value and schedule (and positions and pass where set)."""
    params = ", ".join(f"{k}={v}" for k, v in action.params)
    where = "" if action.rows is None else f" @ {list(action.rows)}"
    stage = "" if action.stage == "both" else f" ({action.stage} pass)"
    value = f"{action.builder}({params})" if params else action.builder
    return f"{action.verb} {action.text}{where} = {value} during {action.schedule_text()}{stage}"


def intervention_changes(old: Member, new: Member) -> str | None:
    """The interventions one member has and the other lacks, in words; None when they are the same
    (where each is written in the spec does not matter)."""
    def keyed(member: Member) -> dict[str, Action]:
        return {json.dumps(a.model_dump(exclude={"span"}), sort_keys=True, default=str): a for a in member.actions}

    a, b = keyed(old), keyed(new)
    if a.keys() == b.keys():
        return None
    gone = " and ".join(_action_text(a[k]) for k in a if k not in b) or "nothing more"
    added = " and ".join(_action_text(b[k]) for k in b if k not in a) or "nothing more"
    return f"interventions: {gone} in the run, {added} now"


def spec_changes(run_dir: Path, record: dict, config: ExperimentConfig, member: Member) -> list[str]:
    """What makes `member` another experiment than the run in `run_dir` (recorded in spec.json and
    config.json), as `name: value in the run, value now`: its settings but a longer train.sequences,
    and its interventions. Empty when the member may resume or continue the run."""
    changes = [f"{k}: {json.dumps(a, default=str)} in the run, {json.dumps(b, default=str)} now"
               for k, (a, b) in _changed_settings(config, member.config).items() if k != GROWABLE]
    actions = intervention_changes(recorded_member(run_dir, record.get("bindings") or {}, config), member)
    return changes + ([actions] if actions else [])


def _claim(run_dir: Path, exp: Experiment, member: Member) -> None:
    """Write the spec beside the run, refusing a directory that holds another experiment's run.

    A different spec text alone is no reason to refuse: the run's own member (its spec.opto resolved
    with its config.json) is compared with this one, and a spec whose only difference is a longer
    `train.sequences` continues the run; any other difference is refused, naming each setting and
    intervention that differs. The record changes only once the run's settings accept the new ones.
    """
    checkpoint.make_dir(run_dir)
    info = run_dir / "spec.json"
    record = {"sha256": exp.sha256, "path": exp.spec.path, "bindings": dict(member.bindings), "member": member.name}
    settings = run_dir / "config.json"
    config = read_json(settings, "run settings", ExperimentConfig.model_validate) if settings.exists() else None
    if info.exists():
        old = read_json(info, "spec record", _spec_record)
        if config is not None and (old["sha256"], old.get("bindings")) != (exp.sha256, record["bindings"]):
            changes = spec_changes(run_dir, old, config, member)
            if changes:
                raise DataError(run_dir, "this run directory holds a run of a different spec",
                                expected=f"the run's own settings and interventions (only {GROWABLE} may grow, "
                                         "to continue the run), or another --out", found="; ".join(changes))
            prepare_dir(run_dir, member.config)
    checkpoint.atomic_write_text(run_dir / "spec.opto", exp.canonical)
    checkpoint.atomic_write_text(info, json.dumps(record, indent=2))


def run_experiment(spec: Path | str, out: Path | None = None, settings: dict[str, object] | None = None,
                   progress: bool | None = None, tensorboard: bool = False) -> list[RunResult]:
    """Train every member of one spec into its run directory (see `run_experiments`)."""
    return run_experiments([spec], out, settings, progress=progress, tensorboard=tensorboard)


def run_experiments(specs: list[Path | str], out: Path | None = None, settings: dict[str, object] | None = None,
                    progress: bool | None = None, tensorboard: bool = False) -> list[RunResult]:
    """Train every member of every spec into its run directory (resuming any that were interrupted).

    Members that share shapes and intervention structure (a sweep over heads, strengths,
    schedules, seeds or learning rates, or several specs that differ only in such values) train
    together as one vmapped program; the rest in turn. With one spec the run goes to `out`
    (default runs/<spec name>); with several, to `out/<spec name>` (default runs/<spec name>).
    With `tensorboard`, every metrics record is also logged to `<run dir>/tensorboard`.
    Launched as several JAX processes (`jax.distributed`), each process trains its share of
    the programs (see docs/distributed.md).
    """
    if tensorboard:
        from .train.tensorboard import writer_class

        writer_class()
    members, plans, dirs = [], [], []
    for spec in specs:
        exp = load_experiment(spec, settings)
        root = out if len(specs) == 1 else (out or Path("runs")) / Path(exp.spec.path or "spec").stem
        spec_dirs = run_dirs(exp, root)
        for member, run_dir in zip(exp.members, spec_dirs):
            if run_dir in dirs:
                raise DataError(run_dir, "two runs would share this run directory", expected="specs with different file names")
            _claim(run_dir, exp, member)
            members.append(member)
            plans.append(plan_for(member))
            dirs.append(run_dir)
    groups: dict[tuple, list[int]] = {}
    for i, (member, plan) in enumerate(zip(members, plans)):
        leaves, structure = jax.tree.flatten(plan)
        key = (sweep_key(member.config).model_dump_json(), structure, tuple(jnp.shape(x) for x in leaves))
        groups.setdefault(key, []).append(i)
    results: dict[int, RunResult] = {}
    for g, idx in enumerate(groups.values()):
        if g % jax.process_count() != jax.process_index():
            continue
        logger = None
        if tensorboard:
            from .train.tensorboard import TensorBoardLogger

            logger = TensorBoardLogger([dirs[i] / "tensorboard" for i in idx])
        try:
            trained = train_sweep([members[i].config for i in idx], [plans[i] for i in idx], [dirs[i] for i in idx],
                                  progress=progress, on_record=logger.log if logger else None)
        finally:
            if logger:
                logger.close()
        results.update(zip(idx, trained))
    return [results[i] for i in range(len(members)) if i in results]
