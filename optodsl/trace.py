"""`opto trace`: one forward pass of a spec's interventions on one sequence, as plain data."""

from __future__ import annotations

from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .data.task import make_task
from .compile.lower import Probed
from .experiment import plan_for
from .model.overrides import Context
from .model.transformer import init_model
from .semantics.plan import Member
from .train.trainer import load_trained


def trace_spec(member: Member, sites: list[tuple[str, str, int | None]], run_dir: Path | None, seed: int,
               pass_name: str = "last") -> dict:
    """Tokens of one sampled training sequence and each requested site's values under the plan, in
    pass `pass_name` ("first" or "last", `PASS_NAMES`; a one-pass plan's only pass is both)."""
    config = member.config
    model = init_model(config.model, config.data, jax.random.PRNGKey(config.seed.init))
    sequences = 0
    if run_dir is not None:
        model, sequences = load_trained(run_dir, config)
    task = make_task(config.data)
    batch = task.sample(jax.random.PRNGKey(seed), "train", 1)
    plan = plan_for(member)
    plan = plan.plan if isinstance(plan, Probed) else plan
    run = eqx.filter_jit(lambda m, b, n: plan.each_pass(m, b, Context(sequences=n, training=False)))
    logits, passes = run(model, batch, jnp.asarray(sequences))
    acts = passes[pass_name]
    cls, lab = np.asarray(batch["classes"][0]), np.asarray(batch["labels"][0])
    toks = []
    for i in range(config.data.pairs):
        toks += [f"e{i + 1}(class {cls[i]})", f"l{i + 1}(label {lab[i]})"]
    toks.append(f"q(class {cls[-1]}, target label {lab[-1]})")
    out = {}
    for label, key, head in sites:
        value = np.asarray(acts[key][0])
        out[label] = (value[head] if head is not None else value).tolist()
    return {"tokens": toks, "prediction": int(jnp.argmax(logits[0])), "target": int(lab[-1]), "sequences": sequences,
            "pass": pass_name, "passes": plan.passes, "sites": out}
