"""In-context learning of Markov chains (Edelman et al. 2024, "The Evolution of Statistical Induction Heads").

Each sequence has its own transition matrix, every row drawn from Dirichlet(alpha); the first
token is uniform and the loss is the next token's at every position. At each evaluation the
task scores two in-context references on the same sequences: the unigram predictor with
Laplace smoothing (counts of each state so far, plus one) and the Bayes-optimal bigram
predictor (the Dirichlet posterior mean of the current state's row), with the model's KL to
each. A loss clearly below the Bayes bigram one means the model sees the future.
"""

from __future__ import annotations

import math
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from ..config import ExperimentConfig, MarkovTaskConfig
from .base import Layout, Task, next_token_loss_and_accuracy, token_patterns
from .reading import Level, Reading


class Markov(Task):
    """Sequences of `task.length` tokens over `task.states` states; nothing on device but the settings."""

    name: ClassVar[str] = "markov"
    sets: ClassVar[tuple[str, ...]] = ("train",)
    measures: ClassVar[tuple[str, ...]] = ("induction", "prev_token", "copying")
    per_position: ClassVar[bool] = True

    config: MarkovTaskConfig = eqx.field(static=True)

    @staticmethod
    def layout(config: ExperimentConfig) -> Layout:
        t = config.task.length
        return Layout(length=t, roles={"all": tuple(range(t))}, outputs=config.task.states, vocab=config.task.states,
                      patterns=token_patterns(), task="markov")

    @classmethod
    def build(cls, config: ExperimentConfig, features=None) -> "Markov":
        return cls(config.task)

    @staticmethod
    def reading(config: ExperimentConfig) -> Reading:
        """Edelman et al.'s stages: the loss rests at the in-context unigram predictor's, then falls to
        the Bayes bigram predictor's when a statistical induction head forms."""
        k = config.task.states
        unigram = Level(label="in-context unigram", metric="unigram_loss")
        bigram = Level(label="Bayes bigram", metric="bigram_loss")
        return Reading(task="markov", loss_words="next-token cross-entropy at every position (nats)",
                       accuracy_words="next-token accuracy at every position",
                       loss_levels=(Level(label=f"uniform (ln {k})", value=math.log(k)), unigram, bigram),
                       accuracy_levels=(Level(label=f"uniform (1/{k})", value=1 / k),),
                       reference_losses=("unigram_loss", "bigram_loss"), divergences=("kl_unigram", "kl_bigram"),
                       plateau=unigram, solved=bigram, tolerance=0.02,
                       metric_words={"unigram_loss": "in-context unigram loss", "bigram_loss": "Bayes bigram loss",
                                     "kl_unigram": "KL to the in-context unigram", "kl_bigram": "KL to the Bayes bigram"},
                       induction_words="attention to the tokens after earlier occurrences of the current token",
                       analysis_words="the next token at every position")

    def sample(self, key: jax.Array, which: str, batch: int) -> dict[str, jax.Array]:
        """`tokens` (B, T) int32, each row a chain from its own Dirichlet transition matrix."""
        k, t = self.config.states, self.config.length
        k_mat, k_first, k_steps = jax.random.split(key, 3)
        transitions = jax.random.dirichlet(k_mat, jnp.full((k,), self.config.alpha), (batch, k))  # (B, k, k)
        first = jax.random.randint(k_first, (batch,), 0, k)
        logp = jnp.log(transitions)
        rows = jnp.arange(batch)

        def step(state, step_key):
            nxt = jax.random.categorical(step_key, logp[rows, state])
            return nxt, nxt

        _, rest = jax.lax.scan(step, first, jax.random.split(k_steps, t - 1))
        return {"tokens": jnp.concatenate([first[:, None], rest.T], axis=1).astype(jnp.int32)}

    def loss_and_accuracy(self, logits: jax.Array, batch: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
        return next_token_loss_and_accuracy(logits, batch["tokens"])

    def metrics(self, logits: jax.Array, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """Losses of the in-context unigram and Bayes bigram predictors, and the model's KL to each."""
        refs = references(batch["tokens"], self.config.states, self.config.alpha)
        target = jax.nn.one_hot(batch["tokens"][:, 1:], self.config.states)
        model_logp = jax.nn.log_softmax(logits[:, :-1], axis=-1)
        out = {}
        for name, probs in refs.items():
            logp = jnp.log(probs)
            out[f"{name}_loss"] = -(target * logp).sum(-1).mean()
            out[f"kl_{name}"] = (probs * (logp - model_logp)).sum(-1).mean()
        return out


def references(tokens: jax.Array, states: int, alpha: float) -> dict[str, jax.Array]:
    """In-context predictions (B, T-1, k) for tokens 1..T-1: `unigram` (Laplace) and `bigram` (Bayes)."""
    onehot = jax.nn.one_hot(tokens, states)  # (B, T, k)
    seen = jnp.cumsum(onehot, axis=1)[:, :-1]  # counts of tokens 0..t
    unigram = (seen + 1.0) / (seen.sum(-1, keepdims=True) + states)
    t = tokens.shape[1]
    same = (tokens[:, :, None] == tokens[:, None, :]) & (jnp.arange(t)[None, :] < jnp.arange(t)[:, None])  # s < t, x_s == x_t
    follows = jnp.einsum("bts,bsk->btk", same[:, :-1, :-1].astype(onehot.dtype), onehot[:, 1:])  # transitions out of x_t so far
    bigram = (follows + alpha) / (follows.sum(-1, keepdims=True) + states * alpha)
    return {"unigram": unigram, "bigram": bigram}
