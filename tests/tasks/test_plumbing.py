"""Every stage asks the task: site shapes, masks, the site table, trace and position words."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import optodsl
from optodsl.cli import app
from optodsl.experiment import load_experiment

MARKOV = ["--set", "task.name=markov", "--set", "task.length=12", "--set", "model.heads=2", "--set", "model.d_model=16"]


def test_the_site_table_has_the_tasks_length_and_logits_width():
    result = CliRunner().invoke(app, ["sites", *MARKOV])
    assert result.exit_code == 0, result.output
    assert "T=12 tokens of the markov task" in result.output
    rows = {line.split()[0]: line.split()[1:3] for line in result.output.splitlines()[1:]}
    assert rows["L1.H<h>.pattern"] == ["(12,", "12)"] and rows["logits"] == ["(12,", "3)"]


def test_masks_are_shaped_by_the_tasks_layout():
    settings = {"task.name": "markov", "task.length": 12, "model.heads": 2, "model.d_model": 16}
    compiled = optodsl.compile("clamp L1.H1.pattern = uniform\nablate L2.H0 @ 3:5\n", settings=settings)
    clamp, ablate = compiled.forward.terms
    assert clamp.mask.shape == (2, 12, 12) and bool(clamp.mask[1].all()) and not bool(clamp.mask[0].any())
    assert ablate.mask.shape == (2, 12, 8) and ablate.mask[0].any(axis=-1).tolist() == [i in (3, 4) for i in range(12)]
    assert [r["positions"] for r in compiled.explain()] == ["all", [3, 4]]


def test_any_position_word_parses_and_the_resolver_lists_the_tasks_roles():
    with pytest.raises(optodsl.SpecError) as info:
        load_experiment('set task.name = "markov"\nablate L1.H0 @ middle\n')
    err = info.value
    assert (err.span.line, err.span.column) == (2, 16)
    assert err.message == "the markov task has no positions 'middle'" and "its positions are all" in err.hint


def test_trace_runs_a_token_task_and_shows_its_input_beside_the_activations(tmp_path):
    spec = tmp_path / "s.opto"
    spec.write_text("clamp L1.H0.pattern = uniform\n")
    result = CliRunner().invoke(app, ["trace", str(spec), "--json", "--site", "L1.H0.pattern", *MARKOV])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    tokens = out["input"]["tokens"]
    assert out["task"] == "markov" and len(tokens) == 12 and set(tokens) <= {0, 1, 2}
    assert out["target"] == tokens[1:] and len(out["prediction"]) == 11
    pattern = out["sites"]["L1.H0.pattern"]
    assert len(pattern) == 12 and pattern[3][:4] == [0.25] * 4


def test_trace_of_the_fewshot_task_shows_classes_and_labels(tmp_path):
    spec = tmp_path / "s.opto"
    spec.write_text("clamp L1.H0.pattern = uniform\n")
    result = CliRunner().invoke(app, ["trace", str(spec), "--json", "--site", "L1.H0.pattern"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert len(out["input"]["classes"]) == 3 and out["target"] == out["input"]["labels"][-1]
    assert out["tokens"][0].startswith("e1(class ")
