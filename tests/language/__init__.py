"""Behaviour tests of the .opto language: verbs, gradients, semantic errors, fuzzing, CLI.

Shared helpers: compile a spec against the conftest's small data config and run it on real
sequences. Layers count from 1 and heads from 0 (as in the paper); position 0..4 = e1 l1 e2 l2 q.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from optodsl.compile.lower import compile_member
from optodsl.model import Context
from optodsl.semantics.spec import resolve_spec
from optodsl.syntax import load_text

T = 5
QUERY = 4
LABELS = (1, 3)
EXEMPLARS = (0, 2, 4)


def members_of(text: str, config):
    members, _ = resolve_spec(load_text(text, "test.opto"), config)
    return members


def plan_of(text: str, config, index: int = 0):
    return compile_member(members_of(text, config)[index])


def run(text: str, config, model, batch, sequences: int = 0, training: bool = True):
    """(query logits, activations) of `text`'s first member on `batch`."""
    plan = plan_of(text, config)
    return plan(model, batch, Context(sequences=jnp.asarray(sequences), training=training))


def plain(model, batch):
    """The unmodified forward."""
    return model(batch)


def a(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def prev_token_pattern(s: float, t: int = T) -> np.ndarray:
    """The paper's definition written out: row i has s on i-1 and 1-s on i; row 0 on itself."""
    p = np.zeros((t, t))
    p[0, 0] = 1.0
    for i in range(1, t):
        p[i, i - 1] = s
        p[i, i] += 1 - s
    return p
