"""Error paths of `opto run` and of resuming: exit codes, messages, and what is kept."""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import pytest
from typer.testing import CliRunner

from optodsl.cli import app
from optodsl.errors import DataError
from optodsl.experiment import run_experiment
from optodsl.train import checkpoint

SMALL = ["--set", "train.sequences=640", "--set", "eval.every=320", "--set", "eval.sequences=16",
         "--set", "data.total_classes=200", "--no-progress"]


def test_a_non_finite_loss_exits_1_with_a_message(tmp_path):
    spec = tmp_path / "inf.opto"
    spec.write_text("clamp logits = 1e39\n")  # beyond float32: the loss becomes NaN
    result = CliRunner().invoke(app, ["run", str(spec), "--out", str(tmp_path / "run"), *SMALL])
    assert result.exit_code == 1
    assert "error: the training loss became NaN or inf between sequences 0 and 320" in result.output
    assert "Traceback" not in result.output


def test_a_missing_feature_file_exits_2_naming_the_file(tmp_path):
    spec = tmp_path / "s.opto"
    spec.write_text("ablate L2.H1\n")
    missing = tmp_path / "feats.h5"
    result = CliRunner().invoke(app, ["run", str(spec), "--out", str(tmp_path / "run"), *SMALL,
                                      "--set", f'data.source="{missing}"'])
    assert result.exit_code == 2
    assert f"{missing}: error: feature file not found" in result.output and "Traceback" not in result.output


def test_a_run_directory_of_another_spec_is_refused(tmp_path):
    settings = {"train.sequences": 320, "eval.every": 320, "eval.sequences": 16, "data.total_classes": 200}
    first, second = tmp_path / "a.opto", tmp_path / "b.opto"
    first.write_text("ablate L2.H1\n")
    second.write_text("ablate L2.H2\n")
    run_experiment(first, tmp_path / "run", settings, progress=False)
    with pytest.raises(DataError, match="holds a run of a different spec"):
        run_experiment(second, tmp_path / "run", settings, progress=False)


def test_a_sweep_resumes_from_the_kept_previous_checkpoint(tmp_path):
    state = {"w": jnp.zeros(3)}
    checkpoint.save(tmp_path, {"w": jnp.full(3, 1.0)}, {"step": 10})
    checkpoint.save(tmp_path, {"w": jnp.full(3, 2.0)}, {"step": 20})
    checkpoint.save(tmp_path, {"w": jnp.full(3, 3.0)}, {"step": 30})
    assert sorted(p.name for p in tmp_path.glob("ckpt-*.npz")) == ["ckpt-000000020.npz", "ckpt-000000030.npz"]
    assert float(checkpoint.load(tmp_path, state)[0]["w"][0]) == 3.0
    loaded, meta = checkpoint.load(tmp_path, state, step=20)
    assert float(loaded["w"][0]) == 2.0 and meta["step"] == 20
    with pytest.raises(DataError, match="no checkpoint at step 10"):
        checkpoint.load(tmp_path, state, step=10)


CLI_GOLDEN = Path(__file__).resolve().parent / "golden" / "cli"
SEMANTIC_GOLDEN = CLI_GOLDEN.parent / "semantics"


@pytest.mark.parametrize(("name", "args"), [
    ("set_list_without_brackets", ["check", "plain.opto", "--set", "eval.sets=train"]),
    ("site_misspelled", ["trace", "plain.opto", "--site", "L1.H2.patern"]),
    ("site_layer_out_of_range", ["trace", "plain.opto", "--site", "L3.pattern"]),
])
def test_command_line_golden_errors(name, args, monkeypatch):
    monkeypatch.chdir(CLI_GOLDEN)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert result.stderr == (CLI_GOLDEN / f"{name}.err").read_text()


def test_a_list_setting_in_a_spec_hints_the_brackets(tmp_path):
    spec = tmp_path / "s.opto"
    spec.write_text("set eval.sets = train\nablate L2.H1\n")
    result = CliRunner().invoke(app, ["check", str(spec)])
    assert result.exit_code == 2
    assert "hint: this setting takes a list in brackets: set eval.sets = [train]" in result.stderr


