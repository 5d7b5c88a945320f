"""Fuzzing the whole pipeline (load_text -> resolve_spec -> compile_member): only SpecError, ever."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optodsl.compile.lower import compile_member
from optodsl.errors import SpecError
from optodsl.interventions import VERBS
from optodsl.interventions.patterns import PATTERNS
from optodsl.model import Context
from optodsl.semantics.spec import resolve_spec
from optodsl.syntax import load_text

layers = st.sampled_from(["1", "2", "*", "1..2", "[1,2]", "3", "0"])
heads = st.sampled_from(["0", "3", "7", "8", "*", "0..3", "[1,2,5]", "$h"])
head_sites = st.sampled_from(["q", "k", "v", "q_rot", "k_rot", "attn_logits", "pattern", "z", "out", "patern"])
layer_sites = st.sampled_from(["resid_in", "normed", "attn_out", "resid_out", "mlp_out"])
global_sites = st.sampled_from(["embed", "final_norm", "logits"])


@st.composite
def selectors(draw):
    kind = draw(st.sampled_from(["head", "head_site", "layer_site", "all_except", "global", "layer"]))
    layer = draw(layers)
    if kind == "head":
        return f"L{layer}.H{draw(heads)}"
    if kind == "head_site":
        return f"L{layer}.H{draw(heads)}.{draw(head_sites)}"
    if kind == "layer_site":
        return f"L{layer}.{draw(layer_sites)}"
    if kind == "all_except":
        site = draw(st.sampled_from(["", ".v", ".pattern"]))
        return f"L{layer}.*{site} except H{draw(heads)}"
    if kind == "layer":
        return f"L{layer}"
    return draw(global_sites)


PATTERN_EXAMPLES = [p.example for p in PATTERNS.values()]
values = st.sampled_from([
    "0", "0.5", "-1", "mean", "zero", "prev_token(strength=2)", "prev_token_input",
    "labels_only", "2.0", "true", '"x"', "[1, 2]", "$h", "foo(a=1)",
    *PATTERNS, *(example.split(" = ", 1)[1] for example in PATTERN_EXAMPLES),
])
positions = st.sampled_from(["query", "labels", "exemplars", "all", "0", "3", "-1", "1:3", ":2", "3:", "5", "7:9"])
schedules = st.sampled_from(["0..100k", "200k..", "..300k", "train", "eval", "100k..50k", "2M.."])
verbs = st.sampled_from([*VERBS, "abalte"])


@st.composite
def statements(draw):
    verb = draw(verbs)
    if verb == "copy" and draw(st.booleans()):
        text = f"copy logits from {draw(selectors())}"
    elif verb == "graft" and draw(st.booleans()):
        text = f'graft {draw(selectors())} from "runs/none"'
    else:
        targets = ", ".join(draw(st.lists(selectors(), min_size=1, max_size=2)))
        text = f"{verb} {targets}"
        if draw(st.booleans()):
            text += f" @ {draw(positions)}"
        if draw(st.booleans()):
            text += f" = {draw(values)}"
        if verb == "ablate" and draw(st.integers(0, 3)) == 0:
            text += f" preserving {draw(selectors())}"
    if draw(st.integers(0, 3)) == 0:
        text += f" during {draw(schedules)}"
    return text


@st.composite
def specs(draw):
    lines = draw(st.lists(statements(), min_size=1, max_size=3))
    if draw(st.booleans()):
        lines.insert(0, "sweep h in 0..1")
    if draw(st.integers(0, 3)) == 0:
        lines.insert(0, draw(st.sampled_from(["set train.lr = 1e-4", "set train.sequences = 1M", "set train.lrr = 1",
                                              "set model.layers = 3", "set data.pairs = 3", "set train.lr = -1"])))
    return "\n".join(lines)


@st.composite
def mutated(draw):
    text = draw(specs())
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        char = draw(st.sampled_from(list("LH.*,=@:;$()[]\"#0123456789 -\nabkMe_")))
        if op == "insert":
            text = text[:i] + char + text[i:]
        elif op == "delete":
            text = text[:i] + text[i + 1:]
        else:
            text = text[:i] + char + text[i + 1:]
    return text


def pipeline(text, config):
    """The whole front end; returns the compiled plans, or None when the spec is (rightly) refused."""
    try:
        members, _ = resolve_spec(load_text(text, "fuzz.opto"), config)
    except SpecError:
        return None
    return [compile_member(m) for m in members if not m.grafts]


FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(specs())
def test_generated_specs_raise_only_spec_errors(base_config, text):
    pipeline(text, base_config)


@FAST
@given(mutated())
def test_mutated_specs_raise_only_spec_errors(base_config, text):
    pipeline(text, base_config)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(st.sampled_from(list("ablatecmpLH0123.*,=@:;$() \nduringsweepfrom\"")), max_size=40))
def test_random_text_raises_only_spec_errors(base_config, text):
    pipeline(text, base_config)


VALID = [
    *(verb.example for verb in VERBS.values() if verb.name != "graft"), *PATTERN_EXAMPLES,
    "ablate L1.* preserving L2.pattern", "clamp L1.resid_out = prev_token_input\ncopy logits from L2.H3",
    "forbid L1.* @ labels = prev_token", "ablate L1.H0 = mean", "clamp L2.H3.pattern = match(temperature=0.5)",
    "ablate embed", "clamp L1.H0.v @ 2:4 = 0.5", "sweep h in 0..1\nablate L1.H$h during 0..100k",
]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(VALID), st.sampled_from(VALID), st.booleans())
def test_valid_specs_run_with_finite_logits(base_config, model, batch, first, second, training):
    text = first if first == second else f"{first}\n{second}"
    plans = pipeline(text, base_config)
    if plans is None:  # two clauses may conflict; that must be the only reason to refuse
        with_conflict = _refusal(text, base_config)
        assert "conflicting" in with_conflict or "already" in with_conflict
        return
    for plan in plans:
        logits, _ = plan(model, batch, Context(sequences=jnp.asarray(0), training=training))
        assert logits.shape == (batch["labels"].shape[0], 5)
        finite = np.isfinite(np.asarray(logits))
        assert finite.all()


def _refusal(text, config) -> str:
    try:
        resolve_spec(load_text(text, "fuzz.opto"), config)
    except SpecError as error:
        return error.message
    return ""


def test_every_valid_example_resolves_alone(base_config):
    for text in VALID:
        assert pipeline(text, base_config), text
