"""Interrupted runs: SIGINT and SIGTERM stop at a safe point with a checkpoint, SIGKILL loses at
most the rows after the last checkpoint, and every resume reproduces the uninterrupted run row
by row, with no duplicated row and no run marked complete that is not.

The in-process battery triggers each signal from `on_record` at seeded points (deterministic);
the SIGKILL battery kills a training process at seeded rows and between a checkpoint's `.npz`
and its `checkpoint.json` (a fault injected into the write); the command-line tests send real
signals to a real `opto run` when it prints a progress line.
"""

from __future__ import annotations

import json
import os
import random
import signal
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from optodsl import rundir
from optodsl.cli import app
from optodsl.config import DataConfig, EvalConfig, ExperimentConfig, TrainConfig
from optodsl.errors import DataError, Interrupted
from optodsl.train import checkpoint
from optodsl.train.signals import StopNow
from optodsl.train.trainer import train

SMALL = ExperimentConfig(
    data=DataConfig(total_classes=200),
    train=TrainConfig(sequences=3200, lr=1e-3, checkpoint_every=1280),
    eval=EvalConfig(every=640, sequences=64),
)
POINTS = [640, 1280, 1920, 2560]
pytestmark = pytest.mark.usefixtures("reuse_programs")  # train() of the same config compiles once here (conftest)


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
    with pytest.raises(StopNow) as stop:
        train(SMALL, None, run, progress=False, on_record=_signal_at(1920, signal.SIGINT, times=2))
    assert stop.value.signum == signal.SIGINT
    summary = _summary(run)
    assert summary["status"] == "interrupted" and summary["sequences"] == 1280  # the checkpoint, not the rows
    train(SMALL, None, run, progress=False)
    assert _rows(run) == whole


KILL = textwrap.dedent("""
    import json, os, signal, sys
    from optodsl.config import ExperimentConfig
    from optodsl.train import checkpoint
    from optodsl.train.trainer import train

    config, run, how, at = ExperimentConfig.model_validate_json(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
    write = checkpoint.atomic_write_text

    def pointer(path, text):
        # the checkpoint's .npz is written; die before its checkpoint.json is
        if how == "pointer" and path.name == "checkpoint.json" and json.loads(text)["sequences"] == at:
            os.kill(os.getpid(), signal.SIGKILL)
        write(path, text)

    def row(member, record):
        if how == "row" and record["sequences"] == at:
            os.kill(os.getpid(), signal.SIGKILL)

    checkpoint.atomic_write_text = pointer
    train(config, None, run, progress=False, on_record=row)
""")


def _kill(run: Path, how: str, at: int, whole: list[dict]) -> None:
    """Train SMALL into `run` in a process SIGKILLed at row `at` ("row") or between the .npz and the
    checkpoint.json of the checkpoint at `at` ("pointer"); then check what the kill left."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-c", KILL, SMALL.model_dump_json(), str(run), how, str(at)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    rows = _rows(run)
    assert rows == whole[:len(rows)] and rows[-1]["sequences"] == at  # identical values, no row twice
    assert not (run / "summary.json").exists()
    assert rundir.status(run, None)[0].startswith("running or interrupted")
    if how == "pointer":
        assert (run / f"ckpt-{at // SMALL.train.batch:09d}.npz").is_file()
        meta = checkpoint.read_meta(run)
        assert meta is None or meta["sequences"] < at


def test_reruns_without_a_checkpoint_do_not_duplicate_rows(tmp_path, whole):
    """Killed before its first checkpoint, a run leaves rows and no checkpoint.json (even with the
    first checkpoint's .npz written); each rerun starts from 0 and writes no row twice."""
    run = tmp_path / "run"
    _kill(run, "row", 640, whole)
    assert checkpoint.read_meta(run) is None and len(_rows(run)) == 2
    assert rundir.status(run, None)[0] == "running or interrupted before its first checkpoint (rerun to start again)"
    _kill(run, "pointer", 1280, whole)
    assert checkpoint.read_meta(run) is None and len(_rows(run)) == 3
    train(SMALL, None, run, progress=False)
    assert _rows(run) == whole and _summary(run)["status"] == "complete"


def test_sigkill_at_seeded_points_after_a_checkpoint_resumes_exactly(tmp_path, whole):
    """SIGKILL at a seeded row after a checkpoint, then (resuming) at a seeded checkpoint between its
    .npz and checkpoint.json: each resume drops the rows past its checkpoint, and the end matches."""
    rng = random.Random(11)
    run = tmp_path / "run"
    row, pointer = rng.choice([1920, 2560]), rng.choice([2560, 3200])
    _kill(run, "row", row, whole)
    assert checkpoint.read_meta(run)["sequences"] == 1280
    _kill(run, "pointer", pointer, whole)
    assert checkpoint.read_meta(run)["sequences"] == {2560: 1280, 3200: 2560}[pointer]  # the checkpoint before
    train(SMALL, None, run, progress=False)
    assert _rows(run) == whole and _summary(run)["status"] == "complete"


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


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGKILL, -9)],
                         ids=["SIGINT", "SIGTERM", "SIGKILL"])
