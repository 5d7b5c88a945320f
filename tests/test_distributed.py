"""Launched as several JAX processes (`jax.distributed`), `opto run` splits its programs between them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_each_train_one_of_two_programs(tmp_path):
    (tmp_path / "a.opto").write_text("ablate L2.H1\n")
    (tmp_path / "b.opto").write_text("clamp L1.H2.pattern = prev_token\n")  # another structure: another program
    port = _free_port()
    cmd = [sys.executable, "-m", "optodsl", "run", "a.opto", "b.opto", "--out", "out", "--no-progress",
           "--set", "train.sequences=640", "--set", "eval.every=320", "--set", "eval.sequences=64",
           "--set", "data.total_classes=200"]
    procs = []
    for rank in range(2):
        env = {**os.environ, "OPTODSL_DISTRIBUTED": "1", "JAX_COORDINATOR_ADDRESS": f"localhost:{port}",
               "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": str(rank), "PYTHONPATH": os.pathsep.join(sys.path)}
        procs.append(subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    # each process trained (and printed) only its own program
    assert "out/a" in outputs[0] and "out/b" not in outputs[0]
    assert "out/b" in outputs[1] and "out/a" not in outputs[1]
    for name in ("a", "b"):
        summary = json.loads((tmp_path / "out" / name / "summary.json").read_text())
        assert summary["status"] == "complete" and summary["sequences"] == 640


def test_a_malformed_process_count_is_an_input_error_not_a_traceback(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from optodsl.cli import app

    (tmp_path / "a.opto").write_text("ablate L2.H1\n")
    monkeypatch.setenv("OPTODSL_DISTRIBUTED", "1")
    monkeypatch.setenv("JAX_NUM_PROCESSES", "two")
    result = CliRunner().invoke(app, ["run", str(tmp_path / "a.opto"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "JAX_NUM_PROCESSES" in result.output and "not a whole number" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()
