"""`opto analyze` and `opto eval --checkpoint` on token tasks: every head of every layer ranked by the
loss its ablation costs where the task scores (the repeated half), the task's measures per head, its
reference losses, and the same numbers from `opto eval` of a sweep of ablations."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from optodsl.analysis.evaluate import activations, evaluation_set
from optodsl.analysis.heads import Planner, compile_text
from optodsl.analysis.registry import REGISTRY, declare
from optodsl.analysis.runs import load_run
from optodsl.cli import app

ROOT = Path(__file__).resolve().parents[2]

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



# --------------------------------------------------------------------------- the loss at each position


def _docs_line(start: str) -> list[str]:
    """The arguments of the one line of docs/tasks.md that starts with `start`."""
    (line,) = [l for l in (ROOT / "docs" / "tasks.md").read_text().splitlines() if l.startswith(start)]
    return line.split()[1:]


@pytest.fixture(scope="module")
def positions(repeat_run, analysis):
    """docs/tasks.md's `opto analyze RUN_DIR --only positions` on the run, with one change: the 256
    sequences of the `heads` analysis (`--sequences 256` added), whose section the file keeps beside it."""
    args = [repeat_run / "run" if a == "RUN_DIR" else a for a in _docs_line("opto analyze RUN_DIR --only positions")]
    shown = _cli(*args, "--sequences", "256")
    return json.loads((repeat_run / "run" / "analysis.json").read_text()), shown.stdout


def _position_losses(logits, tokens) -> np.ndarray:
    """The mean over sequences of the next token's loss at each position, in numpy from the logits."""
    logits = np.asarray(logits, dtype=np.float64)[:, :-1]
    logp = logits - logits.max(-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
    tokens = np.asarray(tokens)[:, 1:]
    return -np.take_along_axis(logp, tokens[..., None], -1)[..., 0].mean(0)


def test_the_loss_at_each_position_is_the_logits_loss_with_and_without_each_head(repeat_run, positions):
    data, shown = positions
    run = load_run(repeat_run / "run")
    task, seqs = evaluation_set(run.config, n=256, seed=0)
    section = data["positions"]
    assert len(section["full"]) == 23 and set(section["ablate_one"]) == {"L1", "L2"}
    full = Planner(run, bare=False).plan("")
    _, batch, logits = activations(run.model, task, seqs, limit=256, plan=full, sequences_seen=run.sequences)
    np.testing.assert_allclose(section["full"], _position_losses(logits, batch["tokens"]), atol=2e-5)
    plan = compile_text("ablate L1.H1", run.config)  # the same head ablated by a spec line, through the compiler
    _, batch, logits = activations(run.model, task, seqs, limit=256, plan=plan, sequences_seen=run.sequences)
    np.testing.assert_allclose(section["ablate_one"]["L1"]["H1"], _position_losses(logits, batch["tokens"]), atol=2e-5)
    # the repeated half (positions 11..22 predict tokens 12..23) is what the heads analysis scores
    assert np.mean(section["full"][11:]) == pytest.approx(data["full"]["loss"], abs=2e-5)
    for layer, heads in section["ablate_one"].items():
        for h, losses in heads.items():
            assert np.mean(losses[11:]) == pytest.approx(data["heads"][layer]["ablate_one"][h]["loss"], abs=2e-5)
    # the induction head costs nothing before the repeat can begin (position 5) and much after it
    top = max(("H0", "H1"), key=lambda h: data["heads"]["L2"]["ablate_one"][h]["loss"])
    cost = np.asarray(section["ablate_one"]["L2"][top]) - np.asarray(section["full"])
    assert abs(cost[:5].mean()) < cost[12:].mean() / 4 and cost[12:].mean() > 0.5
    assert "loss at each position, in bands of positions" in shown and f"  L2.{top}" in shown


def test_the_report_draws_the_positions_heat_map(repeat_run, positions, tmp_path):
    _cli("report", repeat_run / "run", "--out", tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert (tmp_path / "positions.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "### Loss at each position, each head ablated" in text and "(positions.png)" in text
    assert "#### Loss at each position, each head ablated" in text and "  full model" in text


def test_an_analysis_registered_in_one_place_runs_from_the_command_line(repeat_run, analysis, tmp_path, monkeypatch):
    """A toy analysis added to the registry alone is an `--only` choice, a section of analysis.json
    and a table, with no edit anywhere else."""
    class Toy(BaseModel):
        cost: float

    monkeypatch.setitem(REGISTRY, "toy", None)  # the declaration below replaces it; undone after the test

    @declare("toy", title="Toy", section=Toy, words="the loss L2.H0's ablation adds",
             table=lambda s, result: [f"toy: ablating L2.H0 adds {s.cost:.4f}"], plans=lambda inputs: {"toy": "ablate L2.H0"})
    def toy(inputs, outcomes):
        return {"cost": outcomes["toy"].loss - outcomes["full"].loss}

    shutil.copytree(repeat_run / "run", tmp_path / "run")
    shown = _cli("analyze", tmp_path / "run", "--sequences", "256", "--only", "toy")
    data = json.loads((tmp_path / "run" / "analysis.json").read_text())
    expected = analysis[0]["heads"]["L2"]["ablate_one"]["H0"]["loss"] - analysis[0]["full"]["loss"]
    assert data["toy"]["cost"] == pytest.approx(expected, abs=2e-5)
    assert f"toy: ablating L2.H0 adds {data['toy']['cost']:.4f}" in shown.stdout
    bad = CliRunner().invoke(app, ["analyze", str(tmp_path / "run"), "--only", "nonsense"])
    assert bad.exit_code == 2 and "--only:1:1: error: no analysis 'nonsense'" in bad.output
    assert ", ".join(REGISTRY) in bad.output and bad.output.rstrip().endswith("toy")
    monkeypatch.delitem(REGISTRY, "toy")
    assert "toy" not in CliRunner().invoke(app, ["analyze", str(tmp_path / "run"), "--only", "nonsense"]).output
