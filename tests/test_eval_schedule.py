"""Evaluation schedules: `eval.every` takes, besides one interval, a list of sequence counts or a
rule (`"every N"`, `"log N from A to B"`, read by the owner of `train.keep`'s), so early dynamics and
a long tail are both resolved; the evaluations land exactly there, and a resumed run keeps them."""

from __future__ import annotations

import json

import pytest

from optodsl.errors import SpecError
from optodsl.experiment import load_experiment
from optodsl.pipeline import plan_for
from optodsl.train.series import eval_steps
from optodsl.train.trainer import train
from test_sweep import _compiles_of

SETTINGS = {"train.sequences": 960, "eval.sequences": 32, "data.total_classes": 200, "data.feature_dim": 32,
            "train.lr": 1e-3, "train.checkpoint_every": 64}


def _member(every):
    (member,) = load_experiment("ablate L2.H0\n", {**SETTINGS, "eval.every": every}).members
    return member


def _lines(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_a_list_of_points_evaluates_exactly_there_compiling_few_lengths_and_resumes_with_them(tmp_path):
    member = _member([64, 128, 320, 800])
    plan = plan_for(member)
    whole, compiles = _compiles_of("run", lambda: train(member.config, plan, tmp_path / "whole", progress=False))
    assert [r["sequences"] for r in whole.metrics] == [0, 64, 128, 320, 800, 960]  # and always the run's end
    # gaps of 2, 2, 6, 15 and 5 steps trained in pieces of 1, 2, 4 and 8 steps: four lengths compiled
    assert compiles == 4
    train(member.config, plan, tmp_path / "resumed", progress=False, stop_after_chunks=3)
    assert [r["sequences"] for r in _lines(tmp_path / "resumed")] == [0, 64, 128, 320]
    train(member.config, plan, tmp_path / "resumed", progress=False)
    assert _lines(tmp_path / "resumed") == _lines(tmp_path / "whole")


def test_log_spaced_and_every_rules_are_read_as_train_keep_is_rounded_up_to_whole_steps():
    assert [s * 32 for s in eval_steps(_member("log 4 from 64 to 640").config)] == [64, 160, 320, 640, 960]
    assert [s * 32 for s in eval_steps(_member("every 300").config)] == [320, 608, 928, 960]
    assert eval_steps(_member(320).config) is None  # one interval: the fixed chunks as before


@pytest.mark.parametrize("text, message", [
    ('set eval.every = "weekly"\n', "cannot read 'weekly'"),
    ("set eval.every = []\n", "evaluates nowhere"),
    ("set eval.every = [0, 100]\n", "greater than or equal to 1"),
])
def test_an_unreadable_evaluation_schedule_is_an_error_at_its_value(text, message):
    with pytest.raises(SpecError) as err:
        load_experiment(text)
    assert message in str(err.value) and (err.value.span.line, err.value.span.column) == (1, 18)
