"""Each pattern and verb is one declaration: every declared name compiles and runs on real
sequences, hints quote the declarations, and docs/language.md's pattern table is their rendering."""

from __future__ import annotations

import re
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from optodsl.compile.lower import compile_member
from optodsl.errors import SpecError
from optodsl.interventions import VERBS, Verb
from optodsl.interventions.patterns import PATTERNS, Param, Pattern, pattern_table
from optodsl.interventions.verbs import _no_modifiers
from optodsl.model import Context

from . import a, members_of, run

LANGUAGE = Path(__file__).resolve().parents[2] / "docs" / "language.md"


def _doc() -> str:
    return LANGUAGE.read_text(encoding="utf-8")


def test_the_docs_pattern_table_is_rendered_from_the_declarations():
    assert pattern_table() in _doc(), "regenerate the table in docs/language.md from optodsl.interventions.patterns.pattern_table():\n" + pattern_table()


@pytest.mark.parametrize("name", list(PATTERNS))
def test_every_pattern_example_is_in_the_docs(name):
    assert PATTERNS[name].example in _doc()


def test_the_docs_name_exactly_the_query_row_patterns():
    sentence = re.search(r"^(.*) define only the query's row", _doc(), re.M).group(1)
    assert set(re.findall(r"`(\w+)`", sentence)) == {p.name for p in PATTERNS.values() if p.rows == "query"}


def _head(pattern_acts, layer_head: tuple[int, int]) -> np.ndarray:
    return a(pattern_acts[f"L{layer_head[0]}.pattern"])[:, layer_head[1]]


@pytest.mark.parametrize("name", list(PATTERNS))
def test_every_declared_pattern_builds_a_causal_pattern_on_real_sequences(name, base_config, model, batch):
    """Its example and its bare name compile and run; each clamped row is a distribution over
    positions 0..i."""
    example = PATTERNS[name].example
    layer, head = (int(x) for x in re.match(r"clamp L(\d+)\.H(\d+)\.pattern", example).groups())
    for text in (example, f"clamp L{layer}.H{head}.pattern = {name}"):
        logits, acts = run(text, base_config, model, batch)
        assert np.isfinite(a(logits)).all()
        got = _head(acts, (layer, head))
        rows = [got.shape[-1] - 1] if PATTERNS[name].rows == "query" else range(got.shape[-1])
        for i in rows:
            np.testing.assert_allclose(got[:, i].sum(-1), 1.0, atol=1e-6)
            assert (got[:, i, i + 1:] == 0).all() and (got[:, i] >= 0).all()


@pytest.mark.parametrize("name", sorted(VERBS))
def test_every_declared_verb_example_builds_and_runs(name, base_config, model, batch):
    (member,) = members_of(VERBS[name].example, base_config)
    plan = compile_member(member, {run_dir: model for run_dir in member.grafts})
    logits, _ = plan(model, batch, Context(sequences=jnp.asarray(0)))
    assert logits.shape == (batch["labels"].shape[0], base_config.data.labels)
    assert np.isfinite(a(logits)).all()


def test_a_pattern_declared_only_in_its_declaration_checks_and_runs(monkeypatch, base_config, model, batch):
    """No other table to edit: the declaration alone gives the check, the hint and the value."""
    first_col = jnp.zeros((5, 5)).at[:, 0].set(1.0)
    self_or_first = Pattern("self_or_first", (Param("weight", "w", 0.0, 1.0, 1.0),), "all",
                            lambda params, batch, t: params["weight"] * jnp.eye(t) + (1 - params["weight"]) * first_col,
                            "clamp L1.H0.pattern = self_or_first", "row i: w on itself, 1-w on position 0")
    monkeypatch.setitem(PATTERNS, self_or_first.name, self_or_first)
    _, acts = run("clamp L1.H0.pattern = self_or_first(weight=0.25)", base_config, model, batch)
    expected = 0.25 * np.eye(5) + 0.75 * np.asarray(first_col)
    np.testing.assert_allclose(_head(acts, (1, 0)), np.broadcast_to(expected, (batch["labels"].shape[0], 5, 5)), atol=1e-6)
    with pytest.raises(SpecError) as err:
        members_of("clamp L1.H0.pattern = self_or_first(weight=2)", base_config)
    assert "[0, 1]" in err.value.message and "weight=1" in err.value.hint


def test_a_new_verb_quotes_its_own_example_in_its_hints(monkeypatch, base_config):
    def lower(stmt, r):
        _no_modifiers(stmt)
        return []

    monkeypatch.setitem(VERBS, "nudge", Verb("nudge", "a test verb", "nudge L1.H0", lower))
    with pytest.raises(SpecError) as err:
        members_of("nudge L1.H0 = 3", base_config)
    assert err.value.hint == "for example: nudge L1.H0"
