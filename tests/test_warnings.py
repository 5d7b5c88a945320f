"""Warnings for clauses that undo themselves."""

from optodsl.config import ExperimentConfig
from optodsl.semantics.spec import resolve_spec
from optodsl.syntax import load_text


def _warnings(text):
    return [w.message for w in resolve_spec(load_text(text, "w.opto"), ExperimentConfig())[1]]


def test_preserving_the_ablated_site_itself_is_reported():
    assert _warnings("ablate L1.H0 preserving L1.v\n") == [
        "preserving L1.H0.v holds it at its first-pass value, undoing the ablate of line 1 there"]
    assert _warnings("ablate L1.* preserving L2.pattern\n") == []


def test_a_sweep_variable_used_nowhere_is_reported_at_its_sweep():
    """`sweep h in 0..3` without any `$h` runs one experiment four times: a warning says so."""
    spec = load_text("sweep h in 0..3\nsweep s in [1, 2]\nset seed.init = $s\nablate L1.H0\n", "w.opto")
    members, warnings = resolve_spec(spec, ExperimentConfig())
    assert len(members) == 8
    assert [(w.span.line, w.message) for w in warnings] == [
        (1, "sweep variable '$h' is used nowhere, so the runs it adds repeat the same experiment (8 runs in all)")]
    assert _warnings("sweep h in 0..3\nablate L1.H$h\n") == []
    assert _warnings("sweep (h, p) in [(0, 1), (1, 2)]\nablate L1.H$h @ $p\n") == []
    assert _warnings("sweep k in [1k, 2k]\nvariant a {\n  clamp L1.H0.pattern = prev_token during 0..$k\n}\n") == []


def test_a_stopgrad_where_a_clamp_already_blocks_the_gradient_is_reported():
    assert _warnings("clamp L1.H3.pattern = prev_token\nstopgrad L1.H3.k during 10k..20k\n") == [
        "the gradient at L1.H3.k is already stopped: the clamp of line 1 sets L1.H3.pattern, and a site an "
        "intervention sets passes no gradient upstream"]
    assert _warnings("ablate L1.H1\nstopgrad L1.H1.v\n")[0].startswith("the gradient at L1.H1.v is already stopped")
    # the clamp acts only until 10k: the cut matters after it
    assert _warnings("clamp L1.H3.pattern = prev_token during 0..10k\nstopgrad L1.H3.k\n") == []
    assert _warnings("ablate L1.H1\nstopgrad L1.H2.v\n") == []


def test_a_clamp_or_ablation_of_a_head_frozen_all_the_while_is_reported():
    assert _warnings("freeze L1 during 0..100k\nclamp L1.H3.pattern = prev_token during 0..50k\n") == [
        "L1.H3 is frozen by line 1 whenever this clamp acts, so the gradient it blocks there would train nothing "
        "(it still changes the forward pass)"]
    assert _warnings("train only L2, embed\nablate L1.H1\n")[0].startswith("L1.H1 is frozen by line 1")
    assert _warnings("freeze L1 during 0..10k\nclamp L1.H3.pattern = prev_token during 0..50k\n") == []
    assert _warnings("freeze L1.H2\nablate L1.H1\n") == []
    assert _warnings("lr_scale L1 = 0.5\nablate L1.H1\n") == []