def test_opto_run_interrupted_by_a_real_signal_says_how_to_resume_and_resumes_exactly(tmp_path, monkeypatch, whole,
                                                                                     sig, code):
    """A real `opto run` process gets the signal; the same command run again (here in this process,
    in the same folder) resumes it to the rows of the uninterrupted run of the same settings (`whole`)."""
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
    assert ExperimentConfig.model_validate_json((run / "config.json").read_text()) == SMALL  # whole's settings
    if sig == signal.SIGKILL:
        assert not (run / "summary.json").exists()
        assert "running or interrupted (rerun to resume)" in CliRunner().invoke(app, ["runs", str(tmp_path)]).output
    else:
        assert "interrupted" in err and "to resume, run the same command again: opto run s.opto --out r" in err
        assert "Traceback" not in err
        summary = _summary(run)
        assert summary["status"] == "interrupted" and summary["sequences"] == checkpoint.read_meta(run)["sequences"]
        assert _rows(run)[-1]["sequences"] == summary["sequences"]
    monkeypatch.chdir(tmp_path)
    resumed = CliRunner().invoke(app, args)
    assert resumed.exit_code == 0, resumed.output
    assert _summary(run)["status"] == "complete"
    assert _rows(run) == whole


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


def test_a_second_sigterm_exits_with_sigterms_own_code(tmp_path, monkeypatch):
    """`opto run` stopped at once by a second SIGTERM exits 143, as after one SIGTERM (not Ctrl-C's 130)."""
    import optodsl.experiment as experiment

    real = experiment.train_sweep
    monkeypatch.setattr(experiment, "train_sweep",
                        lambda *a, **kw: real(*a, **{**kw, "on_record": _signal_at(640, signal.SIGTERM, times=2)}))
    (tmp_path / "s.opto").write_text(SPEC)
    res = CliRunner().invoke(app, ["run", str(tmp_path / "s.opto"), "--out", str(tmp_path / "r"), *CLI_SETTINGS,
                                   "--no-progress"])
    assert res.exit_code == 143, res.output
    assert "interrupted" in res.output and "to resume, run the same command again" in res.output
    summary = _summary(tmp_path / "r")
    assert summary["status"] == "interrupted" and summary["sequences"] == 0


GROWING = "set train.lr = 1e-3\nset data.total_classes = 200\nset train.sequences = {n}\nablate L2.H1\n"
GROW_ARGS = ["--set", "eval.every=320", "--set", "eval.sequences=16", "--set", "train.checkpoint_every=320", "--no-progress"]


def _opto_run(spec: Path, run: Path, *args: str):
    return CliRunner().invoke(app, ["run", str(spec), "--out", str(run), *GROW_ARGS, *args])


@pytest.fixture(scope="module")
def grown(tmp_path_factory) -> tuple[Path, list[dict]]:
    """A finished run of 640 sequences (its spec beside it) and the rows of the same spec run to 1280."""
    root = tmp_path_factory.mktemp("grown")
    for name, n in (("short", "640"), ("long", "1280")):
        (root / f"{name}.opto").write_text(GROWING.format(n=n))
        res = _opto_run(root / f"{name}.opto", root / name)
        assert res.exit_code == 0, res.output
    return root, _rows(root / "long")


def _copy_short(grown, tmp_path) -> tuple[Path, Path]:
    shutil.copy(grown[0] / "short.opto", tmp_path / "short.opto")
    shutil.copytree(grown[0] / "short", tmp_path / "short")
    return tmp_path / "short.opto", tmp_path / "short"


def test_opto_run_continues_a_finished_run_with_a_larger_set_length(grown, tmp_path):
    spec, run = _copy_short(grown, tmp_path)
    res = _opto_run(spec, run, "--set", "train.sequences=1280")
    assert res.exit_code == 0, res.output
    assert _rows(run) == grown[1] and _summary(run)["status"] == "complete" and _summary(run)["sequences"] == 1280


def test_opto_run_continues_a_finished_run_whose_spec_now_asks_for_more(grown, tmp_path):
    spec, run = _copy_short(grown, tmp_path)
    spec.write_text(GROWING.format(n="1280"))
    res = _opto_run(spec, run)
    assert res.exit_code == 0, res.output
    assert _rows(run) == grown[1] and _summary(run)["sequences"] == 1280
    assert "train.sequences = 1280" in (run / "spec.opto").read_text()
    assert json.loads((run / "config.json").read_text())["train"]["sequences"] == 1280


@pytest.mark.parametrize("edit, named", [
    (GROWING.format(n="1280").replace("1e-3", "1e-4"), "train.lr: 0.001 in the run, 0.0001 now"),
    (GROWING.format(n="1280").replace("L2.H1", "L2.H3"),
     "interventions: ablate L2.H1.v = zero during always in the run, ablate L2.H3.v = zero during always now"),
    (GROWING.format(n="320"), "already trained 640 sequences"),
], ids=["setting", "intervention", "shorter"])
def test_opto_run_refuses_an_edited_spec_naming_what_differs(grown, tmp_path, edit, named):
    spec, run = _copy_short(grown, tmp_path)
    before = {name: (run / name).read_text() for name in ("spec.opto", "spec.json", "config.json")}
    spec.write_text(edit)
    res = _opto_run(spec, run)
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert named in res.output
    assert "train.sequences:" not in res.output  # a longer length is no difference
    assert {name: (run / name).read_text() for name in before} == before
