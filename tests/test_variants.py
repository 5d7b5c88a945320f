"""Named variants in one file, crossed with sweeps: each run holds the common statements plus its
variant's, is named after the variant and the values, and `opto run` trains every one."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from optodsl.cli import app
from optodsl.config import DataConfig, ExperimentConfig
from optodsl.semantics.spec import resolve_spec
from optodsl.syntax import load_spec, load_text

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ExperimentConfig(data=DataConfig(total_classes=400))


def _members(text: str):
    return resolve_spec(load_text(text, "v.opto"), CONFIG)[0]


def test_variants_cross_sweeps_and_keep_the_common_statements():
    members = _members("ablate L2.* except H3\nsweep s in [0.5, 1.0]\n"
                       "variant pt { clamp L1.H2.pattern = prev_token(strength=$s) }\n"
                       "variant match { clamp L2.H3.pattern = induction(strength=$s) }\n")
    assert [m.name for m in members] == ["v-pt-s0.5", "v-pt-s1.0", "v-match-s0.5", "v-match-s1.0"]
    assert [m.variant for m in members] == ["pt", "pt", "match", "match"]
    for m in members:
        ablated = {a.head for a in m.actions if a.verb == "ablate"}
        assert ablated == {0, 1, 2, 4, 5, 6, 7}
        clamped = [a for a in m.actions if a.verb == "clamp"]
        assert [a.text for a in clamped] == (["L1.H2.pattern"] if m.variant == "pt" else ["L2.H3.pattern"])
        assert clamped[0].param("strength") == dict(m.bindings)["s"]


def test_a_variant_statement_stands_where_its_block_is_written():
    members = _members("set data.classes = 100\nvariant more { set data.classes = 200 }\nvariant same { }\n"
                       "set data.labels = 10\nvariant fewer { set data.labels = 5 }\n")
    shapes = [(m.name, m.config.data.classes, m.config.data.labels) for m in members]
    assert shapes == [("v-more", 200, 10), ("v-same", 100, 10), ("v-fewer", 100, 5)]


def test_paired_sweep_binds_settings_row_by_row():
    members = _members("sweep (classes, labels) in [(100, 5), (200, 5), (50, 10), (50, 15)]\n"
                       "set data.classes = $classes\nset data.labels = $labels\n")
    assert [(m.config.data.classes, m.config.data.labels) for m in members] == [(100, 5), (200, 5), (50, 10), (50, 15)]
    assert members[2].name == "v-classes50-labels10"


def test_figure_6_clamped_runs_are_one_file_with_a_paired_sweep():
    spec = load_spec(ROOT / "specs" / "paper" / "fig6_clamped.opto")
    assert any(len(st.names) == 2 for st in spec.statements if st.kind == "sweep")
    members, warnings = resolve_spec(spec, ExperimentConfig())
    assert not warnings and len(members) == 12
    assert {(m.variant, m.config.data.classes, m.config.data.labels) for m in members} == {
        (v, c, n) for v in ("clamp_layer1", "clamp_match", "clamp_layer1_and_copy")
        for c, n in ((100, 5), (200, 5), (50, 10), (50, 15))}


def test_opto_fmt_prints_variants_and_paired_sweeps_canonically(tmp_path):
    spec = tmp_path / "f.opto"
    spec.write_text("sweep (a,b) in [(1,2),(3,4)]\nvariant x {ablate L1.H$a; ablate L2.H$b during 0..$a}\n")
    result = CliRunner().invoke(app, ["fmt", str(spec)])
    assert result.exit_code == 0
    assert result.stdout == ("sweep (a, b) in [(1, 2), (3, 4)]\nvariant x {\n    ablate L1.H$a\n"
                             "    ablate L2.H$b during 0..$a\n}\n")


def test_opto_run_trains_the_six_runs_of_figure_5b(tmp_path):
    out = tmp_path / "fig5b"
    result = CliRunner().invoke(app, ["run", str(ROOT / "specs" / "paper" / "fig5b.opto"), "--out", str(out), "--no-progress",
                                      "--set", "train.sequences=32", "--set", "eval.every=32", "--set", "eval.sequences=8",
                                      "--set", "train.checkpoint_every=32", "--set", "eval.sets=[train]"])
    assert result.exit_code == 0, result.output
    names = ["only_h3", "clamp_prev_token", "clamp_layer1", "clamp_match", "clamp_copy", "clamp_layer1_and_copy"]
    for name in names:
        run = out / f"fig5b-{name}"
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert records[-1]["sequences"] == 32
        assert json.loads((run / "spec.json").read_text())["member"] == f"fig5b-{name}"
    assert sorted(p.name for p in out.iterdir()) == sorted(f"fig5b-{n}" for n in names)
