"""A model of one's own: a spec resolves against the sites it declares, and `optodsl.train`,
`load_trained` and `trace_spec` run it in place of the built-in transformer."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optodsl
from optodsl.config import ExperimentConfig, ModelConfig
from optodsl.errors import SpecError, render
from optodsl.model.protocol import Intervenable, Site, check_sites
from optodsl.model.transformer import init_model
from optodsl.sites import site_table
from optodsl.tasks import build_task, layout
from optodsl.trace import trace_spec

SETTINGS = {"task.name": "repeat", "task.vocab": 16, "task.length": 12, "train.sequences": 640, "train.lr": 1e-2,
            "eval.every": 320, "eval.sequences": 64}


class Mixer(eqx.Module):
    """Two blocks whose token mixing is a learned pattern per head that ignores the input (an
    MLP-mixer's token mixing, made causal and normalised), then a residual MLP. It has no queries or
    keys, a layer site the built-in transformer lacks (`mixed`), and no final norm."""

    embedding: jax.Array  # (V, D)
    mixing: jax.Array  # (layers, H, T, T): pattern logits
    w_v: jax.Array  # (layers, H, D, Dh)
    w_o: jax.Array  # (layers, H, Dh, D)
    w_mlp: jax.Array  # (layers, D, D)
    unembed: jax.Array  # (D, V)

    def sites(self, layout):
        layers, h, t, _ = self.mixing.shape
        d, dh = self.w_v.shape[-2:]
        table = {"embed": Site((t, d))}
        for i in range(1, layers + 1):
            table.update({f"L{i}.v": Site((h, t, dh), per_head=True), f"L{i}.pattern": Site((h, t, t), per_head=True),
                          f"L{i}.z": Site((h, t, dh), per_head=True), f"L{i}.mixed": Site((t, d)),
                          f"L{i}.resid_out": Site((t, d))})
        table["logits"] = Site((t, self.unembed.shape[1]))
        return table

    def __call__(self, batch, overrides=None):
        ov = overrides if overrides is not None else optodsl.Overrides.empty()
        acts = {}

        def site(key, value):
            value = ov.apply(key, value)
            acts[key] = value
            return value

        x = site("embed", self.embedding[batch["tokens"]])
        b, t, _ = x.shape
        causal = jnp.tril(jnp.ones((t, t), bool))
        for i in range(self.mixing.shape[0]):
            p = f"L{i + 1}."
            v = site(p + "v", jnp.einsum("btd,hde->bhte", x, self.w_v[i]))
            own = jax.nn.softmax(jnp.where(causal, self.mixing[i], -1e9), axis=-1)
            pattern = site(p + "pattern", jnp.broadcast_to(own, (b, *own.shape)))
            z = site(p + "z", pattern @ v)
            x = x + site(p + "mixed", jnp.einsum("bhte,hed->btd", z, self.w_o[i]))
            x = site(p + "resid_out", x + jax.nn.gelu(x @ self.w_mlp[i]))
        return site("logits", x @ self.unembed), acts


def mixer(key, vocab=16, length=12, layers=2, heads=4, d=32, dh=8):
    """A Mixer with LeCun-normal maps, as a factory `key -> model`."""
    shapes = [(vocab, d), (layers, heads, length, length), (layers, heads, d, dh), (layers, heads, dh, d),
              (layers, d, d), (d, vocab)]
    keys = jax.random.split(key, len(shapes))
    return Mixer(*[jax.random.normal(k, s) / np.sqrt(s[-2]) for k, s in zip(keys, shapes)])


def prev_token(t):
    rows = np.arange(t)
    return np.eye(t)[np.maximum(rows - 1, 0)]


def clamp_error(acts, batch, logits):
    """How far head 0 of layer 1 is from the previous-token pattern, measured at each evaluation."""
    return {"clamp_error": jnp.abs(acts["L1.pattern"][:, 0] - prev_token(acts["L1.pattern"].shape[-1])).max()}


def test_a_clamp_from_a_spec_holds_on_a_model_of_ones_own_throughout_training(tmp_path):
    compiled = optodsl.compile("clamp L1.H0.pattern = prev_token\nablate L2.H3", settings=SETTINGS, model=mixer)
    assert [(r["site"], r["value"]) for r in compiled.explain()] == [("L1.H0.pattern", "prev_token"), ("L2.H3.v", "zero")]
    result = optodsl.train(compiled.config, compiled.forward, tmp_path / "run", model=mixer, measures=clamp_error, progress=False)

    assert len(result.metrics) == 3 and result.summary["status"] == "complete"
    assert all(r["train/clamp_error"] == 0.0 for r in result.metrics)  # before, during and after training
    assert result.metrics[-1]["train/loss"] < result.metrics[0]["train/loss"] - 0.2
    batch = {"tokens": jnp.zeros((1, 12), jnp.int32)}
    _, free = result.model(batch)
    assert np.abs(free["L1.pattern"][0, 0] - prev_token(12)).max() > 0.1  # the clamp, not the model, holds it

    trained, sequences = optodsl.load_trained(tmp_path / "run", compiled.config, model=mixer)
    assert sequences == 640
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(trained), jax.tree.leaves(result.model)))
    traced = trace_spec(compiled.experiment.members[0], [("pattern", "L1.pattern", 0), ("v", "L2.v", 3)],
                        tmp_path / "run", seed=0, model=mixer)
    np.testing.assert_array_equal(traced["sites"]["pattern"], prev_token(12))
    np.testing.assert_array_equal(traced["sites"]["v"], 0.0)


def test_an_instance_trains_in_place_of_a_factory():
    model = mixer(jax.random.PRNGKey(3))
    compiled = optodsl.compile("clamp L1.H2.pattern = prev_token", settings={**SETTINGS, "train.sequences": 64},
                               model=model)
    result = optodsl.train(compiled.config, compiled.forward, model=model, measures=clamp_error, progress=False)
    assert jax.tree.structure(result.model) == jax.tree.structure(model)
    assert not np.array_equal(result.model.mixing, model.mixing)


@pytest.mark.parametrize("text, message, listed", [
    ("clamp L1.H0.attention = prev_token", "unknown site 'attention'", "did you mean 'pattern'?"),
    ("clamp L1.H0.scores = prev_token", "unknown site 'scores'", "valid sites: v, pattern, z, mixed, resid_out"),
    ("clamp L1.H0.q = prev_token", "unknown site 'q'", "valid sites: v, pattern, z, mixed, resid_out"),
    ("ablate final_norm", "unknown site 'final_norm'", "valid sites: embed, logits"),
    ("clamp L3.H0.pattern = prev_token", "no layer L3 in this model", "valid layers are L1..L2"),
    ("ablate L1.H4", "no head H4 in this model", "valid heads are H0..H3"),
])
def test_selectors_resolve_against_the_models_own_sites(tmp_path, text, message, listed):
    spec = tmp_path / "mine.opto"
    spec.write_text(text + "\n")
    with pytest.raises(SpecError) as err:
        optodsl.compile(spec, settings=SETTINGS, model=mixer)
    assert err.value.message == message and listed in err.value.hint
    shown = render(err.value).splitlines()
    assert shown[0] == f"{spec}:1:{err.value.span.column}: error: {message}" and shown[-1] == f"  hint: {err.value.hint}"


def test_a_site_a_model_declares_in_some_layers_only_is_refused_in_the_others():
    class Uneven(Mixer):
        def sites(self, layout):
            table = dict(super().sites(layout))
            del table["L2.mixed"]
            return table

    with pytest.raises(SpecError, match="layer L2 of this model has no site 'mixed'"):
        optodsl.compile("ablate L*.mixed", settings=SETTINGS, model=Uneven(*jax.tree.leaves(mixer(jax.random.PRNGKey(0)))))


def test_the_built_in_transformer_conforms_and_declares_the_documented_table(small_data):
    for cfg, settings in [(ModelConfig(), {}), (ModelConfig(mlp=True, layers=3), {}), (ModelConfig(), {"task.name": "markov"})]:
        config = ExperimentConfig(model=cfg, data=small_data)
        config = optodsl.compile("", config, settings=settings).config
        lay = layout(config)
        model = init_model(cfg, small_data, jax.random.PRNGKey(0), vocab=lay.vocab, length=lay.length)
        assert isinstance(model, Intervenable)
        assert {k: (s.shape, s.per_head) for k, s in model.sites(lay).items()} == \
               {k: (s.shape, s.per_head) for k, s in site_table(cfg, lay).items()}
        check_sites(model, jax.eval_shape(lambda k: build_task(config).sample(k, "train", 2), jax.random.PRNGKey(0)), lay)


def test_a_declaration_that_disagrees_with_the_forward_is_refused():
    class Misdeclared(Mixer):
        def sites(self, layout):
            return {**super().sites(layout), "L1.pattern": Site((4, 12, 11), per_head=True)}

    model = Misdeclared(*jax.tree.leaves(mixer(jax.random.PRNGKey(0))))
    with pytest.raises(ValueError, match=r"site L1.pattern has shape \(4, 12, 12\) per sequence, but sites\(\) declares \(4, 12, 11\)"):
        optodsl.train(optodsl.compile("", settings=SETTINGS, model=model).config, model=model)


def test_a_run_of_ones_own_model_records_that_model_and_its_spec(tmp_path):
    """The run directory says which network ran and under which clamp: model.json (class, sites,
    parameter shapes), spec.opto, a config.json without the built-in model's section; `opto runs`,
    the report and the analyses read it, and resuming with another network is refused."""
    import json

    from optodsl.analysis import load_run
    from optodsl.commands.runs import run_line
    from optodsl.errors import DataError
    from optodsl.report.load import model_name

    compiled = optodsl.compile("clamp L1.H0.pattern = prev_token", settings={**SETTINGS, "train.sequences": 64},
                               model=mixer)
    run = tmp_path / "mine"
    result, = compiled.train(run, model=mixer, progress=False)
    assert result.summary["status"] == "complete"
    config = json.loads((run / "config.json").read_text())
    assert "model" not in config and "data" not in config and config["task"]["name"] == "repeat"
    described = json.loads((run / "model.json").read_text())
    assert described["class"].endswith(".Mixer") and described["sites"]["L1.mixed"] == {"shape": [12, 32], "per_head": False}
    assert described["parameters"][".mixing"] == [2, 4, 12, 12]
    assert "clamp L1.H0.pattern = prev_token" in (run / "spec.opto").read_text()
    line = run_line(run)
    assert "[spec.opto: clamp L1.H0.pattern = prev_token" in line and "model " in line and ".Mixer" in line, line
    assert model_name(run).endswith(".Mixer")

    with pytest.raises(DataError, match="only its Python code can build") as err:
        load_run(run)
    assert str(err.value.path).endswith("model.json")
    trained = load_run(run, model=mixer)
    assert trained.member.actions[0].span.line_text.strip() == "clamp L1.H0.pattern = prev_token"
    assert (trained.layers, trained.heads, trained.built_in) == (2, 4, False)

    # the analyses run on it through its sites: every head of both layers, under its own clamp
    from optodsl.analysis import analyze
    from optodsl.analysis.evaluate import evaluate_plans, evaluation_set
    from optodsl.compile.lower import compile_member

    result = analyze(trained, what=("heads",), n=64)
    assert set(result["heads"]) == {"L1", "L2"} and set(result["heads"]["L2"]["ablate_one"]) == {"H0", "H1", "H2", "H3"}
    assert "copying" not in result["measures"] and set(result["measures"]["prev_token"]["L1"]) == {"H0", "H1", "H2", "H3"}
    assert result["measures"]["prev_token"]["L1"]["H0"] == pytest.approx(1.0)  # the run's clamp holds in its analysis
    by_hand = optodsl.compile("clamp L1.H0.pattern = prev_token\nablate L2.H1", settings={**SETTINGS, "train.sequences": 64},
                              model=mixer).forward
    task, seqs = evaluation_set(trained.config, n=64)
    outcome, = evaluate_plans(trained.model, [by_hand], task, seqs, trained.sequences)
    assert result["heads"]["L2"]["ablate_one"]["H1"]["loss"] == pytest.approx(outcome.summary()["loss"], abs=1e-5)
    with pytest.raises(DataError, match="composition reads the built-in transformer's weight"):
        analyze(trained, what=("composition",), n=64)
    with pytest.raises(DataError, match="not of the built-in transformer"):
        optodsl.train(compiled.config, None, run, progress=False)


def test_a_run_records_only_the_settings_its_task_reads(tmp_path):
    """A token task's config.json has no few-shot `data` section; the few-shot task's keeps it, and
    a config.json written with every section still resumes."""
    import json

    from optodsl.config import with_settings
    from optodsl.tasks import unread_sections
    from optodsl.train.claim import claim

    markov = with_settings(ExperimentConfig(), {"task.name": "markov"})
    claim(tmp_path / "m", markov, unread_sections(markov))
    assert set(json.loads((tmp_path / "m" / "config.json").read_text())) == {"task", "model", "train", "eval", "seed"}
    claim(tmp_path / "f", ExperimentConfig(), unread_sections(ExperimentConfig()))
    assert "data" in json.loads((tmp_path / "f" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(markov.model_dump_json())  # every section, as before
    claim(tmp_path / "m", markov, unread_sections(markov))  # resumes: the settings are the same


def test_a_measure_that_reads_the_built_in_weights_is_refused_at_the_spec_for_ones_own_model():
    """`copying` reads W_E W_V W_O W_U of the built-in transformer: on a model of one's own it is an
    error at the `set` that names it, before anything trains, not a failure during training."""
    text = 'set eval.measures = ["prev_token", "copying"]\nclamp L1.H0.pattern = prev_token'
    with pytest.raises(SpecError) as err:
        optodsl.compile(text, settings=SETTINGS, model=mixer)
    assert (err.value.span.line, err.value.span.column) == (1, 21)
    assert "copying measure reads the built-in transformer's weights" in err.value.message
    compiled = optodsl.compile(text.replace(', "copying"', ""), settings=SETTINGS, model=mixer)
    assert compiled.config.eval.measures == ("prev_token",)
