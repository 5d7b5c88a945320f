"""The run-directory layout has one owner: which folders are runs, and how a folder of runs is listed."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from optodsl import rundir
from optodsl.cli import app


def _run(path, metrics_only=False):
    path.mkdir(parents=True)
    if not metrics_only:
        (path / rundir.CONFIG).write_text("{}")
    (path / rundir.METRICS).write_text(json.dumps({"sequences": 0}) + "\n")
    return path


def test_a_run_directory_holds_its_settings_or_its_metrics(tmp_path):
    assert rundir.is_run_dir(_run(tmp_path / "a")) and rundir.is_run_dir(_run(tmp_path / "b", metrics_only=True))
    (tmp_path / "c").mkdir()
    assert not rundir.is_run_dir(tmp_path / "c") and not rundir.is_run_dir(tmp_path / "missing")


def test_runs_below_a_folder_are_listed_in_natural_order_without_hidden_folders(tmp_path):
    names = ["sweep/h10", "sweep/h2", "sweep/h1", "single", ".hidden/x"]
    for name in names:
        _run(tmp_path / name)
    (tmp_path / "sweep" / "h2" / "tensorboard").mkdir()
    expected = [tmp_path / "single", tmp_path / "sweep" / "h1", tmp_path / "sweep" / "h2", tmp_path / "sweep" / "h10"]
    assert rundir.find_runs(tmp_path) == expected
    assert rundir.find_runs(tmp_path / "single") == [tmp_path / "single"]
    assert rundir.find_runs(tmp_path / "missing") == []


def test_opto_runs_and_the_report_list_the_same_runs(tmp_path):
    from optodsl.report.load import expand

    for name in ("h10", "h2"):
        _run(tmp_path / "sweep" / name)
    listed = CliRunner().invoke(app, ["runs", str(tmp_path)])
    assert listed.exit_code == 0, listed.output
    assert [line.split()[0] for line in listed.output.splitlines()] == [str(p) for p in expand([tmp_path])]
    assert [p.name for p in expand([tmp_path])] == ["h2", "h10"]
