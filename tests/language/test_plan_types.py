"""Compiled plans are `Plan`s that declare what they carry: the trainer asks a plan for its
probes instead of probing attributes, and every forward it runs is a Plan."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from optodsl.compile.lower import CompiledPlan
from optodsl.model import Context, Overrides, Plan, as_forward

from . import a, plan_of, plain

PROBE = "clamp L1.H2.pattern = prev_token"


def test_a_plan_with_perfected_lines_declares_them_as_probes(base_config):
    plan = plan_of(f'ablate L2.H1\nset eval.perfected = ["{PROBE}"]', base_config)
    assert isinstance(plan, Plan)
    assert list(plan.probes) == [f"perfected[{PROBE}]"]
    assert all(isinstance(p, CompiledPlan) and p.probes == {} for p in plan.probes.values())


def test_a_plan_without_them_declares_none_and_runs_as_itself(base_config):
    plan = plan_of("ablate L2.H1", base_config)
    assert isinstance(plan, Plan) and plan.probes == {}
    assert as_forward(plan) is plan


def test_functions_and_none_become_plans_with_no_probes(model, batch):
    ctx = Context(sequences=jnp.asarray(0))

    def zero_embed(model, batch):
        return Overrides({"embed": jnp.zeros(())}, {"embed": jnp.asarray(True)})

    def zero_embed_late(model, batch, ctx):
        return Overrides({"embed": jnp.zeros(())}, {"embed": ctx.sequences >= 100})

    for forward in (None, zero_embed, zero_embed_late):
        assert isinstance(as_forward(forward), Plan) and as_forward(forward).probes == {}
    np.testing.assert_array_equal(a(as_forward(None)(model, batch, ctx)[0]), a(plain(model, batch)[0]))
    assert (a(as_forward(zero_embed)(model, batch, ctx)[1]["embed"]) == 0).all()
    assert (a(as_forward(zero_embed_late)(model, batch, ctx)[1]["embed"]) != 0).any()
