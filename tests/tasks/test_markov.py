"""The markov task: settings, its reference predictors against the known numbers, and its dynamics."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from optodsl.config import ExperimentConfig, with_settings
from optodsl.tasks import build_task, layout
from optodsl.tasks.markov import references
from optodsl.train.trainer import train

MARKOV = with_settings(ExperimentConfig(), {"task.name": "markov"})


def test_defaults_and_layout():
    assert (MARKOV.task.states, MARKOV.task.length, MARKOV.task.alpha) == (3, 100, 1.0)
    lay = layout(MARKOV)
    assert (lay.length, lay.vocab, lay.outputs, list(lay.roles)) == (100, 3, 3, ["all"])


def test_chains_follow_their_own_matrix():
    task = build_task(with_settings(MARKOV, {"task.alpha": 0.05}))
    tokens = jax.jit(lambda k: task.sample(k, "train", 64)["tokens"])(jax.random.PRNGKey(3))
    assert tokens.shape == (64, 100) and tokens.dtype == jnp.int32
    assert int(tokens.min()) >= 0 and int(tokens.max()) <= 2
    # with alpha this small each row is nearly deterministic: the next token is mostly a function of this one
    same = (tokens[:, 1:-1] == tokens[:, :-2]) == (tokens[:, 2:] == tokens[:, 1:-1])
    assert float(same.mean()) > 0.8


def test_reference_losses_match_the_known_numbers():
    tokens = build_task(MARKOV).sample(jax.random.PRNGKey(0), "train", 4000)["tokens"]
    target = jax.nn.one_hot(tokens[:, 1:], 3)
    losses = {name: float(-(target * jnp.log(p)).sum(-1).mean()) for name, p in references(tokens, 3, 1.0).items()}
    assert losses["unigram"] == pytest.approx(1.008, abs=0.01)
    assert losses["bigram"] == pytest.approx(0.888, abs=0.01)


def test_bigram_reference_counts_only_the_past():
    tokens = jnp.asarray([[0, 1, 0, 1, 0]])
    bigram = references(tokens, 2, 1.0)["bigram"][0]
    assert bigram[0].tolist() == [0.5, 0.5]  # nothing seen yet
    assert bigram[2].tolist() == pytest.approx([1 / 3, 2 / 3])  # one 0 -> 1 transition seen
    assert bigram[3].tolist() == pytest.approx([2 / 3, 1 / 3])  # one 1 -> 0 transition seen


def test_loss_falls_below_the_unigram_level_toward_the_bigram_one():
    cfg = with_settings(MARKOV, {"model.layers": 2, "model.heads": 4, "model.d_model": 32, "task.length": 40,
                                 "train.lr": 3e-3, "train.sequences": 24_000, "train.batch": 32,
                                 "eval.every": 4_000, "eval.sequences": 256})
    metrics = train(cfg, progress=False).metrics
    first, last = metrics[0], metrics[-1]
    # the stages in order: first nearer the in-context unigram predictor, at the end nearer the bigram one
    early = metrics[2]  # 8,000 sequences
    assert early["train/kl_unigram"] < early["train/kl_bigram"]
    assert last["train/kl_bigram"] < last["train/kl_unigram"]
    assert {"train/unigram_loss", "train/bigram_loss", "train/kl_unigram", "train/kl_bigram"} <= set(last)
    assert first["train/loss"] > first["train/unigram_loss"]
    assert last["train/loss"] < last["train/unigram_loss"] - 0.02
    assert last["train/loss"] > last["train/bigram_loss"] - 0.02  # no peeking at the future
    assert last["train/kl_bigram"] < first["train/kl_bigram"]
