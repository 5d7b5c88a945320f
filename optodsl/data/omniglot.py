"""The paper's real features: Omniglot drawings through a frozen ImageNet ResNet18, into HDF5.

Every Omniglot character is a class (1623 over `images_background` and `images_evaluation`); its
first `per_class` drawings go through torchvision's ResNet18 at 224x224 and the 512-d penultimate
layer is kept, classes in a seeded random order, at the key `resnet18/224/feat` that
`load_features` reads. Nothing is downloaded: images and weights are local files. torch and
torchvision are the optional extra `optodsl[omniglot]`, imported only when features are made.

Work goes into `<out stem>.partial<suffix>` beside `out`, with a `done` flag per class flushed
after every batch, so an interrupted run resumes where it stopped; the finished table replaces
`out` atomically and the partial file is removed. Rerunning on a finished `out` made from the
same classes, weights (by sha256), seed and `per_class` returns its table without recomputing.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import sys
from collections.abc import Mapping
from pathlib import Path

import h5py
import numpy as np

from ..errors import DataError
from .features import HDF5_KEY

HALVES = ("images_background", "images_evaluation")
FEATURE_DIM = 512
IMAGE_SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INSTALL = 'pip install "optodsl[omniglot]"'
PAIR = "torch==2.14.1 with torchvision==0.29.1"
IMAGES_LAYOUT = "ROOT/omniglot-py/images_background/<alphabet>/<character>/*.png (and/or images_evaluation/...)"
WEIGHTS_LAYOUT = "a ResNet18 state dict: torch.save(torchvision.models.resnet18(...).state_dict(), PATH)"


def make_omniglot_features(root: str | Path, weights: str | Path, out: str | Path, *, per_class: int = 5,
                           seed: int = 0, batch_size: int = 64, progress: bool | None = None) -> np.ndarray:
    """Write the (classes, per_class, 512) float32 table of ResNet18 features of Omniglot to `out`; return it.

    `root` holds `omniglot-py/images_background` and/or `images_evaluation`; `weights` is a
    ResNet18 state dict saved with `torch.save`. Classes are the sorted character folders put in
    the order `numpy.random.default_rng(seed).permutation`; each keeps its first `per_class`
    drawings by file name. `progress` shows a bar (default: only when stdout is a terminal).
    """
    root, weights, out = Path(root), Path(weights), Path(out)
    torch, torchvision = _import_torch()

    _check_arguments(out, per_class, batch_size, seed)
    halves = _find_halves(root)
    if not weights.is_file():
        raise DataError(weights, "weights file not found (nothing is downloaded; see docs/features.md)",
                        expected=WEIGHTS_LAYOUT)
    transform = _transform(torchvision)
    datasets = [_local_omniglot(torchvision.datasets.Omniglot)(root, half == HALVES[0], transform) for half in halves]
    classes = sorted(((f"{half}/{ds.characters[i]}", ds, i) for half, ds in zip(halves, datasets)
                      for i in range(len(ds.characters))), key=lambda c: c[0])
    if not classes:
        raise DataError(root / "omniglot-py", "no character folders", expected=IMAGES_LAYOUT, found="empty images folders")
    _check_drawings(classes, per_class)
    rows = [classes[i] for i in np.random.default_rng(seed).permutation(len(classes))]
    names = [name for name, _, _ in rows]
    shape = (len(rows), per_class, FEATURE_DIM)
    meta = {"seed": seed, "per_class": per_class, "weights_sha256": _sha256(weights)}

    finished = _read_finished(out, meta, names, shape)
    if finished is not None:
        return finished
    model = _load_resnet18(torch, torchvision, weights)
    partial = partial_path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with _open_partial(partial, meta, names, shape, weights.name) as f:
        table, done = f[HDF5_KEY], f["done"]
        pending = [r for r, flag in enumerate(done[()]) if not flag]
        group = max(1, batch_size // per_class)
        bar = _Progress(len(rows) * per_class, progress, (len(rows) - len(pending)) * per_class,
                        "omniglot features" if len(pending) == len(rows) else "omniglot features (resumed)")
        try:
            for start in range(0, len(pending), group):
                chunk = pending[start:start + group]
                images = [rows[r][1].drawing(rows[r][2], j) for r in chunk for j in range(per_class)]
                feats = _embed(torch, model, images, batch_size).reshape(len(chunk), per_class, FEATURE_DIM)
                for r, feat in zip(chunk, feats):
                    table[r] = feat
                done[chunk] = np.ones(len(chunk), bool)
                f.flush()
                bar.advance(len(chunk) * per_class)
        finally:
            bar.close()
        result = np.asarray(table[()], np.float32)
    _write_final(out, result, names, {**meta, "weights": weights.name, **_provenance(torch, torchvision)})
    partial.unlink(missing_ok=True)
    return result


def partial_path(out: Path) -> Path:
    """The work file beside `out` (`feats.h5` -> `feats.partial.h5`) that makes a run resumable."""
    return out.with_name(f"{out.stem}.partial{out.suffix}")


def _import_torch():
    """torch and torchvision, or a DataError saying how to install the pair that imports together."""
    try:
        import torch
    except ImportError as exc:
        raise DataError("torch", f"making Omniglot features needs torch and torchvision, not installed here: {INSTALL}",
                        expected=PAIR, found=str(exc)) from exc
    try:
        import torchvision
        import torchvision.datasets  # noqa: F401
        import torchvision.models  # noqa: F401
        import torchvision.transforms  # noqa: F401
    except ImportError as exc:
        raise DataError("torchvision", f"making Omniglot features needs torchvision, not installed here: {INSTALL}",
                        expected=PAIR, found=str(exc)) from exc
    except (RuntimeError, OSError) as exc:  # e.g. 'operator torchvision::nms does not exist'
        raise DataError("torchvision", f"torchvision does not import beside this torch (a mismatched pair): {INSTALL}",
                        expected=PAIR, found=f"torch {torch.__version__}: {exc}") from exc
    return torch, torchvision


def _check_arguments(out: Path, per_class: int, batch_size: int, seed: int) -> None:
    if out.suffix.lower() not in (".h5", ".hdf5"):
        raise DataError(out, "the output must be an HDF5 file", expected="a path ending in .h5 or .hdf5 (what data.source reads)",
                        found=f"suffix '{out.suffix}'")
    if per_class < 1:
        raise DataError("--per-class", "must be at least 1", found=str(per_class))
    if batch_size < 1:
        raise DataError("--batch-size", "must be at least 1", found=str(batch_size))
    if seed < 0:
        raise DataError("--seed", "must be 0 or more (a numpy default_rng seed)", found=str(seed))


def _find_halves(root: Path) -> list[str]:
    """The images folders present under `root/omniglot-py`, or a DataError saying what is there instead."""
    base = root / "omniglot-py"
    halves = [half for half in HALVES if (base / half).is_dir()]
    if halves:
        return halves
    if not root.is_dir():
        found = "no such folder"
    elif (root / HALVES[0]).is_dir() or (root / HALVES[1]).is_dir():
        found = "the images folders directly under ROOT: pass the folder that holds omniglot-py/ (move them into ROOT/omniglot-py/)"
    elif not base.is_dir():
        found = "no omniglot-py folder; entries: " + (", ".join(sorted(os.listdir(root))[:8]) or "none")
    else:
        entries = sorted(os.listdir(base))
        zips = [e for e in entries if e in (f"{h}.zip" for h in HALVES)]
        found = (f"{', '.join(zips)} not unzipped (unzip into omniglot-py/)" if zips
                 else "omniglot-py/ holds " + (", ".join(entries[:8]) or "nothing"))
    raise DataError(root, "no Omniglot images folder under this root", expected=IMAGES_LAYOUT, found=found)


def _transform(torchvision):
    """Grayscale drawing -> 224x224, 3 equal channels, ImageNet normalisation (what ResNet18 was trained on)."""
    t = torchvision.transforms
    return t.Compose([t.Resize((IMAGE_SIZE, IMAGE_SIZE)), t.Grayscale(num_output_channels=3), t.ToTensor(),
                      t.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


@functools.cache
def _local_omniglot(omniglot: type) -> type:
    """Subclass torchvision's `Omniglot` (passed in, since torchvision is imported lazily)."""

    class LocalOmniglot(omniglot):
        """torchvision's Omniglot read from an extracted folder, never downloaded, in sorted order.

        torchvision's integrity check looks for the original zip files and their md5, which a
        folder of extracted images lacks (the zips are often deleted or never copied), so this
        checks the images folder instead. torchvision lists folders in `os.listdir` order, which
        differs between file systems; characters and drawings are sorted so that "the first
        drawings" and the class order are the same on every machine.
        """

        def __init__(self, root: Path, background: bool, transform) -> None:
            super().__init__(str(root), background=background, transform=transform, download=False)
            drawings = {c: sorted(name for name, _ in images) for c, images in zip(self._characters, self._character_images)}
            self._characters = sorted(drawings)
            self._character_images = [[(name, i) for name in drawings[c]] for i, c in enumerate(self._characters)]
            self._flat_character_images = [item for images in self._character_images for item in images]
            self._offsets = np.cumsum([0] + [len(images) for images in self._character_images]).tolist()

        def _check_integrity(self) -> bool:
            return os.path.isdir(os.path.join(self.root, self._get_target_folder()))

        @property
        def characters(self) -> list[str]:
            """`alphabet/character` names, sorted."""
            return self._characters

        def character_folder(self, character: int) -> Path:
            return Path(self.target_folder) / self._characters[character]

        def count(self, character: int) -> int:
            return len(self._character_images[character])

        def drawing(self, character: int, j: int):
            """The transformed j-th drawing (by file name) of a character, or a DataError naming the file."""
            try:
                image, _ = self[self._offsets[character] + j]
            except (OSError, SyntaxError, ValueError) as exc:
                path = self.character_folder(character) / self._character_images[character][j][0]
                raise DataError(path, "cannot read this drawing", expected="a PNG image", found=str(exc)) from exc
            return image

    return LocalOmniglot


