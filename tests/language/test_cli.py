"""The command line on small specs: check warnings, explain/trace JSON, sites, fmt, bad --set."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from optodsl.cli import app

from . import prev_token_pattern


def _invoke(tmp_path, monkeypatch, text: str, *args: str):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.opto").write_text(text)
    return CliRunner().invoke(app, [*args[:1], "s.opto", *args[1:]])


def test_check_warns_about_a_schedule_after_training(tmp_path, monkeypatch):
    result = _invoke(tmp_path, monkeypatch, "set train.sequences = 100k\nablate L2.H3 during 200k..\n", "check")
    assert result.exit_code == 0
    assert result.stderr == (
        "s.opto:2:1: warning: this schedule starts at 200000 sequences, after training ends (train.sequences = 100000)\n"
        "  ablate L2.H3 during 200k..\n"
        "  ^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
        "  hint: it acts only in evaluation, if at all\n")
    assert result.stdout == "s.opto: ok (1 run, 1 warning)\n"


def test_check_warns_that_queries_of_a_clamped_pattern_have_no_effect(tmp_path, monkeypatch):
    result = _invoke(tmp_path, monkeypatch, "clamp L1.H2.q = 0\nclamp L1.H2.pattern = prev_token\n", "check")
    assert result.exit_code == 0
    assert result.stderr.startswith("s.opto:1:1: warning: no effect on L1.H2.q: L1.H2.pattern is set by line 2\n")
    assert result.stdout == "s.opto: ok (1 run, 1 warning)\n"


def test_check_of_a_clean_spec_has_no_warning(tmp_path, monkeypatch):
    result = _invoke(tmp_path, monkeypatch, "clamp L1.H3.q = 0\nclamp L1.H2.pattern = prev_token\n", "check")
    assert (result.exit_code, result.stderr, result.stdout) == (0, "", "s.opto: ok (1 run, 0 warnings)\n")


def test_explain_json_of_only_head_three_on(tmp_path, monkeypatch):
    result = _invoke(tmp_path, monkeypatch, "ablate L2.* except H3\n", "explain", "--json")
    assert result.exit_code == 0, result.stderr
    records = json.loads(result.stdout)[0]["interventions"]
    assert [r["site"] for r in records] == [f"L2.H{h}.v" for h in range(8) if h != 3]
    for r in records:
        assert (r["verb"], r["positions"], r["pass"], r["schedule"], r["value"]) == ("ablate", "all", "every", "always", "zero")
        assert r["at"] == "s.opto:1:1"


def test_explain_json_of_two_pass_and_scheduled_clauses(tmp_path, monkeypatch):
    text = "ablate L1.H1 @ labels preserving L2.H3.pattern during 0..100k\n"
    records = json.loads(_invoke(tmp_path, monkeypatch, text, "explain", "--json").stdout)[0]["interventions"]
    assert [(r["verb"], r["site"], r["positions"], r["pass"], r["schedule"]) for r in records] == [
        ("ablate", "L1.H1.v", [1, 3], "last", "0..100000"),
        ("preserve", "L2.H3.pattern", "all", "last", "0..100000"),
    ]
    assert records[1]["reads"] == "L2.pattern"


def test_trace_json_shows_the_clamped_prev_token_pattern(tmp_path, monkeypatch):
    result = _invoke(tmp_path, monkeypatch, "clamp L1.H2.pattern = prev_token\n", "trace", "--json", "--site", "L1.H2.pattern",
                     "--set", "data.total_classes=200")
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    pattern = np.asarray(out["sites"]["L1.H2.pattern"])
    assert pattern.shape == (5, 5)
    np.testing.assert_allclose(pattern, prev_token_pattern(1.0), atol=1e-6)
    assert len(out["tokens"]) == 5 and out["tokens"][4].startswith("q(")


def test_sites_lists_head_sites_with_their_shapes():
    result = CliRunner().invoke(app, ["sites"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("layers count from 1 (L1..), heads from 0 (H0..)")
    assert any(line.split()[:2] == ["L1.H<h>.pattern", "(5,"] for line in lines)
    assert any(line.split()[0] == "L2.resid_out" for line in lines[1:])
    three = CliRunner().invoke(app, ["sites", "--set", "model.layers=3"])
    assert any(line.split()[0] == "L3.H<h>.v" for line in three.stdout.splitlines()[1:])


def test_fmt_prints_canonical_text(tmp_path, monkeypatch):
    text = "# only head 3\nablate   L2.*   except H3 ;clamp L1.H2.pattern=prev_token( strength = 0.8 )\n"
    result = _invoke(tmp_path, monkeypatch, text, "fmt")
    assert result.exit_code == 0
    assert result.stdout == "# only head 3\nablate L2.* except H3\nclamp L1.H2.pattern = prev_token(strength=0.8)\n"
    (tmp_path / "t.opto").write_text(result.stdout)
    again = CliRunner().invoke(app, ["fmt", "t.opto"])
    assert again.stdout == result.stdout


def test_bad_set_key_exits_2_without_traceback(tmp_path, monkeypatch):
    result = _invoke(tmp_path, monkeypatch, "ablate L2.H3\n", "check", "--set", "train.lrr=1e-4")
    assert result.exit_code == 2
    assert "Traceback" not in result.stderr and result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stderr == ("--set:1:1: error: unknown setting 'train.lrr'\n"
                             "  train.lrr=0.0001\n  ^^^^^^^^^^^^^^^^\n  hint: did you mean 'train.lr'?\n")


def test_bad_set_value_and_form_exit_2(tmp_path, monkeypatch):
    for args, message in ((["--set", "train.lr=-1"], "invalid value for train.lr"),
                          (["--set", "train.lr"], "expected key=value, got 'train.lr'")):
        result = _invoke(tmp_path, monkeypatch, "ablate L2.H3\n", "explain", *args)
        assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_sites_describe_embed_and_logits_by_the_tasks_layout():
    """A token task embeds token ids and scores every next token; only the few-shot task maps
    exemplars at even positions and labels at odd ones."""
    def doc(out, site):
        return next(line.split(None, 3)[3] for line in out.splitlines()[1:] if line.split()[0] == site)

    for task in ("repeat", "markov"):
        out = CliRunner().invoke(app, ["sites", "--set", f"task.name={task}"]).stdout
        assert "exemplar" not in doc(out, "embed") and "one learned vector per token id" in doc(out, "embed")
        assert doc(out, "logits").endswith("the loss reads every position's next token")
    fewshot = CliRunner().invoke(app, ["sites"]).stdout
    assert "exemplar map at even positions" in doc(fewshot, "embed") and "query row" in doc(fewshot, "logits")
