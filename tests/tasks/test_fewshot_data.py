"""The few-shot task's data settings (the paper's codebase's generators), each sampler checked
against its definition on a few thousand sequences drawn inside jit, and the default stream
checked bit for bit against the one drawn before these settings existed."""

from __future__ import annotations

import hashlib

import jax
import numpy as np
import pytest

from optodsl.config import DataConfig, ExperimentConfig
from optodsl.errors import SpecError
from optodsl.experiment import load_experiment
from optodsl.tasks import eval_sets
from optodsl.tasks.fewshot import EVAL_SETS, make_task

SMALL = dict(total_classes=200, feature_dim=8)
N = 4000


def draw(sets: tuple[str, ...] = ("train",), n: int = N, **settings) -> tuple[dict[str, dict[str, np.ndarray]], object]:
    """`n` sequences of each set as table indices, sampled inside jit (one program), and the task."""
    task = make_task(DataConfig(**SMALL, **settings))
    index = jax.jit(lambda k: {w: task.sample_indices(jax.random.fold_in(k, i), w, n) for i, w in enumerate(sets)})(jax.random.PRNGKey(0))
    return {w: {k: np.asarray(v) for k, v in index[w].items()} for w in sets}, task


def query_copies(classes: np.ndarray) -> np.ndarray:
    """Per sequence, how many context items are of the query's class."""
    return (classes[:, :-1] == classes[:, -1:]).sum(1)


@pytest.mark.parametrize("settings, sets, digest", [
    (dict(total_classes=200, feature_dim=16), EVAL_SETS[:4], "44541800012dad0f5c9163afb949aa6e06a8cbd3c30ad604812cc5094bd5fc62"),
    (dict(total_classes=200, feature_dim=16, pairs=3, labels=6, train_exemplars=2), EVAL_SETS[:1],
     "2b09ca27f33616c685136c0a5de1f79289b644b7944cb9bce1baa17ec19e26c4"),
])
def test_the_default_stream_is_the_one_drawn_before_the_data_settings(settings, sets, digest):
    """Digests of 256 sequences of each set, recorded on main at 08daa8f (before these settings):
    the same classes, exemplars and labels from the same random draws."""
    task = make_task(DataConfig(**settings))
    batches = jax.jit(lambda k: {w: task.sample(jax.random.fold_in(k, i), w, 256) for i, w in enumerate(sets)})(jax.random.PRNGKey(7))
    h = hashlib.sha256()
    for which in sets:
        for name in ("classes", "labels", "exemplars"):
            h.update(np.asarray(batches[which][name]).tobytes())
    assert h.hexdigest() == digest


def test_burstiness_b_puts_exactly_b_items_of_the_querys_class_in_the_context():
    """With distractors, one other class also appears b times; `unique` makes every other item a
    different class; in random order; relabelled per sequence, each class of a sequence one label.
    (Without distractors and with `no_support`: the mixture's test below.)"""
    b, distractors, rest = 3, True, "unique"
    idx = draw(pairs=8, labels=10, burstiness=b, distractors=distractors, rest=rest)[0]["train"]
    cls, lab = idx["classes"], idx["labels"]
    assert np.all(query_copies(cls) == b)
    ctx = cls[:, :-1]
    counts = [sorted(np.unique(row, return_counts=True)[1].tolist()) for row in ctx[:300]]
    if distractors:
        assert all(c[-2:] == [b, b] for c in counts)
    if rest == "unique":
        assert all(c[:-2] == [1] * (8 - 2 * b) for c in counts)
    else:
        assert any(len(c) < 8 - b + 1 for c in counts)  # the others may repeat
    np.testing.assert_allclose((ctx == cls[:, -1:]).mean(0), b / 8, atol=0.04)  # every position alike
    for c, l in zip(cls[:300], lab[:300]):
        mapping: dict[int, int] = {}
        assert all(mapping.setdefault(ci, li) == li for ci, li in zip(c.tolist(), l.tolist()))  # the query's too
        assert len(set(mapping.values())) == len(mapping)  # distinct classes, distinct labels
    assert len(set(zip(cls[:, 0].tolist(), lab[:, 0].tolist()))) > 100  # re-drawn per sequence, not fixed


def test_zipf_exponent_a_draws_classes_in_proportion_to_rank_to_the_minus_a():
    """Queries of the training stream by rank^-a; the test classes uniformly (they have no rank);
    the paper's default rest (`any`): the other items any classes, the query's included."""
    alpha = 1.5
    sets = draw(("train", "test_classes"), classes=12, zipf=alpha, distractors=False, rest="any")[0]
    seen = np.bincount(sets["train"]["classes"][:, -1], minlength=12) / N
    want = np.arange(1, 13, dtype=float) ** -alpha
    want /= want.sum()
    assert np.all(np.abs(seen - want) < 4.5 * np.sqrt(want * (1 - want) / N) + 1e-3), (seen, want)
    extra = query_copies(sets["train"]["classes"]) - 1  # the rest item is the query's class with chance sum p^2
    assert abs(extra.mean() - (want ** 2).sum()) < 4.5 * np.sqrt((want ** 2).sum() / N)
    test = sets["test_classes"]["classes"][:, -1]
    assert np.abs(np.bincount(test - 100, minlength=100) / N - 0.01).max() < 0.01


