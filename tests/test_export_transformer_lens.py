"""`opto export --to transformer-lens`: TransformerLens loads the export and computes the same network.

Two tiny repeat-task runs are trained once through `opto run` (2 layers; attention-only with RoPE
and an ablation, and with MLPs and learned positions), exported through `opto export`, and loaded
as docs/export.md loads them. On the task's own sequences TransformerLens's logits match optodsl's
(float32, within 1e-4), and TransformerLens's own head detector (`detect_head`, its default "mul"
score) equals optodsl's measures times the factor between their definitions:

- both sum a head's attention onto the same (query, key) pairs: (i, i-1) for the previous token;
  for induction, the positions just after earlier occurrences of the query's token (the detector's
  shifted duplicate-token pattern is `induction_targets`);
- TransformerLens divides each sequence's sum by its number of rows T (every row sums to 1) and
  averages over sequences; optodsl averages over the rows that have a target: the T - 1 rows i >= 1
  for `prev_token`, so TL = prev_token * (T-1)/T; for `induction` the rows whose token occurred
  before, pooled over the batch, so TL = induction * (rows with an earlier occurrence) / (B * T).
"""

from __future__ import annotations

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from optodsl.analysis.runs import load_run
from optodsl.cli import app
from optodsl.config import ExperimentConfig, ModelConfig, RepeatTaskConfig
from optodsl.measures import MEASURES
from optodsl.tasks import build_task
from optodsl.tasks.base import induction_targets

# the transformer-lens extra, part of the test extras
import torch
from safetensors.torch import load_file
from transformer_lens.head_detector import detect_head
from transformer_lens.model_bridge import TransformerBridge
from transformer_lens.utilities.tl_checkpoint_conversion import convert_tl_checkpoint
from transformers import PreTrainedTokenizerFast

SPEC = """set task.name = "repeat"
set task.vocab = 16
set task.length = 12
set model.d_model = 32
set model.heads = 4
set train.lr = 1e-3
ablate L2.H1 during 0..128
"""
TINY = ["--set", "train.sequences=256", "--set", "train.batch=64", "--set", "eval.every=256", "--set", "eval.sequences=8"]
RUNS = {"attn_only": [], "mlp": ["--set", "model.mlp=true", "--set", "model.positions=learned"]}


def _cli(*args):
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert "Traceback" not in res.output, res.output
    return res


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Each run's directory and what `opto export` printed."""
    root = tmp_path_factory.mktemp("tl")
    (root / "repeat.opto").write_text(SPEC)
    out = {}
    for name, extra in RUNS.items():
        res = _cli("run", root / "repeat.opto", "--out", root / name, *TINY, *extra)
        assert res.exit_code == 0, res.output
        res = _cli("export", root / name, "--to", "transformer-lens")
        assert res.exit_code == 0, res.output
        out[name] = (root / name, res.output)
    return out


def _bridge(folder):
    """The export loaded as docs/export.md loads it."""
    with open(folder / "config.json") as f:
        config = json.load(f)
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"))
    bridge = TransformerBridge.boot_native(config, tokenizer=tokenizer)
    bridge.load_state_dict(convert_tl_checkpoint(load_file(folder / "model.safetensors"), bridge.cfg), strict=True)
    return bridge


@pytest.mark.parametrize("name", list(RUNS))
def test_transformer_lens_computes_the_runs_logits_and_head_scores(exported, name):
    run_dir, printed = exported[name]
    folder = run_dir / "transformer-lens"
    assert f"exported: {folder}" in printed
    assert "not exported: the run's interventions" in printed and "  ablate L2.H1 during 0..128" in printed
    bridge = _bridge(folder)
    run = load_run(run_dir)
    t = run.config.task.length
    assert bridge.cfg.n_ctx == t + 1 and bridge.cfg.attn_only == (name == "attn_only")
    batch = build_task(run.config).sample(jax.random.PRNGKey(3), "train", 16)
    tokens = np.asarray(batch["tokens"])
    logits, acts = eqx.filter_jit(run.model)(batch)  # one compile, not one per eager op
    with torch.no_grad():
        tl_logits = bridge(torch.from_numpy(tokens.astype(np.int64))).numpy()
    np.testing.assert_allclose(tl_logits, np.asarray(logits), atol=1e-4, rtol=0)

    seqs = [" ".join(map(str, row)) for row in tokens]
    assert bridge.to_tokens(seqs[0]).tolist() == [tokens[0].tolist()]
    layers = run.config.model.layers
    prev = MEASURES["prev_token"](acts, batch, layers)
    induction = MEASURES["induction"](acts, batch, layers, task=build_task(run.config))
    found = float(induction_targets(jnp.asarray(tokens)).max(-1).sum())  # rows whose token occurred before
    assert 0 < found < tokens.size
    tl_prev = detect_head(bridge, seqs, "previous_token_head").numpy()
    tl_induction = detect_head(bridge, seqs, "induction_head").numpy()
    for layer in range(layers):
        for head in range(run.config.model.heads):
            key = f"L{layer + 1}.H{head}"
            assert tl_prev[layer, head] == pytest.approx(float(prev[f"prev_token/{key}"]) * (t - 1) / t, abs=1e-5)
            assert tl_induction[layer, head] == pytest.approx(
                float(induction[f"induction/{key}"]) * found / tokens.size, abs=1e-5)


