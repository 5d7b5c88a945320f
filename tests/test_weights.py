"""Verbs on what learns: `freeze`, `train only`, `lr_scale`, `reinit` (parameter masks as data, applied
by the trainer) and `stopgrad` (a gradient cut that leaves the forward pass bitwise unchanged)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optodsl.config import ExperimentConfig
from optodsl.errors import SpecError
from optodsl.model.overrides import Context
from optodsl.model.parameters import arrays, parameter_mask
from optodsl.pipeline import DEFAULT, compile_spec
from optodsl.train import checkpoint
from optodsl.train.restore import make_optimizer, new_model
from optodsl.train.trainer import train

pytestmark = pytest.mark.usefixtures("reuse_programs")  # train() of the same config compiles once here (conftest)

SETTINGS = {"train.sequences": 640, "eval.every": 320, "eval.sequences": 32, "eval.sets": ["train"],
            "data.total_classes": 200, "train.lr": 1e-3, "train.checkpoint_every": 320}
"""Twenty steps; every run here but the reinit's has one rate statement, so they share one compiled program."""
BATCH = 32


def _compiled(text: str, **extra):
    c = compile_spec(text, DEFAULT, {**SETTINGS, **extra})
    return c.experiment.members[0], c.plans[0]


def _leaves(tree) -> dict[str, np.ndarray]:
    return {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(arrays(tree))[0]}


def _state(run_dir, config: ExperimentConfig, step: int | None = None):
    """(model, optimiser state) a run directory checkpointed."""
    template = new_model(config, jax.random.PRNGKey(0))
    opt = make_optimizer(config).init(eqx.filter(template, eqx.is_array))
    (model, opt_state, _), _ = checkpoint.load(run_dir, (template, opt, jnp.zeros((), jnp.int32)), step=step)
    return model, opt_state


def _moments(opt_state):
    """Adam's first and second moments, each as leaves by parameter path."""
    adam = opt_state[0]
    return _leaves(adam.mu), _leaves(adam.nu)


def _mask(member, index: int = 0) -> dict[str, np.ndarray]:
    w = member.weights[index]
    shapes = arrays(jax.eval_shape(lambda k: new_model(member.config, k), jax.random.PRNGKey(0)))
    return _leaves(parameter_mask(shapes, w.paths, w.invert))


def test_frozen_parameters_stay_bitwise_their_moments_zero_and_a_schedule_switches_and_resumes_exactly(tmp_path):
    member, plan = _compiled("freeze L1.H2, embed, L2.norm\nfreeze L1.H5 during 0..320\n")
    train(member.config, plan, tmp_path / "whole", progress=False)
    init = _leaves(new_model(member.config, jax.random.PRNGKey(member.config.seed.init)))
    frozen, scheduled = _mask(member, 0), _mask(member, 1)
    assert frozen[".blocks[0].wq"][2].all() and not frozen[".blocks[0].wq"][1].any() and frozen[".w_label"].all()
    assert frozen[".blocks[1].ln.weight"].all() and not frozen[".blocks[0].ln.weight"].any()
    assert scheduled[".blocks[0].wo"][5].all() and scheduled[".blocks[0].wo"].sum() == scheduled[".blocks[0].wo"][5].size
    end, end_opt = _state(tmp_path / "whole", member.config)
    trained, (mu, nu) = _leaves(end), _moments(end_opt)
    for key, f in frozen.items():
        np.testing.assert_array_equal(trained[key][f], init[key][f], err_msg=key)
        assert not mu[key][f].any() and not nu[key][f].any(), key
        if (~f).any():  # every other entry trained
            assert not np.array_equal(trained[key][~f], init[key][~f]), key
            assert nu[key][~f].any(), key
    # the scheduled freeze holds L1.H5 for the steps before 320 sequences, then lets it train
    at_switch, opt_at_switch = _state(tmp_path / "whole", member.config, step=320 // BATCH)
    switch, (mu_switch, _) = _leaves(at_switch), _moments(opt_at_switch)
    h5 = scheduled[".blocks[0].wq"]
    np.testing.assert_array_equal(switch[".blocks[0].wq"][h5], init[".blocks[0].wq"][h5])
    assert not mu_switch[".blocks[0].wq"][h5].any() and mu_switch[".blocks[0].wq"][~h5 & ~frozen[".blocks[0].wq"]].any()
    assert not np.array_equal(trained[".blocks[0].wq"][h5], init[".blocks[0].wq"][h5]) and mu[".blocks[0].wq"][h5].any()
    # stopped at the switch and resumed: the same network and optimiser state, bit for bit
    train(member.config, plan, tmp_path / "resumed", progress=False, stop_after_chunks=1)
    assert checkpoint.read_meta(tmp_path / "resumed")["step"] == 320 // BATCH
    train(member.config, plan, tmp_path / "resumed", progress=False)
    resumed, resumed_opt = _state(tmp_path / "resumed", member.config)
    for x, y in zip(jax.tree.leaves((arrays(resumed), resumed_opt)), jax.tree.leaves((arrays(end), end_opt))):
        np.testing.assert_array_equal(x, y)


def test_a_rate_scale_of_zero_is_a_freeze_and_train_only_freezes_the_complement():
    """Equal weight plans make equal runs: the trainer sees nothing else of these statements."""
    from optodsl.compile.lower import lower_weights

    def plan(text):
        return lower_weights(_compiled(text)[0])

    def same(a, b):
        return jax.tree.structure(a) == jax.tree.structure(b) and all(
            np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))

    assert same(plan("freeze L1, embed during 0..320\n"), plan("lr_scale L1, embed = 0 during 0..320\n"))
    assert not same(plan("freeze L1.H2\n"), plan("freeze L1.H3\n"))
    assert same(plan("freeze L1, embed, final_norm\n"), plan("train only L2, unembed\n"))
    only = _mask(_compiled("train only L2, unembed\n")[0])
    assert only[".blocks[0].wk"].all() and not only[".blocks[1].wk"].any() and not only[".w_out"].any()
    assert only[".w_exemplar"].all() and only[".ln_final.weight"].all()


