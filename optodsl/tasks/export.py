"""The built-in synthetic features written as a file in the paper's layout, so other programs can train on them.

The paper's code (aadityasingh/icl-dynamics, `main_utils.get_data_from_opts`) reads one float32
HDF5 dataset of shape (classes, exemplars, 512) at the key `resnet18/224/feat`; the table written
here is the one `make_task` builds from the same data settings, so `data.source = FILE` trains on
exactly the features the synthetic default does. The file replaces `out` atomically.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from ..config import DataConfig
from ..errors import DataError
from ..data.features import HDF5_KEY
from .fewshot import make_task

SUFFIXES = (".h5", ".hdf5")


def export_synthetic(cfg: DataConfig, out: str | Path) -> np.ndarray:
    """Write the synthetic table that `cfg` makes to `out` (HDF5, key `resnet18/224/feat`, float32); return it."""
    out = Path(out)
    if cfg.source != "synthetic":
        raise DataError(cfg.source, "only the built-in synthetic features are exported",
                        expected="data.source = synthetic (a file source is already a file: copy it)")
    if out.suffix.lower() not in SUFFIXES:
        raise DataError(out, "the output must be an HDF5 file", expected="a path ending in .h5 or .hdf5 (what data.source reads)",
                        found=f"suffix '{out.suffix}'")
    if out.is_dir():
        raise DataError(out, "the output is a folder", expected="a file path ending in .h5 or .hdf5")
    if not out.parent.is_dir():
        raise DataError(out, "cannot write here: the folder does not exist", expected="an existing folder",
                        found=f"no folder {out.parent}")
    table = np.asarray(make_task(cfg).features, np.float32)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with h5py.File(tmp, "w") as f:
            f.create_dataset(HDF5_KEY, data=table)
            f.attrs.update({"source": "optodsl synthetic features", "proto_noise": cfg.proto_noise,
                            "shared": cfg.shared, "seed": cfg.seed})
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DataError(out, "cannot write the feature file", expected="a writable path", found=str(exc)) from exc
    return table
