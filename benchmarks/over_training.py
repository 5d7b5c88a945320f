"""Heads over training as one program beside a loop of single-checkpoint calls (issue 22).

Trains (once, into a temporary folder) the paper's model (2 layers x 8 heads, d_model 64,
`specs/paper/common.opto`) for `--points` x 320 sequences keeping a series point every 320, then
times, in one process and in alternating rounds (the order reversed every round, so the machine's
load hits the contenders alike):

- `program`: `--over-training`'s way: the full model and each of the 16 heads ablated alone at every
  point, `evaluate_plans_over_points` (one program vmapped over the points), plans built once;
- `loop`: the same 17 plans at each point in turn, as a single-checkpoint analysis does it (plans
  built from their spec lines, then `evaluate_plans`), one point after another;
- `loop_evaluation`: `loop` with the plans built once, before it (the evaluations alone, in turn);
- `analyze`: `opto analyze --only heads` at each point in turn (`heads.analyze`: it also scores
  each head alone and takes the measures and reference levels), the loop a user would write today.

Each contender runs once before the timed rounds (its compilation is not timed; a separate
`opto analyze` process per point would pay it every time). Prints one JSON line per round and a
summary line with each contender's median seconds and the median of its per-round ratio to `program`.

    python benchmarks/over_training.py --rounds 3 --sequences 2048
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import optodsl

optodsl.configure_xla()  # the flags `opto` uses, before JAX starts

import jax  # noqa: E402
import numpy as np  # noqa: E402

from optodsl.analysis.evaluate import evaluate_plans, evaluate_plans_over_points, evaluation_set  # noqa: E402
from optodsl.analysis.heads import Planner, analyze  # noqa: E402
from optodsl.analysis.overtraining import load_points  # noqa: E402
from optodsl.analysis.runs import load_run  # noqa: E402
from optodsl.train.series import load_series  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def parser() -> argparse.ArgumentParser:
    """The command line (tests/test_docs_examples.py parses every call the docs show with it)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--points", type=int, default=20, help="series points (one every 320 sequences)")
    p.add_argument("--sequences", type=int, default=2048, help="evaluation sequences per plan and point")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds, the contenders alternating")
    p.add_argument("--run", type=Path, default=None, help="a run directory to reuse (trained here when missing)")
    p.add_argument("--skip-analyze", action="store_true", help="time only `program` and `loop`")
    return p


def train_run(folder: Path, run_dir: Path, points: int) -> Path:
    """Train the paper's model for `points` x 320 sequences into `run_dir`, a series point every 320."""
    from optodsl.experiment import run_experiment

    spec = folder / "series_bench.opto"
    spec.write_text(f'import "{ROOT / "specs/paper/common.opto"}"\nset train.lr = 1e-3\nset train.sequences = {320 * points}\n'
                    f'set train.keep = "every 320"\nset eval.every = {320 * points}\nset eval.sets = ["train"]\n')
    run_experiment(spec, out=run_dir, progress=False)
    return run_dir


def main() -> None:
    args = parser().parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.run if args.run is not None and args.run.exists() else train_run(Path(tmp), args.run or Path(tmp) / "run", args.points)
        run = load_run(run_dir)
        cfg = run.config
        task, seqs = evaluation_set(cfg, n=args.sequences, seed=0)
        texts = [""] + [f"ablate L{layer}.H{h}" for layer in range(1, cfg.model.layers + 1) for h in range(cfg.model.heads)]
        loaded, problems = load_series(run.run_dir, run.model)
        assert not problems and len(loaded) == args.points, (problems, len(loaded))

        def program():
            points = load_points(run)
            planner = Planner(run, bare=False)
            plans = [planner.plan(t) for t in texts]
            out = evaluate_plans_over_points(points.params, points.static, plans, task, seqs, np.asarray(points.sequences))
            jax.block_until_ready([o["loss"] for o in out])
            return np.stack([o["loss"].mean(-1) for o in out], 1)  # (points, plans)

        def loop():
            rows = []
            for point, model in loaded:
                planner = Planner(run, bare=False)
                plans = [planner.plan(t) for t in texts]
                rows.append([o.loss for o in evaluate_plans(model, plans, task, seqs, point.sequences)])
            return np.asarray(rows)

        shared = [Planner(run, bare=False).plan(t) for t in texts]

        def loop_evaluation():
            return np.asarray([[o.loss for o in evaluate_plans(model, shared, task, seqs, point.sequences)]
                               for point, model in loaded])

        def analyze_loop():
            for point, model in loaded:
                analyze(dataclasses.replace(run, model=model, sequences=point.sequences), ("heads",), n=args.sequences, seed=0)

        contenders = {"program": program, "loop": loop, "loop_evaluation": loop_evaluation}
        if not args.skip_analyze:
            contenders["analyze"] = analyze_loop
        a, b, c = program(), loop(), loop_evaluation()  # warm up (compile), and check that they agree
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-5)
        if not args.skip_analyze:
            analyze_loop()
        seconds: dict[str, list[float]] = {name: [] for name in contenders}
        for r in range(args.rounds):
            order = list(contenders) if r % 2 == 0 else list(reversed(contenders))
            for name in order:
                start = time.perf_counter()
                contenders[name]()
                seconds[name].append(time.perf_counter() - start)
            print(json.dumps({"round": r + 1, **{k: round(v[-1], 3) for k, v in seconds.items()}}), flush=True)
        ratios = {name: statistics.median(s / p for s, p in zip(seconds[name], seconds["program"])) for name in contenders}
        print(json.dumps({"date": datetime.date.today().isoformat(), "machine": platform.machine(), "cpus": jax.device_count(),
                          "points": args.points, "plans": len(texts), "sequences": args.sequences,
                          "median_s": {k: round(statistics.median(v), 3) for k, v in seconds.items()},
                          "median_ratio_to_program": {k: round(v, 2) for k, v in ratios.items()},
                          "command": " ".join(sys.argv)}))


if __name__ == "__main__":
    main()
