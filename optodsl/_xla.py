"""XLA flags chosen for speed, set before JAX starts its backend.

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


def configure() -> None:
    if os.environ.get("OPTODSL_KEEP_XLA_FLAGS") == "1":
        return
    flags = os.environ.get("XLA_FLAGS", "")
    if "ynn" in flags:
        return
    try:
        jaxlib = version("jaxlib")
    except PackageNotFoundError:
        return
    if jaxlib.startswith("0.10."):
        os.environ["XLA_FLAGS"] = f"{flags} {FLAG}".strip()


configure()
