"""Interrupted runs: SIGINT and SIGTERM stop at a safe point with a checkpoint, SIGKILL loses at
most the rows after the last checkpoint, and every resume reproduces the uninterrupted run row
by row, with no duplicated row and no run marked complete that is not.

The in-process battery triggers each signal from `on_record` at seeded points (deterministic);
the command-line tests send real signals to a real `opto run` when it prints a progress line.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from optodsl.cli import app
from optodsl.config import DataConfig, EvalConfig, ExperimentConfig, TrainConfig
from optodsl.errors import DataError, Interrupted
from optodsl.train import checkpoint
from optodsl.train.trainer import train

SMALL = ExperimentConfig(
    data=DataConfig(total_classes=200),
    train=TrainConfig(sequences=3200, lr=1e-3, checkpoint_every=1280),
    eval=EvalConfig(every=640, sequences=64),
)
POINTS = [640, 1280, 1920, 2560]


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> list[dict]:
    run = tmp_path_factory.mktemp("whole") / "run"
    train(SMALL, None, run, progress=False)
    return _rows(run)


def _signal_at(sequences: int, sig: int, times: int = 1):
    def hook(member, record):
        if record["sequences"] == sequences:
            for _ in range(times):
                os.kill(os.getpid(), sig)
    return hook


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signals_stop_at_a_checkpoint_and_every_resume_matches_the_uninterrupted_run(tmp_path, whole, sig):
    points = sorted(random.Random(int(sig)).sample(POINTS, 2))
    run = tmp_path / "run"
    for point in points:
        with pytest.raises(Interrupted) as stop:
            train(SMALL, None, run, progress=False, on_record=_signal_at(point, sig))
        assert stop.value.signum == sig and stop.value.sequences == {str(run): point}
        summary = _summary(run)
        assert summary["status"] == "interrupted" and summary["sequences"] == point
        assert checkpoint.read_meta(run)["sequences"] == point
        assert _rows(run)[-1]["sequences"] == point
        assert signal.getsignal(sig) is not None and signal.getsignal(sig) == {signal.SIGINT: signal.default_int_handler,
                                                                                signal.SIGTERM: signal.SIG_DFL}[sig]
        listed = CliRunner().invoke(app, ["runs", str(tmp_path)]).output
        assert "interrupted" in listed and "complete" not in listed
    train(SMALL, None, run, progress=False)
    rows = _rows(run)
    assert [r["step"] for r in rows] == sorted({r["step"] for r in rows})
    assert rows == whole
    assert _summary(run)["status"] == "complete"


def test_a_second_signal_stops_at_once_and_the_run_still_resumes_exactly(tmp_path, whole):
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(SMALL, None, run, progress=False, on_record=_signal_at(1920, signal.SIGINT, times=2))
    summary = _summary(run)
    assert summary["status"] == "interrupted" and summary["sequences"] == 1280  # the checkpoint, not the rows
    train(SMALL, None, run, progress=False)
    assert _rows(run) == whole


def test_reruns_without_a_checkpoint_do_not_duplicate_rows(tmp_path, whole):
    config = SMALL.model_copy(update={"train": SMALL.train.model_copy(update={"checkpoint_every": 100_000})})
    run = tmp_path / "run"
    for point in (640, 1280):
        with pytest.raises(Interrupted):
            train(config, None, run, progress=False, on_record=_signal_at(point, signal.SIGINT))
        assert _rows(run)[-1]["sequences"] == point
    train(config, None, run, progress=False)
    assert _rows(run) == whole


def test_a_finished_run_continues_to_a_longer_length_as_if_it_had_never_stopped(tmp_path, whole):
    run = tmp_path / "run"
    short = SMALL.model_copy(update={"train": SMALL.train.model_copy(update={"sequences": 1280})})
    train(short, None, run, progress=False)
    assert _summary(run)["status"] == "complete"
    train(SMALL, None, run, progress=False)
    assert _rows(run) == whole and _summary(run)["sequences"] == 3200
    shorter = SMALL.model_copy(update={"train": SMALL.train.model_copy(update={"sequences": 640})})
    with pytest.raises(DataError, match=r"already trained 3,200 sequences"):
        train(shorter, None, run, progress=False)


def test_a_cosine_schedule_cannot_be_continued(tmp_path):
    cosine = SMALL.model_copy(update={"train": SMALL.train.model_copy(update={"sequences": 640, "schedule": "cosine"})})
    train(cosine, None, tmp_path / "run", progress=False)
    longer = cosine.model_copy(update={"train": cosine.train.model_copy(update={"sequences": 1280})})
    with pytest.raises(DataError, match="cosine schedule's shape depends on train.sequences"):
        train(longer, None, tmp_path / "run", progress=False)


SPEC = "set train.lr = 1e-3\nset data.total_classes = 200\n"
CLI_SETTINGS = ["--set", "train.sequences=3200", "--set", "train.checkpoint_every=1280",
                "--set", "eval.every=640", "--set", "eval.sequences=64"]


def _opto(*args: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen([sys.executable, "-m", "optodsl", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.fixture(scope="module")
def cli_whole(tmp_path_factory) -> list[dict]:
    """The uninterrupted run of the same command."""
    where = tmp_path_factory.mktemp("cli_whole")
    (where / "s.opto").write_text(SPEC)
    proc = _opto("run", "s.opto", "--out", "r", *CLI_SETTINGS, cwd=where)
    assert proc.communicate(timeout=600) and proc.returncode == 0
    return _rows(where / "r")


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGKILL, -9)],
                         ids=["SIGINT", "SIGTERM", "SIGKILL"])
def test_opto_run_interrupted_by_a_real_signal_says_how_to_resume_and_resumes_exactly(tmp_path, cli_whole, sig, code):
    (tmp_path / "s.opto").write_text(SPEC)
    args = ["run", "s.opto", "--out", "r", *CLI_SETTINGS]
    proc = _opto(*args, cwd=tmp_path)
    at = "sequences 1,920/3,200" if sig == signal.SIGKILL else "sequences 640/3,200"  # a kill: after a checkpoint
    for line in proc.stdout:  # the plain progress lines of a run off a terminal
        if line.startswith(at):
            proc.send_signal(sig)
            break
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == code, err
    run = tmp_path / "r"
    if sig == signal.SIGKILL:
        assert not (run / "summary.json").exists()
        assert "running or interrupted (rerun to resume)" in CliRunner().invoke(app, ["runs", str(tmp_path)]).output
    else:
        assert "interrupted" in err and "to resume, run the same command again: opto run s.opto --out r" in err
        assert "Traceback" not in err
        summary = _summary(run)
        assert summary["status"] == "interrupted" and summary["sequences"] == checkpoint.read_meta(run)["sequences"]
        assert _rows(run)[-1]["sequences"] == summary["sequences"]
    resumed = _opto(*args, cwd=tmp_path)
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    assert _summary(run)["status"] == "complete"
    assert _rows(run) == cli_whole


def test_a_rerun_of_a_complete_run_says_so_and_trains_nothing(tmp_path):
    (tmp_path / "s.opto").write_text(SPEC)
    settings = ["--set", "train.sequences=640", "--set", "eval.every=640", "--set", "eval.sequences=64"]
    first = CliRunner().invoke(app, ["run", str(tmp_path / "s.opto"), "--out", str(tmp_path / "r"), *settings])
    assert first.exit_code == 0, first.output
    assert "sequences 640/640 (100%)" in first.output and "ETA" in first.output  # plain lines off a terminal
    before = (tmp_path / "r" / "summary.json").read_text()
    again = CliRunner().invoke(app, ["run", str(tmp_path / "s.opto"), "--out", str(tmp_path / "r"), *settings, "--no-progress"])
    assert again.exit_code == 0 and "already complete at 640 sequences: nothing to train" in again.output
    assert "steps/s" not in again.output and "ETA" not in again.output
    assert (tmp_path / "r" / "summary.json").read_text() == before
