"""Feature tables (classes x exemplars x dim): built-in synthetic ones, HDF5 and NumPy files.

The synthetic default is designed so that all four evaluations mean something:
- classes live in a shared low-dimensional subspace (prototype = A z, z in R^latent), so the
  match learned on 50 training classes transfers to unseen classes, as with real ResNet features;
- exemplar = prototype + `proto_noise` x within-subspace noise, so held-out exemplars resemble
  their class;
- every exemplar carries `shared` x one direction common to all classes. This is what makes the
  plateau: it dominates each feature, so exemplars of different classes look alike at first
  and the class-specific part the match needs is a small signal that takes long to pick up.
The two mixtures are divided by sqrt(1 + proto_noise^2) and sqrt(1 + shared^2), which gives the
table as a whole about unit variance (std 0.99 at the defaults); single coordinates are not rescaled
(across exemplars they vary with std 0.3-0.6 around the shared offset). Defaults are the
configured ones (`DataConfig`). Loading a file never runs code from it
(`allow_pickle=False`, plain HDF5 datasets).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config import DataConfig
from ..errors import DataError

HDF5_KEY = "resnet18/224/feat"
_DEFAULTS = DataConfig.model_fields
LAYOUT = "an array of shape (classes, exemplars, feature_dim) of floats"


def synthetic_features(
    total_classes: int = _DEFAULTS["total_classes"].default,
    exemplars: int = _DEFAULTS["exemplars"].default,
    dim: int = _DEFAULTS["feature_dim"].default,
    proto_noise: float = _DEFAULTS["proto_noise"].default,
    shared: float = _DEFAULTS["shared"].default,
    latent: int = 32,
    seed: int = _DEFAULTS["seed"].default,
) -> np.ndarray:
    """Seeded synthetic features (see the module docstring for what each term is for)."""
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((latent, dim)) / np.sqrt(latent)
    protos = rng.standard_normal((total_classes, 1, latent))
    noise = rng.standard_normal((total_classes, exemplars, latent))
    within = (protos + proto_noise * noise) @ mix / np.sqrt(1.0 + proto_noise**2)
    common = rng.standard_normal(dim)
    feats = (within + shared * common) / np.sqrt(1.0 + shared**2)
    return feats.astype(np.float32)


def load_features(path: str | Path) -> np.ndarray:
    """Read a feature table from `.h5`/`.hdf5` (key `resnet18/224/feat`), `.npy` or `.npz`."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "feature file not found", expected=f"{LAYOUT} in .h5 (key '{HDF5_KEY}'), .npy or .npz")
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5"):
        arr = _read_hdf5(path)
    elif suffix == ".npy":
        arr = _read_numpy(path, lambda f: np.load(f, allow_pickle=False))
    elif suffix == ".npz":
        arr = _read_npz(path)
    else:
        raise DataError(path, f"unknown feature file type '{suffix}'", expected=".h5, .hdf5, .npy or .npz")
    return _check_table(path, arr)


def _read_hdf5(path: Path) -> np.ndarray:
    try:
        import h5py
    except ImportError as exc:  # pragma: no cover - h5py is a core dependency
        raise DataError(path, "reading HDF5 needs h5py (pip install h5py)") from exc
    try:
        with h5py.File(path, "r") as f:
            if HDF5_KEY not in f:
                found = []
                f.visit(lambda name: found.append(name) if isinstance(f[name], h5py.Dataset) else None)
                raise DataError(path, f"no dataset '{HDF5_KEY}'", expected=f"{LAYOUT} at key '{HDF5_KEY}' (the paper's layout)",
                                found="datasets " + (", ".join(f"'{n}' {f[n].shape}" for n in found[:8]) or "none"))
            return np.asarray(f[HDF5_KEY][()])
    except OSError as exc:
        raise DataError(path, "not a readable HDF5 file", expected=f"HDF5 with {LAYOUT} at '{HDF5_KEY}'", found=str(exc)) from exc


def _read_numpy(path: Path, reader) -> np.ndarray:
    try:
        return reader(path)
    except ValueError as exc:
        raise DataError(path, "not a plain NumPy array file (object arrays are refused: they would run code)",
                        expected=LAYOUT, found=str(exc)) from exc
    except OSError as exc:
        raise DataError(path, "not a readable NumPy file", expected=LAYOUT, found=str(exc)) from exc


def _read_npz(path: Path) -> np.ndarray:
    def reader(p):
        with np.load(p, allow_pickle=False) as z:
            names = list(z.files)
            key = "features" if "features" in names else (names[0] if len(names) == 1 else None)
            if key is None:
                raise DataError(p, "cannot tell which array holds the features", expected="one array, or one named 'features'",
                                found="arrays " + ", ".join(names) if names else "no arrays")
            return z[key]
    return _read_numpy(path, reader)


def _check_table(path: Path, arr: np.ndarray) -> np.ndarray:
    if arr.ndim != 3:
        raise DataError(path, "feature array has the wrong number of axes", expected=LAYOUT, found=f"shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating) and not np.issubdtype(arr.dtype, np.integer):
        raise DataError(path, "feature array is not numeric", expected=LAYOUT, found=f"dtype {arr.dtype}")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise DataError(path, "feature array holds NaN or inf", expected="finite floats", found=f"{int((~np.isfinite(arr)).sum())} non-finite entries")
    return arr
