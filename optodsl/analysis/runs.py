"""A trained run read back from its directory: settings, model, how far it trained, and the
member of its spec it trained (its own interventions)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import rundir
from ..config import ExperimentConfig, read_run_config, settings_between
from ..errors import DataError
from ..pipeline import Experiment, check_spec, run_dirs
from ..model.transformer import Transformer
from ..semantics.plan import Member
from ..train import checkpoint
from ..train.restore import load_trained


@dataclass
class TrainedRun:
    """A run directory's resolved settings, its latest (or chosen) checkpointed model and spec.

    `member` is the run of its spec.opto that trained here (its interventions, as its evaluations
    applied them), or None for a run written without a spec (from Python), whose interventions
    are unknown."""

    run_dir: Path
    config: ExperimentConfig
    model: Transformer
    sequences: int
    spec: str | None
    member: Member | None = None


def _bindings_text(bindings) -> str:
    return ", ".join(f"${k}={v}" for k, v in dict(bindings).items())


def member_of(exp: Experiment, run_dir: Path) -> Member:
    """The member of `exp` whose run `run_dir` holds: the only one, or the one whose sweep values its
    spec.json records. Refuses (listing every member's directory) when that cannot be told."""
    if len(exp.members) == 1:
        return exp.members[0]
    record = rundir.spec_record(run_dir)
    if record is not None:
        for m in exp.members:
            if dict(m.bindings) == record.get("bindings"):
                return m
    root = run_dir.parent if rundir.is_run_dir(run_dir) else run_dir
    listing = "\n    ".join(f"{d}  ({_bindings_text(m.bindings)})" + ("" if rundir.is_run_dir(d) else "  [no run there]")
                               for m, d in zip(exp.members, run_dirs(exp, root)))
    found = ("no spec.json: not one run's directory (a sweep's folder?)" if record is None
             else f"spec.json records {_bindings_text(record.get('bindings') or {}) or 'no sweep values'}, "
                  f"which is no run of {exp.spec.path or 'this spec'}")
    raise DataError(run_dir, f"which run of the sweep? {exp.spec.path or 'the spec'} has {len(exp.members)} runs",
                    expected="the directory of one of them:\n    " + listing, found=found)


def run_member(run_dir: Path, config: ExperimentConfig) -> Member | None:
    """The member of the run's own spec.opto that trained in `run_dir`, resolved with the run's
    settings (config.json, `--set` overrides included); None when the run has no spec.opto."""
    text = run_dir / rundir.SPEC_TEXT
    if not text.is_file():
        return None
    member = member_of(check_spec(text, config), run_dir)
    if member.config != config:
        member = member_of(check_spec(text, config, settings_between(member.config, config)), run_dir)
    if member.config != config:
        raise DataError(text, "the spec does not resolve to the run's settings", expected="the config.json beside it",
                        found="settings " + ", ".join(settings_between(member.config, config)))
    return member


def load_run(run_dir: str | Path, step: int | None = None) -> TrainedRun:
    """Load the model a run directory checkpointed (its latest, or the one at `step`)."""
    path = Path(run_dir)
    cfg_path = path / rundir.CONFIG
    if not cfg_path.exists():
        raise DataError(path, "not a run directory", expected="a directory written by `opto run` (config.json, checkpoint.json, ckpt-*.npz)",
                        found="no config.json" if path.is_dir() else "no such directory")
    config = read_run_config(path)
    if checkpoint.read_meta(path) is None:
        raise DataError(path, "the run has no checkpoint yet", expected="checkpoint.json and ckpt-*.npz (train it with `opto run`)")
    model, sequences = load_trained(path, config, step)
    record = rundir.spec_record(path)
    return TrainedRun(path, config, model, sequences, record.get("path") if record else None, run_member(path, config))
