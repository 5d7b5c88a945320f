"""Each verb and built-in pattern, compiled from text and run on real `e1 l1 e2 l2 q` sequences,
compared entry by entry with the paper's definition (reference-setup.md, "Interventions")."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optodsl.model import Context, Overrides
from optodsl.model.transformer import NEG

from . import EXEMPLARS, LABELS, QUERY, T, a, members_of, plain, plan_of, prev_token_pattern, run

ATOL = 1e-6


@pytest.fixture(scope="module")
def ref(model, batch):
    """The unmodified forward's activations."""
    return plain(model, batch)[1]


def _other_heads(h: int, heads: int = 8) -> list[int]:
    return [i for i in range(heads) if i != h]


# --- attention patterns -------------------------------------------------------------------------

@pytest.mark.parametrize("strength", [1.0, 0.8])
def test_prev_token_pattern_is_the_definition(strength, base_config, model, batch, ref):
    _, acts = run(f"clamp L1.H2.pattern = prev_token(strength={strength})", base_config, model, batch)
    pattern = a(acts["L1.pattern"])
    expected = prev_token_pattern(strength)
    np.testing.assert_allclose(pattern[:, 2], np.broadcast_to(expected, pattern[:, 2].shape), atol=ATOL)
    # the other heads of L1 are untouched, and head 2 mixes its own values with the clamped pattern
    np.testing.assert_allclose(pattern[:, _other_heads(2)], a(ref["L1.pattern"])[:, _other_heads(2)], atol=ATOL)
    np.testing.assert_allclose(a(acts["L1.z"])[:, 2], np.einsum("ij,bjd->bid", expected, a(ref["L1.v"])[:, 2]), atol=1e-5)


def test_prev_token_default_strength_is_one(base_config, model, batch):
    _, acts = run("clamp L1.H2.pattern = prev_token", base_config, model, batch)
    np.testing.assert_allclose(a(acts["L1.pattern"])[0, 2], prev_token_pattern(1.0), atol=ATOL)


def test_prev_token_at_labels_changes_only_label_rows(base_config, model, batch, ref):
    _, acts = run("clamp L1.H2.pattern @ labels = prev_token(strength=0.8)", base_config, model, batch)
    got, before = a(acts["L1.pattern"])[:, 2], a(ref["L1.pattern"])[:, 2]
    expected = prev_token_pattern(0.8)
    for row in range(T):
        if row in LABELS:
            np.testing.assert_allclose(got[:, row], np.broadcast_to(expected[row], got[:, row].shape), atol=ATOL)
        else:
            np.testing.assert_allclose(got[:, row], before[:, row], atol=ATOL)
    assert not np.allclose(before[:, 1], expected[1], atol=1e-3)  # the clamp did change something


@pytest.mark.parametrize("strength", [1.0, 0.9])
def test_induction_sets_only_the_query_row(strength, base_config, model, batch, ref):
    _, acts = run(f"clamp L2.H3.pattern = induction(strength={strength})", base_config, model, batch)
    got = a(acts["L2.pattern"])[:, 3]
    classes = np.asarray(batch["classes"])
    for b in range(classes.shape[0]):
        row = np.zeros(T)
        (j,) = np.flatnonzero(classes[b, :-1] == classes[b, -1])
        row[LABELS[j]] = strength
        row[LABELS[1 - j]] = 1 - strength
        np.testing.assert_allclose(got[b, QUERY], row, atol=ATOL)
    np.testing.assert_allclose(got[:, :QUERY], a(ref["L2.pattern"])[:, 3, :QUERY], atol=ATOL)
    np.testing.assert_allclose(a(acts["L2.pattern"])[:, _other_heads(3)], a(ref["L2.pattern"])[:, _other_heads(3)], atol=ATOL)


def _cosines(batch) -> np.ndarray:
    ex = np.asarray(batch["exemplars"], np.float64)
    unit = ex / np.linalg.norm(ex, axis=-1, keepdims=True)
    return (unit[:, :-1] * unit[:, -1:]).sum(-1)  # (B, 2): query vs e1, e2


