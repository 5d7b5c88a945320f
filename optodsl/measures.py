"""Progress measures computed from a forward pass's activations at every evaluation, inside jit.

Named in `eval.measures` (e.g. `set eval.measures = ["induction", "prev_token"]`) and written to
`metrics.jsonl` as `<set>/<measure>/L<l>.H<h>` beside the losses.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from .tasks.base import previous_occurrence

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
    """Attention from the query to the correct label token minus the mean to the other label tokens; on a
    token task, the prefix-matching score (Olsson et al. 2022): the mean attention from each position to
    the position after the previous occurrence of its token, over positions whose token occurred before."""
    if "tokens" in batch:
        return _prefix_matching(acts, batch["tokens"], layers)
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


def _prefix_matching(acts, tokens: jax.Array, layers: int) -> dict[str, jax.Array]:
    target = previous_occurrence(tokens)  # (B, T)
    found = (target >= 0).astype(jnp.float32)
    out = {}
    for layer in range(1, layers + 1):
        pattern = acts[f"L{layer}.pattern"]  # (B, H, T, T)
        onto = jnp.take_along_axis(pattern, jnp.maximum(target, 0)[:, None, :, None], axis=-1)[..., 0]  # (B, H, T)
        score = (onto * found[:, None]).sum((0, 2)) / jnp.maximum(found.sum(), 1.0)
        out.update(_per_head("induction", score, layer))
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
