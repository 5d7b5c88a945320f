"""Specs to runs: load and resolve a spec, compile each member, train it into its run directory.

This is the top of the pipeline (syntax -> semantics -> compile -> train); the command line
and the Python API call it.
"""

from __future__ import annotations

from pathlib import Path

import jax

from .config import ExperimentConfig
from .errors import DataError
from .pipeline import DEFAULT, Experiment, check_spec, plan_for, run_dirs
from .train.claim import claim_spec
from .train.program import program_groups, programs_text
from .train.progress import runs_label
from .train.trainer import RunResult, train_sweep


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
            claim_spec(run_dir, exp.sha256, exp.spec.path, exp.canonical, member)
            members.append(member)
            plans.append(plan_for(member))
            dirs.append(run_dir)
    groups = program_groups(plans, [m.config for m in members])
    if progress is not False:
        for line in programs_text([[dirs[i].name for i in idx] for idx in groups]):
            print(line, flush=True)
    results: dict[int, RunResult] = {}
    for g, idx in enumerate(groups):
        if g % jax.process_count() != jax.process_index():
            continue
        logger = None
        if tensorboard:
            from .train.tensorboard import TensorBoardLogger

            logger = TensorBoardLogger([dirs[i] / "tensorboard" for i in idx])
        try:
            trained = train_sweep([members[i].config for i in idx], [plans[i] for i in idx], [dirs[i] for i in idx],
                                  progress=progress, on_record=logger.log if logger else None,
                                  label=runs_label([dirs[i].name for i in idx], g, len(groups)) if len(members) > 1 else None)
        finally:
            if logger:
                logger.close()
        results.update(zip(idx, trained))
    return [results[i] for i in range(len(members)) if i in results]