def test_match_at_temperature_zero_is_a_hard_max_of_cosine(base_config, model, batch, ref):
    _, acts = run("clamp L2.H3.pattern = match", base_config, model, batch)
    got = a(acts["L2.pattern"])[:, 3]
    cos = _cosines(batch)
    for b in range(cos.shape[0]):
        row = np.zeros(T)
        row[LABELS[int(np.argmax(cos[b]))]] = 1.0
        np.testing.assert_array_equal(got[b, QUERY], row)
    np.testing.assert_allclose(got[:, :QUERY], a(ref["L2.pattern"])[:, 3, :QUERY], atol=ATOL)


def test_match_at_temperature_t_is_a_softmax_of_cosine_over_t(base_config, model, batch):
    _, acts = run("clamp L2.H3.pattern = match(temperature=0.1)", base_config, model, batch)
    got = a(acts["L2.pattern"])[:, 3, QUERY]
    z = _cosines(batch) / 0.1
    soft = np.exp(z - z.max(-1, keepdims=True))
    soft /= soft.sum(-1, keepdims=True)
    np.testing.assert_allclose(got[:, list(LABELS)], soft, atol=1e-5)
    np.testing.assert_array_equal(got[:, list(EXEMPLARS)], 0.0)
    assert not np.allclose(soft, np.round(soft))  # a real softmax here, not a hard max


def test_uniform_pattern(base_config, model, batch):
    _, acts = run("clamp L1.H0.pattern = uniform", base_config, model, batch)
    expected = np.tril(np.ones((T, T))) / np.arange(1, T + 1)[:, None]
    np.testing.assert_allclose(a(acts["L1.pattern"])[:, 0], np.broadcast_to(expected, (8, T, T)), atol=ATOL)


def test_attend_first_puts_every_row_on_position_zero(base_config, model, batch, ref):
    """Every row (with @ labels, only the label rows) is one-hot on e1, so the head's output at
    each clamped row is e1's value; the other heads are untouched."""
    _, acts = run("clamp L1.H2.pattern = attend_first", base_config, model, batch)
    expected = np.zeros((T, T))
    expected[:, 0] = 1.0
    np.testing.assert_allclose(a(acts["L1.pattern"])[:, 2], np.broadcast_to(expected, (8, T, T)), atol=ATOL)
    np.testing.assert_allclose(a(acts["L1.pattern"])[:, _other_heads(2)], a(ref["L1.pattern"])[:, _other_heads(2)], atol=ATOL)
    v = a(ref["L1.v"])[:, 2]
    np.testing.assert_allclose(a(acts["L1.z"])[:, 2], np.broadcast_to(v[:, :1], v.shape), atol=1e-5)
    _, at_labels = run("clamp L1.H2.pattern @ labels = attend_first", base_config, model, batch)
    got = a(at_labels["L1.pattern"])[:, 2]
    np.testing.assert_allclose(got[:, list(LABELS)], np.broadcast_to(expected[list(LABELS)], got[:, list(LABELS)].shape), atol=ATOL)
    np.testing.assert_allclose(got[:, list(EXEMPLARS)], a(ref["L1.pattern"])[:, 2][:, list(EXEMPLARS)], atol=ATOL)


# --- constants and ablations --------------------------------------------------------------------

def test_clamp_constant_on_a_slice(base_config, model, batch, ref):
    _, acts = run("clamp L1.H0.v @ 2:4 = 0.5", base_config, model, batch)
    v, before = a(acts["L1.v"]), a(ref["L1.v"])
    np.testing.assert_array_equal(v[:, 0, 2:4], 0.5)
    np.testing.assert_allclose(v[:, 0, [0, 1, 4]], before[:, 0, [0, 1, 4]], atol=ATOL)
    np.testing.assert_allclose(v[:, 1:], before[:, 1:], atol=ATOL)


