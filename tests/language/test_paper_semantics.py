"""Where optodsl's semantics differ from the paper's code (docs/semantics.md): each choice, and
the `semantics.*` setting that gives the paper's, on real `e1 l1 e2 l2 q` sequences, so that a
change to either fails here. Layers count from 1 and heads from 0, as in the paper."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optodsl.compile.lower import compile_member
from optodsl.compile.reference import reference_batch
from optodsl.config import DataConfig, ExperimentConfig, SemanticsConfig
from optodsl.data.features import synthetic_features
from optodsl.errors import DataError
from optodsl.model import Context
from optodsl.model.transformer import init_model
from optodsl.semantics.plan import reads_pass
from optodsl.semantics.spec import resolve_spec
from optodsl.syntax import load_spec

from . import LABELS, QUERY, a, members_of, plain, plan_of, prev_token_pattern, run

ROOT = Path(__file__).resolve().parents[2]
CLEAN = 'set semantics.first_pass = "clean"\n'
ATOL = 1e-6


def _passes(text, config, model, batch, training=True):
    """{"first": ..., "last": ...} activations of `text`'s first member, and its query logits."""
    logits, passes = plan_of(text, config).each_pass(model, batch, Context(sequences=jnp.asarray(0), training=training))
    return logits, passes


def _copied(logits, head_logits, batch) -> None:
    """The query's logits are `head_logits` (B, T) from the query to each in-context label token."""
    labels = np.asarray(batch["labels"])
    for b in range(labels.shape[0]):
        for j, pos in enumerate(LABELS):
            np.testing.assert_allclose(a(logits)[b, labels[b, j]], a(head_logits)[b, pos], atol=1e-5)


# --- 1. the first pass of a two-pass plan -------------------------------------------------------

PRESERVING_UNDER_A_CLAMP = "clamp L1.H2.pattern = prev_token\nablate L1.H0 preserving L2.pattern\n"


def test_by_default_the_first_pass_applies_the_specs_other_interventions(base_config, model, batch):
    _, passes = _passes(PRESERVING_UNDER_A_CLAMP, base_config, model, batch)
    _, clamped = run("clamp L1.H2.pattern = prev_token", base_config, model, batch)
    np.testing.assert_allclose(a(passes["first"]["L1.pattern"])[:, 2], np.broadcast_to(prev_token_pattern(1.0), (8, 5, 5)),
                               atol=ATOL)
    np.testing.assert_allclose(a(passes["last"]["L2.pattern"]), a(clamped["L2.pattern"]), atol=ATOL)
    assert not np.allclose(a(passes["last"]["L2.pattern"]), a(plain(model, batch)[1]["L2.pattern"]), atol=1e-4)


def test_a_clean_first_pass_is_the_papers_unmodified_base_pass(base_config, model, batch):
    _, passes = _passes(CLEAN + PRESERVING_UNDER_A_CLAMP, base_config, model, batch)
    _, ref = plain(model, batch)
    for site, value in ref.items():
        np.testing.assert_allclose(a(passes["first"][site]), a(value), atol=ATOL, err_msg=site)
    last = passes["last"]
    np.testing.assert_allclose(a(last["L2.pattern"]), a(ref["L2.pattern"]), atol=ATOL)  # held at the clean pass
    np.testing.assert_allclose(a(last["L1.pattern"])[:, 2], np.broadcast_to(prev_token_pattern(1.0), (8, 5, 5)), atol=ATOL)
    np.testing.assert_array_equal(a(last["L1.v"])[:, 0], 0.0)


