"""The trainer: run directory contents, exact resume after a real kill, NaN stop, checkpoint errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest

from optodsl.config import DataConfig, EvalConfig, ExperimentConfig, TrainConfig
from optodsl.errors import DataError, TrainingError
from optodsl.model import Overrides
from optodsl.train import checkpoint
from optodsl.train.trainer import train

pytestmark = pytest.mark.usefixtures("reuse_programs")  # train() of the same config compiles once here (conftest)

SMALL = ExperimentConfig(
    data=DataConfig(total_classes=200),
    train=TrainConfig(sequences=3200, lr=1e-3, checkpoint_every=1280),
    eval=EvalConfig(every=640, sequences=64),
)


def _metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_run_directory_holds_config_metrics_summary_checkpoint_and_curves(tmp_path):
    res = train(SMALL, None, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    assert json.loads((run / "config.json").read_text()) == json.loads(SMALL.model_dump_json())
    records = _metrics(run)
    assert [r["sequences"] for r in records] == [0, 640, 1280, 1920, 2560, 3200]
    assert [r["step"] for r in records] == [0, 20, 40, 60, 80, 100]
    for name in ("train", "heldout_labels", "heldout_exemplars", "test_classes"):
        assert all(0 <= r[f"{name}/accuracy"] <= 1 and r[f"{name}/loss"] > 0 for r in records)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["step"] == 100
    assert summary["final"]["train/accuracy"] == records[-1]["train/accuracy"]
    assert checkpoint.read_meta(run)["step"] == 100
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert res.metrics == records
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {root!r})
    from test_trainer import SMALL
    from optodsl.train.trainer import train
    def kill(member, record):
        if record["sequences"] == 1920:   # after the checkpoint at 1280, before the next one
            with open({out!r} + "/metrics.jsonl", "a") as f:
                f.write('{{"sequences": 25')   # a torn line, as a kill during a write leaves
            os.kill(os.getpid(), signal.SIGKILL)
    train(SMALL, None, {out!r}, progress=False, on_record=kill)
""")


def test_a_killed_run_resumes_to_exactly_the_uninterrupted_metrics(tmp_path):
    whole = train(SMALL, None, tmp_path / "whole", progress=False)
    killed = tmp_path / "killed"
    script = KILL_SCRIPT.format(root=os.path.dirname(__file__), out=str(killed))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == -9, proc.stderr
    assert checkpoint.read_meta(killed)["step"] == 40 and not (killed / "summary.json").exists()
    resumed = train(SMALL, None, killed, progress=False)
    assert _metrics(killed) == _metrics(tmp_path / "whole")
    assert resumed.metrics == whole.metrics


def test_a_non_finite_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path):
    def poison(model, batch, ctx):
        bad = jnp.broadcast_to(ctx.sequences >= 1300, (5, 64))
        return Overrides({"L1.resid_out": jnp.full((), jnp.nan)}, {"L1.resid_out": bad})

    with pytest.raises(TrainingError, match=r"NaN or inf between sequences 1280 and 1920.*last good checkpoint \(sequences 1280\)"):
        train(SMALL, poison, tmp_path / "run", progress=False)
    meta = checkpoint.read_meta(tmp_path / "run")
    assert meta["step"] == 40
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"].startswith("failed")
    assert all(np.isfinite(r["train/loss"]) for r in _metrics(tmp_path / "run"))


def test_any_other_error_marks_the_run_failed_with_its_kind_at_its_last_checkpoint(tmp_path):
    def fail(member, record):
        if record["sequences"] == 1920:
            raise RuntimeError("a bug in a hook")

    with pytest.raises(RuntimeError, match="a bug in a hook"):
        train(SMALL, None, tmp_path / "run", progress=False, on_record=fail)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed: RuntimeError" and summary["sequences"] == 1280
    assert checkpoint.read_meta(tmp_path / "run")["sequences"] == 1280


def test_a_run_directory_of_another_experiment_is_refused_naming_what_differs(tmp_path):
    train(SMALL.model_copy(update={"train": SMALL.train.model_copy(update={"sequences": 640})}), None, tmp_path / "run", progress=False)
    other = SMALL.model_copy(update={"train": SMALL.train.model_copy(update={"sequences": 640, "lr": 1e-4}),
                                     "seed": SMALL.seed.model_copy(update={"init": 7})})
    with pytest.raises(DataError, match=r"different experiment") as err:
        train(other, None, tmp_path / "run", progress=False)
    assert "seed.init: 5 in the run, 7 now" in str(err.value) and "train.lr: 0.001 in the run, 0.0001 now" in str(err.value)
    assert "train.sequences" not in str(err.value).split("found")[-1]


def test_broken_checkpoints_name_the_file_and_the_problem(tmp_path):
    state = {"w": jnp.ones((2, 3))}
    checkpoint.save(tmp_path, state, {"step": 1})
    with pytest.raises(DataError, match=r"array 0 of shape \(3,\)"):
        checkpoint.load(tmp_path, {"w": jnp.ones((3,))})
    (tmp_path / "ckpt-000000001.npz").write_bytes(b"garbage")
    with pytest.raises(DataError, match="unreadable checkpoint"):
        checkpoint.load(tmp_path, state)
    (tmp_path / "checkpoint.json").write_text("{not json")
    with pytest.raises(DataError, match="malformed checkpoint metadata"):
        checkpoint.read_meta(tmp_path)
    with pytest.raises(DataError, match="no checkpoint"):
        checkpoint.load(tmp_path / "nothing-here", state)


def test_measures_are_written_per_head_and_follow_their_definition(tmp_path):
    from optodsl.compile.lower import compile_member
    from optodsl.semantics.spec import resolve_spec
    from optodsl.syntax import load_text

    config = SMALL.model_copy(update={"eval": SMALL.eval.model_copy(update={"measures": ("induction", "prev_token")}),
                                      "train": SMALL.train.model_copy(update={"sequences": 640})})
    members, _ = resolve_spec(load_text("clamp L2.H3.pattern = induction(strength=0.7)\nclamp L1.H2.pattern = prev_token\n", "m.opto"), config)
    res = train(members[0].config, compile_member(members[0]), tmp_path / "m", progress=False)
    last = res.metrics[-1]
    for name in ("train", "test_classes"):
        assert last[f"{name}/induction/L2.H3"] == pytest.approx(0.7 - 0.3, abs=1e-5)  # exactly its strength parameter
        assert last[f"{name}/prev_token/L1.H2"] == pytest.approx(1.0, abs=1e-6)
        assert abs(last[f"{name}/induction/L2.H0"]) < 0.5
    assert len([k for k in last if k.startswith("train/induction/")]) == 16


def test_opto_runs_lists_runs_with_status_and_final_accuracy(tmp_path):
    from typer.testing import CliRunner

    from optodsl.cli import app

    train(SMALL.model_copy(update={"train": SMALL.train.model_copy(update={"sequences": 640})}), None, tmp_path / "a", progress=False)
    result = CliRunner().invoke(app, ["runs", str(tmp_path)])
    assert result.exit_code == 0 and "complete  640 sequences  " in result.output and "train " in result.output
    assert CliRunner().invoke(app, ["runs", str(tmp_path / "none")]).exit_code == 2


def test_atomic_writes_give_files_the_usual_permissions(tmp_path):
    import os
    import stat

    from optodsl.files import atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