def _check_drawings(classes: list, per_class: int) -> None:
    short = [(name, ds, i) for name, ds, i in classes if ds.count(i) < per_class]
    if short:
        _, ds, i = short[0]
        more = f"; {len(short)} of {len(classes)} characters have too few" if len(short) > 1 else ""
        raise DataError(ds.character_folder(i), f"character has fewer than --per-class={per_class} drawings",
                        expected=f"at least {per_class} .png drawings per character (or a smaller --per-class)",
                        found=f"{ds.count(i)} drawings{more}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _load_resnet18(torch, torchvision, weights: Path):
    """torchvision's ResNet18 with `fc` replaced by identity, weights loaded, eval mode; DataError if they do not fit.

    The `fc.*` entries of the file are ignored (the head is dropped, so any class count is fine)
    and `num_batches_tracked` may be absent (old ImageNet files lack it; eval mode never reads it).
    """
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise DataError(weights, "torch.load(weights_only=True) refuses this file: it holds objects other than tensors",
                        expected=WEIGHTS_LAYOUT, found="a pickled model, checkpoint object or non-torch file; "
                        "on the machine that made it, save model.state_dict() instead") from exc
    except Exception as exc:  # torch.load raises many exception types on a file it cannot read
        text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else "no message"
        raise DataError(weights, "cannot load with torch.load(weights_only=True)", expected=WEIGHTS_LAYOUT,
                        found=f"{type(exc).__name__}: {text}") from exc
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        keys = f" with keys {', '.join(map(str, list(state)[:5]))}" if isinstance(state, Mapping) else ""
        raise DataError(weights, "not a state dict of tensors", expected=WEIGHTS_LAYOUT,
                        found=f"a {type(state).__name__}{keys}")
    model = torchvision.models.resnet18(weights=None)
    model.fc = torch.nn.Identity()
    wanted = model.state_dict()
    missing = [k for k in wanted if k not in state and not k.endswith("num_batches_tracked")]
    extra = [k for k in state if k not in wanted and not k.startswith("fc.")]
    if missing or extra:
        parts = [f"{len(missing)} missing (e.g. {', '.join(missing[:3])})" if missing else "",
                 f"{len(extra)} unexpected (e.g. {', '.join(extra[:3])})" if extra else ""]
        raise DataError(weights, "not a ResNet18 state dict: its keys differ from torchvision.models.resnet18()'s",
                        expected="keys conv1.weight, bn1.*, layer1.0.* ... layer4.1.*, fc.* (fc is ignored)",
                        found="; ".join(p for p in parts if p))
    wrong = [f"{k} {tuple(state[k].shape)} (want {tuple(v.shape)})" for k, v in wanted.items()
             if k in state and state[k].shape != v.shape]
    if wrong:
        raise DataError(weights, "not a ResNet18 state dict: tensor shapes differ from torchvision.models.resnet18()'s",
                        expected="ResNet18 shapes, e.g. conv1.weight (64, 3, 7, 7)", found="; ".join(wrong[:3]))
    model.load_state_dict({k: v for k, v in state.items() if k in wanted}, strict=False)
    return model.eval()


def _embed(torch, model, images: list, batch_size: int) -> np.ndarray:
    """Penultimate-layer features of transformed images, `batch_size` at a time, without gradients."""
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            out.append(model(torch.stack(images[start:start + batch_size])).numpy())
    return np.concatenate(out).astype(np.float32)


def _same_work(f, meta: dict, names: list[str], shape: tuple) -> bool:
    """Whether an HDF5 file holds (part of) the table these classes, weights, seed and per_class make."""
    return (HDF5_KEY in f and f[HDF5_KEY].shape == shape and "classes" in f
            and all(f.attrs.get(k) == v for k, v in meta.items())
            and list(f["classes"].asstr()[()]) == names)


def _read_finished(out: Path, meta: dict, names: list[str], shape: tuple) -> np.ndarray | None:
    if not out.is_file():
        return None
    try:
        with h5py.File(out, "r") as f:
            if _same_work(f, meta, names, shape):
                return np.asarray(f[HDF5_KEY][()], np.float32)
    except (OSError, KeyError, ValueError):  # not a readable table: make it again
        pass
    return None


def _open_partial(partial: Path, meta: dict, names: list[str], shape: tuple, weights_name: str):
    """The partial file to continue, or a fresh one if it is missing, unreadable or from other arguments."""
    if partial.exists():
        f = None
        try:
            f = h5py.File(partial, "a")
            if _same_work(f, meta, names, shape) and "done" in f and f["done"].shape == shape[:1]:
                return f
        except (OSError, KeyError, ValueError):  # torn by a kill mid-write: start over
            pass
        if f is not None:
            f.close()
        partial.unlink()
    f = h5py.File(partial, "w")
    f.create_dataset(HDF5_KEY, shape=shape, dtype="float32")
    f.create_dataset("classes", data=names, dtype=h5py.string_dtype())
    f.create_dataset("done", shape=(shape[0],), dtype=bool)
    f.attrs.update({**meta, "weights": weights_name})
    f.flush()
    return f


def _write_final(out: Path, table: np.ndarray, names: list[str], attrs: dict) -> None:
    """The paper's layout plus class names and provenance, written beside `out` then renamed onto it."""
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with h5py.File(tmp, "w") as f:
            f.create_dataset(HDF5_KEY, data=table)
            f.create_dataset("classes", data=names, dtype=h5py.string_dtype())
            f.attrs.update(attrs)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _provenance(torch, torchvision) -> dict:
    return {"model": "torchvision resnet18, fc replaced by identity (512-d penultimate layer), eval mode",
            "preprocessing": f"grayscale to 3 channels, resize {IMAGE_SIZE}x{IMAGE_SIZE}, ImageNet mean/std",
            "drawings": "the first per_class by file name; classes: sorted half/alphabet/character, seeded permutation",
            "torch": str(torch.__version__), "torchvision": str(torchvision.__version__)}


class _Progress:
    """A rich progress bar over images on a terminal; silent otherwise."""

    def __init__(self, total: int, enabled: bool | None, completed: int, label: str):
        enabled = sys.stdout.isatty() if enabled is None else enabled
        self.bar = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("images"),
                                TimeRemainingColumn())
            self.task = self.bar.add_task("features", total=total, completed=completed)
            self.bar.start()

    def advance(self, n: int) -> None:
        if self.bar is not None:
            self.bar.advance(self.task, n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
