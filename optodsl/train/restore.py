"""A network from nothing or from a run directory: the built-in model, the optimiser whose state a
checkpoint holds beside it, and `load_trained`. The trainer builds on these; `compile_spec` (graft
sources), `trace` and `analysis` read checkpoints through them without importing the trainer."""

from __future__ import annotations

from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from ..config import ExperimentConfig
from ..model.protocol import Intervenable, ModelSource, factory
from ..model.transformer import Transformer, for_experiment
from ..tasks import layout
from . import checkpoint


def make_optimizer(cfg: ExperimentConfig, lr=None) -> optax.GradientTransformation:
    """Adam (or AdamW/SGD) times the schedule's shape times a learning rate kept in the state.

    The learning rate lives in the optimiser state (`inject_hyperparams`), so sweep members with
    different learning rates share one program; `lr` (default `train.lr`) is the value `init`
    stores, and may be a traced array.
    """
    t = cfg.train
    parts = []
    if t.optimizer in ("adam", "adamw"):
        parts.append(optax.scale_by_adam())
    if t.optimizer == "adamw":
        parts.append(optax.add_decayed_weights(t.weight_decay))
    if t.schedule == "cosine":
        parts.append(optax.scale_by_schedule(optax.cosine_decay_schedule(1.0, max(t.steps, 1))))
    elif t.schedule == "linear_warmup":
        parts.append(optax.scale_by_schedule(optax.linear_schedule(0.0, 1.0, max(t.warmup // t.batch, 1))))
    parts.append(optax.inject_hyperparams(optax.scale)(step_size=-(t.lr if lr is None else lr)))
    return optax.chain(*parts)


def new_model(config: ExperimentConfig, key: jax.Array) -> Transformer:
    """The built-in model for the configured task: features and labels in, or tokens in for a token task."""
    return for_experiment(config, key)


def load_trained(run_dir: str | Path, config: ExperimentConfig, step: int | None = None,
                 model: ModelSource | None = None) -> tuple[Intervenable, int]:
    """The model a run directory checkpointed (its latest, or the kept one at `step`) and the
    training sequences it had seen; `config` is the run's resolved settings, and `model` the model
    of one's own it trained (an instance or factory of the same architecture), if not the built-in."""
    key = jax.random.PRNGKey(0)
    template = new_model(config, key) if model is None else factory(model)(key)
    opt_state = make_optimizer(config).init(eqx.filter(template, eqx.is_array))
    (trained, _, at_step), meta = checkpoint.load(Path(run_dir), (template, opt_state, jnp.zeros((), jnp.int32)), step=step)
    return trained, int(meta.get("sequences", int(at_step) * config.train.batch))
