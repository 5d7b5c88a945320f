"""A damaged run directory (truncated .npz, truncated config.json, checkpoint.json naming a missing
file) is a clear error naming the file for every command that reads it; where the kept previous
checkpoint is intact the error says how to resume from it, and doing so gives the metrics an
uninterrupted run has from that point on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from optodsl.cli import app
from optodsl.experiment import run_experiment

SMALL = {"train.sequences": 1280, "eval.every": 320, "train.checkpoint_every": 320, "eval.sequences": 16,
         "data.total_classes": 200}
SMALL_ARGS = [arg for key, value in SMALL.items() for arg in ("--set", f"{key}={value}")] + ["--no-progress"]
LATEST, PREVIOUS = "ckpt-000000040.npz", "ckpt-000000030.npz"


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A tiny finished run with a latest (step 40) and a kept previous (step 30) checkpoint."""
    root = tmp_path_factory.mktemp("finished")
    (root / "s.opto").write_text("ablate L2.H1\n")
    run_dir = run_experiment(root / "s.opto", root / "run", SMALL, progress=False)[0].run_dir
    assert sorted(p.name for p in run_dir.glob("ckpt-*.npz")) == [PREVIOUS, LATEST]
    return root


@pytest.fixture
def run(tmp_path, finished) -> Path:
    """A fresh copy of the finished run (with its spec beside it) to damage."""
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    return tmp_path / "run"


def _truncate(path: Path, keep: int = 100) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def _invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def _commands(run: Path) -> dict[str, list]:
    spec = run.parent / "s.opto"
    return {
        "run": ["run", spec, "--out", run, *SMALL_ARGS],
        "analyze": ["analyze", run, "--only", "heads", "--sequences", "16"],
        "trace": ["trace", spec, "--checkpoint", run, "--site", "L1.H0.pattern"],
    }


@pytest.mark.parametrize("command", ["run", "analyze", "trace"])
def test_a_truncated_checkpoint_is_named_and_the_previous_one_offered(run, command):
    _truncate(run / LATEST)
    result = _invoke(*_commands(run)[command])
    assert result.exit_code == 2 and "Traceback" not in result.output
    lines = result.output.splitlines()
    assert lines[0] == f"{run / LATEST}: error: unreadable checkpoint (truncated or corrupted)"
    assert lines[-1] == (f"  hint: the previous checkpoint, {PREVIOUS} (step 30), is intact: `opto rollback {run}` "
                         "makes it the latest, then rerun `opto run` to train on from it")


@pytest.mark.parametrize("command", ["run", "analyze", "trace"])
def test_a_checkpoint_json_naming_a_missing_file(run, command):
    (run / LATEST).unlink()
    result = _invoke(*_commands(run)[command])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.startswith(f"{run / LATEST}: error: checkpoint file missing\n")
    assert f"`opto rollback {run}`" in result.output


def test_without_an_intact_previous_checkpoint_nothing_is_offered(run):
    _truncate(run / LATEST)
    _truncate(run / PREVIOUS)
    result = _invoke(*_commands(run)["analyze"])
    assert result.exit_code == 2
    assert result.output.startswith(f"{run / LATEST}: error: unreadable checkpoint") and "hint" not in result.output


def test_resuming_from_the_previous_checkpoint_gives_the_uninterrupted_metrics(run):
    uninterrupted = (run / "metrics.jsonl").read_text().splitlines()
    _truncate(run / LATEST)
    result = _invoke("rollback", run)
    assert result.exit_code == 0
    assert result.output == (f"{run}: latest checkpoint is now {PREVIOUS} (step 30); "
                             "rerun the same `opto run` command to train on from it\n")
    pointer = json.loads((run / "checkpoint.json").read_text())
    assert (pointer["file"], pointer["step"], pointer["sequences"], pointer["previous"]) == (PREVIOUS, 30, 960, None)
    assert not (run / LATEST).exists()
    result = _invoke(*_commands(run)["run"])
    assert result.exit_code == 0, result.output
    resumed = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in resumed] == [json.loads(line) for line in uninterrupted]
    assert json.loads((run / "summary.json").read_text())["sequences"] == 1280
    assert json.loads((run / "checkpoint.json").read_text())["file"] == LATEST


def test_rollback_without_a_previous_checkpoint_refuses(run):
    _invoke("rollback", run)
    result = _invoke("rollback", run)
    assert result.exit_code == 2
    assert result.output.startswith(f"{run / 'checkpoint.json'}: error: no previous checkpoint to roll back to\n")


@pytest.mark.parametrize("command", ["run", "analyze", "report"])
def test_a_truncated_config_json_is_named(run, command):
    _truncate(run / "config.json", 40)
    args = _commands(run).get(command) or ["report", run, "--out", run.parent / "report"]
    result = _invoke(*args)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.startswith(f"{run / 'config.json'}: error: unreadable run ")


def test_an_edited_config_json_is_named_on_resume(run):
    config = json.loads((run / "config.json").read_text())
    config["model"]["heads"] = "eight"
    (run / "config.json").write_text(json.dumps(config))
    result = _invoke(*_commands(run)["run"])
    assert result.exit_code == 2
    assert result.output.startswith(f"{run / 'config.json'}: error: unreadable run settings (truncated or edited?)")


def test_runs_names_the_unreadable_file(run):
    _truncate(run / "summary.json", 10)
    result = _invoke("runs", run.parent)
    assert result.exit_code == 0
    assert f"unreadable {run / 'summary.json'}: " in result.output


@pytest.mark.parametrize("damage", ["truncated", "not an object"])
@pytest.mark.parametrize("command", ["run", "analyze", "report"])
def test_a_damaged_spec_json_is_named(run, command, damage):
    if damage == "truncated":
        _truncate(run / "spec.json", 20)
    else:
        (run / "spec.json").write_text("[]")
    args = _commands(run).get(command) or ["report", run, "--out", run.parent / "report"]
    result = _invoke(*args)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.startswith(f"{run / 'spec.json'}: error: ")


@pytest.mark.parametrize("damage", ["truncated", "not an object"])
def test_runs_lists_a_run_with_a_damaged_spec_json_naming_it(run, damage):
    if damage == "truncated":
        _truncate(run / "spec.json", 20)
    else:
        (run / "spec.json").write_text("[]")
    result = _invoke("runs", run.parent)
    assert result.exit_code == 0 and "Traceback" not in result.output
    assert f"unreadable {run / 'spec.json'}: " in result.output


def test_runs_and_report_name_an_unreadable_checkpoint_json_of_a_run_without_summary(run):
    (run / "summary.json").unlink()
    _truncate(run / "checkpoint.json", 10)
    status = "running or interrupted (its checkpoint.json is unreadable)"
    result = _invoke("runs", run.parent)
    assert result.exit_code == 0 and status in result.output
    result = _invoke("report", run, "--out", run.parent / "report")
    assert result.exit_code == 0, result.output
    assert status in (run.parent / "report" / "report.md").read_text()
