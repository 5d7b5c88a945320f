"""Sweep variables in schedules, positions and head lists: members that differ only there resolve to
their own schedules and rows, still train as one program, and each gets the metrics of its run alone."""

from __future__ import annotations

import jax
import numpy as np
from typer.testing import CliRunner

from optodsl.cli import app
from optodsl.compile.lower import compile_member
from optodsl.config import DataConfig, ExperimentConfig
from optodsl.experiment import run_experiments
from optodsl.semantics.spec import resolve_spec
from optodsl.syntax import load_text
from test_sweep import SETTINGS, _compiles_of, _metrics

CONFIG = ExperimentConfig(data=DataConfig(total_classes=200))


def _members(text: str):
    return resolve_spec(load_text(text, "s.opto"), CONFIG)[0]


def test_a_schedule_sweep_checks_and_explains_three_members_with_three_schedules(tmp_path):
    spec = tmp_path / "release.opto"
    spec.write_text("sweep k in [50k, 100k, 200k]\nclamp L1.H2.pattern = prev_token during 0..$k\n")
    checked = CliRunner().invoke(app, ["check", str(spec)])
    assert checked.exit_code == 0 and "3 runs" in checked.stdout
    explained = CliRunner().invoke(app, ["explain", str(spec)])
    assert explained.exit_code == 0
    for k in ("50000", "100000", "200000"):
        assert f"0..{k} " in explained.stdout
    assert [m.name for m in _members(spec.read_text())] == ["s-k50k", "s-k100k", "s-k200k"]


def test_a_schedule_sweep_trains_as_one_program_compiled_once(tmp_path):
    spec = tmp_path / "release.opto"
    spec.write_text("sweep k in [320, 640, 960]\nablate L2.* except H3\nclamp L1.H2.pattern = prev_token during 0..$k\n")
    tiny = {**SETTINGS, "train.sequences": 960, "eval.every": 320, "eval.sequences": 32}  # three chunks of one length
    results, compiles = _compiles_of("run", lambda: run_experiments([spec], tmp_path / "out", tiny, progress=False))
    assert [r.run_dir.name for r in results] == ["release-k320", "release-k640", "release-k960"]
    assert all(r.summary["runs_in_program"] == 3 for r in results)
    assert compiles == 1


def test_position_and_slice_variables_pick_rows_and_keep_one_structure():
    members = _members("sweep p in [labels, query, 2]\nsweep (a, b) in [(0, 2), (1, 5)]\n"
                       "clamp L1.H2.pattern @ $p = prev_token\nablate L1.H0 @ $a:$b\n")
    rows = [(m.actions[0].rows, m.actions[1].rows) for m in members]
    assert rows == [((1, 3), (0, 1)), ((1, 3), (1, 2, 3, 4)), ((4,), (0, 1)), ((4,), (1, 2, 3, 4)),
                    ((2,), (0, 1)), ((2,), (1, 2, 3, 4))]
    structures = {jax.tree.structure(compile_member(m)) for m in members}
    assert len(structures) == 1


def test_head_lists_and_schedule_ends_take_paired_variables():
    members = _members("sweep (a, b, k) in [(1, 5, 10k), (2, 6, 20k)]\n"
                       "clamp L1.H[$a, $b].pattern = prev_token during $k..\n")
    assert [sorted(x.head for x in m.actions) for m in members] == [[1, 5], [2, 6]]
    assert [{(x.start, x.stop) for x in m.actions} for m in members] == [{(10_000, 2**31 - 1)}, {(20_000, 2**31 - 1)}]
    assert [m.name for m in members] == ["s-a1-b5-k10k", "s-a2-b6-k20k"]


RELEASES = ((320, "labels"), (640, "query"))
"""(k, p) of each member: clamped at rows p for the first k sequences, then released."""


def test_members_differing_in_schedule_and_position_match_their_runs_alone(tmp_path):
    tiny = {**SETTINGS, "train.sequences": 960, "eval.every": 320, "eval.sequences": 32}  # evaluations 0, 320, 640, 960
    clause = "clamp L1.H2.pattern @ {p} = prev_token during 0..{k}"
    spec = tmp_path / "release.opto"
    rows = ", ".join(f"({k}, {p})" for k, p in RELEASES)
    spec.write_text(f"sweep (k, p) in [{rows}]\nablate L2.* except H3\n{clause.format(k='$k', p='$p')}\n")
    together = run_experiments([spec], tmp_path / "together", tiny, progress=False)
    assert [r.summary["runs_in_program"] for r in together] == [2, 2]
    curves = []
    for (k, p), member in zip(RELEASES, together):
        alone = tmp_path / f"alone_k{k}_{p}.opto"
        alone.write_text(f"ablate L2.* except H3\n{clause.format(k=k, p=p)}\n")
        (single,) = run_experiments([alone], tmp_path / alone.stem, tiny, progress=False)
        assert single.summary["runs_in_program"] == 1
        stacked, by_itself = _metrics(member.run_dir), _metrics(single.run_dir)
        assert [m["sequences"] for m in stacked] == [m["sequences"] for m in by_itself] == [0, 320, 640, 960]
        for a, b in zip(stacked, by_itself):
            for key, value in b.items():
                if isinstance(value, float):
                    np.testing.assert_allclose(a[key], value, rtol=2e-4, atol=2e-5, err_msg=f"k={k} p={p} {key}")
        curves.append([m["train/loss"] for m in stacked])
    assert curves[0][2:] != curves[1][2:]  # the members train differently
