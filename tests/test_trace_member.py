"""`opto trace --checkpoint` on a sweep member traces that member's interventions, and refuses a
directory that is no single member's (a sweep's folder), listing the members' directories."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from optodsl.cli import app
from optodsl.experiment import run_experiment

SETTINGS = {"train.sequences": 1280, "eval.every": 640, "eval.sequences": 64, "data.total_classes": 200}
SETS = [f"--set={k}={v}" for k, v in SETTINGS.items()]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("trace_member")
    spec = root / "pt.opto"
    spec.write_text("sweep h in [1, 3]\nclamp L1.H$h.pattern = prev_token\n")
    run_experiment(spec, root / "runs", dict(SETTINGS), progress=False)
    return spec, root / "runs"


def _trace(spec, run_dir, *sites):
    res = CliRunner().invoke(app, ["trace", str(spec), "--checkpoint", str(run_dir), *SETS, "--json",
                                   *(a for s in sites for a in ("--site", s))])
    return res


def _is_prev_token(pattern) -> bool:
    p = np.asarray(pattern)
    t = p.shape[-1]
    want = np.zeros((t, t))
    want[0, 0] = 1.0
    want[np.arange(1, t), np.arange(t - 1)] = 1.0
    return bool(np.allclose(p, want, atol=1e-6))


def test_trace_applies_the_given_members_clamp(sweep):
    spec, runs = sweep
    for h, other in ((3, 1), (1, 3)):
        res = _trace(spec, runs / f"pt-h{h}", f"L1.H{h}.pattern", f"L1.H{other}.pattern")
        assert res.exit_code == 0, res.output
        sites = json.loads(res.stdout)["sites"]
        assert _is_prev_token(sites[f"L1.H{h}.pattern"]), h
        assert not _is_prev_token(sites[f"L1.H{other}.pattern"]), h


def test_trace_refuses_a_sweeps_folder_listing_its_members(sweep):
    spec, runs = sweep
    res = _trace(spec, runs, "L1.H1.pattern")
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and isinstance(res.exception, SystemExit)
    assert "which run of the sweep?" in res.output and "no spec.json" in res.output
    for h in (1, 3):
        assert f"{runs / f'pt-h{h}'}  ($h={h})" in res.output


def test_trace_refuses_a_member_the_spec_does_not_have(sweep, tmp_path):
    spec, runs = sweep
    other = tmp_path / "pt.opto"
    other.write_text("sweep h in [0, 2]\nclamp L1.H$h.pattern = prev_token\n")
    res = _trace(other, runs / "pt-h3", "L1.H3.pattern")
    assert res.exit_code == 2, res.output
    assert "spec.json records $h=3" in res.output
    assert f"{runs / 'pt-h0'}  ($h=0)" in res.output and f"{runs / 'pt-h2'}  ($h=2)" in res.output
