"""`opto features omniglot`: torchvision's Omniglot and ResNet18 for real, on a small generated folder.

The folder has Omniglot's layout (2 alphabets x 3 characters in images_background, 1 x 3 in
images_evaluation, 4 drawings each, 105x105 1-bit PNGs) and the weights are a seeded random
ResNet18, so nothing is downloaded. Every table keeps 2 drawings of 9 classes (18 images) in
batches of 8 images (4 classes), so the whole file runs about 75 images through ResNet18.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

import h5py
import numpy as np
import pytest
import torch
import torchvision
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from optodsl.cli import app
from optodsl.data.features import HDF5_KEY, load_features
from optodsl.data.omniglot import make_omniglot_features, partial_path
from optodsl.errors import DataError
from optodsl.experiment import run_experiment

ALPHABETS = {"images_background": {"Alpha": 3, "Beta": 3}, "images_evaluation": {"Gamma": 3}}
DRAWINGS = 4
PER_CLASS = 2
BATCH = 8  # 4 classes per batch: the 9 classes go in batches of 4, 4 and 1
N_CLASSES = 9


def _drawing(rng: np.random.Generator) -> Image.Image:
    image = Image.new("L", (105, 105), 255)
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        draw.line([tuple(p) for p in rng.integers(5, 100, size=(4, 2)).tolist()], fill=0, width=3)
    return image.convert("1")  # Omniglot's drawings are 1-bit PNGs


@pytest.fixture(scope="module")
def omniglot(tmp_path_factory):
    """An Omniglot-shaped root and its class names, sorted; drawings are written out of name order."""
    root = tmp_path_factory.mktemp("omniglot")
    rng = np.random.default_rng(0)
    names = []
    for half, alphabets in ALPHABETS.items():
        for alphabet, count in alphabets.items():
            for c in range(1, count + 1):
                folder = root / "omniglot-py" / half / alphabet / f"character{c:02d}"
                folder.mkdir(parents=True)
                names.append(f"{half}/{alphabet}/character{c:02d}")
                for d in rng.permutation(DRAWINGS):
                    _drawing(rng).save(folder / f"{c:04d}_{d + 1:02d}.png")
    assert len(names) == N_CLASSES
    return root, sorted(names)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return path


@pytest.fixture(scope="module")
def made(omniglot, weights, tmp_path_factory):
    """The seed-0 table, uninterrupted: (path, returned array)."""
    out = tmp_path_factory.mktemp("features") / "feats.h5"
    return out, make_omniglot_features(omniglot[0], weights, out, per_class=PER_CLASS, seed=0, batch_size=BATCH, progress=False)


@pytest.fixture(scope="module")
def made_by_cli(omniglot, weights, tmp_path_factory):
    """The seed-1 table written by `opto features omniglot`: (path, CLI result)."""
    out = tmp_path_factory.mktemp("cli") / "seed1.h5"
    result = CliRunner().invoke(app, ["features", "omniglot", "--root", str(omniglot[0]), "--weights", str(weights),
                                      "--out", str(out), "--per-class", str(PER_CLASS), "--seed", "1",
                                      "--batch-size", str(BATCH), "--no-progress"])
    return out, result


def _classes(path) -> list[str]:
    with h5py.File(path, "r") as f:
        return list(f["classes"].asstr()[()])


def test_the_table_has_the_paper_layout_and_the_seeded_class_order(omniglot, made):
    out, table = made
    assert table.shape == (N_CLASSES, PER_CLASS, 512) and table.dtype == np.float32
    assert np.isfinite(table).all() and table.std() > 0
    assert np.array_equal(load_features(out), table)
    names = omniglot[1]
    assert _classes(out) == [names[i] for i in np.random.default_rng(0).permutation(N_CLASSES)]
    with h5py.File(out, "r") as f:
        assert f[HDF5_KEY].dtype == np.float32
        assert (f.attrs["seed"], f.attrs["per_class"], f.attrs["weights"]) == (0, PER_CLASS, "resnet18.pth")
    assert not partial_path(out).exists() and sorted(p.name for p in out.parent.iterdir()) == ["feats.h5"]


def test_a_class_equals_resnet18_features_of_its_first_drawings_computed_by_hand(omniglot, weights, made):
    """Preprocessing written out with PIL and NumPy; equal to float rounding (3.8e-6 measured; features are ~2)."""
    out, table = made
    row = 5
    folder = omniglot[0] / "omniglot-py" / _classes(out)[row]
    first = sorted(folder.glob("*.png"))[:PER_CLASS]
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    pixels = [np.asarray(Image.open(p).convert("L").resize((224, 224), Image.BILINEAR), np.float32) / 255 for p in first]
    batch = np.stack([(np.stack([x] * 3) - mean[:, None, None]) / std[:, None, None] for x in pixels]).astype(np.float32)
    model = torchvision.models.resnet18()
    model.load_state_dict(torch.load(weights, weights_only=True))
    model.fc = torch.nn.Identity()
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(table[row], expected, rtol=1e-5, atol=1e-5)
    assert not np.allclose(table[row + 1], expected, atol=1e-2)


def test_a_second_run_is_bitwise_identical_and_a_finished_file_is_not_recomputed(omniglot, weights, made, tmp_path):
    out, table = made
    again = make_omniglot_features(omniglot[0], weights, tmp_path / "again.h5", per_class=PER_CLASS, seed=0,
                                   batch_size=BATCH, progress=False)
    assert np.array_equal(again, table)  # bitwise: same batches on the same machine
    stamp = os.stat(out).st_mtime_ns
    same = make_omniglot_features(omniglot[0], weights, out, per_class=PER_CLASS, seed=0, batch_size=BATCH, progress=False)
    assert np.array_equal(same, table) and os.stat(out).st_mtime_ns == stamp


def test_an_interrupted_run_resumes_to_the_uninterrupted_table(omniglot, weights, made, tmp_path):
    """A real partial run: a broken drawing in the last batch stops it after two batches of classes."""
    root = tmp_path / "root"
    shutil.copytree(omniglot[0], root)
    out, table = made
    order = _classes(out)
    broken = sorted((root / "omniglot-py" / order[-1]).glob("*.png"))[0]
    good = broken.read_bytes()
    broken.write_bytes(b"not a png")
    resumed_out = tmp_path / "resumed.h5"
    with pytest.raises(DataError, match="cannot read this drawing") as err:
        make_omniglot_features(root, weights, resumed_out, per_class=PER_CLASS, seed=0, batch_size=BATCH, progress=False)
    assert err.value.path == str(broken)
    partial = partial_path(resumed_out)
    assert not resumed_out.exists() and partial.exists()
    with h5py.File(partial, "r") as f:
        done = f["done"][()]
        assert done.tolist() == [True] * 8 + [False]
        assert np.array_equal(f[HDF5_KEY][:8], table[:8])
    broken.write_bytes(good)
    # a drawing of a class already done is broken now: only a run that skips done classes succeeds
    sorted((root / "omniglot-py" / order[0]).glob("*.png"))[0].write_bytes(b"not a png")
    resumed = make_omniglot_features(root, weights, resumed_out, per_class=PER_CLASS, seed=0, batch_size=BATCH, progress=False)
    assert np.array_equal(resumed, table) and np.array_equal(load_features(resumed_out), table)
    assert not partial.exists()


def test_a_root_with_one_half_is_read(omniglot, weights, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(omniglot[0] / "omniglot-py" / "images_evaluation", root / "omniglot-py" / "images_evaluation")
    with pytest.raises(DataError) as err:  # the drawing count is checked before any image is embedded
        make_omniglot_features(root, weights, tmp_path / "f.h5", per_class=DRAWINGS + 1)
    assert err.value.path == str(root / "omniglot-py" / "images_evaluation" / "Gamma" / "character01")


def test_missing_images_folder_is_a_data_error_naming_the_root(weights, tmp_path):
    with pytest.raises(DataError, match="no Omniglot images folder") as err:
        make_omniglot_features(tmp_path, weights, tmp_path / "f.h5")
    assert err.value.path == str(tmp_path) and "omniglot-py" in str(err.value)
    (tmp_path / "omniglot-py").mkdir()
    (tmp_path / "omniglot-py" / "images_background.zip").write_bytes(b"")
    with pytest.raises(DataError, match="not unzipped"):
        make_omniglot_features(tmp_path, weights, tmp_path / "f.h5")


def test_a_character_with_too_few_drawings_is_named(omniglot, weights, tmp_path):
    with pytest.raises(DataError, match=f"fewer than --per-class={DRAWINGS + 1} drawings") as err:
        make_omniglot_features(omniglot[0], weights, tmp_path / "f.h5", per_class=DRAWINGS + 1)
    assert err.value.path == str(omniglot[0] / "omniglot-py" / "images_background" / "Alpha" / "character01")
    assert f"found: {DRAWINGS} drawings; {N_CLASSES} of {N_CLASSES} characters have too few" in str(err.value)


def test_weights_that_are_missing_or_not_a_resnet18_state_dict_are_named(omniglot, weights, tmp_path):
    def fails(path, match):
        with pytest.raises(DataError, match=match) as err:
            make_omniglot_features(omniglot[0], path, tmp_path / "f.h5", per_class=PER_CLASS)
        assert err.value.path == str(path)
        return str(err.value)

    fails(tmp_path / "absent.pth", "weights file not found")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    fails(tmp_path / "junk.pth", r"cannot load with torch.load\(weights_only=True\)")
    torch.save(torchvision.models.resnet18(), tmp_path / "model.pth")
    fails(tmp_path / "model.pth", r"torch.load\(weights_only=True\) refuses this file")
    state = torch.load(weights, weights_only=True)
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "checkpoint.pth")
    assert "a dict with keys state_dict, epoch" in fails(tmp_path / "checkpoint.pth", "not a state dict of tensors")
    renamed = {("layer4.2" + k[len("layer4.1"):] if k.startswith("layer4.1") else k): v for k, v in state.items()}
    torch.save(renamed, tmp_path / "renamed.pth")
    text = fails(tmp_path / "renamed.pth", "not a ResNet18 state dict: its keys differ")
    assert "missing (e.g. layer4.1.conv1.weight" in text and "unexpected (e.g. layer4.2.conv1.weight" in text
    torch.save({**state, "conv1.weight": torch.zeros(64, 1, 7, 7)}, tmp_path / "gray.pth")
    assert "conv1.weight (64, 1, 7, 7) (want (64, 3, 7, 7))" in fails(tmp_path / "gray.pth", "tensor shapes differ")


def test_without_torch_the_error_says_how_to_install_it(omniglot, weights, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail as if it were not installed
    with pytest.raises(DataError, match='pip install "optodsl\\[omniglot\\]"'):
        make_omniglot_features(omniglot[0], weights, tmp_path / "f.h5")


def test_an_output_that_is_not_hdf5_and_bad_numbers_are_refused(omniglot, weights, tmp_path):
    with pytest.raises(DataError, match="must be an HDF5 file") as err:
        make_omniglot_features(omniglot[0], weights, tmp_path / "f.npy")
    assert err.value.path == str(tmp_path / "f.npy")
    for option, kwargs in [("--per-class", {"per_class": 0}), ("--batch-size", {"batch_size": 0}), ("--seed", {"seed": -1})]:
        with pytest.raises(DataError) as err:
            make_omniglot_features(omniglot[0], weights, tmp_path / "f.h5", **kwargs)
        assert err.value.path == option


def test_the_cli_writes_features_and_another_seed_permutes_the_classes(omniglot, made, made_by_cli):
    out, result = made_by_cli
    assert result.exit_code == 0, result.output
    assert f"features: {out} ({N_CLASSES}, {PER_CLASS}, 512)" in result.output
    names, seed0 = omniglot[1], _classes(made[0])
    seed1 = _classes(out)
    assert seed1 == [names[i] for i in np.random.default_rng(1).permutation(N_CLASSES)] and seed1 != seed0
    table1 = load_features(out)
    for row, name in enumerate(seed1):  # the same class has the same features, batched with other classes
        np.testing.assert_allclose(table1[row], made[1][seed0.index(name)], rtol=1e-5, atol=1e-5)


def test_the_cli_names_a_bad_root_and_exits_2(weights, tmp_path):
    result = CliRunner().invoke(app, ["features", "omniglot", "--root", str(tmp_path / "nowhere"), "--weights", str(weights),
                                      "--out", str(tmp_path / "f.h5")])
    assert result.exit_code == 2
    assert f"{tmp_path / 'nowhere'}: error: no Omniglot images folder under this root" in result.output
    assert "Traceback" not in result.output


def test_the_features_train_through_opto_run(made_by_cli, tmp_path):
    out, _ = made_by_cli
    spec = tmp_path / "omniglot.opto"
    spec.write_text(f'set data.source = "{out}"\nset data.feature_dim = 512\nset data.exemplars = {PER_CLASS}\n'
                    "set data.classes = 5\nset data.test_classes = 4\n"
                    "set data.train_exemplars = 1\nset model.layers = 1\nset model.heads = 2\nset model.d_model = 16\n")
    settings = {"train.sequences": 640, "eval.every": 320, "eval.sequences": 64}
    [res] = run_experiment(spec, tmp_path / "run", settings, progress=False)
    records = [json.loads(line) for line in (res.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["sequences"] for r in records] == [0, 320, 640]
    assert all(np.isfinite(r["test_classes/loss"]) for r in records)
    assert json.loads((res.run_dir / "config.json").read_text())["data"]["source"] == str(out)
