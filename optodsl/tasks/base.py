"""The Task protocol: what the trainer, evaluation and resolver ask a task instead of assuming a layout.

A task is an Equinox module (its arrays, e.g. a feature table, travel into jit as arguments)
that samples batches from a key and a set name, scores logits against a batch (where the loss
is taken and how accuracy is counted), and may add reference metrics at each evaluation. Its
layout (sequence length, named position roles, logits width, token vocabulary) is a pure
function of the settings, so the resolver and the site table can ask for it without building
the task.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..config import ExperimentConfig


@dataclass(frozen=True)
class Layout:
    """A task's sequence as the model and the language see it.

    `roles` maps each position word a spec may write after `@` to its positions (0-based);
    `outputs` is the width of the logits; `vocab` is the number of token ids the model embeds,
    or None when the task feeds features (the few-shot task); `note` reads the positions in a hint.
    """

    length: int
    roles: dict[str, tuple[int, ...]] = field(default_factory=dict)
    outputs: int = 0
    vocab: int | None = None
    note: str = ""


class Task(eqx.Module):
    """One task: sampling inside jit, its loss and accuracy, its evaluation sets and measures."""

    name: ClassVar[str]
    sets: ClassVar[tuple[str, ...]]
    """Evaluation sets, the first being the training distribution; `eval.sets` picks among them."""
    measures: ClassVar[tuple[str, ...]] = ()
    """Names from `optodsl.measures` this task gives a meaning to (`eval.measures`)."""
    lacks_patterns: ClassVar[tuple[str, ...]] = ("match",)
    """Built-in patterns (`optodsl.interventions.patterns`) this task gives no meaning to; it defines
    every other one (`match` reads exemplar features, which token tasks lack; token tasks read
    `induction` from their tokens, `induction_rows`)."""
    query_rows_as_declared: ClassVar[bool] = False
    """Whether a pattern declared for the query's row only (`rows="query"`) is so in this task: the
    few-shot task's layout is the one the declarations describe; token tasks set every row."""
    verbs: ClassVar[tuple[str, ...]] = ()
    """Task-specific verbs this task supports (the few-shot task's `copy` onto the query's labels)."""
    loss_marks: ClassVar[tuple[tuple[str, float], ...]] = ()
    """Fixed loss levels worth marking on a loss curve, as (label, nats)."""
    accuracy_marks: ClassVar[tuple[float, ...]] = ()
    """Fixed accuracy levels worth marking on an accuracy curve."""
    reference_losses: ClassVar[tuple[str, ...]] = ()
    """Metrics this task writes per evaluation set that are losses to draw beside the model's
    (`<set>/<name>`): its reference predictors or the parts of its loss."""

    @staticmethod
    @abc.abstractmethod
    def layout(config: ExperimentConfig) -> Layout:
        """The sequence layout for these settings (no JAX work)."""

    @classmethod
    @abc.abstractmethod
    def build(cls, config: ExperimentConfig, features=None) -> "Task":
        """The task's device state for these settings."""

    @classmethod
    def check_inputs(cls, config: ExperimentConfig) -> None:
        """Refuse, with a DataError naming the file, inputs these settings name that cannot run, as
        cheaply as that can be checked (`opto check`); none by default."""

    @abc.abstractmethod
    def sample(self, key: jax.Array, which: str, batch: int) -> dict[str, jax.Array]:
        """A batch of `batch` sequences of set `which`, drawn from `key` (traceable)."""

    @abc.abstractmethod
    def loss_and_accuracy(self, logits: jax.Array, batch: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
        """Mean loss and accuracy of the model's logits on a batch, where this task takes them."""

    def metrics(self, logits: jax.Array, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """Reference metrics the task adds at every evaluation (none by default)."""
        return {}

    def inputs(self, batch: dict[str, jax.Array]) -> dict[str, list]:
        """The first sequence's input as JSON-ready ids (`opto trace`): a token task's `tokens`."""
        return {"tokens": np.asarray(batch["tokens"][0]).tolist()}

    def words(self, batch: dict[str, jax.Array]) -> list[str]:
        """The first sequence's positions as words for a console (`opto trace`): `3:t5` is token 5 at position 3."""
        return [f"{i}:t{tok}" for i, tok in enumerate(self.inputs(batch)["tokens"])]

    def readout(self, logits: jax.Array, batch: dict[str, jax.Array]) -> dict[str, object]:
        """The model's prediction and the target on the first sequence: the next token at every position."""
        return {"prediction": np.asarray(jnp.argmax(logits[0, :-1], -1)).tolist(),
                "target": np.asarray(batch["tokens"][0, 1:]).tolist()}


def query_loss_and_accuracy(logits: jax.Array, targets: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean cross-entropy and accuracy of query logits (B, L) against target labels (B,)."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    loss = -jnp.take_along_axis(logp, targets[:, None], axis=-1).mean()
    acc = (jnp.argmax(logits, axis=-1) == targets).mean()
    return loss, acc


def next_token_loss_and_accuracy(logits: jax.Array, tokens: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean next-token cross-entropy and accuracy: logits (B, T, V) at positions 0..T-2 predict tokens 1..T-1."""
    return query_loss_and_accuracy(logits[:, :-1].reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))


def previous_occurrence(tokens: jax.Array) -> jax.Array:
    """For each position t, the position after the last s < t with tokens[s] == tokens[t], or -1 without one: (B, T)."""
    t = tokens.shape[1]
    pos = jnp.arange(t)
    earlier = (tokens[:, :, None] == tokens[:, None, :]) & (pos[None, :] < pos[:, None])[None]  # (B, t, s)
    last = jnp.max(jnp.where(earlier, pos[None, None, :], -1), axis=-1)
    return jnp.where(last >= 0, last + 1, -1)


def induction_targets(tokens: jax.Array) -> jax.Array:
    """(B, T, T): True where position s follows an earlier occurrence of token t (tokens[s-1] ==
    tokens[t], s-1 < t): every place an induction head may look from t to predict the next token."""
    t = tokens.shape[1]
    pos = jnp.arange(t)
    before = jnp.concatenate([jnp.full_like(tokens[:, :1], -1), tokens[:, :-1]], axis=1)  # token at s-1
    return (tokens[:, :, None] == before[:, None, :]) & (pos[None, :] >= 1)[None] & (pos[None, :] <= pos[:, None])[None]


def induction_rows(tokens: jax.Array, strength: jax.Array) -> jax.Array:
    """The token tasks' `induction` pattern (B, 1, T, T): row t puts `strength` on the position after
    the previous occurrence of token t and the rest on t itself; a row whose token has not occurred
    before attends to itself (as `prev_token`'s row 0 does)."""
    t = tokens.shape[1]
    target = previous_occurrence(tokens)
    eye = jnp.eye(t)
    found = (target >= 0)[..., None]
    onto = jax.nn.one_hot(jnp.maximum(target, 0), t)
    return jnp.where(found, strength * onto + (1 - strength) * eye, eye)[:, None]
