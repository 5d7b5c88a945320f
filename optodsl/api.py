"""The Python embedding: compile a spec once, use its overrides or multi-pass forward in your own jitted code.

```python
import optodsl
compiled = optodsl.compile("clamp L1.H2.pattern = prev_token", optodsl.ModelConfig())
logits, acts = compiled.forward(model, batch, optodsl.Context(sequences=jnp.asarray(0)))
```
A model of one's own that implements the site protocol (`optodsl.model.protocol.Intervenable`:
`sites(layout)` declares its sites, `model(batch, overrides) -> (logits, activations)` passes each
through `overrides.apply(key, value)`) is compiled for with `compile(..., model=mine)`, which
resolves the spec against its sites; see docs/embedding.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jax

from .compile.lower import CompiledPlan, overrides
from .config import DataConfig, ExperimentConfig, ModelConfig
from .model.overrides import Context, Overrides
from .model.protocol import ModelSource
from .pipeline import Experiment, compile_spec, run_dirs
from .semantics.plan import in_pass
from .tasks import layout
from .train.claim import claim_spec
from .train.program import program_groups
from .train.trainer import RunResult, train_sweep


@dataclass
class Compiled:
    """A compiled spec: its resolved runs and one CompiledPlan (a Forward) per run."""

    experiment: Experiment
    plans: list[CompiledPlan]

    @property
    def config(self) -> ExperimentConfig:
        """The resolved settings of the first run (the spec's `set` statements applied): what `train` takes."""
        return self.experiment.members[0].config

    @property
    def forward(self) -> CompiledPlan:
        """The plan of the first (for a spec without sweeps, the only) run."""
        return self.plans[0]

    def overrides(self, model, batch, ctx: Context, records: dict[str, jax.Array] | None = None) -> Overrides:
        """The single-pass overrides of the first run for one batch (pass `records` for a plan's last pass)."""
        plan = self.plans[0]
        return overrides(in_pass(plan.terms, "every" if records is None else "last"), model, batch, ctx, records)

    def train(self, out: str | Path, *, model: ModelSource | None = None, **kwargs) -> list[RunResult]:
        """Train every run of the spec, as `opto run --out OUT` would (one directory, or one per sweep
        member under it), recording the spec beside each run (spec.opto, spec.json) and, with `model`
        (the model of one's own the spec was compiled for), that model (model.json). Keyword arguments
        are `optodsl.train`'s (`measures=`, `progress=`, ...); returns one result per run."""
        exp = self.experiment
        dirs = run_dirs(exp, Path(out))
        for member, run_dir in zip(exp.members, dirs):
            claim_spec(run_dir, exp.sha256, exp.spec.path, exp.canonical, member)
        results: dict[int, RunResult] = {}
        for idx in program_groups(self.plans, [m.config for m in exp.members]):
            trained = train_sweep([exp.members[i].config for i in idx], [self.plans[i] for i in idx], [dirs[i] for i in idx],
                                  model=model, **kwargs)
            results.update(zip(idx, trained))
        return [results[i] for i in range(len(exp.members))]

    def explain(self) -> list[dict]:
        """The `opto explain --json` records of every run."""
        return [{"run": m.name, **a.explain(layout(m.config).length)} for m in self.experiment.members for a in m.actions]


def compile(source: str | Path, model_config: ModelConfig | ExperimentConfig | None = None,
            data_config: DataConfig | None = None, settings: dict[str, object] | None = None, *,
            model: ModelSource | None = None) -> Compiled:
    """Parse, validate and compile a spec (text or a `.opto` path) for a model configuration.

    With `model` (a model of one's own: an instance, or a factory `key -> model`), selectors resolve
    against its declared sites instead of the built-in transformer's, and the settings (an
    `ExperimentConfig`) give the task it runs on. Raises `SpecError` (render it with
    `optodsl.errors.render`) for any problem in the spec.
    """
    base = ExperimentConfig()
    if isinstance(model_config, ExperimentConfig):
        base = model_config
    elif model_config is not None:
        base = base.model_copy(update={"model": model_config})
    if data_config is not None:
        base = base.model_copy(update={"data": data_config})
    compiled = compile_spec(source, base, settings, model=model)
    return Compiled(compiled.experiment, compiled.plans)
