"""A run's checkpoint series (`train.keep`): the network's parameters alone (no optimiser state) at
each kept length, one `.npz` per point beside a manifest of (sequences, file, sha256).

The trainer writes a point when training reaches it (a chunk stops there exactly) and cuts the
manifest back to the checkpoint it resumes from, so every point is one the resumed run writes again
bit for bit (the files are deterministic: fixed zip timestamps, no pickle). Readers check each
point's sha256 and shapes; a damaged point is named with its file and skipped, with a warning.
"""

from __future__ import annotations

import hashlib
import io
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import numpy as np
from pydantic import BaseModel, ConfigDict

from .. import rundir
from ..config import ExperimentConfig, keep_points
from ..errors import DataError
from ..files import atomic_write_bytes, atomic_write_text, make_dir


class SeriesPoint(BaseModel):
    """One kept point: the training length it holds, its file (inside `series/`) and the file's sha256."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    sequences: int
    step: int
    file: str
    sha256: str


class SeriesManifest(BaseModel):
    """`series/manifest.json`: the kept points in training order."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    points: tuple[SeriesPoint, ...] = ()


class SeriesWarning(UserWarning):
    """A damaged series point, skipped by a reader (its file and what is wrong are in the message)."""


def kept_steps(config: ExperimentConfig) -> list[int]:
    """The training steps at which the run keeps a point: each `train.keep` length rounded up to a
    whole step (the point then holds step * batch sequences), up to the run's last step."""
    t = config.train
    return sorted({-(-s // t.batch) for s in keep_points(t.keep, t.steps * t.batch)})


def eval_steps(config: ExperimentConfig) -> list[int] | None:
    """The training steps after which the run evaluates when `eval.every` lists points or gives a
    rule (read as `train.keep` is, rounded up to whole steps), always with the run's last step; None
    for one interval (every `eval.every` sequences, the trainer's fixed chunks)."""
    t, every = config.train, config.eval.every
    if isinstance(every, int):
        return None
    return sorted({-(-s // t.batch) for s in keep_points(every, t.steps * t.batch) if s > 0} | {t.steps})


def series_dir(run_dir: Path) -> Path:
    return Path(run_dir) / rundir.SERIES


def _npz_bytes(leaves: list[np.ndarray]) -> bytes:
    """An `.npz` of `leaves` (arr_0, arr_1, ...) whose bytes depend on the arrays alone (fixed zip times)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for i, leaf in enumerate(leaves):
            info = zipfile.ZipInfo(f"arr_{i}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with z.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asarray(leaf), allow_pickle=False)
    return buf.getvalue()


def read_manifest(run_dir: Path) -> SeriesManifest | None:
    """The run's series manifest, or None when it keeps no series; a DataError naming it when damaged."""
    path = series_dir(run_dir) / rundir.SERIES_MANIFEST
    if not path.is_file():
        return None
    return rundir.read_json(path, "series manifest", SeriesManifest.model_validate,
                            hint="restore the file, or delete the series folder (training again rewrites it)")


def _write_manifest(run_dir: Path, manifest: SeriesManifest) -> None:
    atomic_write_text(series_dir(run_dir) / rundir.SERIES_MANIFEST, manifest.model_dump_json(indent=2))


def write_point(run_dir: Path, manifest: SeriesManifest, step: int, sequences: int, model: Any) -> SeriesManifest:
    """Keep `model`'s parameters as the point at `sequences` (file first, then the manifest, each
    atomically; a point already there is replaced); returns the new manifest."""
    folder = make_dir(series_dir(run_dir))
    data = _npz_bytes([np.asarray(x) for x in jax.tree.leaves(eqx.filter(model, eqx.is_array))])
    name = rundir.series_point_file(sequences)
    atomic_write_bytes(folder / name, data)
    point = SeriesPoint(sequences=sequences, step=step, file=name, sha256=hashlib.sha256(data).hexdigest())
    points = sorted([p for p in manifest.points if p.step != step] + [point], key=lambda p: p.step)
    manifest = SeriesManifest(points=tuple(points))
    _write_manifest(run_dir, manifest)
    return manifest


def resume(run_dir: Path, step: int) -> SeriesManifest:
    """The series of a run that trains on from `step`: points past it (written before an interruption)
    are dropped from the manifest and their files removed, to be written again as training passes them."""
    manifest = read_manifest(run_dir) or SeriesManifest()
    later = [p for p in manifest.points if p.step > step]
    if later:
        manifest = SeriesManifest(points=tuple(p for p in manifest.points if p.step <= step))
        _write_manifest(run_dir, manifest)
        for p in later:
            (series_dir(run_dir) / p.file).unlink(missing_ok=True)
    return manifest


def count(run_dir: Path) -> int:
    """How many points the run's manifest lists (0 without a series)."""
    manifest = read_manifest(run_dir)
    return len(manifest.points) if manifest else 0


def _load_point(path: Path, point: SeriesPoint, template: Any) -> Any:
    """One point's parameters in the structure of `template` (a model); a ValueError says what is wrong."""
    if not path.is_file():
        raise ValueError("file missing")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != point.sha256:
        raise ValueError("sha256 differs from the manifest's (truncated or changed)")
    params, static = eqx.partition(template, eqx.is_array)
    leaves, treedef = jax.tree.flatten(params)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = [z[f"arr_{i}"] for i in range(len(z.files))]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise ValueError(f"unreadable ({exc or type(exc).__name__})") from exc
    if len(arrays) != len(leaves) or any(a.shape != np.shape(t) or a.dtype != np.asarray(t).dtype
                                         for a, t in zip(arrays, leaves)):
        raise ValueError("its arrays do not match this run's network")
    return eqx.combine(jax.tree.unflatten(treedef, [jax.numpy.asarray(a) for a in arrays]), static)


def load_series(run_dir: Path, template: Any) -> tuple[list[tuple[SeriesPoint, Any]], list[str]]:
    """Every intact point of the run's series as (point, model built on `template`), and one problem
    line per damaged point (its file and what is wrong), each also issued as a SeriesWarning."""
    manifest = read_manifest(run_dir)
    loaded, problems = [], []
    for point in manifest.points if manifest else ():
        path = series_dir(run_dir) / point.file
        try:
            loaded.append((point, _load_point(path, point, template)))
        except ValueError as exc:
            problems.append(f"{path}: {exc}; point at {point.sequences:,} sequences skipped")
            warnings.warn(problems[-1], SeriesWarning, stacklevel=2)
    return loaded, problems

