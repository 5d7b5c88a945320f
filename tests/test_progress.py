"""Training progress: a plain line about every 5% of the run off a terminal (sequences, loss,
accuracy, rate, time left), the rich bar on a terminal, nothing with --no-progress."""

from __future__ import annotations

import io
import types

import pytest
from typer.testing import CliRunner

from optodsl.cli import app
from optodsl.train import progress as progress_module
from optodsl.train.progress import Progress
from optodsl.train.program import PROGRAMS_NOTE

RECORD = {"train/loss": 0.6931, "train/accuracy": 0.5}


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def clock(monkeypatch):
    """A clock that moves one second per reading after the first, so the rate is exact."""
    now = iter(range(10_000))
    monkeypatch.setattr(progress_module, "time", types.SimpleNamespace(perf_counter=lambda: float(next(now))))


def _feed(bar: Progress, total: int, every: int) -> None:
    for seqs in range(every, total + 1, every):
        bar.update(seqs, RECORD)
    bar.close()


def test_off_a_terminal_a_plain_line_every_five_percent(clock):
    out = io.StringIO()
    _feed(Progress(100_000, None, stream=out), 100_000, 1_000)
    lines = out.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == [f"{n:,}/100,000" for n in range(5_000, 100_001, 5_000)]
    assert lines[0] == "sequences 5,000/100,000 (5%)  loss 0.6931  acc 0.500  1,000 seq/s  ETA 1m35s"
    assert lines[-1] == "sequences 100,000/100,000 (100%)  loss 0.6931  acc 0.500  1,000 seq/s  ETA 0m00s"
    assert "\x1b" not in out.getvalue() and "\r" not in out.getvalue()


def test_a_resumed_run_counts_from_where_it_resumed(clock):
    out = io.StringIO()
    bar = Progress(100_000, "lines", start=60_000, stream=out)
    for seqs in (61_000, 66_000, 70_000):
        bar.update(seqs, RECORD)
    assert out.getvalue().splitlines() == [
        "sequences 66,000/100,000 (66%)  loss 0.6931  acc 0.500  3,000 seq/s  ETA 0m11s",
        "sequences 70,000/100,000 (70%)  loss 0.6931  acc 0.500  3,333 seq/s  ETA 0m09s",
    ]


def test_on_a_terminal_the_bar(clock):
    out = Terminal()
    _feed(Progress(1_000, None, stream=out), 1_000, 50)
    text = out.getvalue()
    assert "━" in text and "1000/1000" in text and "loss 0.6931  acc 0.500" in text
    assert "ETA" not in text and "(5%)" not in text


def test_off_prints_nothing(clock):
    for stream in (io.StringIO(), Terminal()):
        _feed(Progress(100_000, "off", stream=stream), 100_000, 1_000)
        assert stream.getvalue() == ""


def test_opto_run_no_progress_prints_no_progress_lines(tmp_path):
    (tmp_path / "s.opto").write_text("set data.total_classes = 200\n")
    settings = ["--set", "train.sequences=640", "--set", "eval.every=320", "--set", "eval.sequences=16"]
    res = CliRunner().invoke(app, ["run", str(tmp_path / "s.opto"), "--out", str(tmp_path / "r"), *settings, "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "ETA" not in res.output and "seq/s" not in res.output and "320/640" not in res.output
    assert "final accuracy" in res.output


TWO_VERBS = ("set model.layers = 1\nset model.heads = 2\nset model.d_model = 8\nset data.total_classes = 200\n"
             "variant a {\n  ablate L1.H0\n}\nvariant b {\n  clamp L1.H1.pattern = prev_token\n}\n")
PROGRAMS = [f"2 programs train one after another ({PROGRAMS_NOTE}):", "  program 1: v-a", "  program 2: v-b"]


def test_a_run_of_several_programs_says_so_and_names_each_progress_lines_runs(tmp_path):
    """Variants of different verbs train one program after another: `opto explain` and `opto run`
    say so, and each progress line names its program and runs."""
    spec = tmp_path / "v.opto"
    spec.write_text(TWO_VERBS)
    explained = CliRunner().invoke(app, ["explain", str(spec)])
    assert explained.exit_code == 0 and explained.stdout.splitlines()[-3:] == PROGRAMS
    settings = ["--set", "train.sequences=64", "--set", "eval.every=32", "--set", "eval.sequences=8"]
    res = CliRunner().invoke(app, ["run", str(spec), "--out", str(tmp_path / "r"), *settings])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[:3] == PROGRAMS
    progress = [line for line in lines if "ETA" in line]
    assert [line.split(" sequences ")[0] for line in progress] == ["program 1/2 [v-a]"] * 2 + ["program 2/2 [v-b]"] * 2
    sweep = tmp_path / "s.opto"
    sweep.write_text("sweep h in 0..1\nablate L1.H$h\n")  # one program: nothing to say
    assert "programs train one after another" not in CliRunner().invoke(app, ["explain", str(sweep)]).stdout
