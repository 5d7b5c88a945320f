"""`opto analyze` scores a run under its own training interventions (the forward its evaluations
used), says so in the table header and analysis.json, scores the bare network only with --bare,
and refuses an analysis line that would set one of the run's sites another way."""

from __future__ import annotations

import json
import shutil

import jax
import pytest
from typer.testing import CliRunner

from optodsl.analysis.evaluate import Sequences, evaluate_plans
from optodsl.analysis.heads import Planner
from optodsl.analysis.runs import load_run
from optodsl.cli import app
from optodsl.tasks.fewshot import make_task
from optodsl.experiment import run_experiment

SETTINGS = {"train.sequences": 640, "eval.every": 640, "eval.sequences": 256, "data.total_classes": 200}
COPY = "copy logits from L2.H3"


def _final(run_dir) -> dict:
    return json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])


def _analyze(run_dir, *args):
    res = CliRunner().invoke(app, ["analyze", str(run_dir), "--sequences", "512", *args])
    assert "Traceback" not in res.output, res.output
    return res


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("analyze_intervened")
    (root / "copied.opto").write_text(f"{COPY}\n")
    run_experiment(root / "copied.opto", root / "copied", dict(SETTINGS), progress=False)
    return root


def _variant(runs, tmp_path, spec_text: str | None):
    """A copy of the trained run whose spec.opto reads `spec_text` (None: no spec, as a run trained from Python)."""
    run_dir = tmp_path / "variant"
    shutil.copytree(runs / "copied", run_dir)
    (run_dir / "analysis.json").unlink(missing_ok=True)
    if spec_text is None:
        (run_dir / "spec.opto").unlink()
        (run_dir / "spec.json").unlink()
    else:
        (run_dir / "spec.opto").write_text(spec_text)
    return run_dir


def _on_the_last_evaluation(run_dir):
    """The analysis's full model under the run's own interventions and bare, scored on the very
    sequences of the run's last evaluation of the training set, and that evaluation's record."""
    run = load_run(run_dir)
    cfg = run.config
    task = make_task(cfg.data)
    idx = jax.device_get(task.sample_indices(jax.random.fold_in(jax.random.PRNGKey(cfg.seed.eval), 0), "train", cfg.eval.sequences))
    seqs = Sequences("train", idx, False)
    final = _final(run_dir)
    assert final["sequences"] == run.sequences
    (ours,) = evaluate_plans(run.model, [Planner(run, bare=False).plan("")], task, seqs, run.sequences)
    (bare,) = evaluate_plans(run.model, [Planner(run, bare=True).plan("")], task, seqs, run.sequences)
    return ours, bare, final


def test_the_full_model_is_the_run_as_its_evaluations_scored_it(runs):
    """On the very sequences of the run's last evaluation, the analysis's full model gives its numbers."""
    ours, bare, final = _on_the_last_evaluation(runs / "copied")
    assert ours.accuracy == pytest.approx(final["train/accuracy"], abs=1e-6)
    assert ours.loss == pytest.approx(final["train/loss"], rel=1e-4)
    assert abs(bare.loss - final["train/loss"]) > 0.3  # the bare network is another forward


def test_cli_analyze_says_it_scores_under_the_runs_interventions(runs):
    res = _analyze(runs / "copied", "--only", "heads")
    assert res.exit_code == 0, res.output
    assert f"scored under the run's own interventions, every ablation added to them: {COPY}" in res.output
    result = json.loads((runs / "copied" / "analysis.json").read_text())
    assert result["interventions"] == [COPY] and result["bare"] is False and result["bindings"] == {}
    # the copy restricts the prediction to the two in-context labels, so the loss is near the run's
    # evaluations' (the bare network, whose unembedding the copy never trained, is near ln 5)
    final = _final(runs / "copied")
    assert abs(result["full"]["loss"] - final["train/loss"]) < 0.1
    assert abs(result["full"]["accuracy"] - final["train/accuracy"]) < 0.15
    # ablating L2.H3's values leaves its attention logits, so the copied answer, as they were
    assert result["heads"]["L2"]["ablate_one"]["H3"] == result["full"]


def test_cli_analyze_bare_is_explicit_and_reported(runs, tmp_path):
    res = _analyze(runs / "copied", "--only", "heads", "--bare")
    assert res.exit_code == 0, res.output
    assert "scored on the bare network (--bare): none of the run's own interventions applied" in res.output
    result = json.loads((runs / "copied" / "analysis.json").read_text())
    assert result["bare"] is True and result["interventions"] == "none"
    assert result["full"]["loss"] > 1.2  # near ln 5: the unembedding never trained
    res = CliRunner().invoke(app, ["report", str(runs / "copied"), "--out", str(tmp_path / "report")])
    assert res.exit_code == 0, res.output


