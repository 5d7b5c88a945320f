"""Progress measures computed from a forward pass's activations at every evaluation, inside jit.

Named in `eval.measures` (e.g. `set eval.measures = ["induction", "prev_token"]`) and written to
`metrics.jsonl` as `<set>/<measure>/L<l>.H<h>` beside the losses. A measure reads the activations
and the batch; one that reads weights (`copying`) also gets the model.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from .tasks.base import induction_targets
from .tasks.fewshot import correct_labels, label_positions

Measure = Callable[..., dict[str, jax.Array]]
"""`(acts, batch, layers, model=None) -> {"<name>/L<l>.H<h>": value}`."""
MEASURES: dict[str, Measure] = {}


def measure(name: str):
    def wrap(fn: Measure) -> Measure:
        MEASURES[name] = fn
        return fn
    return wrap


def _per_head(name: str, values: jax.Array, layer: int) -> dict[str, jax.Array]:
    return {f"{name}/L{layer}.H{h}": values[h] for h in range(values.shape[0])}


@measure("induction")
def induction_strength(acts, batch, layers: int, model=None) -> dict[str, jax.Array]:
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
        to_labels = pattern[:, :, t - 1, jnp.asarray(label_positions(t))]  # (B, H, P)
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
def prev_token_attention(acts, batch, layers: int, model=None) -> dict[str, jax.Array]:
    """Mean attention from each position i >= 1 to position i-1."""
    out = {}
    for layer in range(1, layers + 1):
        out.update(_per_head("prev_token", previous_token_attention(acts[f"L{layer}.pattern"]), layer))
    return out


@measure("prev_token_labels")
def prev_token_label_attention(acts, batch, layers: int, model=None) -> dict[str, jax.Array]:
    """Few-shot only: mean attention from each label token to the exemplar just before it, the
    previous-token step the match needs (a head may attend to the previous token elsewhere and not
    there, or the reverse)."""
    out = {}
    for layer in range(1, layers + 1):
        pattern = acts[f"L{layer}.pattern"]  # (B, H, T, T)
        rows = jnp.asarray(label_positions(pattern.shape[-1]))
        out.update(_per_head("prev_token_labels", pattern[:, :, rows, rows - 1].mean((0, 2)), layer))
    return out


@measure("copying")
def copying_score(acts, batch, layers: int, model=None) -> dict[str, jax.Array]:
    """Olsson et al.'s copying, read from the weights: per head, its full OV circuit from the token
    embedding to the unembedding, W_E W_V W_O W_U (layer norms left out, as they do), and the fraction
    of tokens whose own logit that circuit raises most (1: the head copies every token it attends
    to; about 1/vocab for a head that does not copy). A token task's measure; it reads the built-in
    transformer's weights."""
    blocks, embed, unembed = (getattr(model, name, None) for name in ("blocks", "w_token", "w_out"))
    if blocks is None or embed is None or unembed is None:
        raise TypeError("the copying measure reads a token model's embedding, value, output and unembedding "
                        "weights (blocks[l].wv, .wo, w_token, w_out), which this model does not have")
    out = {}
    for layer in range(1, layers + 1):
        blk = blocks[layer - 1]
        circuit = jnp.einsum("vd,hde,hef,fu->hvu", embed, blk.wv, blk.wo, unembed)  # (H, V, V)
        own = circuit.argmax(-1) == jnp.arange(circuit.shape[-1])
        out.update(_per_head("copying", own.mean(-1), layer))
    return out


def measures_fn(names: tuple[str, ...], layers: int):
    """The trainer's measures hook `(acts, batch, logits, model) -> dict` for these names, or None
    when there are none."""
    if not names:
        return None

    def fn(acts, batch, logits, model=None):
        out = {}
        for name in names:
            out.update(MEASURES[name](acts, batch, layers, model))
        return out
    return fn
