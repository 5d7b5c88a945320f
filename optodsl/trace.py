"""`opto trace`: one forward pass of a spec's interventions on one sequence, as plain data."""

from __future__ import annotations

from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .compile.lower import Probed
from .model.overrides import Context
from .model.protocol import ModelSource, factory
from .pipeline import member_plan as member_plan, plan_for
from .semantics.plan import Member
from .tasks import build_task
from .tasks.records import TRAIN
from .train.restore import load_trained, new_model


def trace_spec(member: Member, sites: list[tuple[str, str, int | None]], run_dir: Path | None, seed: int,
               pass_name: str = "last", model: ModelSource | None = None) -> dict:
    """Tokens of one sampled training sequence and each requested site's values under the plan, in
    pass `pass_name` ("first" or "last", `PASS_NAMES`; a one-pass plan's only pass is both).

    `model` is a model of one's own (an instance, or a factory `key -> model`) that `member` was
    resolved against (`optodsl.compile(..., model=...)`); without it, the built-in transformer."""
    config = member.config
    init = jax.random.PRNGKey(config.seed.init)
    network = new_model(config, init) if model is None else factory(model)(init)
    sequences = 0
    if run_dir is not None:
        network, sequences = load_trained(run_dir, config, model=model)
    task = build_task(config)
    batch = task.sample(jax.random.PRNGKey(seed), TRAIN, 1)
    plan = plan_for(member) if model is None else member_plan(member, model)
    plan = plan.plan if isinstance(plan, Probed) else plan
    run = eqx.filter_jit(lambda m, b, n: plan.each_pass(m, b, Context(sequences=n, training=False)))
    logits, passes = run(network, batch, jnp.asarray(sequences))
    acts = passes[pass_name]
    out = {}
    for label, key, head in sites:
        value = np.asarray(acts[key][0])
        out[label] = (value[head] if head is not None else value).tolist()
    return {"task": config.task.name, "tokens": task.words(batch), "input": task.inputs(batch),
            **task.readout(logits, batch), "sequences": sequences, "pass": pass_name, "passes": plan.passes, "sites": out}
