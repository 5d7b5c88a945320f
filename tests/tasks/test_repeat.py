"""The repeat task: its sequences, its patterns, and its dynamics (induction heads form; ablating layer 1 prevents them)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from optodsl.errors import SpecError
from optodsl.experiment import load_experiment, plan_for
from optodsl.tasks import build_task, layout
from optodsl.tasks.base import induction_rows
from optodsl.tasks.repeat import Repeat
from optodsl.train.trainer import train

SMALL = '''set task.name = "repeat"
set task.vocab = 32
set task.length = 24
set model.layers = 2
set model.heads = 1
set model.d_model = 32
set train.lr = 3e-3
set train.batch = 32
set eval.sequences = 128
set eval.measures = ["induction"]
'''


def run(extra: str, sequences: int, every: int) -> list[dict]:
    member = load_experiment(SMALL + f"set train.sequences = {sequences}\nset eval.every = {every}\n" + extra).members[0]
    return train(member.config, plan_for(member), progress=False).metrics


def test_a_random_segment_repeats_and_the_roles_bound_it():
    config = load_experiment(SMALL).members[0].config
    tokens = np.asarray(build_task(config).sample(jax.random.PRNGKey(0), "train", 64)["tokens"])
    periods = set()
    for row in tokens:
        period = next(p for p in range(6, 13) if (row[p:] == row[:-p]).all())
        periods.add(period)
    assert len(periods) > 3  # the offset varies, so no positional head can predict it
    roles = layout(config).roles
    assert roles["first"] == tuple(range(6)) and roles["repeated"] == tuple(range(12, 24))


def test_induction_attends_after_the_previous_occurrence_and_rows_without_one_to_themselves():
    tokens = np.array([[5, 7, 5, 9, 7]])
    rows = np.asarray(induction_rows(tokens, 1.0))[0, 0]
    assert rows.argmax(-1).tolist() == [0, 1, 1, 3, 2]
    assert rows[:2].tolist() == np.eye(5)[:2].tolist()


def test_a_pattern_the_task_does_not_define_lists_the_ones_it_has():
    with pytest.raises(SpecError) as info:
        load_experiment(SMALL + "clamp L2.H0.pattern = match\n")
    assert info.value.message == "the repeat task defines no pattern 'match'"
    assert info.value.hint == "its patterns are prev_token, induction, uniform, attend_first" and info.value.span.line == 11


def test_the_prefix_matching_score_counts_every_earlier_occurrence():
    """A segment seen twice before: a head that splits its attention between the positions after both
    earlier occurrences is a perfect induction head (score 1), and so is the `induction` pattern, which
    picks the latest; attention to the occurrences themselves scores 0."""
    from optodsl.measures import measures_fn

    tokens = jax.numpy.array([[5, 6, 7, 5, 6, 7, 5, 6]])
    t = tokens.shape[1]
    split = np.zeros((1, 1, t, t), np.float32)
    onto_token = np.zeros((1, 1, t, t), np.float32)
    for i in range(t):
        after = [s for s in range(1, i + 1) if tokens[0, s - 1] == tokens[0, i]]
        same = [s for s in range(i) if tokens[0, s] == tokens[0, i]]
        split[0, 0, i, after or [i]] = 1 / max(len(after), 1)
        onto_token[0, 0, i, same or [i]] = 1 / max(len(same), 1)
    score = measures_fn(("induction",), 1, Repeat)
    for pattern, expected in ((split, 1.0), (induction_rows(tokens, 1.0), 1.0), (onto_token, 0.0)):
        value = score({"L1.pattern": jax.numpy.asarray(pattern)}, {"tokens": tokens}, None)["induction/L1.H0"]
        assert float(value) == pytest.approx(expected)


def test_an_induction_head_forms_and_the_in_context_score_jumps():
    metrics = run("", 24_000, 8_000)
    first, last = metrics[0], metrics[-1]
    assert first["train/induction/L2.H0"] < 0.15 and abs(first["train/icl_score"]) < 0.3
    assert last["train/induction/L2.H0"] > 0.4 and last["train/icl_score"] < -2.5


def test_ablating_layer_1_prevents_it():
    last = run("ablate L1.*\n", 24_000, 24_000)[-1]
    assert last["train/induction/L2.H0"] < 0.2 and last["train/icl_score"] > -2.0


def test_clamping_a_layer_2_head_to_induction_makes_the_repeated_part_fall_earlier():
    free = run("", 8_000, 8_000)[-1]
    clamped = run("clamp L2.H0.pattern = induction\n", 8_000, 8_000)[-1]
    assert clamped["train/repeated_loss"] < free["train/repeated_loss"] - 1.0


def test_the_copying_score_is_the_fraction_of_tokens_a_heads_ov_circuit_maps_to_themselves():
    import jax.numpy as jnp

    from optodsl.measures import MEASURES
    from optodsl.train.restore import new_model

    config = load_experiment(SMALL).members[0].config
    model = new_model(config, jax.random.PRNGKey(0))
    blk = model.blocks[1]
    # the definition, by hand: W_E W_V W_O W_U per head, each token's own logit the largest
    circuit = np.einsum("vd,hde,hef,fu->hvu", *(np.asarray(a) for a in (model.w_token, blk.wv, blk.wo, model.w_out)))
    expected = (circuit.argmax(-1) == np.arange(32)).mean(-1)
    scores = MEASURES["copying"]({}, {}, 2, model)
    assert abs(float(scores["copying/L2.H0"]) - expected[0]) < 1e-6
    # a head whose circuit is the identity copies every token; its negative copies none
    eye = jnp.eye(32)
    ident = model.blocks[1].__class__(**{**vars(blk), "wv": eye[None], "wo": eye[None]})
    copying = type(model)(**{**vars(model), "w_token": eye, "w_out": eye, "blocks": (model.blocks[0], ident)})
    assert float(MEASURES["copying"]({}, {}, 2, copying)["copying/L2.H0"]) == 1.0
    negated = type(model)(**{**vars(copying), "blocks": (model.blocks[0], ident.__class__(**{**vars(ident), "wo": -eye[None]}))})
    assert float(MEASURES["copying"]({}, {}, 2, negated)["copying/L2.H0"]) == 0.0


def test_the_trained_induction_head_copies():
    """Olsson et al.'s second criterion: with the induction pattern comes a copying OV circuit in the
    layer-2 head (measured here: 0.0 at the start, 0.19 before the jump, 0.75-0.78 after), while
    the layer-1 (previous-token) head does not copy."""
    metrics = run('set eval.measures = ["induction", "copying"]\n', 24_000, 12_000)
    first, last = metrics[0], metrics[-1]
    assert first["train/copying/L2.H0"] < 0.3 < 0.6 < last["train/copying/L2.H0"]
    assert last["train/copying/L1.H0"] < 0.3


def test_the_copying_score_names_what_a_model_without_token_weights_lacks():
    from optodsl.measures import MEASURES

    with pytest.raises(TypeError, match="w_token, w_out"):
        MEASURES["copying"]({}, {}, 2, object())
