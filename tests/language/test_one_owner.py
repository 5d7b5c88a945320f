"""Decisions that had copies have one owner: the spelling hint, a value's text in messages,
previous-token attention and the few-shot correct-label mask."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optodsl.errors import SpecError
from optodsl.measures import MEASURES, previous_token_attention
from optodsl.syntax.hints import close, did_you_mean
from optodsl.tasks.fewshot import correct_labels


def test_one_spelling_rule_for_every_hint():
    assert did_you_mean("trian", ["train", "eval"]) == "did you mean 'train'? "
    assert did_you_mean("zzz", ["train", "eval"]) == ""
    assert close("lr", {"train.lr": 1, "train.batch": 2}, "settings") == "valid settings: train.lr, train.batch"
    assert close("abalte", ("ablate", "clamp"), "verbs") == "did you mean 'ablate'?"


def test_a_bad_pattern_parameter_is_shown_as_written():
    from optodsl.api import compile as compile_spec

    with pytest.raises(SpecError, match=r"must be a number in \[0, 1\], not \[1, 2\]"):
        compile_spec("clamp L1.H0.pattern = prev_token(strength=[1, 2])")


def test_previous_token_attention_is_the_prev_token_measure():
    pattern = jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(0), (3, 4, 6, 6)), -1)
    by_hand = np.mean([[np.asarray(pattern)[:, h, i, i - 1].mean() for i in range(1, 6)] for h in range(4)], axis=1)
    np.testing.assert_allclose(previous_token_attention(pattern), by_hand, rtol=1e-6)
    measured = MEASURES["prev_token"]({"L1.pattern": pattern}, {}, 1)
    np.testing.assert_allclose([measured[f"prev_token/L1.H{h}"] for h in range(4)], previous_token_attention(pattern))


def test_the_correct_label_mask_marks_the_pairs_of_the_querys_class():
    classes = jnp.array([[3, 5, 5], [1, 2, 2], [7, 7, 7]])
    np.testing.assert_array_equal(correct_labels(classes), [[0.0, 1.0], [0.0, 1.0], [1.0, 1.0]])