def test_a_rate_scale_scales_the_update_from_its_count_on():
    from optodsl.compile.lower import lower_weights

    member, _ = _compiled("lr_scale L1 = 0.25 during 320..\n")
    plan = lower_weights(member)
    params = arrays(new_model(member.config, jax.random.PRNGKey(0)))
    for sequences, expected in ((0, 1.0), (319, 1.0), (320, 0.25), (10_000, 0.25)):
        rate = _leaves(plan.rate(params, jnp.asarray(sequences)))
        assert np.all(rate[".blocks[0].wq"] == expected) and np.all(rate[".blocks[1].wq"] == 1.0), sequences
    updates = jax.tree.map(jnp.ones_like, params)
    opt = make_optimizer(member.config).init(params)
    moved, _ = plan.update(params, updates, opt, opt, jnp.asarray(320))
    moved, old = _leaves(moved), _leaves(params)
    np.testing.assert_allclose(moved[".blocks[0].wq"] - old[".blocks[0].wq"], 0.25, rtol=1e-5)
    np.testing.assert_allclose(moved[".blocks[1].wq"] - old[".blocks[1].wq"], 1.0, rtol=1e-5)


def test_reinit_redraws_exactly_the_named_parameters_at_its_count_and_zeroes_their_moments():
    from optodsl.compile.lower import lower_weights

    member, _ = _compiled("reinit L1.H2 at 320 seed 7\n")
    plan = lower_weights(member)
    config = member.config
    params = arrays(new_model(config, jax.random.PRNGKey(1)))
    grown = jax.tree.map(lambda x: x + 1.0, params)  # moments far from zero
    opt = make_optimizer(config).init(params)
    opt = (opt[0]._replace(mu=grown, nu=grown), *opt[1:])
    fresh = [arrays(new_model(config, jax.random.PRNGKey(7)))]
    mask = _mask(member)
    for sequences in (0, 288, 352):  # the step starting at 320 is the only one that redraws
        same, same_opt = plan.reinit(params, opt, fresh, jnp.asarray(sequences), BATCH)
        assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(same), jax.tree.leaves(params)))
        assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(same_opt), jax.tree.leaves(opt)))
    redrawn, redrawn_opt = plan.reinit(params, opt, fresh, jnp.asarray(320), BATCH)
    new, old, drawn = _leaves(redrawn), _leaves(params), _leaves(fresh[0])
    mu, nu = _moments(redrawn_opt)
    for key, m in mask.items():
        np.testing.assert_array_equal(new[key][m], drawn[key][m], err_msg=key)
        np.testing.assert_array_equal(new[key][~m], old[key][~m], err_msg=key)
        assert not mu[key][m].any() and not nu[key][m].any()
        np.testing.assert_array_equal(mu[key][~m], old[key][~m] + 1.0, err_msg=key)
    assert mask[".blocks[0].wo"][2].all() and mask[".blocks[0].wo"].sum() == mask[".blocks[0].wo"][2].size