def test_fmt_refuses_a_spec_that_check_refuses(monkeypatch):
    monkeypatch.chdir(SEMANTIC_GOLDEN)
    result = CliRunner().invoke(app, ["fmt", "unknown_verb.opto"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (SEMANTIC_GOLDEN / "unknown_verb.err").read_text()


def test_check_refuses_a_graft_source_that_does_not_exist(monkeypatch):
    monkeypatch.chdir(CLI_GOLDEN)
    result = CliRunner().invoke(app, ["check", "graft_missing_source.opto"])
    assert result.exit_code == 2
    assert result.stderr == (CLI_GOLDEN / "graft_missing_source.err").read_text()
    assert result.stdout == ""
    alone = CliRunner().invoke(app, ["check", "graft_from_plain.opto"])
    assert alone.exit_code == 2 and alone.stderr == (CLI_GOLDEN / "graft_from_plain_alone.err").read_text()


def test_check_warns_of_a_graft_source_another_spec_on_the_command_line_trains(monkeypatch):
    monkeypatch.chdir(CLI_GOLDEN)
    result = CliRunner().invoke(app, ["check", "plain.opto", "graft_from_plain.opto"])
    assert result.exit_code == 0
    assert result.stderr == (CLI_GOLDEN / "graft_from_plain.err").read_text()
    assert result.stdout == "plain.opto: ok (1 run, 0 warnings)\ngraft_from_plain.opto: ok (1 run, 1 warning)\n"


def test_run_refuses_a_missing_graft_source_before_training(tmp_path, monkeypatch):
    monkeypatch.chdir(CLI_GOLDEN)
    result = CliRunner().invoke(app, ["run", "graft_missing_source.opto", "--out", str(tmp_path / "run"), *SMALL])
    assert result.exit_code == 2
    assert result.stderr == (CLI_GOLDEN / "graft_missing_source.err").read_text()
    assert not (tmp_path / "run").exists()


def test_run_trains_a_graft_source_named_on_the_same_command_line_first(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("plain.opto", "graft_from_plain.opto"):
        (tmp_path / name).write_text((CLI_GOLDEN / name).read_text())
    result = CliRunner().invoke(app, ["run", "graft_from_plain.opto", "plain.opto", *SMALL])
    assert result.exit_code == 0, result.output
    assert result.stderr == (CLI_GOLDEN / "graft_from_plain.err").read_text()
    trained = [line.split(": ", 1)[1] for line in result.stdout.splitlines() if line.startswith("run directory: ")]
    assert trained == [str(Path("runs") / "plain"), str(Path("runs") / "graft_from_plain")]
    assert all((tmp_path / d / "summary.json").is_file() for d in trained)


def test_check_refuses_grafts_whose_sources_wait_on_each_other(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.opto").write_text('graft L1.resid_out from "runs/b"\n')
    (tmp_path / "b.opto").write_text('graft L1.resid_out from "runs/a"\n')
    result = CliRunner().invoke(app, ["check", "a.opto", "b.opto"])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.splitlines()[0] == ("a.opto:1:1: error: graft source run 'runs/b' does not exist (no runs/b/config.json), "
                                             "and b.opto, which trains it, waits on this spec's runs too")
    assert "b.opto:1:1: error: graft source run 'runs/a' does not exist" in result.stderr


def test_a_run_directory_of_another_task_is_refused_naming_both_tasks(tmp_path):
    """`opto run` of a Markov spec into a repeat run's directory is refused before training, exit 2:
    the directory holds a run of another task (the settings of two tasks have different keys)."""
    from optodsl.experiment import load_experiment
    from optodsl.train.claim import claim, claim_spec

    repeat = load_experiment('set task.name = "repeat"\nset task.length = 16\n')
    run_dir = tmp_path / "run"
    claim_spec(run_dir, repeat.sha256, None, repeat.canonical, repeat.members[0])
    claim(run_dir, repeat.members[0].config)  # the directory as `opto run` leaves it before training
    spec = tmp_path / "markov.opto"
    spec.write_text('set task.name = "markov"\nset task.length = 16\n')
    result = CliRunner().invoke(app, ["run", str(spec), "--out", str(run_dir), "--no-progress"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "holds a run of the repeat task, not the markov task" in result.output
    markov = load_experiment(str(spec)).members[0].config
    with pytest.raises(DataError, match="holds a run of the repeat task, not the markov task"):
        claim(run_dir, markov)