def test_a_mixtures_generators_appear_in_their_weights_proportions_with_fixed_labels_and_noise():
    """Generator 1 puts the query's class exactly once in the context, generator 2 exactly four times
    (no distractor, no other copy: `no_support`); with fixed labels each class has one label in every
    sequence, its index mod data.labels; exemplar noise has its std on every exemplar."""
    task = make_task(DataConfig(**SMALL, pairs=6, labels=50, mixture=(0.25, 0.75), burstiness=(1, 4),
                                distractors=False, rest="no_support", relabel=False, noise=0.5))
    batch = jax.jit(lambda k: task.sample(k, "train", N))(jax.random.PRNGKey(0))
    cls, lab = np.asarray(batch["classes"]), np.asarray(batch["labels"])
    copies = query_copies(cls)
    assert set(np.unique(copies).tolist()) == {1, 4}
    assert abs((copies == 4).mean() - 0.75) < 4 * np.sqrt(0.75 * 0.25 / N)
    assert len(set(zip(cls.ravel().tolist(), lab.ravel().tolist()))) == len(set(cls.ravel().tolist())) == 50
    np.testing.assert_array_equal(lab, cls % 50)
    diff = np.asarray(batch["exemplars"]) - np.asarray(task.features)[cls, 0]
    assert abs(diff.std() - 0.5) < 0.01 and abs(diff.mean()) < 0.01


def test_the_query_label_in_context_puts_the_querys_label_on_one_context_item():
    """The paper's `ciwl_only` stream: no copy of the query's class, fixed labels, the query's label
    written on one random context item."""
    idx = draw(pairs=4, labels=50, burstiness=0, distractors=False, relabel=False, query_label_in_context=True)[0]["train"]
    cls, lab = idx["classes"], idx["labels"]
    assert np.all(query_copies(cls) == 0)
    on = lab[:, :-1] == lab[:, -1:]
    assert np.all(on.sum(1) == 1)
    np.testing.assert_allclose(np.bincount(on.argmax(1), minlength=4) / N, 0.25, atol=0.04)


SETTINGS = dict(pairs=4, labels=12, burstiness=1, distractors=False, zipf=1.0, train_exemplars=2, rest="any")


def test_every_evaluation_set_draws_only_from_its_declared_splits():
    """Under a Zipf, two-exemplar stream whose other items are any classes: class and exemplar splits, label sets (the held-out
    ones only in `heldout_labels`), and the draws of `in_context` and `in_weights`."""
    sets, task = draw(EVAL_SETS, n=1500, **SETTINGS)
    held = {tuple(s) for s in np.asarray(task.heldout_label_sets).tolist()}
    for which, idx in sets.items():
        cls, ex, lab = idx["classes"], idx["exemplar_ids"], idx["labels"]
        assert np.all((cls >= 100) & (cls < 200)) if which == "test_classes" else np.all(cls < 50), which
        assert np.all((ex >= 2) & (ex < 5)) if which == "heldout_exemplars" else np.all(ex < 2), which
        distinct = np.array([len(set(r)) for r in cls.tolist()])
        if which == "in_weights":  # fixed labels, the query's class not in the context, every item its own class
            np.testing.assert_array_equal(lab, cls % 12)
            assert np.all(query_copies(cls) == 0) and np.all(distinct == 5)
            continue
        if which == "in_context":  # half the context the query's class, half one distractor's, relabelled
            assert np.all(query_copies(cls) == 2) and np.all(distinct == 2)
            assert np.all((lab == lab[:, -1:]) == (cls == cls[:, -1:]))
            continue
        shown = {tuple(sorted(set(r))) for r in lab[:, :-1].tolist() if len(set(r)) == 4}
        assert shown and (shown <= held if which == "heldout_labels" else not shown & held), which


def test_the_paper_sets_are_logged_by_default_and_the_new_ones_when_chosen():
    assert eval_sets(ExperimentConfig()) == ("train", "heldout_labels", "heldout_exemplars", "test_classes")
    cfg = load_experiment('set eval.sets = ["train", "in_context", "in_weights"]\n').members[0].config
    assert eval_sets(cfg) == ("train", "in_context", "in_weights")


@pytest.mark.parametrize("text, line, words", [
    ("set data.pairs = 2\nset data.burstiness = 2\nset train.lr = 1e-3\n", 2, "puts 4 items in a context of 2 pairs"),
    ("set data.burstiness = [1, 2]\nset data.pairs = 4\n", 1, "lists 2 values for 1 generator"),
    ("set data.mixture = [1, 1]\nset data.burstiness = [1, 2, 3]\n", 2, "lists 3 values"),
    ("set data.rest = \"unique\"\nset data.pairs = 4\nset data.burstiness = 0\nset data.classes = 4\n", 1, "needs 5 distinct classes"),
])
def test_a_rule_between_data_settings_points_at_the_set_that_breaks_it(text, line, words):
    with pytest.raises(SpecError) as info:
        load_experiment(text)
    assert words in info.value.message and info.value.span.line == line, (info.value.message, info.value.span.line)


def test_opto_report_draws_every_set_a_task_declares():
    """Each evaluation set after the training one has its own line style in the report's curves (a
    set without one would be left out of the figure)."""
    from optodsl.report.figures import HELDOUT_STYLES
    from optodsl.tasks.records import set_order

    assert list(HELDOUT_STYLES) == list(set_order()[1:]) and len(set(map(str, HELDOUT_STYLES.values()))) == len(HELDOUT_STYLES)
