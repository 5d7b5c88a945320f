"""A trained run read back from its directory: settings, model, how far it trained, and the
member of its spec it trained (its own interventions)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import rundir
from ..config import ExperimentConfig, flat_settings, read_run_config, settings_between
from ..semantics.settings import SPEC_RELATIVE
from ..errors import DataError
from ..pipeline import Experiment, check_spec, run_dirs
from ..model.protocol import Intervenable, ModelSource, SiteTable, declared, layer_count
from ..model.transformer import Transformer
from ..semantics.plan import Member
from ..tasks import layout
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
    model: Intervenable
    sequences: int
    spec: str | None
    member: Member | None = None
    source: ModelSource | None = None
    """The model of one's own this run trained (its factory or an instance), None for the built-in."""

    @property
    def sites(self) -> SiteTable:
        """The trained network's site table for its task's sequences (built-in or one's own)."""
        return self.model.sites(layout(self.config))

    @property
    def layers(self) -> int:
        return layer_count(self.sites)

    @property
    def heads(self) -> int:
        """Heads per layer: the leading axis of the network's head sites."""
        return next((site.shape[0] for site in self.sites.values() if site.per_head), 0)

    @property
    def built_in(self) -> bool:
        """Whether the network is the built-in transformer (whose weights some analyses read)."""
        return isinstance(self.model, Transformer)

    def declaration(self):
        """The site declaration specs resolve against: the model's own, or None for the built-in."""
        return None if self.source is None else declared(self.source).sites


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


def run_member(run_dir: Path, config: ExperimentConfig, sites=None) -> Member | None:
    """The member of the run's own spec.opto that trained in `run_dir`, resolved with the run's
    settings (config.json, `--set` overrides included) against `sites` (a model of one's own's
    declaration; the built-in transformer's by default); None when the run has no spec.opto."""
    text = run_dir / rundir.SPEC_TEXT
    if not text.is_file():
        return None
    # the files the run read, as its config.json names them: spec.opto is a copy, so a path it gives
    # relative to the spec it was copied from would be read beside the copy
    files = {key: value for key, value in flat_settings(config).items() if key in SPEC_RELATIVE and value}
    member = member_of(check_spec(text, config, files, sites=sites), run_dir)
    if member.config != config:
        member = member_of(check_spec(text, config, settings_between(member.config, config), sites=sites), run_dir)
    if member.config != config:
        raise DataError(text, "the spec does not resolve to the run's settings", expected="the config.json beside it",
                        found="settings " + ", ".join(settings_between(member.config, config)))
    return member


def load_run(run_dir: str | Path, step: int | None = None, model: ModelSource | None = None) -> TrainedRun:
    """Load the model a run directory checkpointed (its latest, or the one at `step`); a run of a
    model of one's own (its model.json) needs that model (`model=`, its factory or an instance)."""
    path = Path(run_dir)
    cfg_path = path / rundir.CONFIG
    if not cfg_path.exists():
        raise DataError(path, "not a run directory", expected="a directory written by `opto run` (config.json, checkpoint.json, ckpt-*.npz)",
                        found="no config.json" if path.is_dir() else "no such directory")
    config = read_run_config(path)
    if checkpoint.read_meta(path) is None:
        raise DataError(path, "the run has no checkpoint yet", expected="checkpoint.json and ckpt-*.npz (train it with `opto run`)")
    own = path / rundir.MODEL
    if own.is_file() and model is None:
        name = rundir.read_json(own, "model description", rundir.json_object).get("class", "?")
        raise DataError(own, f"this run trained a model of one's own ({name}), which only its Python code can build",
                        expected="the analysis from Python: analyze(load_run(RUN, model=<its factory or instance>)) "
                                 "(docs/embedding.md)")
    if model is not None and not own.is_file():
        raise DataError(path, "this run trained the built-in transformer, not a model of one's own",
                        expected="load_run(RUN) without model=", found="no model.json")
    trained, sequences = load_trained(path, config, step, model=model)
    record = rundir.spec_record(path)
    sites = declared(model).sites if model is not None else None
    return TrainedRun(path, config, trained, sequences, record.get("path") if record else None,
                      run_member(path, config, sites), model)
