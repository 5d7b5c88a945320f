"""Gradient cuts on one path (`stopgrad L2.H3.k from L1`): the forward pass is bitwise unchanged, the
named path passes exactly no gradient, and the gradient equals a hand-written forward's in which the
reading head's input is the residual stream with the source's write under stop_gradient."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optodsl.errors import SpecError
from optodsl.model.overrides import Context
from optodsl.model.parameters import arrays
from optodsl.model.transformer import rope
from optodsl.pipeline import DEFAULT, check_spec, compile_spec
from optodsl.tasks import build_task
from optodsl.train.restore import new_model

SETTINGS = {"train.sequences": 640, "eval.every": 320, "eval.sequences": 32, "eval.sets": ["train"],
            "data.total_classes": 200}


def _leaves(tree) -> dict[str, np.ndarray]:
    return {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(arrays(tree))[0]}


def _setup(text: str, **extra):
    c = compile_spec(text, DEFAULT, {**SETTINGS, **extra})
    member, plan = c.experiment.members[0], c.plans[0]
    params, static = eqx.partition(new_model(member.config, jax.random.PRNGKey(3)), eqx.is_array)
    return member, plan, params, static


def _grads(plan, params, static, batch, read):
    """A jitted `sequences -> ((value, (logits, acts)), grads)` of `read(logits, acts)`."""

    @jax.jit
    def run(sequences):
        def loss(p):
            logits, acts = plan(eqx.combine(p, static), batch, Context(sequences=sequences, training=True))
            return read(logits, acts), (logits, acts)

        return jax.value_and_grad(loss, has_aux=True)(params)

    return run


def _layer_norm(ln, x):
    mean = x.mean(-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(((x - mean) ** 2).mean(-1, keepdims=True) + 1e-5) * ln.weight + ln.bias


def _reference_logits(model, batch, head: int):
    """The paper's network written out by hand (pre-norm attention-only, RoPE, final norm) with layer 2's
    head `head` reading its keys from `embed + stop_gradient(layer 1's write)`: the residual stream decomposed."""
    cfg = model.config
    t = batch["exemplars"].shape[1] * 2 - 1
    causal = np.tril(np.ones((t, t), bool))

    def attention(blk, x_q, x_k, x_v):
        q = jnp.einsum("btd,hde->bhte", _layer_norm(blk.ln, x_q), blk.wq)
        k = jnp.einsum("bhtd,hde->bhte", _layer_norm(blk.ln, x_k), blk.wk)
        v = jnp.einsum("btd,hde->bhte", _layer_norm(blk.ln, x_v), blk.wv)
        q, k = rope(q, cfg.rope_base), rope(k, cfg.rope_base)
        scores = jnp.where(causal, jnp.einsum("bhse,bhte->bhst", q, k) / math.sqrt(cfg.head_dim), -1e9)
        return jnp.einsum("bhst,bhte,hed->bsd", jax.nn.softmax(scores, -1), v, blk.wo)

    embed = model.embed(batch)
    first = model.blocks[0]
    write1 = attention(first, embed, jnp.broadcast_to(embed[:, None], (embed.shape[0], cfg.heads, *embed.shape[1:])), embed)
    x = embed + write1
    keys_read = jnp.stack([embed + jax.lax.stop_gradient(write1) if h == head else x for h in range(cfg.heads)], 1)
    x = x + attention(model.blocks[1], x, keys_read, x)
    return (_layer_norm(model.ln_final, x) @ model.w_out + model.b_out)[:, -1]


def test_a_path_cut_keeps_the_forward_bitwise_zeroes_the_path_and_matches_the_decomposed_stream(batch):
    """One program before its schedule starts (the uncut model) and after (the cut), on real sequences."""
    member, plan, params, static = _setup("stopgrad L2.H3.k from L1 during 320..\n")
    task = build_task(member.config)
    shape = jax.eval_shape(lambda: plan(eqx.combine(params, static), batch, Context(sequences=jnp.asarray(0))))[1]["L2.k"].shape
    r = jax.random.normal(jax.random.PRNGKey(0), (shape[0], *shape[2:]))

    @jax.jit
    def both(sequences):
        """The task's loss and a loss that reads only L2.H3's keys, each with its gradient."""
        def losses(p):
            logits, acts = plan(eqx.combine(p, static), batch, Context(sequences=sequences, training=True))
            values = jnp.stack([task.loss_and_accuracy(logits, batch)[0], (acts["L2.k"][:, 3] * r).sum()])
            return values, (values, logits, acts)

        grads, (values, logits, acts) = jax.jacrev(losses, has_aux=True)(params)
        return values[0], logits, acts, jax.tree.map(lambda x: x[0], grads), jax.tree.map(lambda x: x[1], grads)

    loss, logits, acts, g, p = both(jnp.asarray(0))
    loss_cut, logits_cut, acts_cut, g_cut, p_cut = both(jnp.asarray(320))
    g, g_cut, p, p_cut = _leaves(g), _leaves(g_cut), _leaves(p), _leaves(p_cut)
    np.testing.assert_array_equal(logits_cut, logits)
    assert loss_cut == loss
    assert acts_cut.keys() == acts.keys()
    for key in acts:
        np.testing.assert_array_equal(acts_cut[key], acts[key], err_msg=key)

    # the named path alone: a loss that reads only L2.H3's keys passes exactly nothing to layer 1,
    # and what it passes to the embeddings directly, and to L2.H3's own key map, is unchanged
    for key in p:
        if key.startswith(".blocks[0]"):
            assert not p_cut[key].any() and p[key].any(), key
    for key in (".blocks[1].wk", ".blocks[1].ln.weight", ".blocks[1].ln.bias"):
        assert p_cut[key].any(), key
        np.testing.assert_allclose(p_cut[key], p[key], rtol=1e-5, atol=1e-7, err_msg=key)
    assert p_cut[".w_exemplar"].any() and not np.allclose(p_cut[".w_exemplar"], p[".w_exemplar"])

    # the whole loss: every gradient equals the hand-written decomposed stream's
    reference = jax.value_and_grad(lambda p: task.loss_and_accuracy(_reference_logits(eqx.combine(p, static), batch, 3), batch)[0])
    ref_loss, ref = jax.jit(reference)(params)
    np.testing.assert_allclose(ref_loss, loss, rtol=1e-6)
    ref = _leaves(ref)
    for key in g_cut:
        np.testing.assert_allclose(g_cut[key], ref[key], rtol=1e-4, atol=1e-4 * np.abs(ref[key]).max(), err_msg=key)
    # downstream of layer 1's write, and the heads and maps that do not read it through L2.H3's keys, as uncut
    for key in (".w_out", ".b_out", ".ln_final.weight", ".ln_final.bias", ".blocks[1].wo", ".blocks[1].wv"):
        np.testing.assert_array_equal(g_cut[key], g[key], err_msg=key)
    for key in (".blocks[0].wq", ".blocks[0].wk", ".blocks[0].wv", ".blocks[0].wo"):
        assert not np.allclose(g_cut[key], g[key]), key  # the path carried gradient, and it is gone


@pytest.mark.parametrize(("text", "extra", "stopped", "kept"), [
    # every write the head reads: nothing upstream learns through its keys, its key map does
    ("stopgrad L2.H3.k from L1, embed\n", {}, (".blocks[0]", ".w_exemplar", ".w_label", ".b_exemplar"), (".blocks[1].wk",)),
    # one head's write: that head gets nothing through the path, the other heads of layer 1 still do
    ("stopgrad L2.H3.k from L1.H2\n", {}, (".blocks[0].wq@2", ".blocks[0].wk@2", ".blocks[0].wv@2", ".blocks[0].wo@2"),
     (".blocks[0].wq@1", ".blocks[0].wo@5", ".w_exemplar")),
    # an MLP's write: the MLP gets nothing through the path, layer 1's attention still does
    ("stopgrad L2.H3.k from L1.mlp_out\n", {"model.mlp": True}, (".blocks[0].w1", ".blocks[0].w2", ".blocks[0].b1", ".blocks[0].b2"),
     (".blocks[0].wq", ".blocks[0].wo")),
])
def test_the_path_from_each_kind_of_source_passes_exactly_no_gradient(batch, text, extra, stopped, kept):
    """A loss that reads only L2.H3's keys, in one program before the cut's schedule starts and after."""
    member, plan, params, static = _setup(text.replace("\n", " during 320..\n"), **extra)
    shape = jax.eval_shape(lambda: plan(eqx.combine(params, static), batch, Context(sequences=jnp.asarray(0))))[1]["L2.k"].shape
    r = jax.random.normal(jax.random.PRNGKey(0), (shape[0], *shape[2:]))
    run = _grads(plan, params, static, batch, lambda logits, acts: (acts["L2.k"][:, 3] * r).sum())
    (_, (plain_logits, plain_acts)), _ = run(jnp.asarray(0))
    (_, (logits, acts)), g = run(jnp.asarray(320))
    np.testing.assert_array_equal(logits, plain_logits)
    for key in plain_acts:
        np.testing.assert_array_equal(acts[key], plain_acts[key], err_msg=key)
    g = {key: np.asarray(x) for key, x in _leaves(g).items()}

    def entries(name: str) -> np.ndarray:
        """`.blocks[0].wq@2`: head 2's slice; `.blocks[0]`: every parameter under it; else one array."""
        key, _, head = name.partition("@")
        if head:
            return g[key][int(head)]
        found = [v.ravel() for k, v in g.items() if k == name or k.startswith(name + ".")]
        assert found, name
        return np.concatenate(found)

    for name in stopped:
        assert not entries(name).any(), name
    for name in kept:
        assert entries(name).any(), name


