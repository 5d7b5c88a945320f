"""Checkpoint series (`train.keep`): which lengths are kept, points equal to the network trained to
that length, resume/continue/rollback keep the series, damaged points are named and skipped."""

from __future__ import annotations

import json

import equinox as eqx
import jax
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from pydantic import ValidationError

from optodsl.config import DataConfig, EvalConfig, ExperimentConfig, ModelConfig, TrainConfig, keep_points
from optodsl.train import checkpoint, series
from optodsl.train.restore import load_trained, new_model
from optodsl.train.trainer import train

KEEP = (320, 960, 1280, 1600, 2240)  # steps 10, 30, 40, 50, 70: inside chunks (of 20 steps) and at their ends
TINY = dict(model=ModelConfig(layers=1, heads=2, d_model=16), data=DataConfig(total_classes=200, feature_dim=16))
pytestmark = pytest.mark.usefixtures("reuse_programs")  # train() of the same config compiles once here (conftest)

SMALL = ExperimentConfig(**TINY, train=TrainConfig(sequences=2560, lr=1e-3, checkpoint_every=1280, keep=KEEP),
                         eval=EvalConfig(every=640, sequences=64, sets=("train", "heldout_labels")))


def _with(**train_settings) -> ExperimentConfig:
    return SMALL.model_copy(update={"train": SMALL.train.model_copy(update=train_settings)})


def _manifest(run):
    return json.loads((run / "series" / "manifest.json").read_text())


def _params(model):
    return [np.asarray(x) for x in jax.tree.leaves(eqx.filter(model, eqx.is_array))]


def test_keep_forms_name_the_kept_lengths():
    assert keep_points((10, 5, 5), 100) == [5, 10]
    assert keep_points("every 25", 100) == [25, 50, 75, 100]
    assert keep_points("every 50k", 120_000) == [50_000, 100_000]
    assert keep_points("log 4 from 1k to 1M", 1_000_000) == [1_000, 10_000, 100_000, 1_000_000]
    assert keep_points("log 4 from 1k to 1M", 50_000) == [1_000, 10_000]
    assert TrainConfig(keep="every  50k").keep == "every 50k"
    for bad in ("every", "log 1 from 1k to 1M", "log 3 from 1M to 1k", "every -5", "sometimes", (0,)):
        with pytest.raises(ValidationError):
            TrainConfig(keep=bad)


@settings(max_examples=50, deadline=None)
@given(st.integers(2, 60), st.integers(1, 10_000), st.integers(2, 1_000), st.integers(1, 3_000_000))
def test_log_and_every_points_lie_where_they_say(count, first, factor, upto):
    last = first * factor
    points = keep_points(f"log {count} from {first} to {last}", upto)
    assert points == sorted(set(points)) and len(points) <= count
    if upto >= last:
        assert points[0] == first and points[-1] == last
    assert all(first <= p <= min(last, upto) for p in points)
    every = keep_points(f"every {first * 100}", upto)
    assert every == list(range(first * 100, upto + 1, first * 100))


def test_a_setting_error_is_located_in_the_spec(tmp_path):
    from optodsl.errors import SpecError
    from optodsl.experiment import load_experiment

    spec = tmp_path / "s.opto"
    spec.write_text('set train.sequences = 2k\nset train.keep = "log 3 from 1k"\n')
    with pytest.raises(SpecError) as err:
        load_experiment(spec)
    assert (err.value.span.line, err.value.span.column) == (2, 18) and "every 50k" in err.value.message
    spec.write_text("set train.keep = [1k, 10k]\n")
    assert load_experiment(spec).members[0].config.train.keep == (1000, 10000)


def test_kept_steps_round_each_length_up_to_a_whole_step():
    assert series.kept_steps(_with(keep=(1, 32, 33, 700, 2560, 9999))) == [1, 2, 22, 80]
    assert series.kept_steps(_with(keep="every 1k")) == [32, 63]


