"""`opto features export`: the built-in synthetic features as a file in the paper's HDF5 layout."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from optodsl.cli import app
from optodsl.tasks.export import export_synthetic
from optodsl.data.features import HDF5_KEY
from optodsl.tasks.fewshot import make_task
from optodsl.errors import DataError
from optodsl.experiment import DEFAULT


def _export(*args: str):
    return CliRunner().invoke(app, ["features", "export", *args])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The default export, written by the command: (path, CLI result)."""
    out = tmp_path_factory.mktemp("export") / "synthetic.h5"
    return out, _export("--out", str(out))


def test_the_file_has_the_layout_the_papers_code_reads(exported):
    out, result = exported
    assert result.exit_code == 0, result.output
    assert f"features: {out} (1623, 5, 512) float32" in result.output
    with h5py.File(out, "r") as f:  # main_utils.get_data_from_opts reads this one dataset
        assert list(f.keys()) == ["resnet18"] and f[HDF5_KEY].shape == (1623, 5, 512)
        assert f[HDF5_KEY].dtype == np.float32


def test_data_source_reads_back_the_features_a_synthetic_run_trains_on_bit_for_bit(exported):
    out, _ = exported
    from_file = np.asarray(make_task(DEFAULT.data.model_copy(update={"source": str(out)})).features)
    built_in = np.asarray(make_task(DEFAULT.data).features)
    assert from_file.dtype == built_in.dtype == np.float32
    assert from_file.tobytes() == built_in.tobytes()


def test_data_settings_choose_the_table(exported, tmp_path):
    out = tmp_path / "seed3.h5"
    result = _export("--out", str(out), "--set", "data.seed=3", "--set", "data.proto_noise=0.7")
    assert result.exit_code == 0, result.output
    cfg = DEFAULT.data.model_copy(update={"seed": 3, "proto_noise": 0.7})
    with h5py.File(out, "r") as f, h5py.File(exported[0], "r") as g:
        table = f[HDF5_KEY][()]
        assert table.tobytes() == np.asarray(make_task(cfg).features).tobytes()
        assert not np.array_equal(table, g[HDF5_KEY][()])


@pytest.mark.parametrize("where, problem", [
    ("missing/f.h5", "cannot write here: the folder does not exist"),
    ("f.npy", "the output must be an HDF5 file"),
    ("folder.h5", "the output is a folder"),
])
def test_a_bad_output_path_is_named_with_the_reason_and_exits_2(tmp_path, where, problem):
    (tmp_path / "folder.h5").mkdir()
    out = tmp_path / where
    result = _export("--out", str(out))
    assert result.exit_code == 2
    assert f"{out}: error: {problem}" in result.output and "Traceback" not in result.output
    assert not out.is_file()


def test_an_unwritable_path_is_refused_and_leaves_nothing_behind():
    with pytest.raises(DataError, match="cannot write the feature file") as err:
        export_synthetic(DEFAULT.data, "/proc/optodsl-export.h5")  # /proc refuses new files, even to root
    assert err.value.path == "/proc/optodsl-export.h5"


def test_a_file_source_is_refused(tmp_path):
    result = _export("--out", str(tmp_path / "f.h5"), "--set", "data.source=feats.h5")
    assert result.exit_code == 2
    assert "feats.h5: error: only the built-in synthetic features are exported" in result.output


def test_a_bad_setting_is_a_spec_error(tmp_path):
    result = _export("--out", str(tmp_path / "f.h5"), "--set", "data.sed=3")
    assert result.exit_code == 2
    assert "--set:1:1: error: unknown setting 'data.sed'" in result.output and "Traceback" not in result.output


def test_the_synthetic_defaults_are_the_configured_ones():
    from optodsl.config import DataConfig
    from optodsl.data.features import synthetic_features

    assert synthetic_features().tobytes() == np.asarray(make_task(DataConfig()).features).tobytes()