def _settings_only_run(path, config: ExperimentConfig):
    path.mkdir()
    (path / "config.json").write_text(config.model_dump_json())
    return path


def test_a_few_shot_run_is_refused_with_the_reason(tmp_path):
    run = _settings_only_run(tmp_path / "fewshot", ExperimentConfig())
    res = _cli("export", run, "--to", "transformer-lens")
    assert res.exit_code == 2
    assert f"{run / 'config.json'}: error: TransformerLens cannot represent this run's network" in res.output
    assert "task 'fewshot' feeds exemplar features" in res.output and "embed token ids only" in res.output
    assert not (run / "transformer-lens").exists()


def test_prenorm_without_a_final_norm_is_refused(tmp_path):
    config = ExperimentConfig(task=RepeatTaskConfig(), model=ModelConfig(prenorm=True, final_norm=False))
    res = _cli("export", _settings_only_run(tmp_path / "r", config), "--to", "transformer-lens")
    assert res.exit_code == 2
    assert "model.prenorm = true but model.final_norm = false" in res.output
    assert "one normalization_type to every layer norm" in res.output


def test_an_unknown_target_is_refused(exported):
    run_dir, _ = exported["attn_only"]
    res = _cli("export", run_dir, "--to", "nnsight")
    assert res.exit_code == 2 and "no export for 'nnsight'" in res.output and "transformer-lens" in res.output


@pytest.mark.parametrize("positions,norms,mlp", [("sinusoidal", False, True), ("none", True, False)])
def test_the_other_positions_and_no_norms_map_onto_transformer_lens(positions, norms, mlp):
    """The layouts the trained runs above do not cover, on an initialised network whose every trained
    array is perturbed (so biases and norm weights are not their initial zeros and ones)."""
    from optodsl.export.transformer_lens import tl_config, tl_state_dict
    from optodsl.model.transformer import init_model

    config = ExperimentConfig(task=RepeatTaskConfig(vocab=11, length=8),
                              model=ModelConfig(d_model=16, heads=2, mlp=mlp, positions=positions,
                                                prenorm=norms, final_norm=norms))
    model = init_model(config.model, config.data, jax.random.PRNGKey(0), vocab=11, length=8)
    rng = np.random.default_rng(0)
    leaves, tree = jax.tree_util.tree_flatten(model)
    model = jax.tree_util.tree_unflatten(tree, [x + 0.3 * rng.standard_normal(x.shape).astype(np.float32)
                                                for x in leaves])
    model = eqx.tree_at(lambda m: m.pos, model, init_model(config.model, config.data, jax.random.PRNGKey(0),
                                                           vocab=11, length=8).pos, is_leaf=lambda x: x is None)
    cfg = tl_config(config)
    assert cfg["normalization_type"] == ("LN" if norms else None) and cfg["positional_embedding_type"] == "standard"
    bridge = TransformerBridge.boot_native(cfg)
    weights = {k: torch.tensor(v) for k, v in tl_state_dict(model, cfg["n_ctx"]).items()}
    bridge.load_state_dict(convert_tl_checkpoint(weights, bridge.cfg), strict=True)
    tokens = rng.integers(0, 11, (4, 8))
    logits, _ = eqx.filter_jit(model)({"tokens": jnp.asarray(tokens)})
    logits = np.asarray(logits)
    with torch.no_grad():  # float32 rounding on logits of this size (~100 without norms): 1e-5 of the largest
        np.testing.assert_allclose(bridge(torch.from_numpy(tokens)).numpy(), logits, atol=1e-5 * np.abs(logits).max(),
                                   rtol=0)
