"""The few-shot task: sequence structure, splits, and feature files with clear errors."""

from __future__ import annotations

import h5py
import jax
import numpy as np
import pytest

from optodsl.config import DataConfig
from optodsl.data.features import load_features, synthetic_features
from optodsl.tasks.fewshot import label_sets, make_task
from optodsl.errors import DataError


def test_training_sequences_follow_the_papers_structure(task):
    b = task.sample(jax.random.PRNGKey(0), "train", 256)
    cls, lab = np.asarray(b["classes"]), np.asarray(b["labels"])
    assert b["exemplars"].shape == (256, 3, 512)
    assert np.all(cls[:, 0] != cls[:, 1]) and np.all(lab[:, 0] != lab[:, 1])
    assert np.all(cls < 50)
    q_is = (cls[:, 2] == cls[:, 0])
    assert np.all(q_is | (cls[:, 2] == cls[:, 1]))
    np.testing.assert_array_equal(lab[:, 2], np.where(q_is, lab[:, 0], lab[:, 1]))
    assert 0.4 < q_is.mean() < 0.6  # the query is A or B evenly
    feats = np.asarray(task.features)
    np.testing.assert_array_equal(np.asarray(b["exemplars"]), feats[cls, 0])  # exemplar 0 trains


def test_label_pairs_hold_out_a_fifth_as_in_the_paper():
    train, held = label_sets(5, 2, 0.2, seed=0)
    ordered = lambda s: {(a, b) for a, b in s} | {(b, a) for a, b in s}
    assert len(ordered(train)) == 16 and len(ordered(held)) == 4
    assert not ordered(train) & ordered(held)


def test_evaluation_sets_draw_from_their_splits(task):
    feats = np.asarray(task.features)
    held = task.sample(jax.random.PRNGKey(1), "heldout_labels", 256)
    pairs = {tuple(sorted(p)) for p in np.asarray(held["labels"])[:, :2].tolist()}
    assert pairs == {tuple(p) for p in np.asarray(task.heldout_label_sets).tolist()}
    ex = task.sample(jax.random.PRNGKey(2), "heldout_exemplars", 64)
    cls = np.asarray(ex["classes"])
    dist = np.abs(feats[cls][:, :, 1:] - np.asarray(ex["exemplars"])[:, :, None]).sum(-1)
    assert np.all(dist.min(-1) == 0)  # every exemplar is one of the held-out exemplars 1..4
    test = task.sample(jax.random.PRNGKey(3), "test_classes", 64)
    assert np.all(np.asarray(test["classes"]) >= 100)


def test_synthetic_features_make_heldout_exemplars_resemble_their_class():
    f = synthetic_features(200, 5, 512, seed=0)
    assert f.shape == (200, 5, 512) and abs(f.std() - 1) < 0.05
    c = f - f.mean((0, 1))
    c /= np.linalg.norm(c, axis=-1, keepdims=True)
    same = (c[:, 0] * c[:, 1]).sum(-1).mean()
    other = (c[:-1, 0] * c[1:, 1]).sum(-1).mean()
    assert same > 0.5 and abs(other) < 0.1


def test_feature_files_load_in_every_format(tmp_path):
    arr = np.random.default_rng(0).standard_normal((160, 5, 16)).astype(np.float32)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f["resnet18/224/feat"] = arr
    np.save(tmp_path / "f.npy", arr)
    np.savez(tmp_path / "f.npz", features=arr)
    for name in ("f.h5", "f.npy", "f.npz"):
        np.testing.assert_array_equal(load_features(tmp_path / name), arr)
    task = make_task(DataConfig(source=str(tmp_path / "f.h5"), feature_dim=16, total_classes=160, classes=50, test_classes=100))
    assert task.sample(jax.random.PRNGKey(0), "test_classes", 4)["exemplars"].shape == (4, 3, 16)


@pytest.mark.parametrize("make, problem", [
    (lambda p: None, "feature file not found"),
    (lambda p: h5py.File(p.with_suffix(".h5"), "w").create_dataset("feat", data=np.zeros((3, 2, 4))).file.close(), "no dataset 'resnet18/224/feat'"),
    (lambda p: np.save(p.with_suffix(".npy"), np.zeros((3, 4))), "wrong number of axes"),
    (lambda p: np.save(p.with_suffix(".npy"), np.array([{"a": 1}], dtype=object)), "object arrays are refused"),
    (lambda p: np.savez(p.with_suffix(".npz"), a=np.zeros((3, 2, 4)), b=np.zeros(2)), "cannot tell which array"),
    (lambda p: p.with_suffix(".h5").write_bytes(b"not hdf5"), "not a readable HDF5 file"),
    (lambda p: np.save(p.with_suffix(".npy"), np.full((3, 2, 4), np.nan)), "NaN or inf"),
])
def test_bad_feature_files_name_the_file_and_the_problem(tmp_path, make, problem):
    base = tmp_path / "feats"
    make(base)
    written = [p for p in tmp_path.iterdir()] or [base.with_suffix(".h5")]
    with pytest.raises(DataError) as info:
        load_features(written[0])
    assert problem in str(info.value) and str(written[0]) in str(info.value)


def test_feature_table_that_does_not_fit_the_settings_is_refused(tmp_path):
    np.save(tmp_path / "small.npy", np.zeros((20, 5, 8), np.float32))
    with pytest.raises(DataError, match="does not fit the data settings"):
        make_task(DataConfig(source=str(tmp_path / "small.npy"), feature_dim=8, total_classes=200))
