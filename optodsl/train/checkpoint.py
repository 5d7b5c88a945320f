"""Checkpoints without pickle: the state's leaves in an `.npz`, its metadata in JSON, written atomically.

A checkpoint is `ckpt-<step>.npz` plus `checkpoint.json` naming it; the JSON is replaced last,
so a kill at any moment leaves either the old checkpoint or the new one, never half of one.
Loading needs a template state of the same structure (a fresh model and optimiser state) and
checks every leaf's shape and dtype; nothing in the file is executed.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ..errors import DataError
from ..files import atomic_write, atomic_write_text
from ..rundir import POINTER


def save(run_dir: Path, state: Any, meta: dict) -> Path:
    """Save a pytree of arrays with JSON metadata (must include an integer `step`); return the npz path."""
    run_dir = Path(run_dir)
    leaves = [np.asarray(x) for x in jax.tree.leaves(state)]
    name = f"ckpt-{int(meta['step']):09d}.npz"
    atomic_write(run_dir / name, lambda f: np.savez(f, *leaves))
    previous = read_meta(run_dir)
    # keep the previous checkpoint too: runs of a sweep resume from the step all of them reached
    kept = {"file": previous["file"], "step": previous["step"]} if previous and previous.get("file") != name else None
    atomic_write_text(run_dir / POINTER, json.dumps({**meta, "file": name, "leaves": len(leaves), "previous": kept}, indent=2))
    older = (previous or {}).get("previous") or {}
    if older.get("file") not in (None, name):
        (run_dir / older["file"]).unlink(missing_ok=True)
    return run_dir / name


def read_meta(run_dir: Path) -> dict | None:
    """The latest checkpoint's metadata, or None if the run has none."""
    pointer = Path(run_dir) / POINTER
    if not pointer.exists():
        return None
    try:
        meta = json.loads(pointer.read_text())
        int(meta["step"]), str(meta["file"])
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(pointer, "malformed checkpoint metadata", expected="JSON with 'step' and 'file'", found=str(exc)) from exc
    return meta


def load(run_dir: Path, template: Any, step: int | None = None) -> tuple[Any, dict]:
    """Load the latest checkpoint (or the kept one at `step`) into the structure of `template`."""
    meta = read_meta(run_dir)
    if meta is None:
        raise DataError(Path(run_dir) / POINTER, "no checkpoint in this run directory", expected="a run directory written by `opto run`")
    if step is not None and meta["step"] != step:
        kept = meta.get("previous") or {}
        if kept.get("step") != step:
            raise DataError(Path(run_dir) / POINTER, f"no checkpoint at step {step} to resume this sweep from",
                            found=f"steps {meta['step']} and {kept.get('step')}")
        meta = {**meta, **kept, "previous": None}
    try:
        return _load_file(Path(run_dir), meta["file"], template), meta
    except DataError as err:
        kept = meta.get("previous") or {}
        if kept.get("file") and kept.get("step") != meta["step"] and _intact(Path(run_dir), kept["file"], template):
            err.hint = (f"the previous checkpoint, {kept['file']} (step {kept['step']}), is intact: "
                        f"`opto rollback {run_dir}` makes it the latest, then rerun `opto run` to train on from it")
        raise


def _load_file(run_dir: Path, name: str, template: Any) -> Any:
    """The arrays of one checkpoint file in the structure of `template`, every leaf checked."""
    path = run_dir / name
    leaves, treedef = jax.tree.flatten(template)
    if not path.is_file():
        raise DataError(path, "checkpoint file missing", expected=f"the file {POINTER} names",
                        found="no such file (deleted or moved?)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = [z[f"arr_{i}"] for i in range(len(z.files))]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(path, "unreadable checkpoint (truncated or corrupted)", expected="an .npz of arrays written by optodsl",
                        found=str(exc) or type(exc).__name__) from exc
    if len(arrays) != len(leaves):
        raise DataError(path, "checkpoint does not match this model and optimiser",
                        expected=f"{len(leaves)} arrays", found=f"{len(arrays)} arrays")
    for i, (a, t) in enumerate(zip(arrays, leaves)):
        if a.shape != np.shape(t) or a.dtype != np.asarray(t).dtype:
            raise DataError(path, "checkpoint does not match this model and optimiser",
                            expected=f"array {i} of shape {np.shape(t)} {np.asarray(t).dtype}", found=f"shape {a.shape} {a.dtype}")
    return jax.tree.unflatten(treedef, [jax.numpy.asarray(a) for a in arrays])


def _intact(run_dir: Path, name: str, template: Any) -> bool:
    try:
        _load_file(run_dir, name, template)
    except DataError:
        return False
    return True


def rollback(run_dir: Path) -> dict:
    """Make the kept previous checkpoint the latest (atomically, by rewriting checkpoint.json), so
    that rerunning `opto run` resumes from it; the newer, damaged file is removed. Returns the new
    metadata. Raises DataError when the run has no previous checkpoint to go back to."""
    run_dir = Path(run_dir)
    meta = read_meta(run_dir)
    if meta is None:
        raise DataError(run_dir / POINTER, "no checkpoint in this run directory", expected="a run directory written by `opto run`")
    kept = meta.get("previous") or {}
    if not kept.get("file") or not (run_dir / kept["file"]).is_file():
        raise DataError(run_dir / POINTER, "no previous checkpoint to roll back to",
                        found=f"only {meta['file']}" + (f" ({kept['file']} is missing)" if kept.get("file") else ""),
                        hint=f"delete {run_dir} and rerun `opto run` to train from the start")
    step = int(kept["step"])
    back = {**meta, "file": kept["file"], "step": step, "previous": None}
    if "sequences" in meta and meta.get("step"):
        back["sequences"] = meta["sequences"] // int(meta["step"]) * step
    atomic_write_text(run_dir / POINTER, json.dumps(back, indent=2))
    if meta["file"] != kept["file"]:
        (run_dir / meta["file"]).unlink(missing_ok=True)
    return back