@pytest.mark.parametrize(("text", "message"), [
    ("stopgrad L2.H3.k from L2\n", "L2 does not write before L2 reads"),
    ("stopgrad L2.H3.pattern from L1\n", "a path cut reads at a head's q, k or v"),
    ("stopgrad L2.H3.k from L1.z\n", "L1.z is not a write into the residual stream"),
    ("stopgrad L2.H3.k from L1.H2.z\n", "named by the head alone"),
    ("stopgrad L2.H3.k from logits\n", "'logits' writes nothing a head reads"),
    ("stopgrad L2.H3.k from \"runs/x\"\n", "a path cut's source is a part of the network"),
    ("clamp L2.H3.k = 0 from L1, embed\n", "'clamp' reads one source"),
    ("stopgrad L2.H3.k from L1\nstopgrad L2.H3.k from embed during 100..\n", "L2.H3.k's input is already cut from L1"),
])
def test_path_cuts_refuse_what_they_cannot_mean(text, message):
    with pytest.raises(SpecError) as caught:
        check_spec(text, DEFAULT)
    assert message in caught.value.message


def test_explain_lists_each_cut_path_and_check_warns_where_a_clamp_already_blocks_it():
    from optodsl.commands.explain_text import explain_lines
    from optodsl.explain import explain_experiment

    exp = check_spec("stopgrad L2.H3.k from L1, embed during 50k..\nstopgrad L1.H2.z\n", DEFAULT)
    (run,) = explain_experiment(exp)
    assert "  gradient cuts (the forward pass is unchanged): L2.H3.k from L1, embed (50000..), L1.H2.z (always)" in explain_lines([run])
    cuts = [(a["site"], a["params"]["from"]) for a in run["interventions"] if a["value"] == "pathcut"]
    assert cuts == [("L2.H3.k", "L1, embed")]
    for text, blocker in [("clamp L2.H3.pattern = prev_token\nstopgrad L2.H3.k from L1\n", "L2.H3.pattern"),
                          ("ablate L2.H3.k\nstopgrad L2.H3.k from L1\n", "L2.H3.k"),
                          ("ablate L1.H2\nstopgrad L2.H3.q from L1.H2\n", "L1.H2.v")]:
        warnings = check_spec(text, DEFAULT).warnings
        assert any("is already stopped" in w.message and blocker in w.message for w in warnings), (text, warnings)
    assert not check_spec("clamp L2.H3.pattern = prev_token during 0..10k\nstopgrad L2.H3.k from L1\n", DEFAULT).warnings