def test_series_points_are_the_network_trained_to_that_length_and_survive_resume_and_continue(tmp_path):
    run = tmp_path / "run"
    res = train(SMALL, None, run, progress=False)
    points = _manifest(run)["points"]
    assert [(p["sequences"], p["step"], p["file"]) for p in points] == [
        (320, 10, "seq-000000320.npz"), (960, 30, "seq-000000960.npz"), (1280, 40, "seq-000001280.npz"),
        (1600, 50, "seq-000001600.npz"), (2240, 70, "seq-000002240.npz")]
    loaded, problems = series.load_series(run, new_model(SMALL, jax.random.PRNGKey(0)))
    assert problems == [] and [p.sequences for p, _ in loaded] == [320, 960, 1280, 1600, 2240]
    # parameters only: far smaller than a checkpoint with the optimiser's moments
    assert (run / "series" / points[0]["file"]).stat().st_size < (run / checkpoint.read_meta(run)["file"]).stat().st_size / 2

    # a point inside a chunk is bitwise the network of a run (without a series) trained to exactly that length,
    # and the evaluations fall where they did without a series, with the same numbers
    short = train(_with(sequences=960, keep=()), None, tmp_path / "short", progress=False)
    model, seen = load_trained(tmp_path / "short", _with(sequences=960, keep=()))
    assert seen == 960 and all(np.array_equal(a, b) for a, b in zip(_params(loaded[1][1]), _params(model)))
    for a, b in zip(res.metrics[:2], short.metrics[:2]):
        assert {k: v for k, v in a.items() if not k.startswith("train_")} == {k: v for k, v in b.items() if not k.startswith("train_")}
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5) if b["train_loss"] is not None else a["train_loss"] is None

    # interrupted past a kept point (step 50) after its checkpoint (step 40), then resumed: the same files;
    # a rollback leaves the series as it is
    stopped = tmp_path / "stopped"
    train(SMALL, None, stopped, progress=False, stop_after_chunks=3)
    assert checkpoint.read_meta(stopped)["step"] == 40 and [p["step"] for p in _manifest(stopped)["points"]] == [10, 30, 40, 50]
    train(SMALL, None, stopped, progress=False)
    assert _manifest(stopped) == _manifest(run)
    assert all((stopped / "series" / p["file"]).read_bytes() == (run / "series" / p["file"]).read_bytes() for p in points)
    checkpoint.rollback(stopped)
    assert _manifest(stopped) == _manifest(run)

    # a run continued to a longer train.sequences keeps the points it had and adds the later ones
    grown = tmp_path / "grown"
    train(_with(sequences=1280), None, grown, progress=False)
    assert [p["step"] for p in _manifest(grown)["points"]] == [10, 30, 40]
    train(SMALL, None, grown, progress=False)
    assert _manifest(grown) == _manifest(run)


def test_each_sweep_member_keeps_its_own_series_and_a_damaged_point_is_named_and_skipped(tmp_path):
    from optodsl.config import SeedConfig
    from optodsl.train.trainer import train_sweep

    cfg = _with(sequences=640, keep="every 320")
    members = [cfg, cfg.model_copy(update={"seed": SeedConfig(init=6)})]
    train_sweep(members, None, [tmp_path / "a", tmp_path / "b"], progress=False)
    a, b = (_manifest(tmp_path / name) for name in "ab")
    assert [p["sequences"] for p in a["points"]] == [p["sequences"] for p in b["points"]] == [320, 640]
    assert all(pa["sha256"] != pb["sha256"] for pa, pb in zip(a["points"], b["points"]))  # each member's own network
    run = tmp_path / "a"
    first = run / "series" / "seq-000000320.npz"
    first.write_bytes(first.read_bytes()[:100])
    with pytest.warns(series.SeriesWarning, match="seq-000000320.npz"):
        loaded, problems = series.load_series(run, new_model(cfg, jax.random.PRNGKey(0)))
    assert [p.sequences for p, _ in loaded] == [640]
    assert len(problems) == 1 and str(first) in problems[0] and "sha256" in problems[0]
    assert series.count(run) == 2

    from typer.testing import CliRunner
    from optodsl.cli import app

    out = CliRunner().invoke(app, ["runs", str(tmp_path)])
    assert out.exit_code == 0 and "2 series points" in out.output
