"""optodsl's XLA flags are CPU flags: set only when JAX will compute on the CPU, decided from
`JAX_PLATFORMS` or, unset, from whether an accelerator plugin is installed (`optodsl/_xla.py`)."""

from __future__ import annotations

import os

import pytest

from optodsl import _xla


@pytest.fixture
def clean(monkeypatch):
    """No platform named, no flags set, optodsl's flags not held back."""
    for name in ("JAX_PLATFORMS", "JAX_PLATFORM_NAME", "OPTODSL_KEEP_XLA_FLAGS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/x")
    return monkeypatch


def install_namespace_plugin(tmp_path, monkeypatch, name="xla_cuda13"):
    """A plugin laid out as `jax[cuda13]` installs it: a module under the `jax_plugins` namespace."""
    package = tmp_path / "site" / "jax_plugins" / name
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('discovery must not import a plugin')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))


def install_entry_point_plugin(tmp_path, monkeypatch):
    """A plugin declared the other way JAX accepts: an entry point of the `jax_plugins` group."""
    info = tmp_path / "ep" / "some_pjrt_plugin-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: some-pjrt-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[jax_plugins]\nsome_gpu = some_pjrt_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path / "ep"))


def test_this_cpu_machine_has_no_plugin_so_the_cpu_flags_are_set(clean):
    assert _xla.accelerator_plugins() == []
    assert _xla.cpu_backend()
    flags = _xla.configure()
    assert flags.startswith("--xla_dump_to=/tmp/x ")
    assert f"--xla_force_host_platform_device_count={os.cpu_count()}" in flags or (os.cpu_count() or 1) == 1


def test_an_installed_cuda_plugin_means_an_accelerator_and_no_cpu_flags(clean, tmp_path):
    install_namespace_plugin(tmp_path, clean)
    assert _xla.accelerator_plugins() == ["xla_cuda13"]
    assert not _xla.cpu_backend()
    assert _xla.configure() == "--xla_dump_to=/tmp/x"
    assert os.environ["XLA_FLAGS"] == "--xla_dump_to=/tmp/x"


def test_a_plugin_declared_by_entry_point_counts_too(clean, tmp_path):
    install_entry_point_plugin(tmp_path, clean)
    assert "some_gpu" in _xla.accelerator_plugins()
    assert not _xla.cpu_backend()


@pytest.mark.parametrize("platforms, cpu", [
    ("cpu", True), ("cuda", False), ("gpu", False), ("tpu", False),
    ("cuda,cpu", False), ("CPU,cuda", True), (" cpu ", True),
])
def test_jax_platforms_decides_before_any_plugin(clean, tmp_path, platforms, cpu):
    install_namespace_plugin(tmp_path, clean)  # a plugin present: only the variable can say CPU
    clean.setenv("JAX_PLATFORMS", platforms)
    assert _xla.cpu_backend() is cpu
    flags = _xla.configure()
    assert ("xla_force_host_platform_device_count" in flags) is (cpu and (os.cpu_count() or 1) > 1)


def test_the_older_platform_name_variable_is_read_when_the_newer_is_unset(clean):
    clean.setenv("JAX_PLATFORM_NAME", "gpu")
    assert not _xla.cpu_backend()
    clean.setenv("JAX_PLATFORMS", "cpu")
    assert _xla.cpu_backend()


def test_keep_flags_leaves_xla_flags_alone_on_the_cpu(clean):
    clean.setenv("JAX_PLATFORMS", "cpu")
    clean.setenv("OPTODSL_KEEP_XLA_FLAGS", "1")
    assert _xla.configure() == "--xla_dump_to=/tmp/x"
