"""Value builders: what each action writes into its site, as pure functions of arrays.

Each builder takes `(term, model, batch, record)` and returns a value that broadcasts against
the batched site `(B, *site_shape)`; `record` is the first pass's (or, for `post` actions, the
same pass's) activation the action reads. Patterns follow the paper's definitions exactly
(see `docs/language.md`).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ..model.transformer import NEG, tokens
from ..tasks.base import induction_rows

Builder = Callable[..., jax.Array]
Entries = Callable[[np.ndarray, list[int], int], None]
BUILDERS: dict[str, Builder] = {}
ENTRIES: dict[str, Entries] = {}
"""Builders that write only some entries of their rows name them here: `(view, rows, T)` sets
the entries of `view` (the site's mask for one head, or the whole site) that the value replaces."""


def builder(name: str, entries: Entries | None = None):
    def wrap(fn: Builder) -> Builder:
        BUILDERS[name] = fn
        if entries is not None:
            ENTRIES[name] = entries
        return fn
    return wrap


def _previous_entries(view: np.ndarray, rows: list[int], t: int) -> None:
    for i in rows:
        if i >= 1:
            view[i, i - 1] = True


def _exemplar_entries(view: np.ndarray, rows: list[int], t: int) -> None:
    for i in rows:
        view[i, 0:t:2] = True


def _label_positions(t: int) -> jax.Array:
    return jnp.arange(1, t - 1, 2)


@builder("zero")
def zero(term, model, batch, record):
    return jnp.zeros(())


@builder("const")
def const(term, model, batch, record):
    return term.params["value"]


@builder("mean")
def mean(term, model, batch, record):
    return record.mean(axis=0, keepdims=True)


@builder("record")
def recorded(term, model, batch, record):
    return record


@builder("scale_record")
def scale_record(term, model, batch, record):
    return record * term.params["scale"]


@builder("forbid_prev", _previous_entries)
@builder("labels_only", _exemplar_entries)
def negative(term, model, batch, record):
    return jnp.asarray(NEG)


@builder("prev_token")
def prev_token(term, model, batch, record):
    """Row i: strength s on i-1 and 1-s on i; row 0 attends to itself."""
    t = term.mask.shape[-1]
    s = term.params["strength"]
    rows = jnp.arange(t)
    eye = jnp.eye(t)
    prev = jnp.zeros((t, t)).at[rows[1:], rows[:-1]].set(1.0)
    first = jnp.zeros((t, t)).at[0, 0].set(1.0)
    return s * prev + (1 - s) * (eye - first) + first


@builder("uniform")
def uniform(term, model, batch, record):
    """Row i attends evenly to positions 0..i."""
    t = term.mask.shape[-1]
    causal = jnp.tril(jnp.ones((t, t)))
    return causal / causal.sum(-1, keepdims=True)


def _query_row(weights: jax.Array, t: int) -> jax.Array:
    """(B, P) weights on the label tokens, placed on the query row of a (B, 1, T, T) pattern."""
    b = weights.shape[0]
    row = jnp.zeros((b, t)).at[:, _label_positions(t)].set(weights)
    return jnp.zeros((b, 1, t, t)).at[:, 0, t - 1].set(row)


@builder("induction")
def induction(term, model, batch, record):
    """Query row: s on the label after the query's class exemplar, the rest 1-s shared by the other labels;
    a token task's rows are its own (`optodsl.tasks.base.induction_rows`)."""
    if "tokens" in batch:
        return induction_rows(batch["tokens"], term.params["strength"])
    t = term.mask.shape[-1]
    cls = batch["classes"]
    correct = (cls[:, :-1] == cls[:, -1:]).astype(jnp.float32)  # (B, P)
    s = term.params["strength"]
    n_other = jnp.maximum(correct.shape[1] - 1, 1)
    return _query_row(correct * s + (1 - correct) * (1 - s) / n_other, t)


@builder("match")
def match(term, model, batch, record):
    """Query row: softmax over label tokens of cos(query exemplar, context exemplar) / t; t = 0 is a hard max."""
    t = term.mask.shape[-1]
    ex = batch["exemplars"]
    unit = ex / jnp.linalg.norm(ex, axis=-1, keepdims=True)
    cos = (unit[:, :-1] * unit[:, -1:]).sum(-1)  # (B, P)
    temp = term.params["temperature"]
    soft = jax.nn.softmax(cos / jnp.maximum(temp, 1e-6), axis=-1)
    hard = jax.nn.one_hot(jnp.argmax(cos, axis=-1), cos.shape[1])
    return _query_row(jnp.where(temp > 0, soft, hard), t)


def _embeddings(model, batch):
    x = tokens(model, batch)
    if model.pos is not None:
        x = x + model.pos[: x.shape[1]]
    return x


@builder("embed")
def embed(term, model, batch, record):
    return _embeddings(model, batch)


@builder("shift_embed")
def shift_embed(term, model, batch, record):
    """The embeddings shifted one position right; position 0 and the query keep their own (`e1 e1 l1 e2 q`)."""
    x = _embeddings(model, batch)
    shifted = jnp.concatenate([x[:, :1], x[:, :-2], x[:, -1:]], axis=1)
    return shifted


@builder("copy")
def copy(term, model, batch, record):
    """Query logits: the head's attention logits to each in-context label token, at that label's index; -inf elsewhere."""
    head_logits = jnp.take(record, term.params["head"], axis=1)  # (B, T, T)
    t = head_logits.shape[-1]
    to_labels = head_logits[:, -1, _label_positions(t)]  # (B, P)
    n_labels = term.mask.shape[-1]
    onehot = jax.nn.one_hot(batch["labels"][:, :-1], n_labels)  # (B, P, L)
    q = jnp.where(onehot.sum(1) > 0, (onehot * to_labels[..., None]).sum(1), NEG)  # (B, L)
    return jnp.broadcast_to(q[:, None, :], (q.shape[0], t, n_labels))


@builder("graft")
def graft(term, model, batch, record):
    _, acts = term.graft(batch)
    return jax.lax.stop_gradient(acts[term.site])