@pytest.mark.parametrize("first_pass", ["intervened", "clean"])
def test_temperature_divides_the_logits_of_the_first_pass_of_either_kind(first_pass, base_config, model, batch):
    """The docs' 'an unmodified first pass' is unmodified by the temperature itself; whether the
    spec's other interventions act in it is `semantics.first_pass`. Only the named head is held."""
    text = f'set semantics.first_pass = "{first_pass}"\nclamp L1.H2.pattern = prev_token\ntemperature L2.H3 = 2.0\n'
    _, passes = _passes(text, base_config, model, batch)
    _, clamped = run("clamp L1.H2.pattern = prev_token", base_config, model, batch)
    reference = clamped if first_pass == "intervened" else plain(model, batch)[1]
    got = a(passes["last"]["L2.attn_logits"])
    np.testing.assert_allclose(got[:, 3], a(reference["L2.attn_logits"])[:, 3] / 2.0, rtol=1e-5, atol=ATOL)
    others = [h for h in range(8) if h != 3]
    np.testing.assert_allclose(got[:, others], a(clamped["L2.attn_logits"])[:, others], atol=1e-5)


def test_under_a_clean_first_pass_held_sites_yield_to_the_other_interventions(base_config, model, batch):
    """As in the paper's `standard_call`: preserved values are set first, ablations override them."""
    _, acts = run(CLEAN + "ablate L2.* except H3\nablate L1.* preserving L2.v\n", base_config, model, batch)
    v, clean_v = a(acts["L2.v"]), a(plain(model, batch)[1]["L2.v"])
    np.testing.assert_array_equal(v[:, [0, 1, 2, 4, 5, 6, 7]], 0.0)
    np.testing.assert_allclose(v[:, 3], clean_v[:, 3], atol=ATOL)
    np.testing.assert_array_equal(a(acts["L1.v"]), 0.0)


PAPER_SPECS = ["fig5b.opto", "table1.opto", "sec3_layer1_direct_path.opto"]


@pytest.mark.parametrize("name", PAPER_SPECS)
def test_the_papers_runs_are_the_same_under_either_first_pass(name, base_config, model, batch):
    """No reproduction number moves with `semantics.first_pass`: every run of these specs (the
    layer-1 clamp, the copies, the preserving ablations) computes the same output both ways."""
    spec = load_spec(ROOT / "specs" / "paper" / name)
    ours, _ = resolve_spec(spec, base_config)
    papers, _ = resolve_spec(spec, base_config, {"semantics.first_pass": "clean"})
    ctx = Context(sequences=jnp.asarray(0), training=False)  # Table 1 acts during evaluation
    for mine, theirs in zip(ours, papers):
        got, want = compile_member(mine)(model, batch, ctx), compile_member(theirs)(model, batch, ctx)
        np.testing.assert_allclose(a(got[0]), a(want[0]), atol=1e-5, err_msg=mine.name)
        np.testing.assert_allclose(a(got[1]["L2.pattern"]), a(want[1]["L2.pattern"]), atol=1e-5, err_msg=mine.name)


# --- 2. which pass `copy` reads -------------------------------------------------------------------

COPY_UNDER_A_CLAMP = "clamp L1.H2.pattern = prev_token\ncopy logits from L2.H3\n"


def test_by_default_copy_reads_the_last_intervened_pass(base_config, model, batch):
    (member,) = members_of(COPY_UNDER_A_CLAMP, base_config)
    assert member.passes == 1 and reads_pass(member.actions[-1], member.actions) == "last"
    logits, acts = run(COPY_UNDER_A_CLAMP, base_config, model, batch)
    _, clamped = run("clamp L1.H2.pattern = prev_token", base_config, model, batch)
    _copied(logits, a(clamped["L2.attn_logits"])[:, 3, QUERY], batch)


def test_under_a_clean_first_pass_copy_reads_the_clean_base_pass(base_config, model, batch):
    """The paper's `standard_call` copies `base_cache`'s logits, computed with no interventions."""
    (member,) = members_of(CLEAN + COPY_UNDER_A_CLAMP, base_config)
    assert member.passes == 2 and reads_pass(member.actions[-1], member.actions, "clean") == "first"
    logits, passes = _passes(CLEAN + COPY_UNDER_A_CLAMP, base_config, model, batch)
    _copied(logits, a(plain(model, batch)[1]["L2.attn_logits"])[:, 3, QUERY], batch)
    np.testing.assert_allclose(a(passes["last"]["L1.pattern"])[:, 2], np.broadcast_to(prev_token_pattern(1.0), (8, 5, 5)),
                               atol=ATOL)  # the clamp still acts in the last pass


