"""The local learning coefficient: d/2 for a regular model (full-rank linear regression), k/2 with
only k of its weights moving, one program over checkpoints, and `opto llc` on a tiny run."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from optodsl.analysis.llc import LLCSettings, estimate, split_rhat

D, N = 10, 1000
SETTINGS = LLCSettings(chains=8, steps=2000, burn_in=500, eps=2e-4, gamma=1.0, nbeta=N / np.log(N), batch=N)


def _regression():
    kx, kn, kw = jax.random.split(jax.random.PRNGKey(3), 3)
    x = jax.random.normal(kx, (N, D))
    y = x @ jax.random.normal(kw, (D,)) + jax.random.normal(kn, (N,))
    w_star = jnp.linalg.lstsq(x, y)[0]  # the minimum of the loss

    def loss(w, batch):  # Gaussian negative log-likelihood per sample (unit noise), up to a constant
        return 0.5 * jnp.mean((batch[1] - batch[0] @ w["w"]) ** 2)

    return loss, {"w": w_star}, lambda key: (x, y)


def test_llc_of_full_rank_linear_regression_is_half_its_parameters():
    loss, w_star, sample = _regression()
    stacked = jax.tree.map(lambda a: jnp.stack([a, a]), w_star)
    out = estimate(loss, stacked, sample, SETTINGS)
    assert out["trace"].shape == (2, 8, 2000)
    assert abs(out["llc"][0] - D / 2) < 0.1 * D / 2, out["llc"]
    np.testing.assert_allclose(out["llc"][0], out["llc"][1], rtol=1e-5)  # one program over points
    assert (out["rhat"] < 1.1).all() and out["finite"].all()
    # only k weights move: the refined LLC of those weights is k/2
    k = 4
    mask = {"w": jnp.arange(D) < k}
    part = estimate(loss, jax.tree.map(lambda a: a[None], w_star), sample, SETTINGS, mask=mask)
    assert abs(part["llc"][0] - k / 2) < 0.1 * k / 2, part["llc"]


def test_split_rhat_flags_chains_that_disagree():
    rng = np.random.default_rng(0)
    mixed = rng.normal(size=(1, 4, 400))
    apart = mixed + np.arange(4)[None, :, None]
    assert split_rhat(mixed)[0] < 1.05 and split_rhat(apart)[0] > 1.5
    assert np.isnan(split_rhat(mixed[:, :1])[0])


def test_a_head_mask_moves_only_that_heads_q_k_v_o_slices():
    from optodsl.analysis.llc import head_mask
    from optodsl.config import ExperimentConfig
    from optodsl.train.restore import new_model

    model = new_model(ExperimentConfig(), jax.random.PRNGKey(0))
    mask = head_mask(model, 2, 3)
    block = mask.blocks[1]
    for name in ("wq", "wk", "wv", "wo"):
        weights = np.asarray(getattr(block, name))
        assert weights[3].all() and weights.sum() == weights[3].size
    assert sum(float(np.asarray(x).sum()) for x in jax.tree.leaves(mask)) == 4 * 64 * 8
    assert not np.asarray(mask.blocks[0].wq).any() and not np.asarray(mask.w_out).any()


def test_opto_llc_estimates_every_kept_point_of_a_tiny_run(tmp_path):
    import json

    from typer.testing import CliRunner

    from optodsl.cli import app
    from optodsl.config import DataConfig, EvalConfig, ExperimentConfig, ModelConfig, TrainConfig
    from optodsl.train.trainer import train

    cfg = ExperimentConfig(model=ModelConfig(layers=1, heads=2, d_model=16), data=DataConfig(total_classes=200, feature_dim=16),
                           train=TrainConfig(sequences=640, lr=1e-3, keep="every 320"),
                           eval=EvalConfig(every=640, sequences=32, sets=("train",)))
    run = tmp_path / "run"
    train(cfg, None, run, progress=False)
    runner = CliRunner()
    # a run trained from Python has no spec.opto: its interventions are unknown, so --bare is asked for
    refused = runner.invoke(app, ["llc", str(run), "--steps", "30", "--burn-in", "10"])
    assert refused.exit_code == 2 and "--bare" in refused.output
    bad = runner.invoke(app, ["llc", str(run), "--bare", "--head", "L3.H0"])
    assert bad.exit_code == 2 and "--head:1:1: error: no head L3.H0 in this model" in bad.output
    (run / "series" / "seq-000000320.npz").write_bytes(b"damaged")
    args = ["llc", str(run), "--bare", "--over-training", "--chains", "2", "--steps", "30", "--burn-in", "10", "--head", "L1.H1"]
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    assert "seq-000000320.npz: sha256 differs" in out.output and "point at 320 sequences skipped" in out.output
    written = json.loads((run / "llc.json").read_text())
    assert [p["sequences"] for p in written["points"]] == [640]  # the damaged point skipped, never silently
    assert written["weights"] == "L1.H1" and written["interventions"] == "bare"
    point = written["points"][0]
    assert len(point["trace"]) == 2 and len(point["trace"][0]) == 30 and point["trace"][0][0] == 0.0
    assert point["llc"] == np.mean(point["chains"]) and isinstance(point["converged"], bool)
    assert "sequences" in out.output and "640" in out.output and "written:" in out.output
