"""XLA flags chosen for speed, set before JAX starts its backend; only when asked.

Importing optodsl changes nothing in the process: the `opto` command calls `configure()` before
any computation, and a program that embeds optodsl may opt in with `optodsl.configure_xla()`
before its first JAX computation (afterwards XLA has read its flags and the call has no effect).

The host platform gets one device per CPU core (`--xla_force_host_platform_device_count`), so a
sweep's vmapped members are sharded over every core; a single run uses the first device.

On the CPU, XLA 0.10's YNNPACK fusions run this model's many tiny reductions slower than its
own kernels (measured: about 150 vs 200 training steps/s on the 2-core development machine; see
docs/performance.md), so they are turned off unless `XLA_FLAGS` already says otherwise or
`OPTODSL_KEEP_XLA_FLAGS=1` is set. The flag is only known to jaxlib 0.10.x; other versions are
left alone, since XLA refuses unknown flags.
"""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version

FLAG = "--xla_cpu_experimental_ynn_fusion_type="


def configure() -> str:
    """Add optodsl's flags to `XLA_FLAGS` (keeping any the user set) and return the result."""
    if os.environ.get("OPTODSL_KEEP_XLA_FLAGS") == "1":
        return os.environ.get("XLA_FLAGS", "")
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags and (os.cpu_count() or 1) > 1:
        # one CPU device per core, so the members of a sweep spread over every core
        flags = f"{flags} --xla_force_host_platform_device_count={os.cpu_count()}".strip()
        os.environ["XLA_FLAGS"] = flags
    if "ynn" in flags:
        return flags
    try:
        jaxlib = version("jaxlib")
    except PackageNotFoundError:
        return flags
    if jaxlib.startswith("0.10."):
        os.environ["XLA_FLAGS"] = f"{flags} {FLAG}".strip()
    return os.environ.get("XLA_FLAGS", "")
