"""`opto explain` shows what decides a run, `opto trace --pass`, `opto eval` of a checkpoint under a
spec, `--group` in the spec's selector syntax, and the checks of issue 13 (golden warnings and errors)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from optodsl.cli import app
from optodsl.experiment import DEFAULT, run_experiment
from optodsl.explain import ALL_DEFAULTS
from optodsl.model.transformer import NEG

ROOT = Path(__file__).resolve().parents[1]
CLI_GOLDEN = ROOT / "tests" / "golden" / "cli"
TINY = {"train.sequences": 640, "eval.every": 320, "eval.sequences": 32, "data.total_classes": 200}
CLAMP_AND_COPY = "clamp L1.resid_out = prev_token_input\ncopy logits from L2.H1\n"


def _invoke(tmp_path, monkeypatch, text, *args):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.opto").write_text(text)
    return CliRunner().invoke(app, [args[0], "s.opto", *args[1:]])


def test_explain_of_a_baseline_shows_its_settings(monkeypatch):
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(app, ["explain", "specs/examples/baseline.opto"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "run baseline: 1 pass, 0 interventions",
        "  set eval.every = 10000  (default 5000)",
        "  set train.lr = 1e-05  (the default)",
        "  set train.sequences = 1000000  (the default)",
    ]
    runs = json.loads(CliRunner().invoke(app, ["explain", "specs/examples/baseline.opto", "--json"]).stdout)
    assert {"key": "train.lr", "value": 1e-5, "default": 1e-5} in runs[0]["settings"]


def test_explain_of_an_all_defaults_spec_says_its_settings_are_the_defaults(tmp_path, monkeypatch):
    result = _invoke(tmp_path, monkeypatch, "ablate L2.H3\n", "explain")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[:2] == ["run s: 1 pass, 1 intervention", f"  {ALL_DEFAULTS}"]
    assert "all at their defaults" in ALL_DEFAULTS
    assert json.loads(_invoke(tmp_path, monkeypatch, "ablate L2.H3\n", "explain", "--json").stdout)[0]["settings"] == []
    named = _invoke(tmp_path, monkeypatch, "ablate L2.H3\n", "explain", "--set", "train.lr=1e-5")
    assert "  set train.lr = 1e-05  (the default)" in named.stdout and ALL_DEFAULTS not in named.stdout


def test_explain_shows_perfected_lines_and_settings_from_set(tmp_path, monkeypatch):
    text = 'set eval.perfected = ["clamp L1.H2.pattern = prev_token"]\nablate L2.H3\n'
    result = _invoke(tmp_path, monkeypatch, text, "explain", "--set", "train.lr=1e-4")
    assert result.exit_code == 0, result.output
    assert "  set train.lr = 0.0001  (default 1e-05)" in result.stdout
    assert "  eval.perfected: clamp L1.H2.pattern = prev_token  (evaluation only, 1 more intervention)" in result.stdout
    run = json.loads(_invoke(tmp_path, monkeypatch, text, "explain", "--json").stdout)[0]
    assert run["perfected"][0]["line"] == "clamp L1.H2.pattern = prev_token"
    assert [r["site"] for r in run["perfected"][0]["interventions"]] == ["L1.H2.pattern"]


def test_explain_of_the_layer1_clamp_and_copy_says_which_pass_the_copy_reads(tmp_path, monkeypatch):
    result = _invoke(tmp_path, monkeypatch, CLAMP_AND_COPY, "explain")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()[1:]  # after the header
    assert lines[0] == f"  {ALL_DEFAULTS}"
    assert lines[1].startswith("  2 passes: the first pass computes reference activations")
    assert lines[2] == ("  line 1 `clamp L1.resid_out = prev_token_input`: in the first pass it sets L1.resid_out = shift_embed; "
                        "in the last pass L1.resid_out = embed; it holds L2.H0..7.pattern at their first-pass values, so they "
                        "see the first pass's L1.resid_out = shift_embed while the rest of the last pass sees L1.resid_out = embed")
    assert lines[3].startswith("  line 2 `copy logits from L2.H1`: after the last pass it writes logits = copy, "
                               "reading L2.attn_logits of the first pass")
    assert lines[-1].endswith("copy(head=1, layer=2, labels=(1, 3)) <- L2.attn_logits (first pass)")
    copy = json.loads(_invoke(tmp_path, monkeypatch, CLAMP_AND_COPY, "explain", "--json").stdout)[0]["interventions"][-1]
    assert (copy["verb"], copy["reads"], copy["reads_pass"]) == ("copy", "L2.attn_logits", "first")
    alone = json.loads(_invoke(tmp_path, monkeypatch, "copy logits from L2.H1\n", "explain", "--json").stdout)[0]
    assert alone["interventions"][0]["reads_pass"] == "last"


def test_explain_says_the_copy_reads_the_clean_base_pass_under_the_papers_semantics(tmp_path, monkeypatch):
    text = 'set semantics.first_pass = "clean"\n' + CLAMP_AND_COPY
    result = _invoke(tmp_path, monkeypatch, text, "explain")
    assert "reading L2.attn_logits of the first pass (the clean base pass)" in result.stdout
    copy = json.loads(_invoke(tmp_path, monkeypatch, text, "explain", "--json").stdout)[0]["interventions"][-1]
    assert copy["reads_pass"] == "first"


def test_trace_pass_prints_the_pass_explain_names(tmp_path, monkeypatch):
    args = ("trace", "--json", "--site", "L1.resid_out", "--site", "L2.H1.pattern", "--site", "logits",
            "--site", "L2.H1.attn_logits", "--set", "data.total_classes=200")
    first = json.loads(_invoke(tmp_path, monkeypatch, CLAMP_AND_COPY, *args, "--pass", "first").stdout)
    last = json.loads(_invoke(tmp_path, monkeypatch, CLAMP_AND_COPY, *args, "--pass", "last").stdout)
    assert (first["pass"], last["pass"], first["passes"]) == ("first", "last", 2)
    assert first["sites"]["L1.resid_out"] != last["sites"]["L1.resid_out"]  # shift_embed, then embed
    np.testing.assert_allclose(first["sites"]["L2.H1.pattern"], last["sites"]["L2.H1.pattern"], atol=1e-6)  # held
    # the copy reads what explain says: the first pass's L2.H1.attn_logits, from the query to each label token
    copied, read = np.asarray(last["sites"]["logits"])[-1], np.asarray(first["sites"]["L2.H1.attn_logits"])[-1]
    labels = last["input"]["labels"][:-1]  # the in-context labels, at positions 1, 3, ...
    np.testing.assert_allclose([copied[label] for label in labels], read[1::2][:len(labels)], rtol=1e-6)
    assert not np.allclose(read[1::2], np.asarray(last["sites"]["L2.H1.attn_logits"])[-1][1::2])  # not the last pass's
    others = [c for i, c in enumerate(copied) if i not in labels]
    assert others and max(others) <= NEG  # every label not in the context: -inf (the mask value)
    shown = _invoke(tmp_path, monkeypatch, CLAMP_AND_COPY, "trace", "--site", "L1.resid_out", "--pass", "first",
                    "--set", "data.total_classes=200")
    assert shown.stdout.splitlines()[1] == "pass first: 1 of 2"
    bad = _invoke(tmp_path, monkeypatch, CLAMP_AND_COPY, "trace", "--pass", "second")
    assert bad.exit_code == 2 and bad.stderr.startswith("--pass:1:1: error: no pass 'second'\n")


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("eval") / "base"
    spec = out.parent / "base.opto"
    spec.write_text("set train.lr = 1e-3\n")
    run_experiment(spec, out, TINY, progress=False)
    return out


def test_eval_scores_each_variant_under_its_own_interventions(base_run, tmp_path, monkeypatch):
    text = "variant plain { }\nvariant no_layer1 { ablate L1.* }\nvariant no_layer2 { ablate L2.* }\n"
    result = _invoke(tmp_path, monkeypatch, text, "eval", "--checkpoint", str(base_run), "--sequences", "64", "--json",
                     *sum((["--set", f"{k}={v}"] for k, v in TINY.items()), []))
    assert result.exit_code == 0, result.output
    runs = json.loads(result.stdout)["runs"]
    assert list(runs) == ["s-plain", "s-no_layer1", "s-no_layer2"]
    final = json.loads((base_run / "summary.json").read_text())["final"]
    assert set(runs["s-plain"]["sets"]) == {"train", "heldout_labels", "heldout_exemplars", "test_classes"}
    # with every head of layer 2 off the query's logits do not depend on the context: one label for every sequence
    assert runs["s-no_layer2"]["sets"]["train"] != runs["s-plain"]["sets"]["train"]
    assert 0.0 <= runs["s-plain"]["sets"]["train"]["accuracy"] <= 1.0 and "train/accuracy" in final


def test_eval_reports_both_accuracies_and_shows_the_in_context_one_when_asked(base_run, tmp_path, monkeypatch):
    out = base_run
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.opto").write_text("variant plain { }\nvariant no_layer2 { ablate L2.* }\n")
    sets = sum((["--set", f"{k}={v}"] for k, v in TINY.items()), [])
    result = CliRunner().invoke(app, ["eval", "s.opto", "--checkpoint", str(out), "--sequences", "200", "--json", *sets])
    assert result.exit_code == 0, result.output
    runs = json.loads(result.stdout)["runs"]
    for r in runs.values():
        for scores in r["sets"].values():
            # among two labels a sequence right over all five is right among its context's two as well
            assert scores["accuracy_in_context"] >= scores["accuracy"]
    shown = CliRunner().invoke(app, ["eval", "s.opto", "--checkpoint", str(out), "--sequences", "200", "--in-context", *sets])
    assert shown.exit_code == 0, shown.output
    assert "accuracy among the context's labels on" in shown.stdout.splitlines()[0]
    row = shown.stdout.splitlines()[2].split()
    assert row[0] == "s-plain" and float(row[1]) == pytest.approx(runs["s-plain"]["sets"]["train"]["accuracy_in_context"], abs=5e-4)


def test_eval_refuses_a_checkpoint_of_another_architecture(base_run, tmp_path, monkeypatch):
    result = _invoke(tmp_path, monkeypatch, "set model.heads = 4\nablate L1.H0\n", "eval", "--checkpoint", str(base_run))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"{base_run / 'config.json'}: error: the checkpoint's network does not fit run s of s.opto")
    assert "model.heads = 4" in result.stderr and "model.heads = 8" in result.stderr and "Traceback" not in result.output


def test_eval_warns_when_the_spec_scores_other_data_than_the_run(base_run, tmp_path, monkeypatch):
    args = ("eval", "--checkpoint", str(base_run), "--sequences", "32", "--json", "--set", "data.total_classes=200")
    same = _invoke(tmp_path, monkeypatch, "ablate L1.H0\n", *args)
    assert (same.exit_code, same.stderr, json.loads(same.stdout)["warnings"]) == (0, "", [])
    other = _invoke(tmp_path, monkeypatch, "ablate L1.H0\n", *args, "--set", "data.seed=1", "--set", "seed.init=6")
    assert other.exit_code == 0, other.output
    line = (f"{base_run / 'config.json'}: warning: s.opto has data.seed = 1 but the checkpoint's run had "
            "data.seed = 0: the scores are on the spec's data, not the run's (set them in the spec or with "
            "--set to score the run's own)")  # seed.init, which decides no sequence, is not named
    assert other.stderr == line + "\n" and json.loads(other.stdout)["warnings"] == [line]
    shown = _invoke(tmp_path, monkeypatch, "ablate L1.H0\n", *args[:-3], "--set", "data.total_classes=300")
    assert shown.stderr.count("warning:") == 1 and "data.total_classes = 300" in shown.stderr and shown.exit_code == 0


TABLE1_GROUPS = {"prev_token_heads": "L1.H[1,2,4,5]", "rest": "L1.H[0,3,6,7]", "all_layer1": "L1.*"}
"""Table 1's variants in specs/paper/table1.opto and the `--group` that names the same heads."""


