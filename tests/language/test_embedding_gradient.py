"""The compiled plan rebuilds embeddings through the model's own `embed`, so a fixed (sinusoidal)
position table stays fixed under a clamp that rebuilds them (`prev_token_input`), while a
learned one still trains."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from optodsl.config import ExperimentConfig, ModelConfig, TrainConfig
from optodsl.model import Context
from optodsl.model.transformer import init_model
from optodsl.train.trainer import loss_and_accuracy, make_optimizer

from . import plan_of

SPEC = "clamp L1.resid_out = prev_token_input"


def _trained_positions(small_data, task, positions: str) -> tuple[np.ndarray, np.ndarray]:
    """The position table before and after three Adam steps under SPEC."""
    config = ExperimentConfig(model=ModelConfig(positions=positions), data=small_data, train=TrainConfig(lr=1e-2))
    plan = plan_of(SPEC, config)
    model = init_model(config.model, config.data, jax.random.PRNGKey(0))
    optimizer = make_optimizer(config)
    opt_state = optimizer.init(eqx.filter(model, eqx.is_array))

    @eqx.filter_jit
    def step(model, opt_state, i):
        batch = task.sample(jax.random.PRNGKey(i), "train", 16)

        def loss(m):
            logits, _ = plan(m, batch, Context(sequences=jnp.asarray(0)))
            return loss_and_accuracy(logits, batch["labels"][:, -1])[0]

        grads = eqx.filter_grad(loss)(model)
        updates, opt_state = optimizer.update(grads, opt_state, eqx.filter(model, eqx.is_array))
        return eqx.apply_updates(model, updates), opt_state

    before = np.asarray(model.pos)
    for i in range(3):
        model, opt_state = step(model, opt_state, i)
    return before, np.asarray(model.pos)


def test_sinusoidal_table_is_unchanged_by_training_under_prev_token_input(small_data, task):
    before, after = _trained_positions(small_data, task, "sinusoidal")
    np.testing.assert_array_equal(after, before)


def test_learned_table_still_trains_under_prev_token_input(small_data, task):
    before, after = _trained_positions(small_data, task, "learned")
    assert not np.allclose(after, before)