def test_a_stopgrad_at_a_heads_output_stops_its_gradient_with_the_forward_unchanged(batch):
    """`stopgrad L1.H2.out` cuts the head's own term of the attention write, which the model computes
    as one matmul of every head's `z` (the `out` site is only recorded): its maps get no gradient."""
    member, plan, params, static = _setup("stopgrad L1.H2.out during 320..\n")
    task = build_task(member.config)
    run = _grads(plan, params, static, batch, lambda logits, acts: task.loss_and_accuracy(logits, batch)[0])
    (loss, (logits, acts)), g = run(jnp.asarray(0))
    (loss_cut, (logits_cut, acts_cut)), g_cut = run(jnp.asarray(320))
    g, g_cut = _leaves(g), _leaves(g_cut)
    np.testing.assert_array_equal(logits_cut, logits)
    for key in acts:
        np.testing.assert_array_equal(acts_cut[key], acts[key], err_msg=key)
    for w in ("wq", "wk", "wv", "wo"):
        key = f".blocks[0].{w}"
        assert not g_cut[key][2].any() and g[key][2].any(), key
        assert g_cut[key][1].any(), key
    for key in (".w_out", ".b_out", ".blocks[1].wo"):
        np.testing.assert_array_equal(g_cut[key], g[key], err_msg=key)


def test_runs_that_differ_in_the_cut_heads_or_source_heads_share_one_program():
    """Readers and sources are masks, data like the interventions' own: one program for the sweep."""
    from optodsl.train.program import program_key

    c = compile_spec("sweep (h, s) in [(1, 2), (3, 5), (3, 2)]\nstopgrad L2.H$h.k from L1.H$s during 0..$h\n", DEFAULT, SETTINGS)
    assert len(c.plans) == 3
    assert len({program_key(plan, m.config) for plan, m in zip(c.plans, c.experiment.members)}) == 1
    other = compile_spec("stopgrad L2.H1.k from L1\n", DEFAULT, SETTINGS)  # every head of layer 1: the same mask's shape
    assert program_key(other.plans[0], other.experiment.members[0].config) == program_key(c.plans[0], c.experiment.members[0].config)


def test_a_model_of_ones_own_takes_site_cuts_and_refuses_a_path_cut():
    import optodsl
    from test_own_model import SETTINGS as OWN, mixer

    assert optodsl.compile("stopgrad L1.H0.z\n", settings=OWN, model=mixer).plans
    with pytest.raises(SpecError, match="a path cut .* needs the built-in transformer"):
        optodsl.compile("stopgrad L2.H0.v from embed\n", settings=OWN, model=mixer)
