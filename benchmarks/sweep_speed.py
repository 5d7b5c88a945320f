"""Aggregate training throughput of a sweep run as one vmapped program, against sweep size.

Members are Figure 4b's runs (`ablate L2.* except H$h`, h cycling over the 8 heads), batch 32,
evaluation every 5,000 sequences on 1,000 per set, sharded over the local devices (one per CPU
core by default). Compilation is excluded.

    python benchmarks/sweep_speed.py --sizes 1 8 64
"""

from __future__ import annotations

import argparse
import json
import jax

from optodsl.compile.lower import compile_member
from optodsl.config import EvalConfig, ExperimentConfig, TrainConfig
from optodsl.semantics.spec import resolve_spec
from optodsl.syntax import load_text
from optodsl.train.trainer import build_program
from train_speed import time_chunks


def measure(size: int, chunks: int) -> dict:
    base = ExperimentConfig(train=TrainConfig(sequences=10**7), eval=EvalConfig(every=5000, sequences=1000))
    members, _ = resolve_spec(load_text("sweep h in 0..7\nablate L2.* except H$h\n", "fig4b.opto"), base)
    picked = [members[i % 8] for i in range(size)]
    configs = [m.config.model_copy(update={"seed": m.config.seed.model_copy(update={"init": 5 + i})}) for i, m in enumerate(picked)]
    program = build_program(configs, [compile_member(m) for m in picked])
    steps, elapsed, compile_s = time_chunks(program, chunks)
    return {"runs": size, "aggregate_steps_per_s": round(size * steps / elapsed, 1), "steps_per_s_per_run": round(steps / elapsed, 1),
            "compile_plus_first_chunk_s": round(compile_s, 2), "devices": jax.local_device_count(), "sharded": program.sharding is not None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--chunks", type=int, default=4, help="timed chunks of 5,000 sequences")
    args = parser.parse_args()
    for size in args.sizes:
        print(json.dumps(measure(size, args.chunks)), flush=True)


if __name__ == "__main__":
    main()
