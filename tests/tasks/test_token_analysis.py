"""`opto analyze` and `opto eval --checkpoint` on token tasks: every head of every layer ranked by the
loss its ablation costs where the task scores (the repeated half), the task's measures per head, its
reference losses, and the same numbers from `opto eval` of a sweep of ablations."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from optodsl.cli import app

REPEAT = '''set task.name = "repeat"
set task.vocab = 32
set task.length = 24
set model.layers = 2
set model.heads = 2
set model.d_model = 32
set train.lr = 3e-3
set train.sequences = 24k
set eval.every = 24k
set eval.sequences = 128
'''


def _cli(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def repeat_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("repeat")
    (root / "repeat.opto").write_text(REPEAT)
    _cli("run", root / "repeat.opto", "--out", root / "run", "--no-progress")
    return root


@pytest.fixture(scope="module")
def analysis(repeat_run):
    shown = _cli("analyze", repeat_run / "run", "--sequences", "256", "--only", "heads")
    return json.loads((repeat_run / "run" / "analysis.json").read_text()), shown.stdout


def test_every_head_of_every_layer_is_ranked_by_its_cost_on_the_repeated_half(analysis):
    data, shown = analysis
    assert data["scored"] == "the next token in the repeated half"
    assert set(data["heads"]) == {"L1", "L2"} and all(set(data["heads"][l]["ablate_one"]) == {"H0", "H1"} for l in ("L1", "L2"))
    ranking = shown.split("heads ranked by the loss their ablation costs")[1].splitlines()[1]
    assert sorted(entry.split()[0] for entry in ranking.split(", ")) == ["L1.H0", "L1.H1", "L2.H0", "L2.H1"]
    costs = {f"{l}.{h}": s["loss"] - data["full"]["loss"] for l, k in data["heads"].items() for h, s in k["ablate_one"].items()}
    assert [entry.split()[0] for entry in ranking.split(", ")] == sorted(costs, key=lambda k: -costs[k])
    # the induction head formed: the full model predicts the repeated half far below ln 32, and the
    # costliest layer-2 head is the one whose prefix-matching score exceeds 0.5
    assert data["full"]["loss"] < 1.5 < data["references"]["uniform (ln 32)"]
    top = max(("H0", "H1"), key=lambda h: costs[f"L2.{h}"])
    assert data["measures"]["induction"]["L2"][top] > 0.5
    assert {"first_loss", "repeated_loss"} <= set(data["references"])
    assert data["references"]["repeated_loss"] < data["references"]["first_loss"]


def test_eval_of_a_sweep_of_ablations_gives_the_analysis_losses(repeat_run, analysis):
    data, _ = analysis
    (repeat_run / "ablate.opto").write_text(REPEAT + "sweep h in 0..1\nablate L2.H$h\n")
    shown = _cli("eval", repeat_run / "ablate.opto", "--checkpoint", repeat_run / "run", "--sequences", "256", "--json")
    runs = json.loads(shown.stdout)["runs"]
    for h in (0, 1):
        (scores,) = [r["sets"]["train"] for r in runs.values() if r["bindings"] == {"h": h}]
        assert scores["loss"] == pytest.approx(data["heads"]["L2"]["ablate_one"][f"H{h}"]["loss"], abs=1e-5)
        assert scores["accuracy"] == pytest.approx(data["heads"]["L2"]["ablate_one"][f"H{h}"]["accuracy"], abs=1e-5)


def test_in_context_accuracy_is_refused_on_a_token_task(repeat_run):
    result = CliRunner().invoke(app, ["eval", str(repeat_run / "repeat.opto"), "--checkpoint", str(repeat_run / "run"),
                                      "--sequences", "64", "--in-context"])
    assert result.exit_code == 2 and "scores no accuracy among the context's labels" in result.output


def test_a_three_layer_markov_run_is_analysed_in_every_layer_and_pair(tmp_path):
    (tmp_path / "m.opto").write_text('set task.name = "markov"\nset task.length = 16\nset model.layers = 3\nset model.heads = 2\n'
                                     'set model.d_model = 16\nset train.sequences = 256\nset eval.every = 256\n'
                                     'set eval.sequences = 32\n')
    _cli("run", tmp_path / "m.opto", "--out", tmp_path / "run", "--no-progress")
    shown = _cli("analyze", tmp_path / "run", "--sequences", "64")
    data = json.loads((tmp_path / "run" / "analysis.json").read_text())
    assert set(data["heads"]) == {"L1", "L2", "L3"}
    assert set(data["paths"]) == set(data["composition"]) == {"L1-L2", "L1-L3", "L2-L3"}
    assert {g["layer"] for g in data["groups"]} == {1, 2}
    assert {"in-context unigram", "Bayes bigram", "uniform (ln 3)"} <= set(data["references"])
    assert set(data["measures"]) == {"induction", "prev_token", "copying"}
    assert "every loss (nats) and accuracy below is on the next token at every position" in shown.stdout
