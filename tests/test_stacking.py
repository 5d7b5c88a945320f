"""Compiled specs are data: members of a sweep stack into one vmapped program with the same outputs."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from optodsl.compile.lower import compile_member
from optodsl.config import DataConfig, ExperimentConfig
from optodsl.tasks.fewshot import make_task
from optodsl.model import Context, init_model
from optodsl.semantics.spec import resolve_spec
from optodsl.syntax import load_text

SPEC = """sweep h in 0..3
ablate L2.* except H$h
clamp L1.H$h.pattern = prev_token(strength=0.9) during 0..50k
"""


def test_sweep_members_differ_only_in_arrays_and_vmap_as_one_program():
    cfg = ExperimentConfig(data=DataConfig(total_classes=200))
    members, _ = resolve_spec(load_text(SPEC, "s.opto"), cfg)
    plans = [compile_member(m) for m in members]
    arrays = [eqx.filter(p, eqx.is_array) for p in plans]
    statics = [eqx.partition(p, eqx.is_array)[1] for p in plans]
    assert all(jax.tree.structure(s) == jax.tree.structure(statics[0]) for s in statics)
    assert all(s == statics[0] for s in statics)
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *arrays)
    model = init_model(cfg.model, cfg.data, jax.random.PRNGKey(0))
    batch = make_task(cfg.data).sample(jax.random.PRNGKey(1), "train", 4)

    def run(plan_arrays, seqs):
        plan = eqx.combine(plan_arrays, statics[0])
        return plan(model, batch, Context(sequences=seqs))[0]

    for seqs in (0, 60_000):
        together = jax.jit(jax.vmap(run, in_axes=(0, None)))(stacked, jnp.asarray(seqs))
        for i, plan in enumerate(plans):
            alone = plan(model, batch, Context(sequences=jnp.asarray(seqs)))[0]
            np.testing.assert_allclose(together[i], alone, rtol=1e-5, atol=1e-5)
