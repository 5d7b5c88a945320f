"""The addressable sites of the transformer: stable names, shapes, and what each one holds.

Activations and overrides are flat dicts keyed by these names. Layers count from 1 and heads
from 0, as in the paper: key `L1.pattern` holds the first layer's patterns with the head axis
first, and the spec text `L1.H2.pattern` is head 2 of it. Shapes are per sequence; the model
adds a leading batch axis. T is the task's sequence length (2 * pairs + 1 for the few-shot
task), H heads, D d_model, Dh the head dimension, L the logits width (labels, or the task's vocabulary).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .config import DataConfig, ModelConfig
from .tasks.base import Layout

GLOBAL_SITES: dict[str, str] = {
    "embed": "token embeddings (exemplar map at even positions, label map at odd ones), plus learned/sinusoidal positions if any",
    "final_norm": "the final LayerNorm's output (the residual stream itself when final_norm is off)",
    "logits": "unembedding output at every position; the loss reads the query row",
}
TOKEN_GLOBAL_SITES: dict[str, str] = {
    "embed": "token embeddings (one learned vector per token id, {vocab} ids), plus learned/sinusoidal positions if any",
    "logits": "unembedding output at every position; the loss reads every position's next token",
}
"""The global sites' descriptions for a task that embeds token ids (a layout with a vocabulary)."""


def global_site_doc(name: str, data: DataConfig | Layout) -> str:
    """What a global site holds for this task: a token task embeds ids and scores every next token;
    the few-shot task maps exemplar features and labels and scores the query."""
    if isinstance(data, Layout) and data.vocab is not None and name in TOKEN_GLOBAL_SITES:
        return TOKEN_GLOBAL_SITES[name].format(vocab=data.vocab)
    return GLOBAL_SITES[name]
LAYER_SITES: dict[str, str] = {
    "resid_in": "the block's input (residual stream)",
    "normed": "the block's LayerNorm output, the attention's input (equals resid_in when prenorm is off)",
    "attn_out": "the attention's output: the sum of head outputs plus the output bias",
    "mlp_out": "the MLP's output (models with mlp on)",
    "resid_out": "the block's output (residual stream after attention and MLP)",
}
HEAD_SITES: dict[str, str] = {
    "q": "queries before RoPE",
    "k": "keys before RoPE",
    "v": "values",
    "q_rot": "queries after RoPE (equal to q without RoPE)",
    "k_rot": "keys after RoPE (equal to k without RoPE)",
    "attn_logits": "pre-softmax attention scores, scaled by 1/sqrt(Dh), causal mask applied (-inf above the diagonal)",
    "pattern": "post-softmax attention pattern; row i is where position i attends",
    "z": "per-head weighted values (pattern @ v)",
    "out": "per-head output: z through the head's slice of the output map",
}


@dataclass(frozen=True)
class SiteInfo:
    """One entry of the site table: key, per-sequence shape, whether its first axis is heads."""

    key: str
    shape: tuple[int, ...]
    per_head: bool
    doc: str


def layer_key(layer: int, name: str) -> str:
    """Activation key of a layer or head site; `layer` counts from 1."""
    return f"L{layer}.{name}"


def layer_pairs(layers: int) -> list[tuple[int, int]]:
    """Every (earlier, later) pair of layers, counting from 1, in order: (1, 2), (1, 3), (2, 3), ..."""
    return [(a, b) for a in range(1, layers + 1) for b in range(a + 1, layers + 1)]


PAIR_KEY = re.compile(r"^L(\d+)-L(\d+)$")
"""A layer pair as analyses key it (`L1-L3`: from layer 1 to layer 3)."""


def pair_key(earlier: int, later: int) -> str:
    """The key of a layer pair in analysis results: `L1-L2`."""
    return f"L{earlier}-L{later}"


def sequence_dims(data: DataConfig | Layout) -> tuple[int, int]:
    """(sequence length, logits width): from a task's layout, or the few-shot task's data settings."""
    if isinstance(data, Layout):
        return data.length, data.outputs
    return data.seq_len, data.labels


def site_table(model: ModelConfig, data: DataConfig | Layout) -> dict[str, SiteInfo]:
    """Every site of the configured model in forward order, keyed as in activations and overrides;
    `data` is the task's layout (`optodsl.tasks.layout(config)`), or few-shot data settings."""
    (t, n_labels), d, h, dh = sequence_dims(data), model.d_model, model.heads, model.head_dim
    head_shapes = {
        "q": (h, t, dh), "k": (h, t, dh), "v": (h, t, dh), "q_rot": (h, t, dh), "k_rot": (h, t, dh),
        "attn_logits": (h, t, t), "pattern": (h, t, t), "z": (h, t, dh), "out": (h, t, d),
    }
    table: dict[str, SiteInfo] = {"embed": SiteInfo("embed", (t, d), False, global_site_doc("embed", data))}
    for layer in range(1, model.layers + 1):
        for name in ("resid_in", "normed"):
            table[layer_key(layer, name)] = SiteInfo(layer_key(layer, name), (t, d), False, LAYER_SITES[name])
        for name, shape in head_shapes.items():
            table[layer_key(layer, name)] = SiteInfo(layer_key(layer, name), shape, True, HEAD_SITES[name])
        names = ("attn_out", "mlp_out", "resid_out") if model.mlp else ("attn_out", "resid_out")
        for name in names:
            table[layer_key(layer, name)] = SiteInfo(layer_key(layer, name), (t, d), False, LAYER_SITES[name])
    table["final_norm"] = SiteInfo("final_norm", (t, d), False, global_site_doc("final_norm", data))
    table["logits"] = SiteInfo("logits", (t, n_labels), False, global_site_doc("logits", data))
    return table
