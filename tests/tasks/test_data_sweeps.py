"""The few-shot stream's data values (burstiness, Zipf exponent, noise, mixture weights) are traced
inside the jitted sampler: runs that differ only in them train as one program, each equal to its run
alone."""

from __future__ import annotations

import json

import numpy as np

from optodsl.experiment import run_experiment, run_experiments
from optodsl.pipeline import plan_for
from optodsl.experiment import load_experiment
from optodsl.train.program import program_groups
from test_sweep import _compiles_of

SETTINGS = {"train.sequences": 960, "eval.every": 320, "eval.sequences": 64, "data.total_classes": 200,
            "data.feature_dim": 32, "train.lr": 1e-3}
STREAM = "set data.pairs = 4\nset data.labels = 6\nset data.distractors = false\n"


def _metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_a_four_member_data_sweep_trains_as_one_program_compiled_once_each_member_equal_to_its_run_alone(tmp_path):
    spec = tmp_path / "bursty.opto"
    spec.write_text(STREAM + "sweep (b, z, n) in [(0, 0, 0), (1, 0, 0), (2, 1.5, 0), (3, 0, 0.5)]\n"
                    "set data.burstiness = $b\nset data.zipf = $z\nset data.noise = $n\n")
    results, compiles = _compiles_of("run", lambda: run_experiments([spec], tmp_path / "together", dict(SETTINGS),
                                                                    progress=False))
    assert len(results) == 4 and all(r.summary["runs_in_program"] == 4 for r in results)
    assert compiles == 1
    runs = sorted(p.name for p in (tmp_path / "together").iterdir())
    # the default stream's member (drawn as before the data settings) and one drawing every other path, alone
    for (b, z, n), name in (((1, 0, 0), "bursty-b1-z0-n0"), ((3, 0, 0.5), "bursty-b3-z0-n0.5")):
        assert name in runs
        alone = tmp_path / f"alone{b}.opto"
        alone.write_text(STREAM + f"set data.burstiness = {b}\nset data.zipf = {z}\nset data.noise = {n}\n")
        (single,) = run_experiment(alone, tmp_path / f"alone{b}", dict(SETTINGS), progress=False)
        assert single.summary["runs_in_program"] == 1
        together, by_itself = _metrics(tmp_path / "together" / name), _metrics(tmp_path / f"alone{b}")
        assert [m["sequences"] for m in together] == [m["sequences"] for m in by_itself] == [0, 320, 640, 960]
        for a, c in zip(together, by_itself):
            for key, value in c.items():
                if isinstance(value, float):
                    np.testing.assert_allclose(a[key], value, rtol=2e-4, atol=2e-5, err_msg=f"{name} {key}")
    # the members really drew different streams
    finals = {r.run_dir.name: r.metrics[-1]["train/loss"] for r in results}
    assert len({round(v, 6) for v in finals.values()}) == 4


def test_data_settings_that_change_shapes_make_separate_programs():
    """Mixture weights of one length share a program; another number of generators, or another
    context length, does not."""
    exp = load_experiment("sweep w in [0.2, 0.5]\nset data.mixture = [$w, 0.5]\nset data.burstiness = [1, 0]\n"
                          "set data.rest = \"no_support\"\n", dict(SETTINGS))
    assert program_groups([plan_for(m) for m in exp.members], [m.config for m in exp.members]) == [[0, 1]]
    exp = load_experiment("sweep p in [2, 3]\nset data.pairs = $p\n", dict(SETTINGS))
    assert program_groups([plan_for(m) for m in exp.members], [m.config for m in exp.members]) == [[0], [1]]
