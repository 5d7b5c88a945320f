"""A trained run read back from its directory: settings, model and how far it trained."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from ..config import ExperimentConfig
from ..errors import DataError
from ..model.transformer import Transformer
from ..train import checkpoint
from ..train.trainer import load_trained


@dataclass
class TrainedRun:
    """A run directory's resolved settings, its latest (or chosen) checkpointed model and spec."""

    run_dir: Path
    config: ExperimentConfig
    model: Transformer
    sequences: int
    spec: str | None


def load_run(run_dir: str | Path, step: int | None = None) -> TrainedRun:
    """Load the model a run directory checkpointed (its latest, or the one at `step`)."""
    path = Path(run_dir)
    cfg_path = path / "config.json"
    if not cfg_path.exists():
        raise DataError(path, "not a run directory", expected="a directory written by `opto run` (config.json, checkpoint.json, ckpt-*.npz)",
                        found="no config.json" if path.is_dir() else "no such directory")
    try:
        config = ExperimentConfig.model_validate(json.loads(cfg_path.read_text()))
    except (ValueError, ValidationError) as exc:
        raise DataError(cfg_path, "unreadable run settings", expected="the config.json `opto run` writes", found=str(exc).splitlines()[0]) from exc
    if checkpoint.read_meta(path) is None:
        raise DataError(path, "the run has no checkpoint yet", expected="checkpoint.json and ckpt-*.npz (train it with `opto run`)")
    model, sequences = load_trained(path, config, step)
    spec = None
    info = path / "spec.json"
    if info.exists():
        try:
            spec = json.loads(info.read_text()).get("path")
        except ValueError:
            spec = None
    return TrainedRun(path, config, model, sequences, spec)
