"""`opto trace`'s text on a token task: a 64 x 64 pattern prints every row (its strongest positions
and weights, as --json holds them), and a value shortened to fit says how to get all of it."""

from __future__ import annotations

from typer.testing import CliRunner

from optodsl.cli import app

SETS = ["--set", "task.length=64", "--set", "model.layers=1", "--set", "model.heads=2", "--set", "model.d_model=64"]


def _trace(spec, *args):
    result = CliRunner().invoke(app, ["trace", str(spec), *SETS, *args])
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    return result.stdout


def test_a_wide_pattern_prints_every_row_with_its_strongest_positions(tmp_path):
    spec = tmp_path / "repeat.opto"
    spec.write_text('set task.name = "repeat"\nclamp L1.H1.pattern = prev_token(strength=0.75)\n')
    text = _trace(spec, "--site", "L1.H1.pattern", "--site", "L1.resid_out").splitlines()
    words = text[0].removeprefix("tokens: ").split("  ")
    start = text.index("L1.H1.pattern: each row's 4 strongest positions (query -> key weight; every weight with --json)")
    rows = text[start + 1:start + 65]
    assert len(words) == 64 and [r.split(" -> ")[0].strip() for r in rows] == words
    assert rows[0].split(" -> ")[1] == f"{words[0]} 1.000"
    for q, row in enumerate(rows[1:], 1):  # prev_token(0.75): 0.75 on the position before, 0.25 on itself
        assert row.split(" -> ")[1] == f"{words[q - 1]} 0.750  {words[q]} 0.250"
    assert text[start + 65] == "L1.resid_out:"
    assert "  (shape (64, 64), shortened: opto trace --json prints every value)" in text