def test_ablate_head_zeroes_its_values_and_output_only(base_config, model, batch, ref):
    logits, acts = run("ablate L2.H3", base_config, model, batch)
    np.testing.assert_array_equal(a(acts["L2.v"])[:, 3], 0.0)
    np.testing.assert_array_equal(a(acts["L2.z"])[:, 3], 0.0)
    np.testing.assert_array_equal(a(acts["L2.out"])[:, 3], 0.0)
    others = _other_heads(3)
    np.testing.assert_allclose(a(acts["L2.v"])[:, others], a(ref["L2.v"])[:, others], atol=ATOL)
    np.testing.assert_allclose(a(acts["L2.out"])[:, others], a(ref["L2.out"])[:, others], atol=1e-5)
    np.testing.assert_allclose(a(acts["L2.attn_out"]), a(ref["L2.out"])[:, others].sum(1), atol=1e-5)
    assert not np.allclose(a(logits), a(ref["logits"])[:, -1])


def test_ablate_all_but_one_head(base_config, model, batch, ref):
    _, acts = run("ablate L2.* except H3", base_config, model, batch)
    v = a(acts["L2.v"])
    np.testing.assert_array_equal(v[:, _other_heads(3)], 0.0)
    np.testing.assert_allclose(v[:, 3], a(ref["L2.v"])[:, 3], atol=ATOL)
    np.testing.assert_allclose(a(acts["L1.v"]), a(ref["L1.v"]), atol=ATOL)


def test_ablate_a_list_of_heads(base_config, model, batch, ref):
    _, acts = run("ablate L1.H1, L1.H2, L1.H5", base_config, model, batch)
    v = a(acts["L1.v"])
    np.testing.assert_array_equal(v[:, [1, 2, 5]], 0.0)
    kept = [0, 3, 4, 6, 7]
    np.testing.assert_allclose(v[:, kept], a(ref["L1.v"])[:, kept], atol=ATOL)
    assert np.abs(v[:, kept]).min(initial=1.0) >= 0 and np.abs(v[:, kept]).max() > 0


def test_mean_ablation_uses_the_batch_mean_of_an_unablated_pass(base_config, model, batch, ref):
    assert plan_of("ablate L1.H2 = mean", base_config).passes == 2
    _, acts = run("ablate L1.H2 = mean", base_config, model, batch)
    v, before = a(acts["L1.v"]), a(ref["L1.v"])
    np.testing.assert_allclose(v[:, 2], np.broadcast_to(before[:, 2].mean(0), v[:, 2].shape), atol=1e-5)
    np.testing.assert_allclose(v[:, _other_heads(2)], before[:, _other_heads(2)], atol=ATOL)
    assert np.abs(before[:, 2].mean(0)).max() > 0  # not the same as zero ablation


def test_ablate_embed_zeroes_every_token(base_config, model, batch):
    _, acts = run("ablate embed", base_config, model, batch)
    np.testing.assert_array_equal(a(acts["embed"]), 0.0)
    np.testing.assert_array_equal(a(acts["L1.resid_in"]), 0.0)


# --- logits of attention --------------------------------------------------------------------------