def test_a_copy_alone_is_one_pass_either_way(base_config, model, batch):
    for prefix in ("", CLEAN):
        plan = plan_of(prefix + "copy logits from L2.H3", base_config)
        assert plan.passes == 1
        logits, _ = plan(model, batch, Context(sequences=jnp.asarray(0)))
        _copied(logits, a(plain(model, batch)[1]["L2.attn_logits"])[:, 3, QUERY], batch)


# --- 3. a graft's source -----------------------------------------------------------------------------

def _source_run(root: Path, spec: str | None, config: ExperimentConfig) -> Path:
    """A run directory as `opto run` leaves it (its settings, spec and sweep record); the network
    itself is handed to the compiler, as `pipeline.load_graft` does."""
    root.mkdir()
    (root / "config.json").write_text(config.model_dump_json(indent=2))
    if spec is not None:
        (root / "spec.opto").write_text(spec)
        (root / "spec.json").write_text(json.dumps({"bindings": {}}))
    return root


@pytest.fixture(scope="module")
def donor(small_data):
    return init_model(ExperimentConfig().model, small_data, jax.random.PRNGKey(1))


def _grafted(source: Path, donor, config, model, batch, prefix: str = ""):
    (member,) = members_of(f'{prefix}graft L1.resid_out from "{source}"\n', config)
    plan = compile_member(member, {str(source): donor})
    return a(plan(model, batch, Context(sequences=jnp.asarray(0)))[1]["L1.resid_out"])


def test_a_graft_source_runs_under_its_own_interventions_by_default(tmp_path, base_config, donor, model, batch):
    """The paper's code builds the graft-in model's forward from its own options (`make_fn_from_opts`)."""
    source = _source_run(tmp_path / "source", "clamp L1.H2.pattern = prev_token\n", base_config)
    _, under_its_clamp = run("clamp L1.H2.pattern = prev_token", base_config, donor, batch)
    np.testing.assert_allclose(_grafted(source, donor, base_config, model, batch), a(under_its_clamp["L1.resid_out"]),
                               atol=1e-5)
    bare = _grafted(source, donor, base_config, model, batch, 'set semantics.graft_source = "bare"\n')
    np.testing.assert_allclose(bare, a(donor(batch)[1]["L1.resid_out"]), atol=1e-5)
    assert not np.allclose(bare, a(under_its_clamp["L1.resid_out"]), atol=1e-4)


def test_a_graft_sources_schedules_are_read_at_the_end_of_its_training(tmp_path, base_config, donor, model, batch):
    source = _source_run(tmp_path / "source", "clamp L1.H2.pattern = prev_token during 0..100k\n", base_config)
    assert base_config.train.sequences > 100_000
    np.testing.assert_allclose(_grafted(source, donor, base_config, model, batch), a(donor(batch)[1]["L1.resid_out"]),
                               atol=1e-5)


def test_a_graft_source_without_a_spec_runs_bare(tmp_path, base_config, donor, model, batch):
    source = _source_run(tmp_path / "python_run", None, base_config)
    np.testing.assert_allclose(_grafted(source, donor, base_config, model, batch), a(donor(batch)[1]["L1.resid_out"]),
                               atol=1e-5)


def test_a_graft_source_that_itself_grafts_is_refused_with_a_hint(tmp_path, base_config, donor, model, batch):
    source = _source_run(tmp_path / "source", f'graft L1.resid_out from "{tmp_path / "other"}"\n', base_config)
    with pytest.raises(DataError, match="itself grafts") as info:
        _grafted(source, donor, base_config, model, batch)
    assert 'semantics.graft_source = "bare"' in str(info.value)


# --- 4. what `= mean` averages over ------------------------------------------------------------------

