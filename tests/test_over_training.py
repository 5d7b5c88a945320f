"""`opto analyze RUN --over-training` and `opto eval SPEC --checkpoint RUN --over-training`: at each
kept point, the numbers a `during eval` ablation logged at that length while the run trained; at the
last point, the numbers of `opto analyze` / `opto eval` on the final checkpoint; a damaged point named
and skipped. On the few-shot task and the repeat task."""

from __future__ import annotations

import json
import warnings

import jax
import numpy as np
import pytest
from typer.testing import CliRunner

from optodsl import rundir
from optodsl.analysis.evaluate import Sequences
from optodsl.analysis.overtraining import analyze_over_training, load_points
from optodsl.analysis.runs import load_run
from optodsl.analysis.series_schema import AnalysisSeries, EvalSeries
from optodsl.cli import app
from optodsl.tasks import build_task, eval_sets
from optodsl.train.series import SeriesWarning

TINY = """set model.layers = 2
set model.heads = 2
set model.d_model = 16
set train.lr = 1e-3
set train.sequences = 960
set train.keep = "every 320"
set eval.every = 320
set eval.sequences = 128
set eval.sets = ["train"]
ablate L2.H0 during eval
"""
TASKS = {
    # task settings, the logged key the task's per-sequence score averages to on the evaluation batch
    "fewshot": ("set data.total_classes = 200\nset data.feature_dim = 16\n", "train/loss"),
    "repeat": ('set task.name = "repeat"\nset task.vocab = 16\nset task.length = 16\n', "train/repeated_loss"),
}


def _own_eval_sequences(run) -> Sequences:
    """The sequences the run's training evaluated on (its `seed.eval` batch of the training set), in
    the task's `fixed` layout (the few-shot task keeps table indices there)."""
    task = build_task(run.config)
    key = jax.random.fold_in(jax.random.PRNGKey(run.config.seed.eval), eval_sets(run.config).index("train"))
    draw = getattr(task, "sample_indices", task.sample)
    return Sequences("train (the run's evaluation batch)", jax.device_get(draw(key, "train", run.config.eval.sequences)), False)


def _trained(tmp_path, name):
    settings, logged_key = TASKS[name]
    spec = tmp_path / "ablated.opto"
    spec.write_text(settings + TINY)
    run_dir = tmp_path / "run"
    trained = CliRunner().invoke(app, ["run", str(spec), "--out", str(run_dir)])
    assert trained.exit_code == 0, trained.output
    logged = {r["sequences"]: r[logged_key] for r in rundir.metrics(run_dir) if r["sequences"] > 0}
    assert sorted(logged) == [320, 640, 960]
    return spec, run_dir, logged


def _matches_the_logged_ablation(run_dir, logged, points=(320, 640, 960)):
    """At each point: the loss the training run logged with L2.H0 ablated during eval, on its own batch."""
    run = load_run(run_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SeriesWarning)
        series, _ = analyze_over_training(run, bare=True, seqs=_own_eval_sequences(run))
    assert series.sequences == list(points)
    assert [p.source for p in series.points] == [rundir.series_point_file(s) for s in points]
    np.testing.assert_allclose(series.heads["L2"]["H0"].loss, [logged[s] for s in series.sequences], rtol=1e-4, atol=1e-5)


def test_over_training_on_a_token_task_matches_its_logged_during_eval_ablation(tmp_path):
    _matches_the_logged_ablation(*_trained(tmp_path, "repeat")[1:])


