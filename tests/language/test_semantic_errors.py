"""Golden semantic errors: `opto check NAME.opto` prints exactly NAME.err on stderr and exits 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from optodsl.cli import app

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
SEMANTICS = sorted(p.stem for p in (GOLDEN / "semantics").glob("*.opto"))
SYNTAX = sorted(p.stem for p in (GOLDEN / "syntax").glob("*.opto"))


def _check(folder: Path, name: str, monkeypatch):
    monkeypatch.chdir(folder)
    return CliRunner().invoke(app, ["check", f"{name}.opto"])


def test_every_semantic_golden_has_its_error():
    assert len(SEMANTICS) >= 14
    assert SEMANTICS == sorted(p.stem for p in (GOLDEN / "semantics").glob("*.err"))


@pytest.mark.parametrize("name", SEMANTICS)
def test_semantic_golden(name, monkeypatch):
    result = _check(GOLDEN / "semantics", name, monkeypatch)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr == (GOLDEN / "semantics" / f"{name}.err").read_text()
    # every message locates itself in the file it came from and shows the line with a caret
    first, line, caret = result.stderr.splitlines()[:3]
    assert first.startswith(f"{name}.opto:") and ": error: " in first
    assert "^" in caret and line.startswith("  ")


@pytest.mark.parametrize("name", SYNTAX)
def test_syntax_golden_through_the_cli(name, monkeypatch):
    result = _check(GOLDEN / "syntax", name, monkeypatch)
    assert result.exit_code == 2
    assert result.stderr == (GOLDEN / "syntax" / f"{name}.err").read_text()


def test_index_errors_say_how_indices_count(monkeypatch):
    for name in ("layer_out_of_range", "layer_zero", "head_out_of_range"):
        text = (GOLDEN / "semantics" / f"{name}.err").read_text()
        assert "layers count from 1, heads from 0" in text
    assert "the first layer is L1" in (GOLDEN / "semantics" / "layer_zero.err").read_text()


def test_check_reports_every_failing_file(monkeypatch):
    monkeypatch.chdir(GOLDEN / "semantics")
    result = CliRunner().invoke(app, ["check", "unknown_verb.opto", "layer_zero.opto"])
    assert result.exit_code == 2
    assert result.stderr == (GOLDEN / "semantics" / "unknown_verb.err").read_text() + (
        GOLDEN / "semantics" / "layer_zero.err").read_text()
