"""Progress measures computed from a forward pass's activations at every evaluation, inside jit.

Named in `eval.measures` (e.g. `set eval.measures = ["induction", "prev_token"]`) and written to
`metrics.jsonl` as `<set>/<measure>/L<l>.H<h>` beside the losses; the report draws every logged one
as a heat map under the words its declaration gives (`measure(name, title, unit)`). A measure reads the activations
and the batch; one that reads weights (`copying`) also gets the model; what is task-specific it
asks the task (`task.induction_weights`) or its layout's position roles (`roles["labels"]`).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

Measure = Callable[..., dict[str, jax.Array]]
"""`(acts, batch, layers, model=None, task=None, roles=None) -> {"<name>/L<l>.H<h>": value}`: `task` is
the run's task (its static functions of a batch are read), `roles` its layout's position roles."""
MEASURES: dict[str, Measure] = {}
WORDS: dict[str, tuple[str, str | None]] = {}
"""Each measure's title and colour-bar words for the report's heat maps (None: the task's own words
for what an induction head attends to, `Reading.induction_words`)."""
NEEDS: dict[str, tuple[tuple[str, ...], bool]] = {}
"""What each measure reads from the network: the layer sites it needs in every layer (`pattern`), and
whether it reads the built-in transformer's weights; the resolver checks both before training."""


def measure(name: str, title: str | None = None, unit: str | None = "", sites: tuple[str, ...] = ("pattern",),
            weights: bool = False):
    """Register the decorated function as measure `name`, with the words the report draws it under
    (`title`, and `unit` for its colour bar; default: its name for both; None: the task's words), the
    layer sites it reads and whether it reads the built-in transformer's weights (so a model of one's
    own that lacks them is refused at the spec)."""
    def wrap(fn: Measure) -> Measure:
        MEASURES[name] = fn
        WORDS[name] = (title or name, unit if unit != "" else name)
        NEEDS[name] = (sites, weights)
        return fn
    return wrap


def unmet_need(name: str, table, layers: int, built_in: bool) -> str | None:
    """Why measure `name` cannot read a network with site table `table` (None when it can)."""
    sites, weights = NEEDS[name]
    if weights and not built_in:
        return f"the {name} measure reads the built-in transformer's weights, which a model of one's own does not have"
    missing = [f"L{layer}.{site}" for layer in range(1, layers + 1) for site in sites if f"L{layer}.{site}" not in table]
    if missing:
        return f"the {name} measure reads the sites {', '.join(missing)}, which this model does not declare"
    return None


def _per_head(name: str, values: jax.Array, layer: int) -> dict[str, jax.Array]:
    return {f"{name}/L{layer}.H{h}": values[h] for h in range(values.shape[0])}


@measure("induction", "Induction strength", None)
def induction_strength(acts, batch, layers: int, model=None, task=None, roles=None) -> dict[str, jax.Array]:
    """The attention each head puts where the task says an induction head should look
    (`task.induction_weights`), averaged over the rows where that is defined. Few-shot: from the query,
    the correct label token minus the mean of the other label tokens. Token tasks: the prefix-matching
    score (Olsson et al. 2022), the attention from each position to the positions after earlier
    occurrences of its token (all of them: a segment repeated three times, or a Markov chain's
    statistical induction head, spreads over several), averaged over positions whose token occurred
    before. A perfect `induction` pattern of strength s scores s."""
    out = {}
    weights = rows = None
    for layer in range(1, layers + 1):
        pattern = acts[f"L{layer}.pattern"]  # (B, H, T, S)
        if weights is None:
            weights, rows = task.induction_weights(batch, pattern.shape[-1])  # (B, T, S), (B, T)
        onto = (pattern * weights[:, None]).sum(-1)  # (B, H, T)
        score = (onto * rows[:, None]).sum((0, 2)) / jnp.maximum(rows.sum(), 1.0)
        out.update(_per_head("induction", score, layer))
    return out


def previous_token_attention(pattern: jax.Array) -> jax.Array:
    """Per head, the mean attention from each position i >= 1 to position i-1: (B, H, T, T) -> (H,)."""
    t = pattern.shape[-1]
    return pattern[:, :, jnp.arange(1, t), jnp.arange(t - 1)].mean((0, 2))


@measure("prev_token", "Previous-token attention", "attention to the previous token (fraction)")
def prev_token_attention(acts, batch, layers: int, model=None, task=None, roles=None) -> dict[str, jax.Array]:
    """Mean attention from each position i >= 1 to position i-1."""
    out = {}
    for layer in range(1, layers + 1):
        out.update(_per_head("prev_token", previous_token_attention(acts[f"L{layer}.pattern"]), layer))
    return out


@measure("prev_token_labels", "Previous-token attention at the labels",
         "attention from each label to the exemplar before it (fraction)")
def prev_token_label_attention(acts, batch, layers: int, model=None, task=None, roles=None) -> dict[str, jax.Array]:
    """Mean attention from each position of the `labels` role to the position just before it (the
    few-shot task's exemplar), the previous-token step the match needs (a head may attend to the
    previous token elsewhere and not there, or the reverse). Tasks without that role lack it."""
    out = {}
    for layer in range(1, layers + 1):
        pattern = acts[f"L{layer}.pattern"]  # (B, H, T, T)
        rows = jnp.asarray(roles["labels"])
        out.update(_per_head("prev_token_labels", pattern[:, :, rows, rows - 1].mean((0, 2)), layer))
    return out


@measure("copying", "Copying", "fraction of tokens whose own logit the head's OV circuit raises most", sites=(),
         weights=True)
def copying_score(acts, batch, layers: int, model=None, task=None, roles=None) -> dict[str, jax.Array]:
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


def measures_fn(names: tuple[str, ...], layers: int, task=None, roles=None):
    """The trainer's measures hook `(acts, batch, logits, model) -> dict` for these names, or None
    when there are none; `task` and `roles` are the run's task and its layout's position roles."""
    if not names:
        return None

    def fn(acts, batch, logits, model=None):
        out = {}
        for name in names:
            out.update(MEASURES[name](acts, batch, layers, model, task, roles))
        return out
    return fn
