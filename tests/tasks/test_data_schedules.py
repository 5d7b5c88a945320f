"""Data schedules: `set data.KEY = VALUE during START..STOP` changes a value of the few-shot training
stream during training; the metrics records log it from the sequence count it takes effect at, the
sampler draws it from that step on, `opto explain` shows it, and a run resumed across the switch is
exact."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from typer.testing import CliRunner

from optodsl.cli import app
from optodsl.config import DataChange, DataConfig
from optodsl.errors import SpecError
from optodsl.experiment import load_experiment
from optodsl.pipeline import plan_for
from optodsl.tasks.fewshot import make_task
from optodsl.train.trainer import train

SPEC = """set data.total_classes = 200
set data.feature_dim = 32
set data.pairs = 4
set data.labels = 6
set data.distractors = false
set data.burstiness = 3 during 480..
set data.zipf = 1.5 during 320..640
"""
SETTINGS = {"train.sequences": 960, "eval.every": 320, "eval.sequences": 64, "train.lr": 1e-3,
            "train.checkpoint_every": 320}


def test_the_sampler_draws_each_segments_values_from_its_first_sequence_on():
    cfg = DataConfig(total_classes=200, feature_dim=8, pairs=4, labels=6, distractors=False,
                     schedule=(DataChange(key="burstiness", value=3, start=480),))
    task = make_task(cfg)
    copies = jax.jit(lambda s: (lambda c: (c[:, :-1] == c[:, -1:]).sum(1))(
        task.at(s).sample_indices(jax.random.PRNGKey(0), "train", 500)["classes"]))
    assert set(np.asarray(copies(479)).tolist()) == {1}
    assert set(np.asarray(copies(480)).tolist()) == {3}
    assert [start for start, _ in cfg.segments()] == [0, 480]


def test_a_scheduled_data_value_shows_in_the_records_and_in_explain_and_resumes_exactly(tmp_path):
    (spec := tmp_path / "curriculum.opto").write_text(SPEC)
    explained = CliRunner().invoke(app, ["explain", str(spec)])
    assert explained.exit_code == 0, explained.output
    assert "set data.burstiness = 3 during 480..  (the training stream's data value from 480 sequences on)" in explained.stdout
    assert "set data.zipf = 1.5 during 320..640" in explained.stdout
    (member,) = load_experiment(spec, dict(SETTINGS)).members
    plan = plan_for(member)
    whole = train(member.config, plan, tmp_path / "whole", progress=False)
    logged = [(r["sequences"], r["data.burstiness"], r["data.zipf"]) for r in whole.metrics]
    assert logged == [(0, 1.0, 0.0), (320, 1.0, 1.5), (640, 3.0, 0.0), (960, 3.0, 0.0)]
    # stopped before the switch at 480 (inside the next chunk) and resumed: the same records, bit for bit
    train(member.config, plan, tmp_path / "resumed", progress=False, stop_after_chunks=1)
    assert len(_lines(tmp_path / "resumed")) == 2
    train(member.config, plan, tmp_path / "resumed", progress=False)
    assert _lines(tmp_path / "resumed") == _lines(tmp_path / "whole")


def _lines(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("text, message", [
    ("set data.classes = 3 during 10k..\n", "'data.classes' cannot change during training"),
    ("set data.zipf = 1.0 during eval\n", "not during eval"),
    ("set data.mixture = [0.5, 0.5] during 10k..\n", "number of generators from 1 to 2"),
    ("set data.burstiness = 3 during 10k..\n", "from 10000 sequences on: burstiness 3"),
])
def test_a_schedule_of_a_shape_or_an_impossible_value_is_an_error_at_its_statement(text, message):
    with pytest.raises(SpecError) as err:
        load_experiment(text)
    assert message in str(err.value) and err.value.span.line == 1
