"""Any depth: analyses, tables, report and figures of 3-layer and 1-layer models.

Two tiny runs are trained once for the module (a few hundred sequences, 2 heads) through `opto run`;
`opto analyze` and `opto report` are then run on them as a user would.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from optodsl.analysis.heads import composition_scores
from optodsl.analysis.runs import load_run
from optodsl.cli import app
from optodsl.report.load import load_runs

TINY = ["--set", "train.sequences=640", "--set", "eval.every=640", "--set", "eval.sequences=64",
        "--set", "data.total_classes=200", "--set", "model.heads=2", "--set", "model.d_model=16"]


def _cli(*args):
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert "Traceback" not in res.output, res.output
    return res


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("depth")
    (root / "free.opto").write_text("ablate L1.H1\n")
    out = {}
    for layers in (3, 1):
        res = _cli("run", root / "free.opto", "--out", root / f"l{layers}", *TINY, "--set", f"model.layers={layers}")
        assert res.exit_code == 0, res.output
        out[layers] = root / f"l{layers}"
    return out


@pytest.fixture(scope="module")
def three(runs):
    res = _cli("analyze", runs[3], "--sequences", "128")
    assert res.exit_code == 0, res.output
    return res.output, json.loads((runs[3] / "analysis.json").read_text())


def test_a_three_layer_analysis_covers_every_layer_and_every_pair(three, runs):
    text, result = three
    assert list(result["heads"]) == ["L1", "L2", "L3"]
    assert all(set(result["heads"][f"L{n}"]["only_one"]) == {"H0", "H1"} for n in (1, 2, 3))
    assert list(result["paths"]) == ["L1-L2", "L1-L3", "L2-L3"]
    assert list(result["composition"]) == ["L1-L2", "L1-L3", "L2-L3"]
    assert result["subset"]["reference"].startswith("L3.")
    for pair in result["paths"]:
        assert np.asarray(result["paths"][pair]["accuracy"]).shape == (2, 2)
    run = load_run(runs[3])
    for earlier, later in ((1, 2), (1, 3), (2, 3)):
        expected = composition_scores(run, earlier, later)
        for kind in "QKV":
            np.testing.assert_allclose(result["composition"][f"L{earlier}-L{later}"][kind], expected[kind])
    # the 1->3 and 2->3 maps are different matrices, not the 1->2 one repeated
    assert result["composition"]["L1-L3"]["Q"] != result["composition"]["L2-L3"]["Q"]
    for line in ("L3 (Figure 4a)", "one path L1-L3", "one path L2-L3", "Q-composition L2-L3"):
        assert line in text


def test_a_path_between_layers_1_and_3_keeps_layer_2_whole(three, runs, tmp_path):
    _, result = three
    run = load_run(runs[3])
    from optodsl.analysis.evaluate import evaluate_plans, evaluation_set
    from optodsl.analysis.heads import Planner

    planner = Planner(run, bare=False)
    task, seqs = evaluation_set(run.config, "train", 128, 0)
    (path,) = evaluate_plans(run.model, [planner.plan("ablate L1.* except H0\nablate L3.* except H1")], task, seqs,
                             run.sequences)
    assert result["paths"]["L1-L3"]["accuracy"][0][1] == round(path.accuracy, 6)


def test_the_report_draws_all_three_layers_and_every_pair(three, runs, tmp_path):
    res = _cli("report", runs[3], "--out", tmp_path)
    assert res.exit_code == 0, res.output
    for name in ("ablation.png", "paths.png", "composition.png"):
        assert (tmp_path / name).exists(), name
    md = (tmp_path / "report.md").read_text()
    for pair in ("L1-L2", "L1-L3", "L2-L3"):
        assert f"One path {pair}" in md
    assert "| L3 | H1 |" in md
    (run,) = load_runs([runs[3]])
    assert list(run.analysis["composition"]) == ["L1-L2", "L1-L3", "L2-L3"]


def test_a_one_layer_model_gets_its_head_analyses_and_no_pairs(runs, tmp_path):
    res = _cli("analyze", runs[1], "--sequences", "128")
    assert res.exit_code == 0, res.output
    result = json.loads((runs[1] / "analysis.json").read_text())
    assert list(result["heads"]) == ["L1"]
    assert result["subset"]["reference"].startswith("L1.")
    assert "paths" not in result and "composition" not in result
    assert all(set(g) >= {"ablated"} and "pattern_preserving" not in g for g in result["groups"])
    res = _cli("report", runs[1], "--out", tmp_path)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "ablation.png").exists() and not (tmp_path / "paths.png").exists()


def test_a_one_layer_model_refuses_a_pair_analysis_with_the_reason(runs):
    res = _cli("analyze", runs[1], "--sequences", "128", "--only", "composition")
    assert res.exit_code != 0
    assert "composition compares a pair of layers, and this model has one" in res.output
    assert "model.layers = 1" in res.output


def test_an_analysis_written_before_layer_pairs_still_loads_as_l1_l2(runs, tmp_path):
    result = json.loads((runs[3] / "analysis.json").read_text())
    old = dict(result, paths=result["paths"]["L1-L2"], composition=result["composition"]["L1-L2"])
    (runs[3] / "analysis.json").write_text(json.dumps(old))
    try:
        (run,) = load_runs([runs[3]])
    finally:
        (runs[3] / "analysis.json").write_text(json.dumps(result))
    assert list(run.analysis["paths"]) == ["L1-L2"] and list(run.analysis["composition"]) == ["L1-L2"]