def test_cli_analyze_refuses_an_ablation_that_conflicts_with_the_runs_own(runs, tmp_path):
    run_dir = _variant(runs, tmp_path, "ablate L2.H0 = mean\n")
    res = _analyze(run_dir, "--only", "heads")
    assert res.exit_code == 2, res.output
    assert str(run_dir / "spec.opto") in res.output
    assert "the analysis 'ablate L2.H0' conflicts with the run's own interventions" in res.output
    assert "--bare" in res.output and "--only" in res.output
    assert not (run_dir / "analysis.json").exists()
    res = _analyze(run_dir, "--only", "composition")  # no ablation: nothing to conflict
    assert res.exit_code == 0, res.output
    assert "ablate L2.H0 = mean" in res.output


def test_cli_analyze_refuses_a_run_whose_interventions_are_unknown(runs, tmp_path):
    run_dir = _variant(runs, tmp_path, None)
    res = _analyze(run_dir, "--only", "composition")
    assert res.exit_code == 2, res.output
    assert "the run's training interventions are unknown" in res.output and "no spec.opto" in res.output
    assert not (run_dir / "analysis.json").exists()
    res = _analyze(run_dir, "--only", "composition", "--bare")
    assert res.exit_code == 0, res.output
    assert json.loads((run_dir / "analysis.json").read_text())["bare"] is True


def test_the_report_refuses_a_malformed_interventions_field(tmp_path):
    from optodsl.analysis.schema import Analysis
    from optodsl.errors import DataError

    read = Analysis.checked({"interventions": ["ablate L2.H0"], "bare": False}, tmp_path).for_report()
    assert read["interventions"] == ["ablate L2.H0"]
    assert Analysis.checked({}, tmp_path).for_report()["interventions"] is None  # an analysis.json written before the field
    with pytest.raises(DataError, match="interventions"):
        Analysis.checked({"interventions": 3}, tmp_path)


def test_cli_analyze_a_sweep_member_under_its_own_values(runs, tmp_path):
    """A member of a sweep is analysed with its own sweep values, and with the run's settings even
    where a `--set` overrode the spec's `set` (here train.sequences)."""
    run_dir = _variant(runs, tmp_path, "sweep h in [1, 3]\nset train.sequences = 99000\nclamp L1.H$h.pattern = prev_token\n")
    record = json.loads((run_dir / "spec.json").read_text())
    (run_dir / "spec.json").write_text(json.dumps({**record, "bindings": {"h": 3}}))
    res = _analyze(run_dir, "--only", "composition")
    assert res.exit_code == 0, res.output
    assert "scored under the run's own interventions ($h=3), every ablation added to them: clamp L1.H$h.pattern = prev_token" in res.output
    result = json.loads((run_dir / "analysis.json").read_text())
    assert result["bindings"] == {"h": 3} and result["interventions"] == ["clamp L1.H$h.pattern = prev_token"]
    assert load_run(run_dir).member.actions[0].head == 3

    (run_dir / "spec.json").write_text(json.dumps({**record, "bindings": {"h": 5}}))
    res = _analyze(run_dir, "--only", "composition")
    assert res.exit_code == 2, res.output
    assert "spec.json records $h=5" in res.output and "($h=1)" in res.output and "($h=3)" in res.output


def test_a_graft_run_is_analysed_under_its_own_graft_and_bare_only_when_asked(tmp_path):
    """A run that trained on another run's L1.resid_out (from a donor of another init seed) is scored
    with that graft, as its evaluations were; --bare scores its own, never-trained, first layer."""
    (tmp_path / "donor.opto").write_text("set train.lr = 1e-3\nset seed.init = 7\n")
    run_experiment(tmp_path / "donor.opto", tmp_path / "donor", dict(SETTINGS), progress=False)
    graft = f'graft L1.resid_out from "{tmp_path / "donor"}"'
    (tmp_path / "grafted.opto").write_text(f"set train.lr = 1e-3\n{graft}\n")
    run_dir = run_experiment(tmp_path / "grafted.opto", tmp_path / "grafted", dict(SETTINGS), progress=False)[0].run_dir

    ours, bare, final = _on_the_last_evaluation(run_dir)
    assert ours.accuracy == pytest.approx(final["train/accuracy"], abs=1e-6)
    assert ours.loss == pytest.approx(final["train/loss"], rel=1e-4)
    assert abs(bare.loss - ours.loss) > 0.5

    res = _analyze(run_dir, "--only", "heads")
    assert res.exit_code == 0, res.output
    assert f"scored under the run's own interventions, every ablation added to them: {graft}" in res.output
    grafted = json.loads((run_dir / "analysis.json").read_text())
    assert grafted["interventions"] == [graft] and grafted["bare"] is False
    res = _analyze(run_dir, "--only", "heads", "--bare")
    assert res.exit_code == 0, res.output
    assert "scored on the bare network (--bare)" in res.output
    bared = json.loads((run_dir / "analysis.json").read_text())
    assert bared["bare"] is True and bared["interventions"] == "none"
    assert abs(bared["full"]["loss"] - grafted["full"]["loss"]) > 0.5
