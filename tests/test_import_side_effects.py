"""Importing optodsl changes nothing global; the `opto` command and `configure_xla()` opt in."""

from __future__ import annotations

import os
import subprocess
import sys


def _python(code: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "OPTODSL_KEEP_XLA_FLAGS")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**clean, "PYTHONPATH": os.pathsep.join(sys.path), **env})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_import_keeps_the_users_xla_flags_and_devices():
    out = _python("import os, optodsl, optodsl.cli, optodsl.analysis, optodsl.report, jax\n"
                  "print(repr(os.environ.get('XLA_FLAGS')), jax.local_device_count())")
    assert out.split() == ["None", "1"]
    out = _python("import os, optodsl; print(os.environ['XLA_FLAGS'])", XLA_FLAGS="--xla_dump_to=/tmp/x")
    assert out.strip() == "--xla_dump_to=/tmp/x"


def test_configure_xla_opts_in_to_one_device_per_core_and_keeps_the_users_flags():
    out = _python("import os, optodsl; optodsl.configure_xla(); import jax\n"
                  "print(os.environ['XLA_FLAGS']); print(jax.local_device_count())", XLA_FLAGS="--xla_dump_to=/tmp/x")
    flags, devices = out.splitlines()
    assert flags.startswith("--xla_dump_to=/tmp/x ") and f"--xla_force_host_platform_device_count={os.cpu_count()}" in flags
    assert int(devices) == os.cpu_count()


def test_the_opto_command_sets_its_flags_before_it_runs():
    out = _python("import atexit, os, sys\n"
                  "atexit.register(lambda: print(os.environ.get('XLA_FLAGS')))\n"
                  "sys.argv = ['opto', '--help']\n"
                  "from optodsl.cli import main\nmain()")
    assert "--xla_force_host_platform_device_count" in out.splitlines()[-1]
