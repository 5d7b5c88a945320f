"""The Python embedding: compile a spec once, use its overrides or multi-pass forward in your own jitted code.

```python
import optodsl
compiled = optodsl.compile("clamp L1.H2.pattern = prev_token", optodsl.ModelConfig())
logits, acts = compiled.forward(model, batch, optodsl.Context(sequences=jnp.asarray(0)))
```
Any Equinox model that follows the `Intervenable` protocol (`model(batch, overrides) ->
(query logits, activations)`, with each site passed through `overrides.apply(key, value)`)
can be driven by a compiled spec; see docs/embedding.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jax

from .compile.lower import CompiledPlan, overrides
from .config import DataConfig, ExperimentConfig, ModelConfig
from .experiment import Experiment, load_experiment, plan_for
from .model.overrides import Context, Overrides
from .tasks import layout


@dataclass
class Compiled:
    """A compiled spec: its resolved runs and one CompiledPlan (a Forward) per run."""

    experiment: Experiment
    plans: list[CompiledPlan]

    @property
    def forward(self) -> CompiledPlan:
        """The plan of the first (for a spec without sweeps, the only) run."""
        return self.plans[0]

    def overrides(self, model, batch, ctx: Context, records: dict[str, jax.Array] | None = None) -> Overrides:
        """The single-pass overrides of the first run for one batch (pass `records` for a plan's last pass)."""
        plan = self.plans[0]
        stages = ("both",) if records is None else ("both", "final")
        return overrides([t for t in plan.terms if t.stage in stages], model, batch, ctx, records)

    def explain(self) -> list[dict]:
        """The `opto explain --json` records of every run."""
        return [{"run": m.name, **a.explain(layout(m.config).length)} for m in self.experiment.members for a in m.actions]


def compile(source: str | Path, model_config: ModelConfig | ExperimentConfig | None = None,
            data_config: DataConfig | None = None, settings: dict[str, object] | None = None) -> Compiled:
    """Parse, validate and compile a spec (text or a `.opto` path) for a model configuration.

    Raises `SpecError` (render it with `optodsl.errors.render`) for any problem in the spec.
    """
    base = ExperimentConfig()
    if isinstance(model_config, ExperimentConfig):
        base = model_config
    elif model_config is not None:
        base = base.model_copy(update={"model": model_config})
    if data_config is not None:
        base = base.model_copy(update={"data": data_config})
    exp = load_experiment(source, settings, base=base)
    return Compiled(exp, [plan_for(m) for m in exp.members])
