"""Every command-line entry answers --help with a usage line and an example."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from optodsl.cli import app


def _entries(command, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [path]
    if getattr(command, "commands", None):
        for name, sub in command.commands.items():
            out += _entries(sub, path + (name,))
    return out


ENTRIES = _entries(typer.main.get_command(app))


def test_the_entries_include_every_command():
    names = {" ".join(e) for e in ENTRIES}
    assert {"run", "check", "explain", "trace", "sites", "fmt", "runs", "analyze", "report", "toy",
            "features", "features omniglot"} <= names


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: " ".join(e) or "opto")
def test_help_has_usage_and_an_example(entry):
    result = CliRunner().invoke(app, [*entry, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    if entry:  # the top level lists commands; every command and group shows an example
        assert "Example: opto " + " ".join(entry) in result.output.replace("\n", " ")
