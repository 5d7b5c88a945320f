"""`graft`: a site's value comes from another trained run's checkpoint, for all inputs."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optodsl.config import DataConfig, EvalConfig, ExperimentConfig, TrainConfig
from optodsl.tasks.fewshot import make_task
from optodsl.errors import DataError
from optodsl.experiment import load_experiment, plan_for
from optodsl.model import Context, init_model
from optodsl.train.trainer import train

SMALL = ExperimentConfig(data=DataConfig(total_classes=200), train=TrainConfig(sequences=640, lr=1e-3),
                         eval=EvalConfig(every=640, sequences=32))
SETTINGS = {"data.total_classes": 200, "train.sequences": 640, "train.lr": 1e-3, "eval.every": 640, "eval.sequences": 32}


def test_graft_takes_the_site_from_the_other_run_and_blocks_its_gradient(tmp_path):
    donor = train(SMALL, None, tmp_path / "donor", progress=False).model
    exp = load_experiment(f'graft L1.resid_out from "{tmp_path / "donor"}"\n', SETTINGS)
    plan = plan_for(exp.members[0])
    config = exp.members[0].config
    model = init_model(config.model, config.data, jax.random.PRNGKey(11))
    batch = make_task(config.data).sample(jax.random.PRNGKey(2), "train", 4)
    _, acts = plan(model, batch, Context(sequences=jnp.asarray(0)))
    _, donor_acts = donor(batch)
    np.testing.assert_allclose(acts["L1.resid_out"], donor_acts["L1.resid_out"], rtol=1e-5, atol=1e-5)
    _, own = model(batch)
    assert not np.allclose(acts["L1.resid_out"], own["L1.resid_out"])

    params, static = eqx.partition(model, eqx.is_array)
    grads = jax.grad(lambda p: plan(eqx.combine(p, static), batch, Context(sequences=jnp.asarray(0)))[0].sum())(params)
    assert np.all(np.asarray(grads.blocks[0].wq) == 0) and np.all(np.asarray(grads.w_exemplar) == 0)
    assert np.abs(np.asarray(grads.blocks[1].wq)).sum() > 0


def test_graft_from_a_missing_run_names_the_directory(tmp_path):
    exp = load_experiment(f'graft L1.resid_out from "{tmp_path / "nowhere"}"\n', SETTINGS)
    with pytest.raises(DataError, match="nowhere.*not a run directory"):
        plan_for(exp.members[0])


def test_graft_from_a_run_of_another_architecture_says_what_differs(tmp_path):
    from optodsl.pipeline import load_graft

    other = ExperimentConfig(model=ExperimentConfig().model.model_copy(update={"layers": 1}))
    (tmp_path / "donor").mkdir()
    (tmp_path / "donor" / "config.json").write_text(other.model_dump_json())
    with pytest.raises(DataError, match="different architecture") as info:
        load_graft(str(tmp_path / "donor"), ExperimentConfig())
    assert "found: model.layers = 1" in str(info.value) and "model.layers = 2" in str(info.value)
