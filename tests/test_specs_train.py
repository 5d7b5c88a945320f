"""`opto run` of a spec trains exactly as the same intervention written by hand."""

from __future__ import annotations

import json

import jax.numpy as jnp

from optodsl.experiment import run_experiment
from optodsl.model import Overrides
from optodsl.train.trainer import train
from test_phase_change import only_head

SETTINGS = {"train.sequences": 3200, "train.lr": 1e-3, "eval.every": 640, "eval.sequences": 100, "data.total_classes": 200}


def prev_token_head2(model, batch):
    t = 5
    pattern = jnp.zeros((t, t)).at[jnp.arange(t), jnp.maximum(jnp.arange(t) - 1, 0)].set(1.0)
    return Overrides({"L1.pattern": pattern}, {"L1.pattern": (jnp.arange(8) == 2)[:, None, None]})


def test_spec_runs_match_hand_written_overrides(tmp_path):
    for text, builder in (("ablate L2.* except H3\n", only_head(3)), ("clamp L1.H2.pattern = prev_token\n", prev_token_head2)):
        spec = tmp_path / "s.opto"
        spec.write_text(text)
        out = tmp_path / text.split()[0]
        (res,) = run_experiment(spec, out, dict(SETTINGS), progress=False)
        by_hand = train(json_config(out), builder, progress=False).metrics
        assert [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()] == by_hand
        assert (out / "spec.opto").read_text() == text
        assert len(json.loads((out / "spec.json").read_text())["sha256"]) == 64


def json_config(run_dir):
    from optodsl.config import ExperimentConfig

    return ExperimentConfig.model_validate_json((run_dir / "config.json").read_text())