def test_reinit_in_training_fires_at_its_count_with_the_stated_seed(tmp_path):
    """Held by a freeze from the redraw on, the head ends as the seed-7 initialiser drew it; before the
    redraw the head trains."""
    member, plan = _compiled("reinit L1.H2 at 320 seed 7\nfreeze L1.H2 during 320..\n")
    train(member.config, plan, tmp_path / "reinit", progress=False)
    drawn = _leaves(new_model(member.config, jax.random.PRNGKey(7)))
    before, _ = _state(tmp_path / "reinit", member.config, step=320 // BATCH)
    init = _leaves(new_model(member.config, jax.random.PRNGKey(member.config.seed.init)))
    assert not np.array_equal(_leaves(before)[".blocks[0].wq"][2], init[".blocks[0].wq"][2])  # trained until then
    end, opt_state = _state(tmp_path / "reinit", member.config)
    mu, _ = _moments(opt_state)
    for w in ("wq", "wk", "wv", "wo"):
        key = f".blocks[0].{w}"
        np.testing.assert_array_equal(_leaves(end)[key][2], drawn[key][2], err_msg=key)
        assert not mu[key][2].any()
        assert not np.array_equal(_leaves(end)[key][1], drawn[key][1])


def _loss_and_grads(plan, config, model, batch):
    from optodsl.tasks import build_task

    task = build_task(config)
    params, static = eqx.partition(model, eqx.is_array)
    ctx = Context(sequences=jnp.asarray(0), training=True)

    def loss(p):
        logits, acts = plan(eqx.combine(p, static), batch, ctx)
        return task.loss_and_accuracy(logits, batch)[0], (logits, acts)

    (value, (logits, acts)), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
    return value, logits, acts, _leaves(grads)


def test_stopgrad_keeps_the_forward_bitwise_zeroes_the_named_gradient_and_leaves_the_rest(batch):
    """One program, evaluated before its schedule starts (the uncut model) and after (the cut)."""
    from optodsl.tasks import build_task

    member, plan = _compiled("stopgrad L1.H2.z during 320..\n")
    task = build_task(member.config)
    params, static = eqx.partition(new_model(member.config, jax.random.PRNGKey(3)), eqx.is_array)

    @jax.jit
    def loss_and_grads(sequences):
        def loss(p):
            logits, acts = plan(eqx.combine(p, static), batch, Context(sequences=sequences, training=True))
            return task.loss_and_accuracy(logits, batch)[0], (logits, acts)

        return jax.value_and_grad(loss, has_aux=True)(params)

    (loss, (logits, acts)), g = loss_and_grads(jnp.asarray(0))
    (loss_cut, (logits_cut, acts_cut)), g_cut = loss_and_grads(jnp.asarray(320))
    g, g_cut = _leaves(g), _leaves(g_cut)
    np.testing.assert_array_equal(logits_cut, logits)
    assert loss_cut == loss
    for key in acts:
        np.testing.assert_array_equal(acts_cut[key], acts[key], err_msg=key)
    for w in ("wq", "wk", "wv"):  # everything that reaches the loss only through L1.H2.z
        key = f".blocks[0].{w}"
        assert not g_cut[key][2].any() and g[key][2].any(), key
        np.testing.assert_array_equal(np.delete(g_cut[key], 2, 0), np.delete(g[key], 2, 0), err_msg=key)
    for key in g:  # downstream of the cut, and the head's own output map, learn as before
        if key.startswith((".blocks[1]", ".ln_final", ".w_out", ".b_out")) or key == ".blocks[0].wo":
            np.testing.assert_array_equal(g_cut[key], g[key], err_msg=key)
    assert not np.array_equal(g_cut[".w_exemplar"], g[".w_exemplar"])  # the path through the head is gone


def test_a_sweep_over_frozen_heads_is_one_program_and_each_member_equals_its_run_alone(tmp_path):
    from test_sweep import _compiles_of

    from optodsl.experiment import run_experiment

    spec = tmp_path / "frozen.opto"
    spec.write_text("sweep h in 0..3\nfreeze L1.H$h during 0..320\nlr_scale L2 = 0.5\n")
    settings = {**SETTINGS, "train.checkpoint_every": 100_000}
    results, compiles = _compiles_of("run", lambda: run_experiment(spec, tmp_path / "sweep", dict(settings), progress=False))
    assert len(results) == 4 and all(r.summary["runs_in_program"] == 4 for r in results)
    assert compiles == 1
    config = results[0].run_dir and compile_spec(spec, DEFAULT, settings).experiment.members[0].config
    init = _leaves(new_model(config, jax.random.PRNGKey(config.seed.init)))
    for h in (3,):
        alone = tmp_path / f"alone{h}.opto"
        alone.write_text(f"freeze L1.H{h} during 0..320\nlr_scale L2 = 0.5\n")
        (single,) = run_experiment(alone, tmp_path / f"alone{h}", dict(settings), progress=False)
        member = results[h]
        assert member.run_dir.name == f"frozen-h{h}"
        assert [m["sequences"] for m in member.metrics] == [m["sequences"] for m in single.metrics]
        for a, b in zip(member.metrics, single.metrics):
            for key, value in b.items():
                if isinstance(value, float):
                    np.testing.assert_allclose(a[key], value, rtol=2e-4, atol=2e-5, err_msg=key)
        ours, theirs = _leaves(member.model), _leaves(single.model)
        for key in ours:
            np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-4, atol=1e-6, err_msg=key)
        assert not np.array_equal(ours[".blocks[0].wq"][h], init[".blocks[0].wq"][h])  # trained after 320


