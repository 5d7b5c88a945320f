"""Progress measures computed from a forward pass's activations at every evaluation, inside jit.

Named in `eval.measures` (e.g. `set eval.measures = ["induction", "prev_token"]`) and written to
`metrics.jsonl` as `<set>/<measure>/L<l>.H<h>` beside the losses.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

Measure = Callable[[dict[str, jax.Array], dict[str, jax.Array], int], dict[str, jax.Array]]
MEASURES: dict[str, Measure] = {}


def measure(name: str):
    def wrap(fn: Measure) -> Measure:
        MEASURES[name] = fn
        return fn
    return wrap


def _per_head(name: str, values: jax.Array, layer: int) -> dict[str, jax.Array]:
    return {f"{name}/L{layer}.H{h}": values[h] for h in range(values.shape[0])}


@measure("induction")
def induction_strength(acts, batch, layers: int) -> dict[str, jax.Array]:
    """Attention from the query to the correct label token minus the mean to the other label tokens."""
    cls = batch["classes"]
    correct = (cls[:, :-1] == cls[:, -1:]).astype(jnp.float32)  # (B, P)
    n_other = jnp.maximum(correct.shape[1] - 1, 1)
    out = {}
    for layer in range(1, layers + 1):
        pattern = acts[f"L{layer}.pattern"]  # (B, H, T, T)
        t = pattern.shape[-1]
        to_labels = pattern[:, :, t - 1, 1 : t - 1 : 2]  # (B, H, P)
        weight = correct[:, None] - (1 - correct[:, None]) / n_other
        out.update(_per_head("induction", (to_labels * weight).sum(-1).mean(0), layer))
    return out


@measure("prev_token")
def prev_token_attention(acts, batch, layers: int) -> dict[str, jax.Array]:
    """Mean attention from each position i >= 1 to position i-1."""
    out = {}
    for layer in range(1, layers + 1):
        pattern = acts[f"L{layer}.pattern"]
        t = pattern.shape[-1]
        prev = pattern[:, :, jnp.arange(1, t), jnp.arange(t - 1)]  # (B, H, T-1)
        out.update(_per_head("prev_token", prev.mean((0, 2)), layer))
    return out


def measures_fn(names: tuple[str, ...], layers: int):
    """The trainer's measures hook for these names, or None when there are none."""
    if not names:
        return None

    def fn(acts, batch, logits):
        out = {}
        for name in names:
            out.update(MEASURES[name](acts, batch, layers))
        return out
    return fn
