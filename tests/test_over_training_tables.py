"""`opto analyze --over-training` beyond the head ablations: the per-token loss trajectory (Olsson et
al.'s view: the loss on fixed sequences at every point, on its principal components), Table 1 and the
path map at every point (at the last point, `opto analyze`'s numbers on the final checkpoint), a
sweep's folder scored as one program over its members (by `opto analyze` and by `opto eval`), and
`opto report` drawing and tabulating them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from optodsl import rundir
from optodsl.analysis.evaluate import evaluate_plans, evaluate_plans_over_points, evaluation_set
from optodsl.analysis.heads import Planner
from optodsl.analysis.overtraining import analyze_over_training, load_points
from optodsl.analysis.runs import load_run
from optodsl.analysis.series_schema import AnalysisSeries, EvalSeries
from optodsl.cli import app
from optodsl.train.series import load_series

TINY = """set model.layers = 2
set model.heads = 2
set model.d_model = 16
set train.lr = 1e-3
set train.keep = "every 160"
set eval.every = 160
"""
"""The tiny two-layer network and its series of every 160 sequences, on any task."""
SWEEP = """set data.total_classes = 200
set data.feature_dim = 16
""" + TINY + """set train.sequences = 480
set eval.sequences = 64
set eval.sets = ["train"]
sweep seed in [1, 2]
set seed.init = $seed
"""


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Two seeds of a tiny two-layer network, trained as one program, each keeping 3 points."""
    root = tmp_path_factory.mktemp("sweep")
    spec = root / "s.opto"
    spec.write_text(SWEEP)
    trained = CliRunner().invoke(app, ["run", str(spec), "--out", str(root / "runs")])
    assert trained.exit_code == 0, trained.output
    dirs = rundir.find_runs(root / "runs")
    assert len(dirs) == 2
    return root / "runs", dirs


