"""Training speed of one run: steps/s at batch 32 on the paper's model, evaluation on.

Evaluation follows the paper's schedule (every 5,000 sequences on 1,000 sequences of each of the
four sets), inside the fused chunk. Compilation is excluded (one warm-up chunk); the figure is
steady-state steps/s over `--chunks` chunks. `--spec` times a spec's interventions, e.g. the
two-pass layer-1 clamp, variant `clamp_layer1` of `specs/paper/fig5b.opto` (`--run` picks a
run of a spec with several; the default is its first).

    python benchmarks/train_speed.py                       # no intervention
    python benchmarks/train_speed.py --spec specs/paper/fig5b.opto --run fig5b-clamp_layer1
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import optodsl

optodsl.configure_xla()  # the flags `opto` uses, before JAX starts

import jax  # noqa: E402

from optodsl.config import EvalConfig, ExperimentConfig, TrainConfig
from optodsl.experiment import load_experiment, plan_for
from optodsl.train.trainer import build_program


def time_chunks(program, chunks: int) -> tuple[int, float, float]:
    """(steps timed, seconds, seconds for the first chunk incl. compilation) of a built program."""
    state, keys = program.init_state(), program.data_keys()
    run = program.chunk(program.steps_per_eval)
    t0 = time.perf_counter()
    state, metrics = run(state, program.forward_arrays, keys, program.task_values, program.task, program.eval_batches)
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(chunks):
        state, metrics = run(state, program.forward_arrays, keys, program.task_values, program.task, program.eval_batches)
    jax.block_until_ready(metrics)
    return chunks * program.steps_per_eval, time.perf_counter() - t0, compile_s


def measure(spec: str | None, chunks: int, every: int, run: str | None = None, eval_sequences: int = 1000) -> dict:
    config = ExperimentConfig(train=TrainConfig(sequences=10**7), eval=EvalConfig(every=every, sequences=eval_sequences))
    forward = None
    if spec:
        members = load_experiment(spec).members
        member = next(m for m in members if m.name == run) if run else members[0]
        config = member.config.model_copy(update={"train": config.train, "eval": config.eval})
        forward = plan_for(member.model_copy(update={"config": config}))
    program = build_program(config, forward)
    steps, elapsed, compile_s = time_chunks(program, chunks)
    return {"spec": spec or "none", "steps_per_s": round(steps / elapsed, 1), "sequences_per_s": round(steps * 32 / elapsed),
            "first_chunk_s (compile + 1 chunk)": round(compile_s, 2), "steps": steps,
            "device": jax.devices()[0].device_kind, "machine": platform.machine(), "cpus": jax.local_device_count()}


def parser() -> argparse.ArgumentParser:
    """The command line (tests/test_docs_examples.py parses every call the docs show with it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", action="append", default=None, help="a spec to time (repeatable); default: none")
    parser.add_argument("--run", default=None, help="the run of a spec with several to time, e.g. fig5b-clamp_layer1")
    parser.add_argument("--chunks", type=int, default=10, help="timed chunks of 5,000 sequences")
    parser.add_argument("--every", type=int, default=5000, help="evaluation interval in sequences")
    return parser


def main() -> None:
    args = parser().parse_args()
    for spec in args.spec or [None]:
        print(json.dumps(measure(spec, args.chunks, args.every, args.run)))


if __name__ == "__main__":
    main()
