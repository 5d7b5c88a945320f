"""The `opto` command line; the only place that prints errors (and picks exit codes).

Exit codes: 0 success, 1 training failed (e.g. a non-finite loss), 2 bad input (a spec error,
a missing or malformed file, a bad `--set`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from .errors import DataError, OptoError, SpecError, TrainingError, render

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="optodsl: clamp and ablate transformer activations throughout training.")


def _fail(message: str, code: int) -> None:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def _parse_sets(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            _fail(f"--set: error: expected key=value, got '{pair}'\n  hint: for example --set train.lr=1e-4", 2)
        out[key.strip()] = value.strip()
    return out


@app.command()
def run(
    spec: Optional[Path] = typer.Argument(None, help="a .opto spec; without one, the built-in baseline experiment"),
    out: Optional[Path] = typer.Option(None, "--out", help="run directory (default runs/<spec name>)"),
    set_: List[str] = typer.Option([], "--set", help="override a setting, e.g. --set train.lr=1e-4 (repeatable)"),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="progress bar (default: only on a terminal)"),
) -> None:
    """Train an experiment and write its run directory.

    Example: opto run specs/examples/baseline.opto --set train.sequences=200k --out runs/short
    """
    from .experiment import run_experiment

    try:
        result = run_experiment(spec, out, _parse_sets(set_), progress=progress)
    except SpecError as err:
        _fail(render(err), 2)
    except DataError as err:
        _fail(str(err), 2)
    except TrainingError as err:
        _fail(f"error: {err}", 1)
    for res in result:
        final = res.summary["final"]
        typer.echo(f"run directory: {res.run_dir}")
        typer.echo(f"figure: {res.run_dir / 'curves.png'}")
        accs = "  ".join(f"{k.split('/')[0]} {v:.3f}" for k, v in final.items() if k.endswith("/accuracy"))
        typer.echo(f"final accuracy: {accs}   ({res.summary['sequences']:,} sequences, {res.summary['wall_seconds']:.0f} s)")


def main() -> None:
    """Entry point of the `opto` script: never shows a traceback for an expected error."""
    try:
        app()
    except OptoError as err:  # any stage's error that escaped a command's own handling
        typer.echo(render(err) if isinstance(err, SpecError) else f"error: {err}", err=True)
        sys.exit(2)
