"""`eval.perfected`: each evaluation also scores the run with extra interventions (a clamp's progress measure)."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from optodsl.analysis.heads import compile_text
from optodsl.analysis.runs import load_run
from optodsl.tasks.fewshot import make_task
from optodsl.errors import SpecError
from optodsl.experiment import load_experiment, run_experiment
from optodsl.model.overrides import Context
from optodsl.train.trainer import loss_and_accuracy

SETTINGS = {"train.sequences": 1280, "eval.every": 640, "eval.sequences": 64, "data.total_classes": 200, "train.lr": 1e-3}
PROBE = "clamp L1.H2.pattern = prev_token"


def _metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("perfected")
    plain, probed = root / "plain.opto", root / "probed.opto"
    plain.write_text("ablate L2.* except H3\n")
    probed.write_text(f'ablate L2.* except H3\nset eval.perfected = ["{PROBE}"]\n')
    run_experiment(plain, root / "plain", dict(SETTINGS), progress=False)
    run_experiment(probed, root / "probed", dict(SETTINGS), progress=False)
    return root


def test_the_probe_is_scored_at_every_evaluation_without_changing_training(runs):
    plain, probed = _metrics(runs / "plain"), _metrics(runs / "probed")
    key = f"train/perfected[{PROBE}]/loss"
    assert len(plain) == len(probed) == 3 and all(key in m for m in probed)
    for a, b in zip(plain, probed):
        for k, v in a.items():
            assert b[k] == v, k  # the probe only adds keys
    assert any(m[key] != m["train/loss"] for m in probed)


def test_the_probe_equals_the_run_plus_its_line_on_the_evaluation_set(runs):
    run = load_run(runs / "probed")
    cfg = run.config
    task = make_task(cfg.data)
    batch = task.sample(jax.random.fold_in(jax.random.PRNGKey(cfg.seed.eval), 0), "train", cfg.eval.sequences)
    plan = compile_text(f"ablate L2.* except H3\n{PROBE}", cfg)
    logits, acts = plan(run.model, batch, Context(sequences=run.sequences, training=False))
    loss, acc = loss_and_accuracy(logits, batch["labels"][:, -1])
    last = _metrics(runs / "probed")[-1]
    np.testing.assert_allclose(last[f"train/perfected[{PROBE}]/loss"], float(loss), rtol=1e-5)
    assert last[f"train/perfected[{PROBE}]/accuracy"] == pytest.approx(float(acc))
    # and the clamp really is in force in that plan: exact previous-token rows
    row = np.asarray(acts["L1.pattern"][0, 2])
    assert row[2, 1] == 1.0 and row[2].sum() == 1.0


@pytest.mark.parametrize("line, message", [
    ("clamp L1.H9.pattern = prev_token", "no head H9"),
    ("clamp L2.H3.pattern = uniform", "conflicting interventions"),
    ("set train.lr = 1e-3", "interventions only"),
])
def test_a_bad_probe_is_a_spec_error_at_its_line(line, message):
    text = f'clamp L2.H3.pattern = induction\nset eval.perfected = ["{line}"]\n'
    with pytest.raises(SpecError, match=message) as info:
        load_experiment(text)
    assert info.value.span.path == "eval.perfected[0]"
