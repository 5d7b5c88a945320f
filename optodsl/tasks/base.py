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
from typing import Callable, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..config import ExperimentConfig
from .reading import Reading


@dataclass(frozen=True)
class TaskPattern:
    """An attention pattern whose value the task defines: `value(params, batch, T)` broadcasting
    against (B, H, T, T), and whether it sets every row or only the query's (`rows`)."""

    value: Callable[[dict[str, jax.Array], dict[str, jax.Array], int], jax.Array]
    rows: str = "all"


@dataclass(frozen=True)
class Layout:
    """A task's sequence as the model and the language see it.

    `roles` maps each position word a spec may write after `@` to its positions (0-based);
    `outputs` is the width of the logits; `vocab` is the number of token ids the model embeds,
    or None when the task feeds features (the few-shot task); `note` reads the positions in a hint.
    `patterns` are the declared patterns whose value depends on the task (`induction`, `match`),
    `verbs` the verbs that read its layout (the few-shot `copy` and `attend`), `task` its name for messages.
    """

    length: int
    roles: dict[str, tuple[int, ...]] = field(default_factory=dict)
    outputs: int = 0
    vocab: int | None = None
    note: str = ""
    patterns: dict[str, TaskPattern] = field(default_factory=dict)
    verbs: tuple[str, ...] = ()
    task: str = ""


class Task(eqx.Module):
    """One task: sampling inside jit, its loss and accuracy, its evaluation sets and measures."""

    name: ClassVar[str]
    sets: ClassVar[tuple[str, ...]]
    """Evaluation sets, the first being the training distribution; `eval.sets` picks among them."""
    logged: ClassVar[tuple[str, ...]] = ()
    """The sets a run scores when `eval.sets` is empty; empty means every set."""
    measures: ClassVar[tuple[str, ...]] = ()
    """Names from `optodsl.measures` this task gives a meaning to (`eval.measures`)."""
    sections: ClassVar[tuple[str, ...]] = ()
    """The task-owned settings sections (`config.TASK_SECTIONS`) this task reads besides `task`: the
    few-shot task's `data`. A run records only these; a spec setting another is refused."""
    per_position: ClassVar[bool] = False
    """Whether every position of a sequence has its own target (`position_losses`): the token tasks'
    next token; the few-shot task scores its query alone."""

    @staticmethod
    @abc.abstractmethod
    def layout(config: ExperimentConfig) -> Layout:
        """The sequence layout for these settings (no JAX work)."""

    @staticmethod
    @abc.abstractmethod
    def reading(config: ExperimentConfig) -> Reading:
        """How to read this task's runs: reference levels, stage criterion, words (no JAX work)."""

    @classmethod
    @abc.abstractmethod
    def build(cls, config: ExperimentConfig, features=None) -> "Task":
        """The task's device state for these settings."""

    @staticmethod
    def values_of(config: ExperimentConfig):
        """The settings this task draws as traced values rather than constants (a pytree of host arrays,
        `with_values` takes it): runs that differ only in them share one program, and a schedule may
        change them during training. None by default."""
        return {}

    @staticmethod
    def without_values(config: ExperimentConfig) -> ExperimentConfig:
        """The settings with those `values_of` holds made equal, for the key of which runs share a program."""
        return config

    def with_values(self, values, configs: list[ExperimentConfig] | None = None) -> "Task":
        """This task drawing with another run's `values_of` (traceable); with `configs`, able to draw any
        of those runs' streams (a program of several runs)."""
        return self

    def at(self, sequences: jax.Array) -> "Task":
        """This task drawing the training stream as it is after `sequences` training sequences (a
        schedule's values in effect then); itself by default (traceable)."""
        return self

    @staticmethod
    def settings_at(config: ExperimentConfig, sequences: int) -> dict[str, float]:
        """The scheduled settings in effect from `sequences` training sequences on, as a metrics record
        logs them (`data.zipf`); none by default."""
        return {}

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

    # What the checkpoint analyses ask of a task: fixed sequences, a batch from them, per-sequence scores.

    def fixed(self, which: str, n: int, seed: int) -> dict[str, np.ndarray]:
        """`n` sequences of set `which` drawn from `seed`, as host arrays with a leading sequence axis
        (`gather` turns any slice of them into a batch): the analyses' fixed sequences."""
        return jax.device_get(self.sample(jax.random.PRNGKey(seed), which, n))

    def every(self, which: str) -> dict[str, np.ndarray] | None:
        """Every distinct sequence of set `which` in the `fixed` layout, or None when they cannot be
        enumerated (token tasks: far too many)."""
        return None

    def gather(self, index: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """The model's batch for sequences in the `fixed` layout (traceable; token tasks: themselves)."""
        return index

    def score(self, logits: jax.Array, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """Per sequence (B,), the `loss` (nats) and `accuracy` where the analyses score this task, and
        any further per-sequence scores it offers: by default the next token at every position."""
        loss, correct = next_token_scores(logits, batch["tokens"])
        return {"loss": loss.mean(-1), "accuracy": correct.mean(-1)}

    def position_losses(self, logits: jax.Array, batch: dict[str, jax.Array]) -> jax.Array:
        """Per sequence and position (B, T-1), the loss (nats) of the output at each position, for a
        task with `per_position` (traceable): the next token's, position t predicting token t+1."""
        return next_token_scores(logits, batch["tokens"])[0]

    def answers(self, index: dict[str, np.ndarray]) -> np.ndarray | None:
        """Each sequence's one answer (the few-shot query's label), for tables by answer; None where a
        sequence has no single answer."""
        return None

    # What the progress measures and the `induction` pattern ask of a task (pure functions of a batch).

    @staticmethod
    def induction_weights(batch: dict[str, jax.Array], t: int) -> tuple[jax.Array, jax.Array]:
        """Where an induction head should look: weights (B, T, T) over the source positions of each row
        and the rows (B, T) where that is defined. Token tasks: 1 on every position after an earlier
        occurrence of the row's token, on rows whose token occurred before (the prefix-matching score)."""
        targets = induction_targets(batch["tokens"]).astype(jnp.float32)
        return targets, targets.max(-1)

    @staticmethod
    def induction_pattern(batch: dict[str, jax.Array], strength: jax.Array, t: int) -> jax.Array:
        """The `induction` pattern (B, 1, T, T) of strength s: token tasks put s on the position after
        the previous occurrence of each row's token and the rest on the row itself."""
        return induction_rows(batch["tokens"], strength)

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


def next_token_scores(logits: jax.Array, tokens: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per position (B, T-1): the next token's cross-entropy and whether it is the argmax."""
    logp = jax.nn.log_softmax(logits[:, :-1], axis=-1)
    nll = -jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0]
    return nll, (jnp.argmax(logits[:, :-1], axis=-1) == tokens[:, 1:]).astype(jnp.float32)


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


def _token_induction(params, batch, t):
    return induction_rows(batch["tokens"], params["strength"])


def token_patterns() -> dict[str, TaskPattern]:
    """The patterns every token task defines: `induction` after the previous occurrence of each row's token."""
    return {"induction": TaskPattern(_token_induction)}


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