def test_over_training_matches_logged_ablations_and_the_final_checkpoint_and_skips_a_damaged_point(tmp_path):
    spec, run_dir, logged = _trained(tmp_path, "fewshot")
    # a damaged point is named with its file and skipped, with a warning (the other points are scored)
    (run_dir / "series" / "seq-000000320.npz").write_bytes(b"damaged")
    _matches_the_logged_ablation(run_dir, logged, points=(640, 960))
    runner = CliRunner()
    args = ["--sequences", "128", "--seed", "3"]
    out = runner.invoke(app, ["analyze", str(run_dir), "--over-training", "--bare", *args])
    assert out.exit_code == 0, out.output
    assert "warning:" in out.output and "seq-000000320.npz: sha256 differs" in out.output
    assert "point at 320 sequences skipped" in out.output
    assert "L2.H0" in out.output and f"written: {run_dir / 'analysis_series.json'}" in out.output
    over = AnalysisSeries.model_validate_json((run_dir / "analysis_series.json").read_text())
    assert over.sequences == [640, 960] and len(over.skipped) == 1 and "seq-000000320.npz" in over.skipped[0]

    # its last point equals one-checkpoint analyze and eval
    single = runner.invoke(app, ["analyze", str(run_dir), "--bare", "--only", "heads", "--json", *args])
    assert single.exit_code == 0, single.output
    final = json.loads(single.stdout)
    for layer in ("L1", "L2"):
        for head in ("H0", "H1"):
            for metric in ("loss", "accuracy"):
                assert getattr(over.heads[layer][head], metric)[-1] == pytest.approx(
                    final["heads"][layer]["ablate_one"][head][metric], abs=2e-6)
    assert over.full.loss[-1] == pytest.approx(final["full"]["loss"], abs=2e-6)
    assert final["measures"] and over.measures.keys() == final["measures"].keys()
    for measure, per_layer in final["measures"].items():
        for layer, per_head in per_layer.items():
            for head, value in per_head.items():
                assert over.measures[measure][layer][head][-1] == pytest.approx(value, abs=1e-5)

    evaluated = runner.invoke(app, ["eval", str(spec), "--checkpoint", str(run_dir), "--over-training", "--json", *args])
    assert evaluated.exit_code == 0, evaluated.output
    eval_series = EvalSeries.model_validate_json((run_dir / "eval_series.json").read_text())
    assert json.loads(evaluated.stdout) == json.loads((run_dir / "eval_series.json").read_text())
    assert "seq-000000320.npz: sha256 differs" in evaluated.stderr and eval_series.sequences == [640, 960]
    (name,) = eval_series.runs
    scores = eval_series.runs[name].sets["train"]
    np.testing.assert_allclose(scores.loss, over.heads["L2"]["H0"].loss, atol=2e-6)  # the spec's ablation is analyze's
    one = json.loads(runner.invoke(app, ["eval", str(spec), "--checkpoint", str(run_dir), "--json", *args]).stdout)
    for metric in ("loss", "accuracy", "accuracy_in_context"):
        got = scores.extra[metric] if metric in scores.extra else getattr(scores, metric)
        assert got[-1] == pytest.approx(one["runs"][name]["sets"]["train"][metric], abs=2e-6)

    # another analysis over training is refused, and so is a run without a series
    bad = runner.invoke(app, ["analyze", str(run_dir), "--over-training", "--only", "composition"])
    assert bad.exit_code == 2 and "--only:1:1: error: 'composition' is not computed over training" in bad.output
    with pytest.raises(ValueError, match="one value per point"):
        AnalysisSeries.model_validate({**over.model_dump(), "points": [{"sequences": 1, "source": "x"}] + over.model_dump()["points"]})
    # a series without the run's own length: the latest checkpoint is the last point
    manifest = json.loads((run_dir / "series" / "manifest.json").read_text())
    manifest["points"] = [p for p in manifest["points"] if p["sequences"] != 960]
    (run_dir / "series" / "manifest.json").write_text(json.dumps(manifest))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SeriesWarning)
        points = load_points(load_run(run_dir))
    assert points.sequences == [640, 960] and points.sources == [rundir.series_point_file(640), "checkpoint"]
    (run_dir / "series" / "manifest.json").unlink()
    refused = runner.invoke(app, ["eval", str(spec), "--checkpoint", str(run_dir), "--over-training", *args])
    assert refused.exit_code == 2 and "keeps no checkpoint series" in refused.output


def test_stages_are_read_at_the_series_points_per_run_and_over_seeds(tmp_path):
    from optodsl.report.curvestats import series_run, stages
    from optodsl.report.figures import write_figures
    from optodsl.report.load import Run
    from optodsl.report.summary import console_text, stages_table

    def run(name, losses, accuracies, seed):
        points = [{"sequences": 100 * (i + 1), "source": f"seq-{i}.npz"} for i in range(len(losses))]
        scores = {"loss": losses, "accuracy": accuracies}
        heads = {"L1": {"H0": {"loss": [x + 0.1 for x in losses], "accuracy": accuracies}}}
        series = AnalysisSeries(run_dir=name, bare=False, interventions="none", eval={"set": "train", "sequences": 8},
                                points=points, full=scores, metrics=scores, heads=heads,
                                measures={"induction": {"L1": {"H0": accuracies}}})
        return Run(tmp_path / name, f"s-seed{seed}", "s.opto", f"s-seed{seed}", {"seed": seed}, metrics=[],
                   analysis_series=series)

    a = run("a", [0.70, 0.69, 0.69, 0.30, 0.05], [0.5, 0.5, 0.5, 0.8, 0.95], 0)
    b = run("b", [0.70, 0.69, 0.30, 0.20, 0.05], [0.5, 0.5, 0.8, 0.95, 0.99], 1)
    st = stages(series_run(a))  # plateau at ln 2 (within 0.05) from 100 to 300; accuracy 0.9 reached at 500
    assert (st.plateau, st.start, st.end) == ((100, 300), 400, 500)
    assert (stages(series_run(b)).start, stages(series_run(b)).end) == (300, 400)
    assert "s-seed0 (series points)" in stages_table([a, b])
    text = console_text([a, b])
    assert "at its 5 series points (analysis_series.json): plateau 100–300; phase change 400 to 500" in text
    assert "at the series points: phase change 350 (300–400) to 450 (400–500)" in text
    figures = write_figures([a, b], tmp_path)  # opto report draws the series files
    assert {"ablation_over_training.png", "over_training.png"} <= set(figures)
    assert a.analysis_series.ablation_cost("L1") == (["H0"], [[pytest.approx(0.1)] * 5])
