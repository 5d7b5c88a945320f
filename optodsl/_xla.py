"""XLA flags chosen for speed, set before JAX starts its backend; only when asked, only on a CPU.

Importing optodsl changes nothing in the process: the `opto` command calls `configure()` before
any computation, and a program that embeds optodsl may opt in with `optodsl.configure_xla()`
before its first JAX computation (afterwards XLA has read its flags and the call has no effect).

Both flags are for the CPU backend, so they are set only when JAX will compute on the CPU
(`cpu_backend()`), decided without starting JAX: `JAX_PLATFORMS` (or the older
`JAX_PLATFORM_NAME`) names the platform if set (its first entry is JAX's default); otherwise
an installed accelerator plugin (a module under the `jax_plugins` namespace, e.g. `xla_cuda13`
of `jax[cuda13]`, an entry point of the `jax_plugins` group, or `libtpu`) means an accelerator,
and no plugin means the CPU. A machine with the CUDA plugin but no GPU therefore gets neither
flag; `JAX_PLATFORMS=cpu` restores them there.

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
import pkgutil
from importlib.metadata import PackageNotFoundError, entry_points, version
from importlib.util import find_spec

FLAG = "--xla_cpu_experimental_ynn_fusion_type="


def accelerator_plugins() -> list[str]:
    """The accelerator back ends JAX would find at start-up, by name, without importing any of them."""
    found = []
    try:
        spec = find_spec("jax_plugins")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        found += [m.name for m in pkgutil.iter_modules(list(spec.submodule_search_locations))]
    found += [e.name for e in entry_points(group="jax_plugins")]
    try:
        if find_spec("libtpu") is not None:
            found.append("libtpu")
    except (ImportError, ValueError):
        pass
    return sorted(set(found))


def cpu_backend() -> bool:
    """Whether JAX's default backend will be the CPU (the rule in the module's docstring)."""
    platforms = os.environ.get("JAX_PLATFORMS") or os.environ.get("JAX_PLATFORM_NAME") or ""
    first = platforms.split(",")[0].strip().lower()
    if first:
        return first == "cpu"
    return not accelerator_plugins()


def configure() -> str:
    """Add optodsl's CPU flags to `XLA_FLAGS` (keeping any the user set) when JAX will compute on
    the CPU, and return the result."""
    if os.environ.get("OPTODSL_KEEP_XLA_FLAGS") == "1" or not cpu_backend():
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
