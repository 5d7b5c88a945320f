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
