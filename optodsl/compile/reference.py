"""The fixed reference set that `ablate ... = mean` averages over with `semantics.mean_reference = N`.

By default a mean ablation takes the mean of the batch in hand, so its value differs between a
training step (32 sequences), an evaluation (1,000 sequences of one evaluation set) and a trace
(one sequence). With `mean_reference = N` the mean is taken over N sequences of the task's
training distribution, drawn once from `seed.eval` (apart from the evaluation sets' own draws)
from the configured feature source, and the same for every step, evaluation and trace; the
network is still the current one, so the mean follows training.
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import numpy as np

from ..config import EvalConfig, ExperimentConfig, SeedConfig
from ..tasks import build_task

FOLD = 1 << 20
"""Folded into `PRNGKey(seed.eval)` to draw the reference set; the evaluation sets fold in 0, 1, ..."""


def reference_batch(config: ExperimentConfig) -> dict[str, np.ndarray] | None:
    """The reference sequences of `config` (host arrays), or None when means use the current batch."""
    if config.semantics.mean_reference == 0:
        return None
    return _sample(config.model_copy(update={"model": ExperimentConfig().model, "train": ExperimentConfig().train,
                                             "eval": EvalConfig(), "seed": SeedConfig(eval=config.seed.eval)}))


@functools.lru_cache(maxsize=8)
def _sample(config: ExperimentConfig) -> dict[str, np.ndarray]:
    task = build_task(config)
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed.eval), FOLD)
    sample = eqx.filter_jit(lambda t, k: t.sample(k, t.sets[0], config.semantics.mean_reference))
    return jax.device_get(sample(task, key))
