"""Gradients through compiled plans: overridden entries pass none, everything else passes its own."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optodsl.model import Context

from . import plan_of


def _grads(text, config, model, batch):
    plan = plan_of(text, config)

    def loss(m):
        logits, _ = plan(m, batch, Context(sequences=jnp.asarray(0)))
        target = batch["labels"][:, -1]
        return -jnp.take_along_axis(jax.nn.log_softmax(logits), target[:, None], axis=1).mean()

    return eqx.filter_grad(loss)(model)


def _norms(w) -> np.ndarray:
    """Per-head gradient norms of a (H, ., .) weight."""
    return np.sqrt((np.asarray(w, np.float64) ** 2).sum(axis=(1, 2)))


def test_clamped_pattern_gives_its_heads_queries_and_keys_no_gradient(base_config, model, batch):
    g = _grads("clamp L1.H2.pattern = prev_token", base_config, model, batch)
    for name in ("wq", "wk"):
        norms = _norms(getattr(g.blocks[0], name))
        assert norms[2] == 0.0
        assert (np.delete(norms, 2) > 0).all()
    assert _norms(g.blocks[0].wv)[2] > 0  # its values still learn through the clamped pattern


def test_ablated_head_gets_no_gradient_on_its_values_or_output_map(base_config, model, batch):
    g = _grads("ablate L2.H1", base_config, model, batch)
    blk = g.blocks[1]
    for name in ("wv", "wo"):
        norms = _norms(getattr(blk, name))
        assert norms[1] == 0.0
        assert (np.delete(norms, 1) > 0).all()
    # observed: with its values zero, the head's pattern changes nothing, so wq/wk get none either
    assert _norms(blk.wq)[1] == 0.0 and _norms(blk.wk)[1] == 0.0
    assert (np.delete(_norms(blk.wq), 1) > 0).all()


def test_unablated_run_gives_every_head_gradient(base_config, model, batch):
    g = _grads("ablate L2.H1 during 100..200", base_config, model, batch)  # inactive at sequence 0
    assert (_norms(g.blocks[1].wv) > 0).all() and (_norms(g.blocks[1].wq) > 0).all()


def test_preserved_pattern_still_trains_queries_and_keys_through_the_first_pass(base_config, model, batch):
    """Observed and intended: the held pattern is the first pass's activation, not a constant, so
    layer 2's wq/wk receive gradient through it; layer 1's values are ablated in the final pass
    but its wv still gets gradient through the first (recording) pass, which feeds layer 2's pattern."""
    g = _grads("ablate L1.* preserving L2.pattern", base_config, model, batch)
    assert (_norms(g.blocks[1].wq) > 0).all() and (_norms(g.blocks[1].wk) > 0).all()
    assert (_norms(g.blocks[0].wv) > 0).all()
    assert (_norms(g.blocks[0].wo) > 0).all()


def test_copy_passes_gradient_into_the_copied_head_only(base_config, model, batch):
    g = _grads("copy logits from L2.H3", base_config, model, batch)
    blk = g.blocks[1]
    for name in ("wq", "wk"):
        norms = _norms(getattr(blk, name))
        assert norms[3] > 0
        assert (np.delete(norms, 3) == 0).all()  # the output is the copy: other heads do not matter
    assert np.abs(np.asarray(g.w_out)).max() == 0.0 and np.abs(np.asarray(g.b_out)).max() == 0.0
