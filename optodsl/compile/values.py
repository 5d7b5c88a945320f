"""Value builders: what each action writes into its site, as pure functions of arrays.

Each builder takes `(term, model, batch, record)` and returns a value that broadcasts against
the batched site `(B, *site_shape)`; `record` is the activation the action reads: the first
pass's (for `post` actions, the pass `CompiledPlan` reads for them; for `= mean`, possibly the
reference set's). The built-in patterns are not builders here: `value` reads them from their
declarations in `optodsl.interventions.patterns`.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ..interventions.patterns import PATTERNS
from ..model.transformer import NEG

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


@builder("zero")
def zero(term, model, batch, record):
    return jnp.zeros(())


@builder("const")
def const(term, model, batch, record):
    return term.params["value"]


@builder("mean")
def mean(term, model, batch, record):
    """The mean over sequences of the first pass's activation: of the current batch, or of the fixed
    reference set when `semantics.mean_reference` is set (`CompiledPlan` passes its activations)."""
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


@builder("embed")
def embed(term, model, batch, record):
    return model.embed(batch)


@builder("shift_embed")
def shift_embed(term, model, batch, record):
    """The embeddings shifted one position right; position 0 and the query keep their own (`e1 e1 l1 e2 q`)."""
    x = model.embed(batch)
    shifted = jnp.concatenate([x[:, :1], x[:, :-2], x[:, -1:]], axis=1)
    return shifted


@builder("copy")
def copy(term, model, batch, record):
    """Query logits: the head's attention logits to each in-context label token, at that label's index; -inf elsewhere."""
    head_logits = jnp.take(record, term.params["head"], axis=1)  # (B, T, T)
    t = head_logits.shape[-1]
    to_labels = head_logits[:, -1, term.params["labels"]]  # (B, P): the `labels` role's positions
    n_labels = term.mask.shape[-1]
    onehot = jax.nn.one_hot(batch["labels"][:, :-1], n_labels)  # (B, P, L)
    q = jnp.where(onehot.sum(1) > 0, (onehot * to_labels[..., None]).sum(1), NEG)  # (B, L)
    return jnp.broadcast_to(q[:, None, :], (q.shape[0], t, n_labels))


@builder("graft")
def graft(term, model, batch, record):
    _, acts = term.graft(batch)
    return jax.lax.stop_gradient(acts[term.site])


def value(term, model, batch, record) -> jax.Array:
    """What `term` writes into its site: a declared pattern's value (its parameters from the
    term, T from the mask), or its builder's."""
    if term.pattern is not None:  # a pattern the task defines (its layout's)
        return term.pattern(term.params, batch, term.mask.shape[-1])
    pattern = PATTERNS.get(term.builder)
    if pattern is not None:
        return pattern.value(term.params, batch, term.mask.shape[-1])
    return BUILDERS[term.builder](term, model, batch, record)
