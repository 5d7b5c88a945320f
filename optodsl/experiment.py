"""From a spec (or the built-in default) and `--set` overrides to trained run directories."""

from __future__ import annotations

from pathlib import Path

from .config import ExperimentConfig, TrainConfig, EvalConfig, with_settings
from .errors import Span, SpecError
from .train.trainer import RunResult, train

BASELINE = ExperimentConfig(
    train=TrainConfig(sequences=1_000_000, lr=1e-5, checkpoint_every=200_000),
    eval=EvalConfig(every=10_000, sequences=1_000),
)
"""The built-in default: the paper's baseline (lr 1e-5, 1,000,000 sequences) on synthetic features."""


def _coerce(text: str):
    """A `--set` value: bool, int or float (with `_` separators and k/M suffixes), else the text."""
    text = text.strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    body, scale = text, 1
    if len(text) > 1 and text[-1] in "kM":
        body, scale = text[:-1], {"k": 1_000, "M": 1_000_000}[text[-1]]
    for kind in (int, float):
        try:
            return kind(body.replace("_", "")) * scale
        except ValueError:
            pass
    return text


def apply_cli_settings(config: ExperimentConfig, settings: dict[str, str]) -> ExperimentConfig:
    """Apply `--set key=value` pairs, reporting unknown keys and invalid values as spec errors."""
    import difflib

    from .config import setting_keys

    keys = setting_keys()
    parsed = {}
    for key, text in settings.items():
        span = Span(path="--set", line=1, column=1, end_line=1, end_column=len(key) + 1, line_text=f"{key}={text}")
        if key not in keys:
            close = difflib.get_close_matches(key, list(keys), n=1)
            raise SpecError(span, f"unknown setting '{key}'",
                            hint=f"did you mean '{close[0]}'?" if close else "settings are section.field, e.g. train.lr; see `opto sites --help`")
        parsed[key] = _coerce(text)
    try:
        return with_settings(config, parsed)
    except Exception as exc:  # pydantic's ValidationError, reported on the --set line
        span = Span(path="--set", line=1, column=1, end_line=1, end_column=2,
                    line_text=" ".join(f"{k}={v}" for k, v in settings.items()))
        raise SpecError(span, f"invalid setting: {_first_error(exc)}") from exc


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        e = errors()[0]
        loc = ".".join(str(x) for x in e.get("loc", ()))
        return f"{loc}: {e.get('msg')}" if loc else str(e.get("msg"))
    return str(exc)


def run_experiment(spec: Path | None, out: Path | None, settings: dict[str, str], progress: bool | None = None) -> list[RunResult]:
    """Train the spec's experiment (or the built-in baseline) with command-line settings applied."""
    if spec is not None:
        raise SpecError(Span(path=str(spec)), "spec files are not supported yet", hint="run `opto run` without a spec")
    config = apply_cli_settings(BASELINE, settings)
    run_dir = out or Path("runs") / "baseline"
    return [train(config, None, run_dir, progress=progress)]
