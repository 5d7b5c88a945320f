"""The tokens task: a user's .npy corpus, checked with errors that name the file, sampled in windows inside jit."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from typer.testing import CliRunner

from optodsl.cli import app
from optodsl.config import ExperimentConfig, with_settings
from optodsl.errors import DataError
from optodsl.tasks import build_task
from optodsl.train.trainer import train


def config(path, **extra) -> ExperimentConfig:
    settings = {"task.name": "tokens", "task.source": str(path), "task.vocab": 8, "task.length": 16,
                "model.heads": 2, "model.d_model": 16, **extra}
    return with_settings(ExperimentConfig(), settings)


def test_windows_are_slices_of_the_corpus(tmp_path):
    corpus = np.arange(200, dtype=np.int64) % 8
    np.save(tmp_path / "c.npy", corpus)
    tokens = np.asarray(build_task(config(tmp_path / "c.npy")).sample(jax.random.PRNGKey(0), "train", 32)["tokens"])
    assert tokens.shape == (32, 16) and tokens.dtype == np.int32
    starts = tokens[:, 0].tolist()
    assert all(((tokens[i] - starts[i]) % 8 == np.arange(16) % 8).all() for i in range(32))


@pytest.mark.parametrize(("array", "problem"), [
    (np.zeros((4, 50), np.int32), "one flat array"),
    (np.zeros(50, np.float32), "must be integers"),
    (np.array([0, 1, 9] * 20, np.int32), "outside the vocabulary"),
    (np.zeros(10, np.int32), "shorter than one window"),
])
def test_a_bad_corpus_names_the_file_and_the_problem(tmp_path, array, problem):
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(DataError) as info:
        build_task(config(tmp_path / "bad.npy"))
    assert info.value.path == str(tmp_path / "bad.npy") and problem in info.value.problem


def test_a_missing_corpus_is_a_clear_command_line_error(tmp_path):
    spec = tmp_path / "s.opto"
    spec.write_text(f'set task.name = "tokens"\nset task.source = "{tmp_path / "none.npy"}"\nset train.sequences = 64\n')
    result = CliRunner().invoke(app, ["run", str(spec), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"{spec}:2:19: error: {tmp_path / 'none.npy'}: no such corpus file" in result.output


def _check(spec, *args):
    result = CliRunner().invoke(app, ["check", str(spec), *args])
    assert "Traceback" not in result.output
    return result


@pytest.mark.parametrize(("array", "problem", "hint"), [
    (None, "no such corpus file", "beside that spec file"),
    (np.arange(100) * 0.5, "token ids must be integers (found dtype float64)", "integer dtype"),
    (np.arange(100) % 2 == 0, "token ids must be integers (found dtype bool)", "integer dtype"),
    (np.arange(100), "token ids outside the vocabulary (found id 8 at index 8)", "raise task.vocab"),
    (np.array([0, 1, -2, 3] * 25), "token ids outside the vocabulary (found id -2 at index 2)", "without negative ids"),
])
def test_opto_check_refuses_a_corpus_that_cannot_run_at_its_set_line(tmp_path, array, problem, hint):
    """`opto check` opens the corpus as a run would (header, dtype, id range from the memory map); a
    relative task.source is read beside the spec file, and the error names the resolved path at the
    `set task.source` line."""
    (tmp_path / "specs" / "data").mkdir(parents=True)
    if array is not None:
        np.save(tmp_path / "specs" / "data" / "c.npy", array)
    spec = tmp_path / "specs" / "s.opto"
    spec.write_text('set task.name = "tokens"\nset task.vocab = 8\nset task.source = "data/c.npy"\n')
    result = _check(spec)
    assert result.exit_code == 2
    first, _, caret, hint_line = result.output.splitlines()[:4]
    assert first == f"{spec}:3:19: error: {tmp_path / 'specs' / 'data' / 'c.npy'}: {problem}"
    assert caret.strip() == "^" * len('"data/c.npy"') and hint in hint_line
    if array is None:
        np.save(tmp_path / "specs" / "data" / "c.npy", np.arange(100) % 8)
        assert _check(spec).exit_code == 0  # the same file found beside the spec, not in the working directory


def test_opto_check_refuses_a_tokens_task_without_a_corpus(tmp_path):
    spec = tmp_path / "s.opto"
    spec.write_text('set task.name = "tokens"\n')
    result = _check(spec)
    assert result.exit_code == 2 and f"{spec}:1:17: error: the tokens task needs a corpus: task.source is not set" in result.output
    spec.write_text('set task.name = "tokens"\nset data.source = "c.npy"\n')
    result = _check(spec)
    assert result.exit_code == 2 and f"{spec}:2:1: error: data.source is the few-shot task's feature table" in result.output
    assert 'hint: write set task.source = "c.npy"' in result.output
    np.save(tmp_path / "c.npy", np.arange(100) % 8)
    result = _check(spec, "--set", f"task.source={tmp_path / 'c.npy'}", "--set", "task.vocab=8")
    assert result.exit_code == 2  # data.source stays wrong where the corpus comes from --set
    spec.write_text('set task.name = "tokens"\n')
    assert _check(spec, "--set", f"task.source={tmp_path / 'c.npy'}", "--set", "task.vocab=8").exit_code == 0


def test_a_model_learns_a_periodic_corpus(tmp_path):
    np.save(tmp_path / "c.npy", np.tile(np.array([3, 1, 4, 1, 5, 2, 6, 0]), 100).astype(np.uint16))
    cfg = config(tmp_path / "c.npy", **{"train.lr": 3e-3, "train.sequences": 3_200, "eval.every": 3_200, "eval.sequences": 64})
    metrics = train(cfg, progress=False).metrics
    assert metrics[-1]["train/loss"] < metrics[0]["train/loss"] - 1.0


def test_a_run_whose_spec_names_a_relative_corpus_is_analysed_from_anywhere(tmp_path, monkeypatch):
    """A relative task.source is read beside the spec; the run records the absolute path, so its
    copied spec.opto is analysed from another working directory without looking beside the copy."""
    (tmp_path / "specs" / "data").mkdir(parents=True)
    np.save(tmp_path / "specs" / "data" / "c.npy", np.tile(np.arange(8), 50).astype(np.uint16))
    spec = tmp_path / "specs" / "s.opto"
    spec.write_text('set task.name = "tokens"\nset task.vocab = 8\nset task.length = 16\nset task.source = "data/c.npy"\n'
                    'set model.heads = 2\nset model.d_model = 16\nset train.sequences = 64\nset eval.every = 64\n'
                    'set eval.sequences = 16\n')
    run = tmp_path / "runs" / "r"
    result = CliRunner().invoke(app, ["run", str(spec), "--out", str(run), "--no-progress"])
    assert result.exit_code == 0, result.output
    recorded = json.loads((run / "config.json").read_text())["task"]["source"]
    assert recorded == str(tmp_path / "specs" / "data" / "c.npy")
    monkeypatch.chdir(tmp_path / "runs")
    result = CliRunner().invoke(app, ["analyze", str(run), "--sequences", "16", "--only", "heads"])
    assert result.exit_code == 0, result.output
    assert (run / "analysis.json").is_file()