@pytest.mark.parametrize(("text", "message"), [
    ("freeze logits\n", "'logits' names no parameters"),
    ("freeze L1.pattern\n", "'pattern' names no parameters of a layer"),
    ("freeze L1.H2.z\n", "a head's parameters are q, k, v and o, not 'z'"),
    ("freeze L1.mlp\n", "this model has no MLP"),
    ("freeze L3\n", "no layer L3 in this model"),
    ("train L1\n", "'train' is written 'train only'"),
    ("freeze only L1\n", "'only' belongs to 'train only'"),
    ("reinit L1.H2 at 100k\n", "'reinit' needs when and from which seed"),
    ("freeze L1 at 100k seed 1\n", "'freeze' takes no 'at'"),
    ("freeze L1 during train\n", "a phase schedule means nothing here"),
    ("lr_scale L1\n", "'lr_scale' needs a factor"),
    ("lr_scale L1 = -1\n", "a learning-rate scale is a number from 0 up"),
    ("stopgrad L1.H2.z = 1\n", "'stopgrad' takes no '= value'"),
])
def test_weight_statements_refuse_what_they_cannot_mean(text, message):
    from optodsl.pipeline import check_spec

    with pytest.raises(SpecError) as caught:
        check_spec(text, DEFAULT)
    assert message in caught.value.message


def test_explain_shows_what_trains_when_at_what_rate_and_every_cut():
    from optodsl.commands.explain_text import explain_lines
    from optodsl.explain import explain_experiment
    from optodsl.pipeline import check_spec

    exp = check_spec("freeze embed, unembed during 0..100k\ntrain only L2 during 200k..\nlr_scale L1 = 0.1\n"
                     "reinit L2.H3 at 300k seed 1\nstopgrad L1.H2.z during 50k..\n", DEFAULT)
    (run,) = explain_experiment(exp)
    assert [(w["verb"], w["parameters"], w["schedule"], w["rate"], w["seed"]) for w in run["weights"]] == [
        ("freeze", "embed, unembed", "0..100000", 0.0, None), ("train only", "L2", "200000..", 0.0, None),
        ("lr_scale", "L1", "always", 0.1, None), ("reinit", "L2.H3", "at 300000", None, 1)]
    lines = explain_lines([run])
    assert "    freeze      embed, unembed     frozen (rate 0) during 0..100000" in lines
    assert "    train only  L2                 train; every other parameter is frozen (rate 0) during 200000.." in lines
    assert "    lr_scale    L1                 learning rate x 0.1 throughout" in lines
    assert any(line.startswith("    reinit      L2.H3              redrawn from the initialiser with seed 1 at 300000")
               for line in lines)
    assert "  gradient cuts (the forward pass is unchanged): L1.H2.z (50000..)" in lines
