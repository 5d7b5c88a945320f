"""Two few-shot readings for issue 14's explanatory experiments, each against its definition:
previous-token attention at the label rows only (the `prev_token_labels` measure) and accuracy
among the context's labels only (`FewShot.in_context_correct`; `opto eval --in-context` is tested
in tests/test_explain_eval.py)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from optodsl.config import ExperimentConfig
from optodsl.errors import SpecError
from optodsl.measures import MEASURES
from optodsl.pipeline import check_spec

from . import a, run

ROLES = {"labels": (1, 3)}  # the `labels` role of e1 l1 e2 l2 q


def test_prev_token_labels_reads_only_the_label_rows(base_config, model, batch):
    # uniform on L1.H2: row 1 gives 1/2 to position 0, row 3 gives 1/4 to position 2; a clamp at the
    # exemplar rows only (0, 2, 4) must not move the label-row measure, while it moves `prev_token`
    _, uniform = run("clamp L1.H2.pattern = uniform", base_config, model, batch)
    got = MEASURES["prev_token_labels"](uniform, batch, 2, roles=ROLES)
    assert float(got["prev_token_labels/L1.H2"]) == pytest.approx((1 / 2 + 1 / 4) / 2, abs=1e-6)
    pattern = a(uniform["L2.pattern"])
    for h in range(8):  # every other head: the hand-written mean over rows 1 and 3
        assert float(got[f"prev_token_labels/L2.H{h}"]) == pytest.approx(
            (pattern[:, h, 1, 0].mean() + pattern[:, h, 3, 2].mean()) / 2, abs=1e-6)
    _, at_exemplars = run("clamp L1.H2.pattern @ exemplars = prev_token", base_config, model, batch)
    _, plain = run("", base_config, model, batch)
    assert float(MEASURES["prev_token_labels"](at_exemplars, batch, 2, roles=ROLES)["prev_token_labels/L1.H2"]) == pytest.approx(
        float(MEASURES["prev_token_labels"](plain, batch, 2, roles=ROLES)["prev_token_labels/L1.H2"]), abs=1e-6)
    assert abs(float(MEASURES["prev_token"](at_exemplars, batch, 2)["prev_token/L1.H2"])
               - float(MEASURES["prev_token"](plain, batch, 2)["prev_token/L1.H2"])) > 1e-3


def test_prev_token_labels_is_a_few_shot_measure_only():
    with pytest.raises(SpecError) as info:
        check_spec('set task.name = "repeat"\nset eval.measures = ["prev_token_labels"]\n', ExperimentConfig())
    assert "prev_token_labels" in info.value.message


def test_in_context_accuracy_picks_among_the_context_labels_only(task):
    # labels (B, P+1): the context holds labels 1 and 3, the query's is 3
    labels = jnp.asarray([[1, 3, 3], [1, 3, 3], [1, 3, 1], [0, 4, 4]])
    logits = jnp.asarray([
        [0.0, 0.0, 9.0, 1.0, 0.0],  # label 2 (not in context) wins overall, 3 wins among {1, 3}: in-context right
        [0.0, 2.0, 9.0, 1.0, 0.0],  # 1 beats 3 among the context: wrong both ways
        [0.0, 2.0, 0.0, 1.0, 0.0],  # the query's label 1 wins overall and in context
        [5.0, 0.0, 0.0, 0.0, 4.0],  # 0 beats 4: wrong in context
    ])
    batch = {"labels": labels}
    assert np.asarray(task.in_context_correct(logits, batch)).tolist() == [True, False, True, False]
    _, overall = task.loss_and_accuracy(logits, batch)
    assert float(overall) == 0.25  # only the third is right over every label


def test_the_figure_11b_experiment_cells_mean_what_its_spec_says(base_config, model, batch):
    # specs/paper/fig11b_explain.opto: ablating a layer-2 head at L2.z is ablating it at its values
    by_z, _ = run("ablate L2.*.z except H1\nablate L1.* except H3", base_config, model, batch)
    by_v, _ = run("ablate L2.* except H1\nablate L1.* except H3", base_config, model, batch)
    np.testing.assert_allclose(a(by_z), a(by_v), atol=1e-5)
    _, plain = run("", base_config, model, batch)
    cell = "ablate L2.*.z except H1\nablate L1.* except H3 preserving L2.{}"
    _, match_only = run(cell.format("v"), base_config, model, batch)
    _, copy_only = run(cell.format("pattern"), base_config, model, batch)
    # match_only: layer 2 keeps its unablated values, and its patterns see one layer-1 head
    np.testing.assert_allclose(a(match_only["L2.v"]), a(plain["L2.v"]), atol=1e-6)
    assert not np.allclose(a(match_only["L2.pattern"]), a(plain["L2.pattern"]), atol=1e-4)
    # copy_only: the reverse
    np.testing.assert_allclose(a(copy_only["L2.pattern"]), a(plain["L2.pattern"]), atol=1e-6)
    assert not np.allclose(a(copy_only["L2.v"]), a(plain["L2.v"]), atol=1e-4)
    for acts in (match_only, copy_only):  # and only L2.H1 writes to the output
        assert np.abs(a(acts["L2.z"])[:, [0, 2, 3, 4, 5, 6, 7]]).max() == 0.0
