"""Joining the other processes of a multi-process `opto run` (docs/distributed.md)."""

from __future__ import annotations

import os

from ..errors import DataError


def start_distributed() -> None:
    """With OPTODSL_DISTRIBUTED=1, join the other processes (docs/distributed.md): JAX_COORDINATOR_ADDRESS,
    JAX_NUM_PROCESSES and JAX_PROCESS_ID when set, else whatever the cluster (SLURM, TPU) tells JAX."""
    if os.environ.get("OPTODSL_DISTRIBUTED") != "1":
        return
    import jax

    env = {k: os.environ.get(f"JAX_{k.upper()}") for k in ("coordinator_address", "num_processes", "process_id")}
    try:
        kwargs = {k: (v if k == "coordinator_address" else int(v)) for k, v in env.items() if v}
    except ValueError as exc:
        raise DataError("JAX_NUM_PROCESSES / JAX_PROCESS_ID", "not a whole number", found=str(exc)) from exc
    jax.distributed.initialize(**kwargs)
