"""A token task's training speed beside a plain `lax.scan` loop of the same model, in one process.

Contenders take turns chunk by chunk (the order reversed every round), so the machine's load hits
them alike; the figure is each one's median steps/s and the median of its per-round ratio to the
first contender, the plain loop with the same model (`plain_loop.py --norms`). The optodsl rows
split where the time goes: training alone (the evaluation shrunk to one batch without measures),
training with the spec's evaluation (its interval, set size and measures), and training with the norms switched off (beside
the attention-only plain loop). The plain loop takes the spec's vocabulary and sequence length;
it samples Markov chains for `markov` and uniform random tokens (cheaper than any task's sampler)
for the other tasks.

    python benchmarks/task_vs_plain.py --spec specs/tasks/markov.opto --rounds 7
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import optodsl

optodsl.configure_xla()  # the flags `opto` uses, before JAX starts

import jax  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
import plain_loop  # noqa: E402

from optodsl.experiment import load_experiment, plan_for  # noqa: E402
from optodsl.tasks import layout  # noqa: E402
from optodsl.train.trainer import build_program  # noqa: E402


def optodsl_runner(spec: str, steps: int, *, evaluate: bool, norms: bool):
    """A function that trains `steps` steps of the spec's first run and waits for them: with
    `evaluate`, in chunks between the spec's own evaluations; without, as one chunk whose closing
    evaluation is one batch without measures."""
    member = load_experiment(spec).members[0]
    c = member.config
    eval_update = {} if evaluate else {"every": steps * c.train.batch, "sequences": c.train.batch, "measures": []}
    update = {"train": c.train.model_copy(update={"sequences": 10**8}), "eval": c.eval.model_copy(update=eval_update)}
    if not norms:
        update["model"] = c.model.model_copy(update={"prenorm": False, "final_norm": False})
    config = c.model_copy(update=update)
    program = build_program(config, plan_for(member.model_copy(update={"config": config})))
    if steps % program.steps_per_eval:
        raise SystemExit(f"--steps {steps} is not a multiple of the spec's evaluation interval ({program.steps_per_eval} steps)")
    run = program.chunk(program.steps_per_eval)
    box = {"state": program.init_state()}
    keys = program.data_keys()

    def go() -> None:
        for _ in range(steps // program.steps_per_eval):
            box["state"], metrics = run(box["state"], program.forward_arrays, keys, program.task_values, program.task,
                                        program.eval_batches)
        jax.block_until_ready(metrics)

    return go


def plain_runner(steps: int, *, norms: bool):
    """A function that trains `steps` steps of the plain loop (chunks of `plain_loop.STEPS`)."""
    params = plain_loop.init(jax.random.PRNGKey(0), norms)
    box = {"state": (params, plain_loop.OPT.init(params)), "i": 0}

    def go() -> None:
        for _ in range(steps // plain_loop.STEPS):
            box["i"] += 1
            box["state"], losses = plain_loop.chunk(box["state"], jax.random.PRNGKey(box["i"]))
        jax.block_until_ready(losses)

    return go


def parser() -> argparse.ArgumentParser:
    """The command line (tests/test_docs_examples.py parses every call the docs show with it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="specs/tasks/markov.opto", help="a token task's spec (its first run)")
    parser.add_argument("--steps", type=int, default=300, help="steps per chunk (a multiple of 100)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of one chunk of every contender")
    return parser


def main() -> None:
    args = parser().parse_args()
    shape = layout(load_experiment(args.spec).members[0].config)
    plain_loop.K, plain_loop.T = shape.vocab, shape.length  # the same embedding, unembedding and length
    task = load_experiment(args.spec).members[0].config.task.name
    if task != "markov":
        plain_loop.sample = plain_loop.sample_uniform  # a Dirichlet per row of a large vocabulary costs more than the model
    contenders = {
        "plain loop, same model (norms)": plain_runner(args.steps, norms=True),
        "optodsl, training only": optodsl_runner(args.spec, args.steps, evaluate=False, norms=True),
        "optodsl, with the spec's evaluation": optodsl_runner(args.spec, args.steps, evaluate=True, norms=True),
        "plain loop, attention only": plain_runner(args.steps, norms=False),
        "optodsl, training only, no norms": optodsl_runner(args.spec, args.steps, evaluate=False, norms=False),
    }
    for go in contenders.values():
        go()  # compile and warm up
    seen: dict[str, list[float]] = {name: [] for name in contenders}
    for r in range(args.rounds):
        order = list(contenders.items()) if r % 2 == 0 else list(contenders.items())[::-1]
        for name, go in order:
            t0 = time.perf_counter()
            go()
            seen[name].append(args.steps / (time.perf_counter() - t0))
    first = next(iter(seen.values()))
    for name, values in seen.items():
        ratios = [v / f for v, f in zip(values, first)]
        print(json.dumps({"name": name, "median_steps_per_s": round(statistics.median(values), 1),
                          "median_ratio_to_first": round(statistics.median(ratios), 2),
                          "ratios": [round(x, 2) for x in ratios], "spec": args.spec, "machine": platform.machine(),
                          "cpus": jax.local_device_count()}))


if __name__ == "__main__":
    main()