def test_by_default_a_mean_ablation_takes_the_mean_of_the_batch_in_hand(base_config, model, batch):
    four = jax.tree.map(lambda x: x[:4], batch)
    for sequences in (batch, four):
        _, acts = run("ablate L1.H2 = mean", base_config, model, sequences)
        expected = a(plain(model, sequences)[1]["L1.v"])[:, 2].mean(0)
        np.testing.assert_allclose(a(acts["L1.v"])[:, 2], np.broadcast_to(expected, a(acts["L1.v"])[:, 2].shape), atol=1e-5)
    whole, half = (a(run("ablate L1.H2 = mean", base_config, model, s)[1]["L1.v"])[0, 2] for s in (batch, four))
    assert not np.allclose(whole, half, atol=1e-4)  # the value depends on the batch: 32 in training, 1,000 in evaluation


def test_mean_reference_averages_a_fixed_set_of_training_sequences(base_config, task, model, batch):
    text = "set semantics.mean_reference = 64\nablate L1.H2 = mean\n"
    (member,) = members_of(text, base_config)
    reference = reference_batch(member.config)
    assert reference["labels"].shape[0] == 64 and (reference["classes"] < base_config.data.classes).all()
    expected = a(plain(model, jax.tree.map(jnp.asarray, reference))[1]["L1.v"])[:, 2].mean(0)
    test_classes = task.sample(jax.random.PRNGKey(9), "test_classes", 3)
    for sequences in (batch, jax.tree.map(lambda x: x[:1], batch), test_classes):
        _, acts = run(text, base_config, model, sequences, training=False)
        np.testing.assert_allclose(a(acts["L1.v"])[:, 2], np.broadcast_to(expected, a(acts["L1.v"])[:, 2].shape), atol=1e-5)
    np.testing.assert_allclose(a(acts["L1.v"])[:, 0], a(plain(model, test_classes)[1]["L1.v"])[:, 0], atol=ATOL)


# --- 5. the synthetic features -----------------------------------------------------------------------

def test_synthetic_feature_defaults_are_the_configured_ones(small_data, task):
    configured = DataConfig()
    defaults = {name: p.default for name, p in inspect.signature(synthetic_features).parameters.items()}
    assert (defaults["proto_noise"], defaults["shared"], defaults["dim"], defaults["total_classes"], defaults["seed"]) == \
        (configured.proto_noise, configured.shared, configured.feature_dim, configured.total_classes, configured.seed)
    table = synthetic_features(small_data.total_classes, small_data.exemplars, small_data.feature_dim,
                               small_data.proto_noise, small_data.shared, seed=small_data.seed)
    np.testing.assert_array_equal(np.asarray(task.features), table)


def test_synthetic_features_have_unit_variance_as_a_table_not_per_coordinate(task, batch):
    """The module docstring's claim: the table has std about 1 (0.99 at the defaults); single
    coordinates are not rescaled and vary with std 0.3-0.6 across exemplars."""
    assert 0.97 < float(synthetic_features().std()) < 1.01
    table = np.asarray(task.features)
    per_coordinate = table.reshape(-1, table.shape[-1]).std(0)
    assert 0.25 < per_coordinate.min() and per_coordinate.max() < 0.7
    shown = np.asarray(batch["exemplars"])  # what the model reads: rows of that table
    assert any(np.allclose(shown[0, 0], row) for row in table.reshape(-1, table.shape[-1]))


# --- the settings themselves ---------------------------------------------------------------------------

def test_default_semantics_leave_a_runs_config_json_as_before(tmp_path):
    """A run directory written before `semantics` existed resumes: its config.json compares equal."""
    written = json.loads(ExperimentConfig().model_dump_json())
    assert "semantics" not in written and ExperimentConfig.model_validate(written) == ExperimentConfig()
    paper = ExperimentConfig(semantics=SemanticsConfig(first_pass="clean", mean_reference=10))
    assert ExperimentConfig.model_validate_json(paper.model_dump_json()) == paper
    assert "semantics" in ExperimentConfig().model_dump()  # settings keys and --set still see the section
