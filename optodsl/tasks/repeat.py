"""Repeated random tokens, the classic induction setting (Olsson et al. 2022, "In-context Learning and Induction Heads").

A sequence of `task.length` (T) tokens is a segment of random tokens, drawn uniformly from
`task.vocab`, repeated until the sequence is full; the segment's length is drawn per sequence
from T/4..T/2, so the repeat's offset varies and no positional head can predict it: only an
in-context mechanism (an induction head) can. The first T/4 positions are therefore always
random (role `first`) and the last T - T/2 always repeat (role `repeated`). The loss is the next
token's at every position. At each evaluation the task adds the loss on each of those parts and
the in-context learning score, the loss late in context (predicting the repeated part) minus the
loss early (predicting the first part): near 0 without induction, near -ln(vocab) with it.
"""

from __future__ import annotations

import math
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from ..config import ExperimentConfig, RepeatTaskConfig
from .base import Layout, Task, next_token_loss_and_accuracy, token_patterns, next_token_scores
from .reading import Level, Reading


def halves(length: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Positions that are always random (before the shortest segment ends) and always repeated
    (after the longest segment ends)."""
    return tuple(range(length // 4)), tuple(range(length // 2, length))


class Repeat(Task):
    """Sequences of `task.length` tokens over `task.vocab`; nothing on device but the settings."""

    name: ClassVar[str] = "repeat"
    sets: ClassVar[tuple[str, ...]] = ("train",)
    measures: ClassVar[tuple[str, ...]] = ("induction", "prev_token", "copying")
    per_position: ClassVar[bool] = True

    config: RepeatTaskConfig = eqx.field(static=True)

    @staticmethod
    def layout(config: ExperimentConfig) -> Layout:
        t = config.task.length
        first, repeated = halves(t)
        return Layout(length=t, roles={"all": tuple(range(t)), "first": first, "repeated": repeated},
                      outputs=config.task.vocab, vocab=config.task.vocab, patterns=token_patterns(), task="repeat",
                      note=f" (0..{len(first) - 1} always random, {repeated[0]}..{t - 1} always repeated)")

    @classmethod
    def build(cls, config: ExperimentConfig, features=None) -> "Repeat":
        return cls(config.task)

    @staticmethod
    def reading(config: ExperimentConfig) -> Reading:
        """Olsson et al.'s reading: the repeated half's loss rests at ln vocab (no token predictable)
        and falls toward 0 when an induction head forms; the first part stays at ln vocab."""
        v = config.task.vocab
        uniform = Level(label=f"uniform (ln {v})", value=math.log(v))
        return Reading(task="repeat", loss_words="next-token cross-entropy (nats)",
                       accuracy_words="next-token accuracy at every position",
                       loss_levels=(uniform,), accuracy_levels=(Level(label=f"uniform (1/{v})", value=1 / v),),
                       reference_losses=("first_loss", "repeated_loss"), curve="repeated_loss",
                       plateau=uniform, solved=Level(label="perfect copy", value=0.0), tolerance=0.1,
                       metric_words={"first_loss": "loss on the first part", "repeated_loss": "loss on the repeated half"},
                       induction_words="attention to the tokens after earlier occurrences of the current token",
                       analysis_words="the next token in the repeated half")

    def sample(self, key: jax.Array, which: str, batch: int) -> dict[str, jax.Array]:
        """`tokens` (B, T) int32: a random segment of T/4..T/2 tokens, repeated to fill the row."""
        t = self.config.length
        k_tok, k_len = jax.random.split(key)
        segment = jax.random.randint(k_tok, (batch, t), 0, self.config.vocab, jnp.int32)
        period = jax.random.randint(k_len, (batch, 1), t // 4, t // 2 + 1)
        return {"tokens": jnp.take_along_axis(segment, jnp.arange(t)[None] % period, axis=1)}

    def loss_and_accuracy(self, logits: jax.Array, batch: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
        return next_token_loss_and_accuracy(logits, batch["tokens"])

    def score(self, logits: jax.Array, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """Per sequence, the loss and accuracy on the repeated half (role `repeated`), where only an
        in-context mechanism can predict: the analyses rank heads by what they cost there."""
        nll, correct = next_token_scores(logits, batch["tokens"])
        start = self.config.length // 2 - 1  # logits at position t-1 predict token t
        return {"loss": nll[:, start:].mean(-1), "accuracy": correct[:, start:].mean(-1)}

    def metrics(self, logits: jax.Array, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """`first_loss` (predicting the tokens of role `first` after position 0), `repeated_loss`
        (those of role `repeated`) and `icl_score`, their difference."""
        tokens = batch["tokens"]
        logp = jax.nn.log_softmax(logits[:, :-1], axis=-1)
        nll = -jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0].mean(0)  # (T-1,): predicting token i+1
        t = self.config.length
        first, repeated = nll[: t // 4 - 1].mean(), nll[t // 2 - 1:].mean()
        return {"first_loss": first, "repeated_loss": repeated, "icl_score": repeated - first}