def _pca(losses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates (points, components) and variance shares of the centred points, by numpy's SVD."""
    centred = losses - losses.mean(0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    k = len(losses) - 1
    coords = u[:, :k] * s[:k]
    coords *= np.where(coords[-1] < coords[0], -1, 1)
    return coords, s[:k] ** 2 / (s ** 2).sum()


def test_the_loss_trajectory_is_the_pca_of_each_points_single_checkpoint_losses(sweep):
    _, dirs = sweep
    run = load_run(dirs[0])
    series, _ = analyze_over_training(run, n=96, seed=0, what=())
    assert series.sequences == [160, 320, 480] and series.analyses == {}
    task, seqs = evaluation_set(run.config, n=96, seed=0)
    full = Planner(run, False).plan("")
    models = {p.sequences: m for p, m in load_series(dirs[0], run.model)[0]}
    single = np.stack([evaluate_plans(models[s], [full], task, seqs, s)[0].losses for s in series.sequences])
    points = load_points(run)
    vmapped = evaluate_plans_over_points(points.params, points.static, [full], task, seqs, np.asarray(points.sequences))
    np.testing.assert_allclose(vmapped[0]["loss"], single, atol=2e-5)  # per point, per sequence
    coords, explained = _pca(single)
    t = series.trajectory
    assert t.sequences == 96 and len(t.coordinates) == 2
    np.testing.assert_allclose(np.asarray(t.coordinates).T, coords, atol=1e-4)
    np.testing.assert_allclose(t.explained, explained, atol=1e-5)


def test_table1_and_paths_over_a_sweep_folder_in_one_program_end_at_analyze(sweep):
    root, dirs = sweep
    runner = CliRunner()
    args = ["--sequences", "96", "--seed", "2"]
    folder = runner.invoke(app, ["analyze", str(root), "--over-training", *args])
    assert folder.exit_code == 0, folder.output
    assert folder.output.startswith(f"2 runs in 1 program ({dirs[0].name}, {dirs[1].name})")
    assert "head groups (Table 1)" in folder.output and "per-token loss trajectory on 96 sequences" in folder.output
    # each member's last point is `opto analyze` on its final checkpoint (its own groups, from its own network)
    for d in dirs:
        over = AnalysisSeries.model_validate_json((d / rundir.ANALYSIS_SERIES).read_text())
        assert set(over.analyses) == {"groups", "paths"} and len(over.analyses["paths"]) == 3
        final = runner.invoke(app, ["analyze", str(d), "--only", "groups", "--only", "paths", "--json", *args])
        assert final.exit_code == 0, final.output
        final = json.loads(final.stdout)
        last_groups = over.analyses["groups"][-1]
        assert [g["name"] for g in last_groups] == [g["name"] for g in final["groups"]]
        for got, want in zip(last_groups, final["groups"]):
            for kind in ("ablated", "pattern_preserving", "value_preserving"):
                for metric in ("accuracy", "loss"):
                    assert got[kind][metric] == pytest.approx(want[kind][metric], abs=2e-6)
        np.testing.assert_allclose(over.analyses["paths"][-1]["L1-L2"]["accuracy"], final["paths"]["L1-L2"]["accuracy"],
                                   atol=2e-6)
        assert over.full.loss[-1] == pytest.approx(final["full"]["loss"], abs=2e-6)

    # the report: figures over training, and Table 1 and the path map at the points asked for
    out = root.parent / "report"
    report = runner.invoke(app, ["report", str(root), "--out", str(out), "--points", "150,1k"])
    assert report.exit_code == 0, report.output
    assert {"loss_trajectory.png", "table1_over_training.png", "paths_over_training.png"} <= {p.name for p in out.glob("*.png")}
    text = (out / "report.md").read_text()
    assert "shown at 160, 480 (the kept points nearest `--points`)" in text
    assert "#### One path L1-L2 at 160 sequences" in text and "#### One path L1-L2 at 480 sequences" in text
    assert f"| 480 | {last_groups[0]['name']} |" in text  # the last member's
    bad = runner.invoke(app, ["report", str(root), "--out", str(out), "--points", "1x"])
    assert bad.exit_code == 2 and "cannot read --points '1x'" in bad.output


def test_runs_share_a_program_only_with_the_same_settings_but_seeds_sequences_and_shapes():
    from types import SimpleNamespace

    from optodsl.analysis.evaluate import Sequences
    from optodsl.analysis.overtraining import bundles
    from optodsl.config import ExperimentConfig

    def member(init=0, d_model=16, first=0, lr=1e-3):
        cfg = ExperimentConfig()
        cfg = cfg.model_copy(update={"seed": cfg.seed.model_copy(update={"init": init}),
                                     "model": cfg.model.model_copy(update={"d_model": d_model}),
                                     "train": cfg.train.model_copy(update={"lr": lr})})
        seqs = Sequences("train", {"x": np.arange(first, first + 4)}, False)
        params = {"w": np.zeros((init, d_model))}  # points x shapes: however many points each keeps
        return SimpleNamespace(run=SimpleNamespace(config=cfg, member=None), inputs=SimpleNamespace(seqs=seqs),
                               points=SimpleNamespace(params=params, static=None))

    runs = [member(1), member(2, lr=1e-4), member(3, d_model=32), member(4, first=1), member(5)]
    assert bundles(runs, bare=True) == [[0, 1, 4], [2], [3]]


EVAL = """set data.total_classes = 200
set data.feature_dim = 16
set model.layers = 2
set model.heads = 2
set model.d_model = 16
set eval.sets = ["train"]
sweep h in 0..1
ablate L2.H$h during eval
"""


def _close(got, want, path="") -> None:
    """`got` and `want` (JSON values) equal, their floats to 2e-6."""
    assert type(got) is type(want) or {type(got), type(want)} <= {int, float}, path
    if isinstance(want, dict):
        assert got.keys() == want.keys(), path
        for k in want:
            _close(got[k], want[k], f"{path}.{k}")
    elif isinstance(want, list):
        assert len(got) == len(want), path
        for i, (a, b) in enumerate(zip(got, want)):
            _close(a, b, f"{path}[{i}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, abs=2e-6), path
    else:
        assert got == want, path


def test_eval_over_training_of_a_sweep_folder_is_each_members_own_in_one_program(sweep, tmp_path, monkeypatch):
    import shutil

    from optodsl import evaluate_spec

    root, dirs = sweep
    folder = tmp_path / "runs"
    shutil.copytree(root, folder)
    members = [folder / d.relative_to(root) for d in dirs]
    damaged = members[1] / "series" / rundir.series_point_file(160)
    damaged.write_bytes(b"damaged")
    spec = tmp_path / "ablate.opto"
    spec.write_text(EVAL)
    seen = []  # the points of each call: one call is one program over them (both of the spec's runs at once)
    scored = evaluate_spec.evaluate_plans_over_points
    monkeypatch.setattr(evaluate_spec, "evaluate_plans_over_points",
                        lambda *a: seen.append(list(a[-1])) or scored(*a))
    runner = CliRunner()
    args = ["--sequences", "96", "--seed", "1"]
    out = runner.invoke(app, ["eval", str(spec), "--checkpoint", str(folder), "--over-training", *args])
    assert out.exit_code == 0, out.output
    assert out.stdout.startswith(f"2 runs in 1 program ({members[0].name}, {members[1].name})\n")
    assert seen == [[160, 320, 480, 320, 480]]  # the damaged point of the second member skipped
    assert f"{damaged}: sha256 differs" in out.stderr and "point at 160 sequences skipped" in out.stderr
    swept = {}
    for m in members:
        assert f"{m} at {3 if m == members[0] else 2} points" in out.stdout and f"written: {m / rundir.EVAL_SERIES}" in out.stdout
        swept[m] = json.loads((m / rundir.EVAL_SERIES).read_text())
    assert EvalSeries.model_validate(swept[members[1]]).sequences == [320, 480]
    assert len(swept[members[1]]["skipped"]) == 1 and str(damaged) in swept[members[1]]["skipped"][0]

    # each member's file is the single-run form's on its own directory, which scores one program of its own points
    for m in members:
        seen.clear()
        one = runner.invoke(app, ["eval", str(spec), "--checkpoint", str(m), "--over-training", "--json", *args])
        assert one.exit_code == 0, one.output
        assert seen == [swept[m]["points"] and [p["sequences"] for p in swept[m]["points"]]]
        _close(swept[m], json.loads(one.stdout))


REPEAT = """set task.name = "repeat"
set task.vocab = 16
set task.length = 16
""" + TINY + """set train.sequences = 320
set eval.sequences = 32
"""


def test_eval_over_training_of_a_repeat_sweep_folder_is_each_members_own(tmp_path):
    """The folder form on a token task: both members of a repeat-task sweep scored in one program,
    each member's file the single-run form's on its own directory."""
    (tmp_path / "s.opto").write_text(REPEAT + "sweep seed in [1, 2]\nset seed.init = $seed\n")
    runner = CliRunner()
    trained = runner.invoke(app, ["run", str(tmp_path / "s.opto"), "--out", str(tmp_path / "runs")])
    assert trained.exit_code == 0, trained.output
    members = rundir.find_runs(tmp_path / "runs")
    assert len(members) == 2
    (tmp_path / "e.opto").write_text(REPEAT + "ablate L2.H0 during eval\n")
    args = ["--sequences", "32", "--seed", "1"]
    out = runner.invoke(app, ["eval", str(tmp_path / "e.opto"), "--checkpoint", str(tmp_path / "runs"),
                              "--over-training", *args])
    assert out.exit_code == 0, out.output
    assert out.stdout.startswith(f"2 runs in 1 program ({members[0].name}, {members[1].name})\n")
    for m in members:
        swept = json.loads((m / rundir.EVAL_SERIES).read_text())
        assert EvalSeries.model_validate(swept).sequences == [160, 320]
        one = runner.invoke(app, ["eval", str(tmp_path / "e.opto"), "--checkpoint", str(m), "--over-training", "--json", *args])
        assert one.exit_code == 0, one.output
        _close(swept, json.loads(one.stdout))
