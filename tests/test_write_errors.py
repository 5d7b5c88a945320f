"""A write that fails (read-only file system, disk full, no permission) is one clear line naming
the file and the cause, exit 2, no traceback, and leaves no temporary or partial file behind.

Tests run as root here, where chmod does not stop writes, so the failures are injected into
`os.replace` (every atomic write ends with it) or into the write itself; without root, the
read-only case uses a real chmod'ed folder.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from optodsl import cli
from optodsl.cli import app
from optodsl.errors import DataError
from optodsl.experiment import run_experiment
from optodsl.files import atomic_write, make_dir

SMALL = {"train.sequences": 640, "eval.every": 320, "eval.sequences": 16, "data.total_classes": 200}
SMALL_ARGS = [arg for key, value in SMALL.items() for arg in ("--set", f"{key}={value}")] + ["--no-progress"]
CAUSES = {errno.EROFS: "Read-only file system", errno.ENOSPC: "No space left on device", errno.EACCES: "Permission denied"}


def _fail_replace(monkeypatch, code: int, matching: str = "") -> None:
    """Make every atomic rename onto a path whose name contains `matching` fail with errno `code`."""
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        if matching in Path(dst).name:
            raise OSError(code, os.strerror(code), str(src))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.tmp")) if folder.exists() else []


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny finished run to report on and analyse."""
    root = tmp_path_factory.mktemp("trained")
    spec = root / "base.opto"
    spec.write_text("ablate L2.H1\n")
    return run_experiment(spec, root / "run", SMALL, progress=False)[0].run_dir


@pytest.mark.parametrize("code", sorted(CAUSES))
def test_run_into_an_unwritable_place_is_one_line(tmp_path, monkeypatch, code):
    spec = tmp_path / "s.opto"
    spec.write_text("ablate L2.H1\n")
    _fail_replace(monkeypatch, code)
    result = CliRunner().invoke(app, ["run", str(spec), "--out", str(tmp_path / "run"), *SMALL_ARGS])
    assert result.exit_code == 2
    assert result.output == f"{tmp_path / 'run' / 'spec.opto'}: error: cannot write: {CAUSES[code]}\n"
    assert list((tmp_path / "run").iterdir()) == []


def test_a_full_disk_while_checkpointing_names_the_checkpoint_and_keeps_no_partial_file(tmp_path, monkeypatch):
    spec = tmp_path / "s.opto"
    spec.write_text("ablate L2.H1\n")
    _fail_replace(monkeypatch, errno.ENOSPC, matching="ckpt-")
    result = CliRunner().invoke(app, ["run", str(spec), "--out", str(tmp_path / "run"), *SMALL_ARGS])
    assert result.exit_code == 2
    assert result.output == f"{tmp_path / 'run' / 'ckpt-000000020.npz'}: error: cannot write: No space left on device\n"
    assert _leftovers(tmp_path) == [] and not list((tmp_path / "run").glob("ckpt-*"))
    assert not (tmp_path / "run" / "checkpoint.json").exists()


def test_a_failing_write_itself_leaves_no_temporary_file(tmp_path):
    def write(f):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(DataError, match="cannot write: No space left on device"):
        atomic_write(tmp_path / "x.json", write)
    assert list(tmp_path.iterdir()) == []


def test_a_folder_that_cannot_be_made_is_named(tmp_path, monkeypatch):
    target = tmp_path / "readonly" / "run"
    if os.geteuid() == 0:
        def mkdir(self, *args, **kwargs):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

        monkeypatch.setattr(Path, "mkdir", mkdir)
    else:
        (tmp_path / "readonly").mkdir()
        (tmp_path / "readonly").chmod(0o500)
    with pytest.raises(DataError) as caught:
        make_dir(target)
    assert str(caught.value).startswith(f"{target}: error: cannot write: ")


def test_report_into_a_read_only_folder(tmp_path, monkeypatch, trained):
    out = tmp_path / "report"
    out.mkdir()
    if os.geteuid() == 0:
        _fail_replace(monkeypatch, errno.EROFS)
    else:
        out.chmod(0o500)
    result = CliRunner().invoke(app, ["report", str(trained), "--out", str(out)])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    assert result.output.startswith(str(out)) and ": error: cannot write: " in result.output
    assert _leftovers(out) == [] and not (out / "report.md").exists()


def test_analyze_into_a_read_only_run_directory(monkeypatch, capsys, trained):
    """Through `main`, the entry point of the `opto` script, as a user meets it."""
    before = sorted(p.name for p in trained.iterdir())
    _fail_replace(monkeypatch, errno.EROFS, matching="analysis")
    monkeypatch.setattr(sys, "argv", ["opto", "analyze", str(trained), "--only", "heads", "--sequences", "64"])
    with pytest.raises(SystemExit) as caught:
        cli.main()
    assert caught.value.code == 2
    assert capsys.readouterr().err == f"{trained / 'analysis.json'}: error: cannot write: Read-only file system\n"
    assert sorted(p.name for p in trained.iterdir()) == before


def test_toy_into_a_read_only_folder(tmp_path, monkeypatch):
    _fail_replace(monkeypatch, errno.EROFS)
    result = CliRunner().invoke(app, ["toy", "--out", str(tmp_path), "--steps", "3"])
    assert result.exit_code == 2
    assert result.output.endswith(f"{tmp_path / 'toy.json'}: error: cannot write: Read-only file system\n")
    assert _leftovers(tmp_path) == []


def test_tensorboard_without_tensorboardx_creates_no_run_directory(tmp_path, monkeypatch):
    spec = tmp_path / "s.opto"
    spec.write_text("ablate L2.H1\n")
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    result = CliRunner().invoke(app, ["run", str(spec), "--out", str(tmp_path / "run"), "--tensorboard", *SMALL_ARGS])
    assert result.exit_code == 2
    assert result.output.startswith("--tensorboard: error: TensorBoard logging needs tensorboardX")
    assert 'pip install "optodsl[tensorboard]"' in result.output
    assert not (tmp_path / "run").exists()