def test_forbid_prev_token_everywhere(base_config, model, batch, ref):
    _, acts = run("forbid L1.H0 = prev_token", base_config, model, batch)
    logits, pattern = a(acts["L1.attn_logits"])[:, 0], a(acts["L1.pattern"])[:, 0]
    for i in range(1, T):
        np.testing.assert_array_equal(logits[:, i, i - 1], NEG)
        np.testing.assert_array_equal(pattern[:, i, i - 1], 0.0)
        keep = [j for j in range(i + 1) if j != i - 1]
        np.testing.assert_allclose(logits[:, i, keep], a(ref["L1.attn_logits"])[:, 0, i, keep], atol=ATOL)
    np.testing.assert_allclose(pattern.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(pattern[:, 0], a(ref["L1.pattern"])[:, 0, 0], atol=ATOL)


def test_forbid_prev_token_at_labels_only(base_config, model, batch, ref):
    _, acts = run("forbid L1.H0 @ labels = prev_token", base_config, model, batch)
    pattern, before = a(acts["L1.pattern"])[:, 0], a(ref["L1.pattern"])[:, 0]
    for i in LABELS:
        np.testing.assert_array_equal(pattern[:, i, i - 1], 0.0)
    for i in (0, 2, 4):
        np.testing.assert_allclose(pattern[:, i], before[:, i], atol=ATOL)
    assert (before[:, 2, 1] > 0).all()


def test_temperature_divides_first_pass_logits(base_config, model, batch, ref):
    _, acts = run("temperature L2.H3 = 2.0", base_config, model, batch)
    got, before = a(acts["L2.attn_logits"]), a(ref["L2.attn_logits"])
    np.testing.assert_allclose(got[:, 3], before[:, 3] / 2.0, rtol=1e-6, atol=ATOL)
    np.testing.assert_allclose(got[:, _other_heads(3)], before[:, _other_heads(3)], atol=ATOL)
    soft = np.exp(before[:, 3] / 2 - (before[:, 3] / 2).max(-1, keepdims=True))
    np.testing.assert_allclose(a(acts["L2.pattern"])[:, 3], soft / soft.sum(-1, keepdims=True), atol=1e-5)


def test_attend_labels_only_blocks_exemplars_from_the_query(base_config, model, batch, ref):
    _, acts = run("attend L2.H3 = labels_only", base_config, model, batch)
    pattern = a(acts["L2.pattern"])[:, 3]
    np.testing.assert_array_equal(pattern[:, QUERY, list(EXEMPLARS)], 0.0)
    np.testing.assert_allclose(pattern[:, QUERY, list(LABELS)].sum(-1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(a(acts["L2.attn_logits"])[:, 3, QUERY, list(EXEMPLARS)], NEG)
    np.testing.assert_allclose(pattern[:, :QUERY], a(ref["L2.pattern"])[:, 3, :QUERY], atol=ATOL)


def test_copy_puts_head_logits_at_the_in_context_labels(base_config, model, batch):
    logits, acts = run("copy logits from L2.H3", base_config, model, batch)
    head = a(acts["L2.attn_logits"])[:, 3, QUERY]
    labels = np.asarray(batch["labels"])
    got = a(logits)
    for b in range(got.shape[0]):
        expected = np.full(got.shape[1], NEG)
        for j, pos in enumerate(LABELS):
            expected[labels[b, j]] = head[b, pos]
        np.testing.assert_allclose(got[b], expected, atol=ATOL)
    np.testing.assert_allclose(a(acts["logits"])[:, QUERY], got, atol=ATOL)


# --- two-pass interventions -------------------------------------------------------------------------

def test_pattern_preserving_ablation(base_config, model, batch, ref):
    logits, acts = run("ablate L1.* preserving L2.pattern", base_config, model, batch)
    np.testing.assert_array_equal(a(acts["L1.v"]), 0.0)
    np.testing.assert_allclose(a(acts["L2.pattern"]), a(ref["L2.pattern"]), atol=ATOL)
    # without the preserving clause the layer-2 patterns do change
    _, bare = run("ablate L1.*", base_config, model, batch)
    assert not np.allclose(a(bare["L2.pattern"]), a(ref["L2.pattern"]), atol=1e-4)
    # the values of layer 2 are the ablated ones (not preserved)
    np.testing.assert_allclose(a(acts["L2.v"]), a(bare["L2.v"]), atol=ATOL)


def test_prev_token_input_clamp_of_layer_one(base_config, model, batch, ref):
    plan = plan_of("clamp L1.resid_out = prev_token_input", base_config)
    assert plan.passes == 2
    _, acts = plan(model, batch, Context(sequences=jnp.asarray(0)))
    embed = ref["embed"]
    np.testing.assert_allclose(a(acts["L1.resid_out"]), a(embed), atol=ATOL)
    shifted = embed[:, jnp.array([0, 0, 1, 2, 4])]  # e1 e1 l1 e2 q, written by hand
    _, pass1 = model(batch, Overrides({"L1.resid_out": shifted}, {"L1.resid_out": jnp.ones((), bool)}))
    np.testing.assert_allclose(a(acts["L2.pattern"]), a(pass1["L2.pattern"]), atol=ATOL)
    assert not np.allclose(a(acts["L2.pattern"]), a(ref["L2.pattern"]), atol=1e-4)


def test_copy_after_prev_token_input_reads_the_logits_of_the_held_pattern(base_config, model, batch):
    """The purple curve: the copied logits must be those that produced layer 2's (held) pattern."""
    logits, acts = run("clamp L1.resid_out = prev_token_input\ncopy logits from L2.H3", base_config, model, batch)
    embed = plain(model, batch)[1]["embed"]
    shifted = embed[:, jnp.array([0, 0, 1, 2, 4])]
    _, pass1 = model(batch, Overrides({"L1.resid_out": shifted}, {"L1.resid_out": jnp.ones((), bool)}))
    head = a(pass1["L2.attn_logits"])[:, 3, QUERY]
    labels = np.asarray(batch["labels"])
    for b in range(labels.shape[0]):
        for j, pos in enumerate(LABELS):
            np.testing.assert_allclose(a(logits)[b, labels[b, j]], head[b, pos], atol=1e-5)


# --- schedules, sweeps, positions ---------------------------------------------------------------------

def _is_clamped(plan, model, batch, sequences, training=True) -> bool:
    _, acts = plan(model, batch, Context(sequences=jnp.asarray(sequences), training=training))
    return bool(np.allclose(a(acts["L1.pattern"])[:, 2], prev_token_pattern(1.0), atol=ATOL))


def test_range_schedule_is_start_inclusive_stop_exclusive(base_config, model, batch):
    plan = plan_of("clamp L1.H2.pattern = prev_token during 0..100k", base_config)
    assert _is_clamped(plan, model, batch, 0)
    assert _is_clamped(plan, model, batch, 99_999)
    assert not _is_clamped(plan, model, batch, 100_000)


def test_open_schedule_starts_later(base_config, model, batch):
    plan = plan_of("clamp L1.H2.pattern = prev_token during 200k..", base_config)
    assert not _is_clamped(plan, model, batch, 199_999)
    assert _is_clamped(plan, model, batch, 200_000)
    assert _is_clamped(plan, model, batch, 10**9)


@pytest.mark.parametrize(("phase", "in_training", "in_eval"), [("eval", False, True), ("train", True, False)])
def test_phase_schedules(phase, in_training, in_eval, base_config, model, batch):
    plan = plan_of(f"clamp L1.H2.pattern = prev_token during {phase}", base_config)
    assert _is_clamped(plan, model, batch, 0, training=True) is in_training
    assert _is_clamped(plan, model, batch, 0, training=False) is in_eval


def test_sweep_makes_one_member_per_head_differing_only_in_the_kept_head(base_config):
    members = members_of("sweep h in 0..7\nablate L2.* except H$h", base_config)
    assert len(members) == 8
    assert [dict(m.bindings)["h"] for m in members] == list(range(8))
    assert len({m.name for m in members}) == 8
    masks = []
    for h, member in enumerate(members):
        (term,) = plan_of_member(member).terms
        assert (term.site, term.builder) == ("L2.v", "zero")
        mask = np.asarray(term.mask)
        assert not mask[h].any() and all(mask[i].all() for i in _other_heads(h))
        masks.append(mask)
    assert all(not np.array_equal(masks[0], m) for m in masks[1:])


def plan_of_member(member):
    from optodsl.compile.lower import compile_member

    return compile_member(member)


@pytest.mark.parametrize(("positions", "rows"), [
    ("query", [4]), ("labels", [1, 3]), ("exemplars", [0, 2, 4]), ("all", [0, 1, 2, 3, 4]),
    ("3", [3]), ("-1", [4]), ("1:3", [1, 2]), (":2", [0, 1]), ("3:", [3, 4]),
])
def test_positions(positions, rows, base_config, model, batch):
    (member,) = members_of(f"ablate L1.H0 @ {positions}", base_config)
    assert member.actions[0].rows == tuple(rows)
    _, acts = run(f"ablate L1.H0 @ {positions}", base_config, model, batch)
    v = a(acts["L1.v"])[:, 0]
    zero_rows = [i for i in range(T) if np.all(v[:, i] == 0)]
    assert zero_rows == rows
