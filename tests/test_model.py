"""The transformer: site names and shapes, overrides applied in place, gradients around them."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from optodsl.config import DataConfig, ModelConfig
from optodsl.model.overrides import Overrides
from optodsl.model.transformer import init_model
from optodsl.sites import site_table


def prev_token_pattern(t: int) -> jnp.ndarray:
    rows = jnp.arange(t)
    return jnp.zeros((t, t)).at[rows, jnp.maximum(rows - 1, 0)].set(1.0)


def test_every_site_is_returned_with_its_documented_shape(model, batch, small_data):
    _, acts = model(batch)
    table = site_table(model.config, small_data)
    assert list(acts) == list(table)
    for key, info in table.items():
        assert acts[key].shape == (8, *info.shape), key


def test_optional_architecture_variants_expose_their_sites(small_data):
    for cfg in (ModelConfig(mlp=True), ModelConfig(positions="learned", prenorm=False), ModelConfig(positions="sinusoidal", layers=3)):
        m = init_model(cfg, small_data, jax.random.PRNGKey(1))
        batch = {"exemplars": jnp.ones((2, 3, 512)), "labels": jnp.array([[0, 1, 0], [2, 3, 3]])}
        logits, acts = m(batch)
        assert logits.shape == (2, small_data.labels)
        assert set(acts) == set(site_table(cfg, small_data))


def test_pattern_override_is_exact_and_later_sites_use_it(model, batch):
    pattern = prev_token_pattern(5)
    mask = jnp.zeros((8, 1, 1), bool).at[2].set(True)
    ov = Overrides({"L1.pattern": jnp.broadcast_to(pattern, (8, 5, 5))}, {"L1.pattern": mask})
    _, acts = model(batch, ov)
    _, plain = model(batch)
    np.testing.assert_array_equal(acts["L1.pattern"][:, 2], np.broadcast_to(pattern, (8, 5, 5)))
    np.testing.assert_array_equal(acts["L1.pattern"][:, 3], plain["L1.pattern"][:, 3])
    # z of head 2 is the value of the previous position (position 0 keeps its own)
    v = acts["L1.v"][:, 2]
    np.testing.assert_allclose(acts["L1.z"][:, 2, 1:], v[:, :-1], atol=1e-6)
    np.testing.assert_allclose(acts["L1.z"][:, 2, 0], v[:, 0], atol=1e-6)
    assert not np.allclose(acts["L2.resid_in"], plain["L2.resid_in"])


def test_value_ablation_zeroes_heads_output(model, batch):
    ov = Overrides({"L2.v": jnp.zeros(())}, {"L2.v": jnp.ones((8, 1, 1), bool)})
    _, acts = model(batch, ov)
    np.testing.assert_array_equal(acts["L2.out"], 0.0)
    np.testing.assert_array_equal(acts["L2.attn_out"], 0.0)


def test_per_head_output_override_feeds_the_attention_output(model, batch):
    ov = Overrides({"L1.out": jnp.zeros(())}, {"L1.out": jnp.ones((8, 1, 1), bool).at[0].set(False)})
    _, acts = model(batch, ov)
    np.testing.assert_allclose(acts["L1.attn_out"], acts["L1.out"][:, 0], atol=1e-6)


def test_clamped_pattern_gets_no_gradient_into_its_query_and_key(model, batch):
    pattern = jnp.broadcast_to(prev_token_pattern(5), (8, 5, 5))
    ov = Overrides({"L1.pattern": pattern}, {"L1.pattern": jnp.zeros((8, 1, 1), bool).at[2].set(True)})
    params, static = eqx.partition(model, eqx.is_array)

    def loss(p):
        logits, _ = eqx.combine(p, static)(batch, ov)
        return jax.nn.logsumexp(logits, -1).sum() - logits[:, 0].sum()

    g = jax.grad(loss)(params)
    for w in (g.blocks[0].wq, g.blocks[0].wk):
        assert np.all(np.asarray(w[2]) == 0.0)
        assert np.abs(np.asarray(w[3])).sum() > 0
    assert np.abs(np.asarray(g.blocks[0].wv[2])).sum() > 0  # values of the clamped head still learn


def test_chained_overrides_later_wins():
    a = Overrides({"x": jnp.ones(3)}, {"x": jnp.array([True, True, False])})
    b = Overrides({"x": 2 * jnp.ones(3)}, {"x": jnp.array([False, True, False])})
    c = a.then(b)
    np.testing.assert_array_equal(c.apply("x", jnp.zeros(3)), [1.0, 2.0, 0.0])


def test_rope_depends_on_relative_position_only(small_data):
    from optodsl.model.transformer import rope

    q = jax.random.normal(jax.random.PRNGKey(0), (1, 1, 1, 8))
    k = jax.random.normal(jax.random.PRNGKey(1), (1, 1, 1, 8))
    rep = lambda x, t: jnp.broadcast_to(x, (1, 1, t, 8))
    qr, kr = rope(rep(q, 6), 10000.0), rope(rep(k, 6), 10000.0)
    dots = jnp.einsum("...te,...se->...ts", qr, kr)[0, 0]
    np.testing.assert_allclose(dots[3, 1], dots[5, 3], rtol=1e-5)
    np.testing.assert_allclose(dots[2, 2], (q * k).sum(), rtol=1e-5)
