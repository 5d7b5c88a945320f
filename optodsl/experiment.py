"""Specs to runs: load and resolve a spec, compile each member, train it into its run directory.

This is the top of the pipeline (syntax -> semantics -> compile -> train); the command line
and the Python API call it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp

from . import interventions  # noqa: F401  (registers the built-in verbs with semantics)
from .compile.lower import CompiledPlan, compile_member
from .config import ExperimentConfig
from .errors import DataError, SpecError, SpecWarning
from .semantics.plan import Member
from .semantics.spec import resolve_spec
from .syntax import ast, format_spec, load_spec, load_text
from .train import checkpoint
from .train.trainer import RunResult, load_trained, sweep_key, train_sweep

DEFAULT = ExperimentConfig()
"""Settings a spec starts from: the paper's (lr 1e-5, 1,000,000 sequences, evaluation every 5,000
sequences on 1,000 per set, init seed 5) on the built-in synthetic features."""


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


@dataclass
class Experiment:
    """A loaded spec: its syntax tree, canonical text and hash, runs (members) and warnings."""

    spec: ast.Spec
    canonical: str
    sha256: str
    members: list[Member]
    warnings: list[SpecWarning]


def load_experiment(source: str | Path, settings: dict[str, object] | None = None,
                    base: ExperimentConfig = DEFAULT) -> Experiment:
    """Load a spec from a path (or spec text), resolve it with `settings` applied last."""
    if isinstance(source, Path) or (isinstance(source, str) and source.endswith(".opto") and "\n" not in source):
        spec = load_spec(source)
    else:
        spec = load_text(source)
    canonical = format_spec(spec)
    members, warnings = resolve_spec(spec, base, settings or {})
    return Experiment(spec, canonical, hashlib.sha256(canonical.encode()).hexdigest(), members,
                      warnings + graft_warnings(members))


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
            settings = Path(run) / "config.json"
            if settings.exists():
                other = _read_json(settings, "run settings", ExperimentConfig.model_validate)
                differs = architecture_difference(member.config, other)
                if differs:
                    raise SpecError(action.span, f"graft source run '{run}' has a different architecture: "
                                    f"{settings} has {differs[1]}",
                                    hint=f"this spec's run {member.name} has {differs[0]}; graft from a run with the same "
                                         "model settings")
                continue
            out.append(SpecWarning(span=action.span, message=f"graft source run '{run}' does not exist "
                                                           f"(no {Path(run) / 'config.json'})",
                                   hint="train it first with opto run, or fix the path (it is relative to the "
                                        "folder opto run is started in)"))
    return out


def load_graft(run_dir: str, config: ExperimentConfig):
    """The trained model of another run (for `graft`), checked against this experiment's architecture."""
    path = Path(run_dir)
    cfg_path = path / "config.json"
    if not cfg_path.exists():
        raise DataError(path, "graft source is not a run directory",
                        expected="a directory written by `opto run` (config.json, checkpoint.json)")
    other = _read_json(cfg_path, "run settings", ExperimentConfig.model_validate)
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


def flat_settings(config: ExperimentConfig) -> dict[str, object]:
    """Every setting as `section.field` -> value."""
    return {f"{s}.{k}": v for s, fields in config.model_dump().items() for k, v in fields.items()}


def plan_for(member: Member) -> CompiledPlan:
    """Compile a member, loading the checkpoints its grafts read."""
    return compile_member(member, {run: load_graft(run, member.config) for run in member.grafts})


def run_dirs(exp: Experiment, out: Path | None) -> list[Path]:
    """Where each member's run goes: `out` (default runs/<spec name>), with one subfolder per sweep member."""
    root = out or Path("runs") / Path(exp.spec.path or "spec").stem
    if len(exp.members) == 1:
        return [root]
    return [root / m.name for m in exp.members]


def _read_json(path: Path, what: str, check=lambda data: data):
    """One JSON file of a run directory passed through `check`, or a DataError naming it (truncated or edited by hand)."""
    try:
        return check(json.loads(path.read_text()))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(path, f"unreadable {what} (truncated or edited?)", expected=f"the {path.name} `opto run` writes",
                        found=str(exc).splitlines()[0], hint="restore the file, or train into another --out") from exc


def _claim(run_dir: Path, exp: Experiment, member: Member) -> None:
    """Write the spec beside the run, refusing a directory that holds another spec's run."""
    checkpoint.make_dir(run_dir)
    info = run_dir / "spec.json"
    record = {"sha256": exp.sha256, "path": exp.spec.path, "bindings": dict(member.bindings), "member": member.name}
    settings = run_dir / "config.json"
    if settings.exists():
        _read_json(settings, "run settings", ExperimentConfig.model_validate)
    if info.exists():
        old = _read_json(info, "spec record")
        if old.get("sha256") != exp.sha256 or old.get("bindings") != record["bindings"]:
            raise DataError(run_dir, "this run directory holds a run of a different spec",
                            expected=f"spec sha256 {exp.sha256[:12]}", found=f"spec sha256 {str(old.get('sha256'))[:12]}; use another --out")
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
