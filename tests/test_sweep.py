"""A sweep trains as one vmapped program, sharded over the host devices, with each member's
metrics equal to training it alone."""

from __future__ import annotations

import json

import jax
import numpy as np

from optodsl.experiment import run_experiment

SETTINGS = {"train.sequences": 1920, "eval.every": 640, "eval.sequences": 100, "data.total_classes": 200}


def _metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_sweep_members_match_their_runs_alone_across_two_devices(tmp_path):
    assert len(jax.devices()) == 2  # optodsl gives the host platform one device per core
    spec = tmp_path / "sweep.opto"
    spec.write_text("sweep h in [1, 3]\nsweep lr in [0.001, 0.0003]\nablate L2.* except H$h\nset train.lr = $lr\n")
    results = run_experiment(spec, tmp_path / "together", dict(SETTINGS), progress=False)
    assert len(results) == 4 and all(r.summary["runs_in_program"] == 4 for r in results)
    for h, lr in ((1, 0.001), (3, 0.0003)):
        alone = tmp_path / f"alone{h}.opto"
        alone.write_text(f"ablate L2.* except H{h}\nset train.lr = {lr}\n")
        (single,) = run_experiment(alone, tmp_path / f"alone{h}", dict(SETTINGS), progress=False)
        assert single.summary["runs_in_program"] == 1
        member = tmp_path / "together" / f"sweep-h{h}-lr{lr}"
        together, by_itself = _metrics(member), _metrics(tmp_path / f"alone{h}")
        assert [m["sequences"] for m in together] == [m["sequences"] for m in by_itself]
        for a, b in zip(together, by_itself):
            for key, value in b.items():
                if isinstance(value, float):
                    np.testing.assert_allclose(a[key], value, rtol=2e-4, atol=2e-5, err_msg=key)


def test_different_plain_override_functions_cannot_share_a_program():
    import pytest

    from optodsl.config import ExperimentConfig
    from optodsl.train.trainer import build_program

    with pytest.raises(ValueError, match="one shared overrides function"):
        build_program([ExperimentConfig()] * 2, [lambda m, b: None, lambda m, b: None])
