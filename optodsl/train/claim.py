"""Claiming a run directory: whether it is this run's (start it, resume it, or continue it to a
longer `train.sequences`) or another experiment's (refused, naming what differs).

Two questions decide it, both here: the settings (`claim`, asked by the trainer of every run,
written from Python or by `opto run`) and, for a run of a spec, the spec's run (`claim_spec`,
asked by `opto run` before anything trains, so a refused directory costs no training).
"""

from __future__ import annotations

import json
from pathlib import Path

from .. import rundir
from ..config import ExperimentConfig, flat_settings, read_run_config
from ..errors import DataError, SpecError
from ..files import atomic_write_text, make_dir
from ..semantics.plan import Action, Member
from ..semantics.spec import resolve_spec
from ..syntax import load_spec
from . import checkpoint

GROWABLE = "train.sequences"
"""The one setting a finished or interrupted run may change: it continues to the new length."""


def setting_changes(old: dict, new: dict, prefix: str = "") -> dict[str, tuple]:
    """The dotted settings whose values differ between two config dicts: {name: (old, new)}."""
    out: dict[str, tuple] = {}
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out.update(setting_changes(a, b, f"{prefix}{key}."))
        elif a != b:
            out[f"{prefix}{key}"] = (a, b)
    return out


def claim(run_path: Path, config: ExperimentConfig, leave_out: tuple[str, ...] = (), model: dict | None = None) -> None:
    """Create or reopen a run directory for `config`, writing its config.json; refuse settings that
    differ from the run's, naming them.

    Only `train.sequences` may change, and only to at least what the run has checkpointed
    (a schedule whose shape depends on the length, cosine, may not change at all). config.json
    leaves out the sections in `leave_out` (those that did not apply: another task's, and `model`
    for a model of one's own, whose description `model` is written to model.json instead)."""
    run_path.mkdir(parents=True, exist_ok=True)
    config_json = json.dumps(config.model_dump(mode="json", exclude=set(leave_out)), indent=2)
    existing = run_path / rundir.CONFIG
    _claim_model(run_path, model, existing.exists())
    if existing.exists():
        try:
            old = json.loads(existing.read_text())
        except ValueError as exc:
            raise DataError(existing, "unreadable run settings", expected="the config.json `opto run` writes",
                            found=str(exc)) from exc
        _refuse_another_task(existing, str((old.get("task") or {}).get("name", "fewshot")), config.task.name)
        # compared in full, so a config.json written with sections that did not apply still resumes
        diffs = setting_changes(read_run_config(run_path).model_dump(mode="json"), config.model_dump(mode="json"))
        others = {k: v for k, v in diffs.items() if k != GROWABLE}
        if others:
            shown = "; ".join(f"{k}: {json.dumps(a)} in the run, {json.dumps(b)} now" for k, (a, b) in others.items())
            raise DataError(existing, "this run directory holds a different experiment",
                            expected=f"the same settings to resume (only {GROWABLE} may change, to continue the run), "
                                     "or a new --out directory", found=shown)
        if diffs:
            meta = checkpoint.read_meta(run_path)
            done = int(meta.get("sequences", meta["step"] * config.train.batch)) if meta else 0
            if config.train.sequences < done:
                raise DataError(existing, f"this run has already trained {done:,} sequences",
                                expected=f"{GROWABLE} of at least {done:,} to continue it", found=f"{config.train.sequences:,}")
            if config.train.schedule == "cosine":
                raise DataError(existing, f"a cosine schedule's shape depends on {GROWABLE}, so this run cannot be continued",
                                expected=f"the run's own {GROWABLE} ({old['train']['sequences']:,}), or a new --out directory")
    atomic_write_text(existing, config_json)


def _claim_model(run_path: Path, model: dict | None, resuming: bool) -> None:
    """Write a model of one's own's description (model.json), refusing a run directory that holds a
    run of another network: another class or site table, or the built-in transformer."""
    path = run_path / rundir.MODEL
    old = rundir.read_json(path, "model description", rundir.json_object) if path.is_file() else None
    def named(desc: dict | None) -> str:
        return "the built-in transformer" if desc is None else f"the model {desc.get('class')}"
    if resuming and (old is None) != (model is None) or (old is not None and model is not None and any(
            old.get(k) != model.get(k) for k in ("class", "sites", "parameters"))):
        raise DataError(path if old is not None else run_path / rundir.CONFIG,
                        f"this run directory holds a run of {named(old)}, not of {named(model)}",
                        expected="the same network to resume (its class, sites and parameter shapes), or another --out",
                        found=f"{named(old)} in the run")
    if model is not None:
        atomic_write_text(path, json.dumps(model, indent=2))


def claim_spec(run_dir: Path, sha256: str, spec_path: str | None, canonical: str, member: Member) -> None:
    """Write a spec's run beside its run (spec.opto, spec.json), refusing a directory that holds
    another experiment's run.

    A different spec text alone is no reason to refuse: the run's own member (its spec.opto resolved
    with its config.json) is compared with this one, and a spec whose only difference is a longer
    `train.sequences` continues the run; any other difference is refused, naming each setting and
    intervention that differs. The record changes only once the run's settings accept the new ones.
    """
    make_dir(run_dir)
    record = {"sha256": sha256, "path": spec_path, "bindings": dict(member.bindings), "member": member.name}
    config = None
    if rundir.is_run_dir(run_dir):
        config = read_run_config(run_dir)
    old = rundir.spec_record(run_dir)
    if old is not None:
        if config is not None and (old.get("sha256"), old.get("bindings")) != (sha256, record["bindings"]):
            _refuse_another_task(run_dir, config.task.name, member.config.task.name)
            changes = spec_changes(run_dir, old, config, member)
            if changes:
                raise DataError(run_dir, "this run directory holds a run of a different spec",
                                expected=f"the run's own settings and interventions (only {GROWABLE} may grow, "
                                         "to continue the run), or another --out", found="; ".join(changes))
            claim(run_dir, member.config)
    atomic_write_text(run_dir / rundir.SPEC_TEXT, canonical)
    atomic_write_text(run_dir / rundir.SPEC_RECORD, json.dumps(record, indent=2))


def _refuse_another_task(where: Path, in_run: str, now: str) -> None:
    """A run of one task is never continued as another's: refuse, naming both tasks (their settings
    differ in kind, so listing them one by one would say little)."""
    if in_run != now:
        raise DataError(where, f"this run directory holds a run of the {in_run} task, not the {now} task",
                        expected=f"a run of the {now} task to resume, or another --out", found=f"task.name = \"{in_run}\"")


def _changed_settings(old: ExperimentConfig, new: ExperimentConfig) -> dict[str, tuple]:
    """The `section.field` settings whose values differ: {name: (old, new)}."""
    a, b = flat_settings(old), flat_settings(new)
    return {k: (a.get(k), b.get(k)) for k in {**a, **b} if a.get(k) != b.get(k)}


def recorded_member(run_dir: Path, bindings: dict, config: ExperimentConfig) -> Member:
    """The member that trained in `run_dir`: its spec.opto resolved with its settings (config.json,
    `--set` overrides included), the one whose sweep values spec.json records."""
    text = run_dir / rundir.SPEC_TEXT

    def pick(cli: dict) -> Member:
        members = resolve_spec(load_spec(text), config, cli)[0]
        found = [m for m in members if len(members) == 1 or dict(m.bindings) == bindings]
        if not found:
            raise DataError(run_dir / rundir.SPEC_RECORD, "the sweep values it records are no run of spec.opto",
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
