"""Aggregate training throughput of a sweep run as one vmapped program, against sweep size.

Members are Figure 4b's runs (`ablate L2.* except H$h`, h cycling over the 8 heads), batch 32,
evaluation every 5,000 sequences on 1,000 per set, sharded over the local devices (one per CPU
core by default). Compilation is excluded.

    python benchmarks/sweep_speed.py --sizes 1 8 64
    python benchmarks/sweep_speed.py --plot docs/sweep_throughput.png --from results.jsonl
"""

from __future__ import annotations

import argparse
import json
import optodsl

optodsl.configure_xla()  # the flags `opto` uses, before JAX starts

import jax  # noqa: E402

from optodsl.compile.lower import compile_member
from optodsl.config import EvalConfig, ExperimentConfig, TrainConfig
from optodsl.semantics.spec import resolve_spec
from optodsl.syntax import load_text
from optodsl.train.trainer import build_program
from train_speed import time_chunks


def measure(size: int, chunks: int, every: int = 5000, eval_sequences: int = 1000) -> dict:
    base = ExperimentConfig(train=TrainConfig(sequences=10**7), eval=EvalConfig(every=every, sequences=eval_sequences))
    members, _ = resolve_spec(load_text("sweep h in 0..7\nablate L2.* except H$h\n", "fig4b.opto"), base)
    picked = [members[i % 8] for i in range(size)]
    configs = [m.config.model_copy(update={"seed": m.config.seed.model_copy(update={"init": 5 + i})}) for i, m in enumerate(picked)]
    program = build_program(configs, [compile_member(m) for m in picked])
    steps, elapsed, compile_s = time_chunks(program, chunks)
    return {"runs": size, "aggregate_steps_per_s": round(size * steps / elapsed, 1), "steps_per_s_per_run": round(steps / elapsed, 1),
            "compile_plus_first_chunk_s": round(compile_s, 2), "devices": jax.local_device_count(), "sharded": program.sharding is not None}


def parser() -> argparse.ArgumentParser:
    """The command line (tests/test_docs_examples.py parses every call the docs show with it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--chunks", type=int, default=4, help="timed chunks of 5,000 sequences")
    parser.add_argument("--plot", help="draw aggregate throughput against sweep size into this PNG")
    parser.add_argument("--from", dest="source", help="with --plot: read results (JSON lines) instead of measuring")
    return parser


def main() -> None:
    args = parser().parse_args()
    if args.source:
        with open(args.source) as f:
            results = [json.loads(line) for line in f if line.strip()]
    else:
        results = []
        for size in args.sizes:
            results.append(measure(size, args.chunks))
            print(json.dumps(results[-1]), flush=True)
    if args.plot:
        plot(results, args.plot)


def plot(results: list[dict], path: str) -> None:
    """Aggregate steps/s against runs per program, log x axis, with the ideal linear scaling from one run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = sorted(results, key=lambda r: r["runs"])
    sizes = [r["runs"] for r in results]
    rates = [r["aggregate_steps_per_s"] for r in results]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(sizes, rates, "o-", label="measured")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("runs in one program (sweep size)")
    ax.set_ylabel("aggregate training steps/s (batch 32)")
    ax.set_title("Sweep throughput, 2-core CPU, evaluation on")
    for x, y in zip(sizes, rates):
        ax.annotate(f"{y:.0f}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