def test_the_table1_spec_gives_the_accuracies_of_analyze_groups(base_run, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    n = "256"
    evaluated = CliRunner().invoke(app, ["eval", "specs/paper/table1.opto", "--checkpoint", str(base_run), "--sequences", n,
                                         "--json", "--set", "data.total_classes=200", "--set", "eval.sets=[train]"])
    assert evaluated.exit_code == 0 and evaluated.stderr == "", evaluated.output
    runs = json.loads(evaluated.stdout)["runs"]
    assert len(runs) == 9
    copy = tmp_path / "run"  # analyze writes analysis.json into the run directory
    shutil.copytree(base_run, copy)
    analyzed = CliRunner().invoke(app, ["analyze", str(copy), "--only", "groups", "--sequences", n, "--json",
                                        *sum((["--group", g] for g in TABLE1_GROUPS.values()), [])])
    assert analyzed.exit_code == 0, analyzed.output
    groups = json.loads(analyzed.stdout)["groups"]
    assert [g["heads"] for g in groups] == [[1, 2, 4, 5], [0, 3, 6, 7], list(range(8))]
    seen = []
    for variant, group in zip(TABLE1_GROUPS, groups):
        for suffix, kind in (("", "ablated"), ("_pattern_preserving", "pattern_preserving"),
                             ("_value_preserving", "value_preserving")):
            scored = runs[f"table1-{variant}{suffix}"]["sets"]["train"]
            assert scored["accuracy"] == group[kind]["accuracy"], (variant, kind)
            assert scored["loss"] == pytest.approx(group[kind]["loss"], rel=1e-5), (variant, kind)
            seen.append(scored["accuracy"])
    assert len(set(seen)) > 3, seen  # the ablations differ, so equal numbers are not a coincidence


def test_analyze_group_takes_the_spec_selectors(base_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(base_run, copy)
    result = CliRunner().invoke(app, ["analyze", str(copy), "--only", "groups", "--sequences", "32", "--json",
                                      "--group", "L1.H[1,2,5]", "--group", "L1.*", "--group", "L1.H0..3"])
    assert result.exit_code == 0, result.output
    groups = json.loads(result.stdout)["groups"]
    assert [g["heads"] for g in groups] == [[1, 2, 5], list(range(8)), [0, 1, 2, 3]]


def test_overwritten_clause_warning_golden(monkeypatch):
    monkeypatch.chdir(CLI_GOLDEN)
    result = CliRunner().invoke(app, ["check", "overwritten_downstream.opto"])
    assert result.exit_code == 0
    assert result.stderr == (CLI_GOLDEN / "overwritten_downstream.err").read_text()


def test_graft_source_of_another_architecture_golden(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(CLI_GOLDEN / "graft_architecture.opto", tmp_path)
    (tmp_path / "runs" / "eight_heads").mkdir(parents=True)
    (tmp_path / "runs" / "eight_heads" / "config.json").write_text(DEFAULT.model_dump_json())
    result = CliRunner().invoke(app, ["check", "graft_architecture.opto"])
    assert result.exit_code == 2
    assert result.stderr == (CLI_GOLDEN / "graft_architecture.err").read_text()


def test_no_warning_when_the_block_output_is_set_only_in_some_passes(tmp_path, monkeypatch):
    text = "clamp L1.resid_out = 0 during 0..100k\nclamp L1.H2.pattern = prev_token\n"
    result = _invoke(tmp_path, monkeypatch, text, "check")
    assert (result.exit_code, result.stderr) == (0, "")


def test_explain_shows_a_task_settings_default_from_its_own_task(tmp_path):
    """`task.alpha` is the Markov task's (default 1.0), so setting it to 1.0 is its default, and
    `task.states = 5` differs from the Markov default 3; `task.name`'s default stays the few-shot task."""
    spec = tmp_path / "m.opto"
    spec.write_text('set task.name = "markov"\nset task.alpha = 1.0\nset task.states = 5\n')
    out = CliRunner().invoke(app, ["explain", str(spec)]).stdout.splitlines()
    assert out[1:4] == ["  set task.alpha = 1.0  (the default)", '  set task.name = "markov"  (default "fewshot")',
                        "  set task.states = 5  (default 3)"]
