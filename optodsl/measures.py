"""Progress measures computed from a forward pass's activations at every evaluation, inside jit.

Named in `eval.measures` (e.g. `set eval.measures = ["induction", "prev_token"]`) and written to
`metrics.jsonl` as `<set>/<measure>/L<l>.H<h>` beside the losses.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from .tasks.base import induction_targets
from .tasks.fewshot import correct_labels

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
    token task, the prefix-matching score (Olsson et al. 2022): the attention from each position to the
    positions after earlier occurrences of its token (all of them: a segment repeated three times, or a
    Markov chain's statistical induction head, spreads over several), averaged over positions whose token
    occurred before. A perfect `induction` pattern of strength s scores s."""
    if "tokens" in batch:
        return _prefix_matching(acts, batch["tokens"], layers)
    correct = correct_labels(batch["classes"])  # (B, P)
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
    targets = induction_targets(tokens).astype(jnp.float32)  # (B, T, S)
    found = targets.max(-1)  # (B, T): t's token occurred before
    out = {}
    for layer in range(1, layers + 1):
        pattern = acts[f"L{layer}.pattern"]  # (B, H, T, S)
        onto = (pattern * targets[:, None]).sum(-1)  # (B, H, T)
        score = (onto * found[:, None]).sum((0, 2)) / jnp.maximum(found.sum(), 1.0)
        out.update(_per_head("induction", score, layer))
    return out


def previous_token_attention(pattern: jax.Array) -> jax.Array:
    """Per head, the mean attention from each position i >= 1 to position i-1: (B, H, T, T) -> (H,)."""
    t = pattern.shape[-1]
    return pattern[:, :, jnp.arange(1, t), jnp.arange(t - 1)].mean((0, 2))


@measure("prev_token")
def prev_token_attention(acts, batch, layers: int) -> dict[str, jax.Array]:
    """Mean attention from each position i >= 1 to position i-1."""
    out = {}
    for layer in range(1, layers + 1):
        out.update(_per_head("prev_token", previous_token_attention(acts[f"L{layer}.pattern"]), layer))
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
